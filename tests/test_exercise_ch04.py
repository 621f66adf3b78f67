"""Exercise ch04: the visible tests catch the usual mistakes and say what is wrong."""

import copy
import math

import pytest

from .conftest import ExerciseCells

EX = ExerciseCells("ch04_schedules")


@pytest.mark.parametrize("test_id", EX.tests)
def test_the_solution_passes_visible_and_hidden_tests(test_id):
    exec(EX.hidden(test_id), EX.namespace())


def cosine_without_restart(t, peak, warmup_steps, total_steps, start_factor=0.1, floor=0.0):
    if t < warmup_steps:
        return peak * (start_factor + (1 - start_factor) * t / warmup_steps)
    return floor + (peak - floor) * (1 + math.cos(math.pi * t / total_steps)) / 2  # forgot tau = t - W


def forgets_the_scheduler(model, optimizer, scheduler):
    return copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict()})


def load_without_scheduler(checkpoint, model, optimizer, scheduler):
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])


MISTAKES = [
    ("test-warmup_cosine_lr", {"warmup_cosine_lr": cosine_without_restart}, "starts afresh"),
    ("test-multistep_lr", {"multistep_lr": lambda t, lr, marks, gamma=0.1: lr * gamma ** sum(
        m < t for m in marks)}, "counts from the step it names"),
    ("test-checkpoint", {"save_checkpoint": forgets_the_scheduler, "load_checkpoint": load_without_scheduler},
     "scheduler's state_dict"),
]


@pytest.mark.parametrize("test_id,wrong,hint", MISTAKES, ids=lambda v: v if isinstance(v, str) else "")
def test_a_usual_mistake_fails_the_visible_test_with_a_hint(test_id, wrong, hint):
    assert hint in EX.visible_output_when_failing(test_id, **wrong)


def test_hidden_tests_catch_a_checkpoint_that_is_not_a_copy():
    def save_by_reference(model, optimizer, scheduler):
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict()}

    ns = EX.namespace(save_checkpoint=save_by_reference)
    exec(EX.visible("test-checkpoint"), ns)
    with pytest.raises(AssertionError):
        exec(EX.hidden("test-checkpoint"), EX.namespace(save_checkpoint=save_by_reference))
