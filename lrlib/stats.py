"""Comparisons over shared seeds: paired tests, their effect sizes and intervals, and grid optima.

When two settings run on the same seeds (the same initial weights and the same
minibatch order), their results are *paired*: seed 3's luck helps both. The
difference per seed, :math:`d_i = a_i - b_i`, removes that shared luck, so a
paired test sees an effect that two overlapping ranges hide. Every comparison a
chapter states ("warmup lowers the loss") is decided here and shown with its test,
effect, ``n`` and ``p`` on the claims page (:func:`lrlib.book.claim`):

- :func:`paired_comparison`: the mean difference with a bootstrap confidence interval,
  the paired effect size :math:`d_z = \\bar d / s_d`, and an exact test: the sign test
  (a binomial count of which setting won each seed), the Wilcoxon signed-rank test or
  the sign-flip permutation test of the mean (every one of the :math:`2^n` flips).
- :func:`smallest_p`: the smallest p a test of n pairs can reach (5 seeds: 1/32).
- :func:`grid_optimum`: the best point of a grid and whether it is interior (a best
  rate on the grid's edge says "widen the grid", not "this is the best rate").

The tests check every p-value against ``scipy.stats`` (``binomtest``, ``wilcoxon``,
``permutation_test``) and the interval against ``scipy.stats.bootstrap``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lrlib._checks import check_int, check_real

TESTS = ("sign", "wilcoxon", "permutation")
ALTERNATIVES = ("less", "greater", "two-sided")
#: Above this many pairs the sign-flip tests sample flips instead of enumerating all 2^n.
EXACT_UP_TO = 16


@dataclass(frozen=True)
class PairedComparison:
    """The outcome of :func:`paired_comparison` of ``a`` against ``b`` over ``n`` shared seeds.

    Attributes:
        test: ``"sign"``, ``"wilcoxon"`` or ``"permutation"``.
        alternative: what was tested: ``"less"`` (a below b), ``"greater"`` or ``"two-sided"``.
        n: pairs.
        mean_difference: :math:`\\bar d`, the mean of :math:`a_i - b_i`.
        interval: the bootstrap percentile interval of :math:`\\bar d` at ``level``.
        level: the interval's confidence level.
        effect_size: :math:`d_z = \\bar d / s_d` (Cohen's paired effect size; inf when every
            difference is the same and non-zero).
        wins: pairs where the alternative's direction held (:math:`a_i < b_i` for ``"less"``).
        p_value: the test's exact p-value (sampled above :data:`EXACT_UP_TO` pairs).
    """

    test: str
    alternative: str
    n: int
    mean_difference: float
    interval: tuple[float, float]
    level: float
    effect_size: float
    wins: int
    p_value: float

    def summary(self) -> str:
        """One line for the claims page, e.g. ``paired sign test, n=5 (5 of 5), mean diff -0.031
        [-0.05, -0.01], d_z=-1.9, p=0.031``."""
        low, high = self.interval
        return (f"paired {self.test} test ({self.alternative}), n={self.n} ({self.wins} of {self.n}), "
                f"mean diff {self.mean_difference:.3g} [{low:.3g}, {high:.3g}], "
                f"d_z={self.effect_size:.2g}, p={self.p_value:.2g}")

    def significant(self, alpha: float = 0.05) -> bool:
        """``p_value <= alpha``."""
        return self.p_value <= alpha


def _pairs(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.size != y.size:
        raise ValueError(f"a and b must hold one value per shared seed each, got {x.size} and {y.size}")
    if x.size < 2:
        raise ValueError(f"a and b must hold at least 2 pairs, got {x.size}")
    return x - y


def paired_comparison(a: Sequence[float], b: Sequence[float], *, alternative: str, test: str = "sign",
                      lower_is_better: bool = True, level: float = 0.95, n_resamples: int = 10_000,
                      seed: int = 0) -> PairedComparison:
    """Compare ``a`` with ``b``, one value each per shared seed, as pairs.

    With differences :math:`d_i = a_i - b_i`:

    - ``"sign"``: the number of pairs where the alternative held is
      :math:`\\mathrm{Binomial}(n', 1/2)` under the null (:math:`n'` the non-zero
      differences); robust to outliers and to diverged runs, which count as the worst
      value (NaN is read as :math:`+\\infty` when lower is better, :math:`-\\infty` when
      higher is, so a diverged run loses its pair).
    - ``"wilcoxon"``: the signed-rank statistic :math:`W^+ = \\sum_{d_i > 0} \\mathrm{rank}|d_i|`
      against its exact null, every sign equally likely (zeros dropped, as scipy's
      default ``zero_method="wilcox"``).
    - ``"permutation"``: the mean :math:`\\bar d` against its sign-flip null, all
      :math:`2^n` flips (above :data:`EXACT_UP_TO` pairs, ``n_resamples`` random ones, and
      then :math:`p = (k + 1)/(B + 1)`, which is never 0).

    The interval is the bootstrap percentile interval of :math:`\\bar d` (``n_resamples``
    resamples of the pairs, seeded); with a handful of pairs it is narrower than its
    nominal level (5 pairs take at most 126 distinct resamples), so read it as a
    description of the spread, and the test as the evidence. The effect size is
    :math:`d_z = \\bar d / s_d`. The Wilcoxon and permutation tests and the interval
    need finite values.

    With :math:`n` pairs no test here can give a p below :math:`2^{-n}` (one-sided) or
    :math:`2^{1-n}` (two-sided): :func:`smallest_p`. Five seeds are the fewest that can
    pass a one-sided test at 0.05.

    Args:
        a, b: one value per seed each, in the same seed order (e.g. validation losses).
        test: one of :data:`TESTS`.
        alternative: ``"less"`` (a is lower than b), ``"greater"``, or ``"two-sided"``;
            required, because the direction is part of the sentence being tested.
        lower_is_better: whether a lower value is the better one (a loss: True; an
            accuracy: False); decides which way a diverged run (NaN) counts.
        level: the interval's confidence level, in (0, 1).
        n_resamples: bootstrap resamples (and sampled flips above :data:`EXACT_UP_TO` pairs).
        seed: seed of the resampling.

    Example:
        >>> warm = [0.41, 0.39, 0.44, 0.40, 0.42]
        >>> cold = [0.45, 0.41, 0.47, 0.46, 0.43]
        >>> c = paired_comparison(warm, cold, alternative="less")
        >>> c.wins, round(c.p_value, 4)
        (5, 0.0312)
    """
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    level = check_real("level", level)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n_resamples = check_int("n_resamples", n_resamples, minimum=100)
    seed = check_int("seed", seed, minimum=0)
    worst = np.inf if lower_is_better else -np.inf
    a_arr = np.where(np.isnan(np.asarray(a, dtype=float)), worst, np.asarray(a, dtype=float))
    b_arr = np.where(np.isnan(np.asarray(b, dtype=float)), worst, np.asarray(b, dtype=float))
    with np.errstate(invalid="ignore"):
        d = _pairs(a_arr, b_arr)  # inf - inf (both diverged) is NaN: a tie
    d = np.where(np.isnan(d), 0.0, d)
    finite = bool(np.isfinite(d).all())
    if test != "sign" and not finite:
        raise ValueError(f"a and b must be finite for the {test} test (a diverged run is NaN or inf): "
                         "use test='sign', which counts it as a loss")
    sign = -1.0 if alternative == "less" else 1.0  # orient d so that the alternative means "positive"
    oriented = sign * d if alternative != "two-sided" else d
    wins = int((oriented > 0).sum()) if alternative != "two-sided" else int(max((d > 0).sum(), (d < 0).sum()))
    rng = np.random.default_rng(seed)
    if test == "sign":
        p = _sign_test(d, alternative)
    elif test == "wilcoxon":
        p = _flip_test(d, alternative, _signed_rank, rng, n_resamples)
    else:
        p = _flip_test(d, alternative, np.mean, rng, n_resamples)
    if finite:
        mean = float(d.mean())
        sd = float(d.std(ddof=1))
        effect = mean / sd if sd > 0 else (math.copysign(math.inf, mean) if mean else 0.0)
        boots = d[rng.integers(0, d.size, size=(n_resamples, d.size))].mean(axis=1)
        alpha = (1 - level) / 2
        interval = (float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha)))
    else:
        mean, effect, interval = math.copysign(math.inf, float(np.sum(np.sign(d)))), math.nan, (math.nan,) * 2
    return PairedComparison(test, alternative, int(d.size), mean, interval, level, effect, wins, float(p))


def _sign_test(d: np.ndarray, alternative: str) -> float:
    nonzero = d[d != 0]
    n, positive = nonzero.size, int((nonzero > 0).sum())
    if n == 0:
        return 1.0
    cdf = lambda k: sum(math.comb(n, i) for i in range(k + 1)) / 2**n  # noqa: E731  P(X <= k)
    if alternative == "greater":
        return 1 - cdf(positive - 1)
    if alternative == "less":
        return cdf(positive)
    extreme = min(positive, n - positive)
    return min(1.0, 2 * cdf(extreme))


def _signed_rank(d: np.ndarray) -> np.ndarray:
    """:math:`W^+` of each row of signed differences (ranks of |d| with ties averaged)."""
    from scipy.stats import rankdata  # scipy is a dependency of scikit-learn, present wherever lrlib is

    ranks = rankdata(np.abs(d[..., :]), axis=-1)
    return (ranks * (d > 0)).sum(axis=-1)


def _flip_test(d: np.ndarray, alternative: str, statistic, rng: np.random.Generator,
               n_resamples: int) -> float:
    """p of ``statistic(d)`` against every sign flip of ``d`` (zeros dropped for W+)."""
    if statistic is _signed_rank:
        d = d[d != 0]
        if d.size == 0:
            return 1.0
    exact = d.size <= EXACT_UP_TO
    if exact:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    else:
        signs = rng.choice((1.0, -1.0), size=(n_resamples, d.size))
    flipped = signs * np.abs(d)
    observed = statistic(d) if statistic is _signed_rank else float(np.mean(d))
    null = statistic(flipped) if statistic is _signed_rank else flipped.mean(axis=1)
    tol = 1e-12 * max(1.0, abs(float(observed)))
    if alternative == "greater":
        hits = null >= observed - tol
    elif alternative == "less":
        hits = null <= observed + tol
    else:
        centre = d.size * (d.size + 1) / 4 if statistic is _signed_rank else 0.0
        hits = np.abs(null - centre) >= abs(observed - centre) - tol
    if exact:
        return float(min(1.0, np.mean(hits)))
    return float((hits.sum() + 1) / (hits.size + 1))  # a sampled p is never 0 (Phipson and Smyth 2010)


def smallest_p(n: int, alternative: str) -> float:
    """The smallest p any test of :func:`paired_comparison` can give with ``n`` pairs:
    :math:`2^{-n}` one-sided, :math:`2^{1-n}` two-sided (every pair agreeing).

    >>> smallest_p(5, "less"), smallest_p(5, "two-sided")
    (0.03125, 0.0625)
    """
    n = check_int("n", n, minimum=1)
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    return 0.5 ** n * (2 if alternative == "two-sided" else 1)


@dataclass(frozen=True)
class GridOptimum:
    """The best point of a grid: its ``value``, ``index`` and ``score``, and whether it is
    ``interior`` (not the first or last grid point); ``edge`` is ``"low"``, ``"high"`` or None."""

    value: float
    index: int
    score: float
    interior: bool
    edge: str | None


def grid_optimum(grid: Sequence[float], scores: Sequence[float], *,
                 lower_is_better: bool = True) -> GridOptimum:
    """The grid point with the best score, and whether it lies inside the grid.

    A best point on the grid's edge only bounds the optimum: the true one may lie
    beyond it, so the rule is to widen the grid until the best point is interior.
    NaN (a diverged run) counts as the worst score.

    Args:
        grid: the settings, sorted ascending (e.g. rates), at least 3.
        scores: one score per setting (e.g. the median validation loss over seeds).
        lower_is_better: True for losses, False for accuracies.

    Example:
        >>> grid_optimum([1e-3, 3e-3, 1e-2, 3e-2], [0.9, 0.5, 0.6, float("nan")])
        GridOptimum(value=0.003, index=1, score=0.5, interior=True, edge=None)
    """
    values = np.asarray(grid, dtype=float).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if values.size != s.size:
        raise ValueError(f"scores must have one entry per grid point ({values.size}), got {s.size}")
    if values.size < 3:
        raise ValueError(f"grid must hold at least 3 points to have an inside, got {values.size}")
    if not np.all(np.diff(values) > 0):
        raise ValueError(f"grid must be strictly increasing, got {values.tolist()}")
    worst = np.inf if lower_is_better else -np.inf
    filled = np.where(np.isnan(s), worst, s)
    if np.all(filled == worst):
        raise ValueError("scores must hold at least one finite value (every run diverged)")
    index = int(np.argmin(filled) if lower_is_better else np.argmax(filled))
    edge = "low" if index == 0 else "high" if index == values.size - 1 else None
    return GridOptimum(float(values[index]), index, float(s[index]), edge is None, edge)


__all__ = ["ALTERNATIVES", "EXACT_UP_TO", "TESTS", "GridOptimum", "PairedComparison", "grid_optimum",
           "paired_comparison", "smallest_p"]
