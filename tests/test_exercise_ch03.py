"""Exercise ch03: the visible tests catch the usual mistakes and say what is wrong."""

import numpy as np
import pytest

from .conftest import ExerciseCells

EX = ExerciseCells("ch03_optimizers")


@pytest.mark.parametrize("test_id", EX.tests)
def test_the_solution_passes_visible_and_hidden_tests(test_id):
    exec(EX.hidden(test_id), EX.namespace())


def adam_without_bias_correction(theta, grad, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    return theta - lr * m / (np.sqrt(v) + eps), m, v


def adamw_as_l2(theta, grad, m, v, t, lr, weight_decay, beta1=0.9, beta2=0.999, eps=1e-8):
    ns = EX.namespace()
    return ns["adam_step"](theta, grad + weight_decay * theta, m, v, t, lr, beta1, beta2, eps)


MISTAKES = [
    ("test-adam_step", {"adam_step": adam_without_bias_correction}, "bias correction"),
    ("test-adamw_step", {"adamw_step": adamw_as_l2}, "do not add weight_decay * theta to the gradient"),
    ("test-which_is_adam", {"which_is_adam": lambda a, b: "a"}, "follow its gradient sizes"),
    ("test-surprise_step", {"surprise_step": lambda b1, b2: (1 - b1) / (1 - b2)}, "about 3.16"),
]


@pytest.mark.parametrize("test_id,wrong,hint", MISTAKES, ids=lambda v: v if isinstance(v, str) else "")
def test_a_usual_mistake_fails_the_visible_test_with_a_hint(test_id, wrong, hint):
    assert hint in EX.visible_output_when_failing(test_id, **wrong)
