"""Exercise ch06: the visible tests catch the usual mistakes and say what is wrong."""

import numpy as np
import pytest

from .conftest import ExerciseCells

EX = ExerciseCells("ch06_lr_finder")


@pytest.mark.parametrize("test_id", EX.tests)
def test_the_solution_passes_visible_and_hidden_tests(test_id):
    exec(EX.hidden(test_id), EX.namespace())


def lrs_one_short(start_lr, end_lr, num_iters):
    return start_lr * (end_lr / start_lr) ** (np.arange(num_iters) / num_iters)  # never reaches end_lr


def without_bias_correction(losses, alpha=0.05):
    avg, out = 0.0, []
    for loss in losses:
        avg = (1 - alpha) * avg + alpha * loss
        out.append(avg)
    return np.array(out)


def slope_against_lr(lrs, smoothed, skip_start=0.1):
    k = int(skip_start * len(lrs))
    lrs, smoothed = np.asarray(lrs)[k:], np.asarray(smoothed)[k:]
    return float(lrs[np.argmin(np.gradient(smoothed, lrs))])


def no_skip(lrs, smoothed, skip_start=0.1):
    return float(np.asarray(lrs)[np.argmin(np.gradient(np.asarray(smoothed), np.log10(lrs)))])


MISTAKES = [
    ("test-exp_lrs", {"exp_lrs": lrs_one_short}, "i / (num_iters - 1)"),
    ("test-smooth_losses", {"smooth_losses": without_bias_correction}, "bias correction"),
    ("test-steepest_lr", {"steepest_lr": slope_against_lr}, "np.log10(lrs)"),
    ("test-steepest_lr", {"steepest_lr": no_skip}, "Skip the first"),
]


@pytest.mark.parametrize("test_id,wrong,hint", MISTAKES, ids=lambda v: v if isinstance(v, str) else "")
def test_a_usual_mistake_fails_the_visible_test_with_a_hint(test_id, wrong, hint):
    assert hint in EX.visible_output_when_failing(test_id, **wrong)

