"""Exercise ch05: the visible tests catch the usual mistakes and say what is wrong."""

import math

import pytest
from torch.optim import lr_scheduler

from .conftest import ExerciseCells

EX = ExerciseCells("ch05_warmup")


@pytest.mark.parametrize("test_id", EX.tests)
def test_the_solution_passes_visible_and_hidden_tests(test_id):
    exec(EX.hidden(test_id), EX.namespace())


def warmup_without_restart(schedule, warmup_steps, start_factor=0.0):
    def warmed(t):
        if t < warmup_steps:
            return schedule(0) * (start_factor + (1 - start_factor) * t / warmup_steps)
        return schedule(t)  # forgot that the schedule starts afresh at the milestone
    return warmed


def the_notes_recipe(optimizer, warmup_steps, total_steps, floor, start_factor=0.1):
    warm = lr_scheduler.LinearLR(optimizer, start_factor=start_factor, total_iters=warmup_steps)
    decay = lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=floor)  # the seeds' T_max
    return lr_scheduler.SequentialLR(optimizer, [warm, decay], milestones=[warmup_steps])


def best_seed_instead_of_worst(results, tolerance=0.1):
    best = min(sum(v) / len(v) for v in results.values() if all(math.isfinite(x) for x in v))
    good = [w for w, v in results.items() if min(v) <= (1 + tolerance) * best]
    return min(good) if good else None


MISTAKES = [
    ("test-with_warmup", {"with_warmup": warmup_without_restart}, "schedule(t - W)"),
    ("test-make_recipe", {"make_recipe": the_notes_recipe}, "total_steps - warmup_steps"),
    ("test-adam_first", {"adam_first_update": lambda g, lr, eps=1e-8: -lr * g},
     "whatever the gradient's size"),
    ("test-adam_first", {"first_step_norm": lambda lr, n: lr * n}, "lr * sqrt(N)"),
    ("test-shortest_sufficient_warmup", {"shortest_sufficient_warmup": best_seed_instead_of_worst},
     "worst seed"),
]


@pytest.mark.parametrize("test_id,wrong,hint", MISTAKES, ids=lambda v: v if isinstance(v, str) else "")
def test_a_usual_mistake_fails_the_visible_test_with_a_hint(test_id, wrong, hint):
    assert hint in EX.visible_output_when_failing(test_id, **wrong)

