"""Exercise ch01: the visible tests catch the usual mistakes and say what is wrong."""

import numpy as np
import pytest

from .conftest import ExerciseCells

EX = ExerciseCells("ch01_update_rule")


@pytest.mark.parametrize("test_id", EX.tests)
def test_the_solution_passes_visible_and_hidden_tests(test_id):
    exec(EX.hidden(test_id), EX.namespace())


MISTAKES = [
    ("test-update", {"update": lambda theta, grad, lr: theta + lr * grad}, "negative gradient"),
    ("test-update", {"update": lambda theta, grad, lr: theta - grad}, "update(0.90, -0.4, 0.1)"),
    ("test-run_descent", {"run_descent": lambda g, t0, lr, n: np.array(
        [t0 - lr * g(t0) * (k + 1) for k in range(n)])}, "6 iterates"),
    ("test-run_descent", {"run_descent": lambda g, t0, lr, n: np.array([t0] * (n + 1))},
     "second iterate"),
    ("test-layer_params", {"layer_params": lambda d, f: 4 * d * d + 2 * d * f},
     "only the weight matrices"),
    ("test-layer_params", {"layer_params": lambda d, f: 4 * d * d + 2 * d * f + 4 * d + f + d},
     "named_parameters"),
    ("test-relative_update", {"relative_update": lambda b, a: float(
        sum(((x - y).norm() / y.norm()) for x, y in zip(a, b)))}, "over both tensors together"),
]


@pytest.mark.parametrize("test_id,wrong,hint", MISTAKES, ids=lambda v: v if isinstance(v, str) else "")
def test_a_usual_mistake_fails_the_visible_test_with_a_hint(test_id, wrong, hint):
    assert hint in EX.visible_output_when_failing(test_id, **wrong)


def test_the_hidden_tests_catch_what_the_visible_ones_miss():
    # In-place update passes the visible float tests, but the hidden test sees theta change.
    def in_place(theta, grad, lr):
        if isinstance(theta, float):
            return theta - lr * grad
        theta -= lr * grad
        return theta

    exec(EX.visible("test-update"), EX.namespace(update=in_place))
    with pytest.raises(AssertionError, match="must not change theta in place"):
        exec(EX.hidden("test-update"), EX.namespace(update=in_place))
