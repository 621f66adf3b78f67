"""lrlib.stats against scipy.stats: every p-value and interval has an independent oracle."""

import math

import numpy as np
import pytest
from scipy import stats as sp

from lrlib.stats import grid_optimum, paired_comparison


def _pairs(n, shift, seed):
    rng = np.random.default_rng(seed)
    b = rng.normal(1.0, 0.3, n)
    return b + shift + rng.normal(0, 0.05, n), b


@pytest.mark.parametrize("alternative", ["less", "greater", "two-sided"])
@pytest.mark.parametrize("n,shift", [(5, -0.03), (8, 0.01), (12, -0.01)])
def test_sign_test_is_scipys_binomtest(n, shift, alternative):
    a, b = _pairs(n, shift, n)
    d = a - b
    k = int((d > 0).sum())
    want = sp.binomtest(k, int((d != 0).sum()), 0.5, alternative=alternative).pvalue
    got = paired_comparison(a, b, test="sign", alternative=alternative).p_value
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("alternative", ["less", "greater", "two-sided"])
@pytest.mark.parametrize("n,shift", [(6, -0.03), (9, 0.02), (14, -0.01)])
def test_wilcoxon_is_scipys_exact_wilcoxon(n, shift, alternative):
    a, b = _pairs(n, shift, 100 + n)
    want = sp.wilcoxon(a, b, alternative=alternative, method="exact").pvalue
    got = paired_comparison(a, b, test="wilcoxon", alternative=alternative).p_value
    assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("alternative", ["less", "greater", "two-sided"])
@pytest.mark.parametrize("n,shift", [(5, -0.05), (10, 0.01)])
def test_permutation_is_scipys_paired_permutation_test(n, shift, alternative):
    a, b = _pairs(n, shift, 200 + n)
    want = sp.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis),
                               permutation_type="samples", alternative=alternative,
                               n_resamples=np.inf).pvalue
    got = paired_comparison(a, b, test="permutation", alternative=alternative).p_value
    assert got == pytest.approx(want, rel=1e-9)


def test_interval_matches_scipys_percentile_bootstrap_and_effect_size_is_cohens_dz():
    a, b = _pairs(10, -0.04, 7)
    c = paired_comparison(a, b, alternative="less", test="permutation", n_resamples=50_000, seed=1)
    want = sp.bootstrap(((a - b),), np.mean, n_resamples=50_000, method="percentile",
                        confidence_level=0.95, rng=np.random.default_rng(2)).confidence_interval
    width = want.high - want.low
    assert c.interval[0] == pytest.approx(want.low, abs=0.05 * width)
    assert c.interval[1] == pytest.approx(want.high, abs=0.05 * width)
    d = a - b
    assert c.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    assert c.mean_difference == pytest.approx(d.mean())
    assert c.n == 10 and c.wins == int((d < 0).sum())


def test_a_diverged_run_loses_its_pair_in_the_sign_test_and_is_refused_by_the_others():
    a, b = [0.4, 0.5, 0.45, float("nan")], [0.5, 0.6, 0.55, 0.5]
    c = paired_comparison(b, a, test="sign", alternative="less")
    assert c.wins == 1  # b beat a only where a diverged
    assert paired_comparison(a, b, alternative="less", test="sign").wins == 3
    with pytest.raises(ValueError, match="finite for the wilcoxon test"):
        paired_comparison(a, b, alternative="less", test="wilcoxon")


@pytest.mark.parametrize("kwargs,match", [
    ({"test": "t"}, "test must be one of"),
    ({"alternative": "lower"}, "alternative must be one of"),
    ({"level": 1.0}, "level must be in"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        paired_comparison([1, 2, 3], [2, 3, 4], **{"alternative": "less", **kwargs})
    with pytest.raises(ValueError, match="one value per shared seed"):
        paired_comparison([1, 2, 3], [2, 3], alternative="less")
    with pytest.raises(TypeError, match="alternative"):
        paired_comparison([1, 2, 3], [2, 3, 4])  # the direction is part of the sentence: no default


def test_summary_names_test_effect_and_n():
    c = paired_comparison([1, 2, 3, 4], [2, 3, 5, 5], alternative="less")
    assert c.summary().startswith("paired sign test (less), n=4 (4 of 4)")
    assert "p=0.062" in c.summary() and "d_z=" in c.summary()


def test_grid_optimum_interior_edges_and_nan():
    grid = [1e-3, 1e-2, 1e-1, 1.0]
    assert grid_optimum(grid, [3, 2, 1, math.nan]).interior
    edge = grid_optimum(grid, [3, 2, 1, 0.5])
    assert (edge.interior, edge.edge, edge.value) == (False, "high", 1.0)
    assert grid_optimum(grid, [0.1, 0.2, 0.5, 0.9], lower_is_better=False).edge == "high"
    assert grid_optimum(grid, [0.1, 0.2, 0.5, 0.9]).edge == "low"
    with pytest.raises(ValueError, match="strictly increasing"):
        grid_optimum([1, 3, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="at least one finite"):
        grid_optimum([1, 2, 3], [math.nan] * 3)


def test_a_diverged_run_loses_whichever_way_better_points():
    accuracy_a, accuracy_b = [float("nan")] * 3 + [0.9, 0.9], [0.8] * 5
    c = paired_comparison(accuracy_a, accuracy_b, alternative="greater", lower_is_better=False)
    assert c.wins == 2  # the three diverged runs lost their pairs
    wrong_way = paired_comparison(accuracy_a, accuracy_b, alternative="greater")
    assert wrong_way.wins == 5  # read as losses, NaN is +inf: why the flag exists


def test_sampled_flip_tests_never_give_p_zero_and_smallest_p():
    from lrlib.stats import EXACT_UP_TO, smallest_p

    a = np.arange(EXACT_UP_TO + 4, dtype=float)
    c = paired_comparison(a, a + 1.0, alternative="less", test="permutation", n_resamples=1000)
    assert 0 < c.p_value <= 2 / 1001
    assert smallest_p(5, "less") == 1 / 32 and smallest_p(5, "two-sided") == 1 / 16
