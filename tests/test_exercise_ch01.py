"""Exercise ch01: the visible tests catch the usual mistakes and say what is wrong."""

import nbformat
import numpy as np
import pytest

from .conftest import solution_notebook

NB = nbformat.read(solution_notebook("ch01_update_rule"), as_version=4)
CELLS = {c.metadata["nbgrader"]["grade_id"]: c.source for c in NB.cells}
SOLUTION_PARTS = ["update", "run_descent", "layer_params", "relative_update"]


def namespace(**wrong):
    """Run the setup and every solution cell, then swap in the wrong answers given."""
    ns: dict = {"DEVICE": "cpu"}
    exec(CELLS["setup"], ns)
    for part in SOLUTION_PARTS:
        exec(CELLS[part], ns)
    ns.update(wrong)
    return ns


def visible(test_id):
    return CELLS[test_id].split("### BEGIN HIDDEN TESTS")[0]


def hidden(test_id):
    return CELLS[test_id]


@pytest.mark.parametrize("test_id", ["test-update", "test-run_descent", "test-layer_params",
                                     "test-relative_update"])
def test_the_solution_passes_visible_and_hidden_tests(test_id):
    exec(hidden(test_id), namespace())


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
def test_a_usual_mistake_fails_the_visible_test_with_a_hint(test_id, wrong, hint, capsys):
    with pytest.raises(AssertionError):
        exec(visible(test_id), namespace(**wrong))
    assert hint in capsys.readouterr().out


def test_the_hidden_tests_catch_what_the_visible_ones_miss():
    # In-place update passes the visible float tests, but the hidden test sees theta change.
    def in_place(theta, grad, lr):
        if isinstance(theta, float):
            return theta - lr * grad
        theta -= lr * grad
        return theta

    exec(visible("test-update"), namespace(update=in_place))
    with pytest.raises(AssertionError, match="must not change theta in place"):
        exec(hidden("test-update"), namespace(update=in_place))
