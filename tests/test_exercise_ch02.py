"""Exercise ch02: the visible tests catch the usual mistakes and say what is wrong."""

import numpy as np
import pytest

from .conftest import ExerciseCells

EX = ExerciseCells("ch02_too_big_too_small")


@pytest.mark.parametrize("test_id", EX.tests)
def test_the_solution_passes_visible_and_hidden_tests(test_id):
    exec(EX.hidden(test_id), EX.namespace())


def _rates_with(max_stable):
    def rates(eigenvalues):
        lam = np.asarray(eigenvalues, dtype=float)
        big, small = lam.max(), lam.min()
        return {"max_stable": max_stable(big, small), "best": 2 / (big + small),
                "contraction_at_best": (big / small - 1) / (big / small + 1)}
    return rates


MISTAKES = [
    ("test-gd_quadratic", {"gd_quadratic": lambda lam, x0, lr, n: np.array(
        [np.asarray(x0) * (1 + lr * np.asarray(lam)) ** t for t in range(n + 1)])}, "multiplies x by"),
    ("test-rates", {"rates": _rates_with(lambda big, small: 2 / small)}, "largest eigenvalue"),
    ("test-rates", {"rates": _rates_with(lambda big, small: 1 / big)}, "2 / L"),
    ("test-regime", {"regime": lambda lr, lam: "monotone" if lr < 2 / max(lam) else "divergent"},
     "Compare lr with 1/L and 2/L"),
    ("test-classify_curve", {"classify_curve": lambda losses: "good"}, "Apply the rules in order"),
]


@pytest.mark.parametrize("test_id,wrong,hint", MISTAKES, ids=lambda v: v if isinstance(v, str) else "")
def test_a_usual_mistake_fails_the_visible_test_with_a_hint(test_id, wrong, hint):
    assert hint in EX.visible_output_when_failing(test_id, **wrong)


def test_hidden_tests_catch_a_rule_applied_with_the_wrong_boundary():
    def sloppy(losses):  # ">=" where the rule says "more than"
        v = np.asarray(losses, dtype=float)
        if not np.all(np.isfinite(v)) or v[-1] > v[0]:
            return "divergent"
        if v[-1] > 2 * v.min():
            return "too large"
        return "too small" if v[-1] >= 0.5 * v[0] else "good"

    exec(EX.visible("test-classify_curve"), EX.namespace(classify_curve=sloppy))
    with pytest.raises(AssertionError, match="exactly half"):
        exec(EX.hidden("test-classify_curve"), EX.namespace(classify_curve=sloppy))
