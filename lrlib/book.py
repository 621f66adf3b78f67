"""Helpers for the executable chapters themselves (every chapter).

The prose of a chapter quotes numbers through MyST-NB's ``glue``; this module
makes that safe for NumPy and torch scalars, whose reprs (``np.float64(0.5)``)
MyST-NB cannot format. Sentences that *interpret* the numbers ("warmup raises
the largest stable rate") are checked with :func:`claim`, which fails a
full-mode build when the run stops supporting them; :func:`ranges_apart` is the
rule for "better" over seeds.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from lrlib.stats import PairedComparison, smallest_p

#: Set to 1 (or true/yes) to run every chapter in FAST mode, e.g. for a quick test build of the book.
FAST_ENV_VAR = "LRLIB_FAST"

#: Everything glued in this kernel, name -> value (handy when myst_nb is absent).
GLUED: dict[str, Any] = {}

#: Prefix of the glue keys under which :func:`claim` records each claim.
CLAIM_PREFIX = "claim-"

_MODE = {"fast": False}


def fast(flag: bool) -> bool:
    """A chapter's ``FAST`` flag, forced on when the environment variable ``LRLIB_FAST`` says so.

    Papermill sets ``FAST`` through the parameters cell; a book build cannot, so
    ``LRLIB_FAST=1 jupyter-book build .`` shrinks every chapter's loops instead.

    >>> fast(True)
    True
    """
    _MODE["fast"] = bool(flag) or os.environ.get(FAST_ENV_VAR, "").strip().lower() in ("1", "true", "yes")
    return _MODE["fast"]


def as_builtin(value: Any) -> Any:
    """Turn NumPy and torch scalars (and 0-d arrays) into Python ``int``/``float``/``bool``.

    >>> as_builtin(np.float64(0.5)), as_builtin(torch.tensor(3))
    (0.5, 3)
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dim() == 0:
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def glue(name: str, value: Any, display: bool = False) -> None:
    """Glue ``value`` under ``name`` for the prose (``{glue:text}`name:.3f```), hidden by default.

    NumPy/torch scalars are converted to Python numbers first, so format specs
    such as ``:.3f`` work. Without ``myst_nb`` installed the value is only kept in
    :data:`GLUED`. Returns None, so a glue on a cell's last line prints nothing.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    value = as_builtin(value)
    GLUED[name] = value
    try:
        from myst_nb import glue as _myst_glue
    except ImportError:  # a learner without the book extra: nothing to render into
        return
    _myst_glue(name, value, display=display)


class ClaimFailed(AssertionError):
    """A sentence of a chapter that its run no longer supports."""


@dataclass(frozen=True)
class Claim:
    """One checked sentence: what the prose says, whether the run supports it, the numbers
    behind it, whether the chapter ran in full mode (FAST runs record, never fail) and, for a
    comparison over seeds, the paired test that decided it (its name and summary, ``n``,
    the effect size :math:`d_z` and ``p``)."""

    statement: str
    holds: bool
    evidence: str
    full_mode: bool
    test: str = ""
    n: int = 0
    effect: float | None = None
    p_value: float | None = None


#: Every claim made in this kernel, in order.
CLAIMS: list[Claim] = []


def claim(condition: Any, statement: str, evidence: str = "", *, test: PairedComparison | None = None,
          alpha: float = 0.05) -> bool:
    """Check that the run supports a sentence of the prose; fail a full-mode build if not.

    A claim is *evidence*: a sentence about what a run measured, which a different run
    could contradict. Call it in a hidden cell next to the sentence, with the condition
    the sentence asserts, computed from the run::

        claim(warm_edge > cold_edge, "Warmup raises the largest stable peak.",
              f"{cold_edge:g} -> {warm_edge:g}")

    A comparison over seeds passes its paired test (:func:`lrlib.stats.paired_comparison`)
    as ``test``: the claim then holds only when ``condition`` holds *and* the test's
    ``p <= alpha``, and the claims page shows the test, ``n``, the effect and ``p``::

        c = paired_comparison(warm_losses, cold_losses, alternative="less")
        claim(c.mean_difference < 0, "Warmup lowers the final loss.", test=c)

    What holds by construction (algebra, an identity, what an API does) is not evidence:
    state it with :func:`check`, which is not listed with the claims.

    Every call is recorded (in :data:`CLAIMS`, and glued as ``claim-NNN`` so the
    book's claims page can list it with its outcome). When the claim fails and the
    chapter runs in full mode, :class:`ClaimFailed` is raised: the cell errors and
    ``jupyter-book build -W`` fails. In FAST mode (see :func:`fast`), where loops are
    cut short, a failed claim is recorded but does not raise.

    Args:
        condition: anything with a truth value (a NumPy bool is fine); an array
            is refused, since "all" and "any" are different sentences.
        statement: the sentence, as the prose says it (non-empty).
        evidence: the numbers that decide it, as a short string.
        test: the paired comparison behind the sentence, if it compares settings over seeds.
        alpha: the largest ``p`` the test may have for the claim to hold.

    Returns:
        Whether the claim holds.

    Example:
        >>> claim(0.1 < 0.3, "A lower loss wins.", "0.1 vs 0.3")
        True
    """
    if not isinstance(statement, str) or not statement.strip():
        raise ValueError(f"statement must be a non-empty string, got {statement!r}")
    if not isinstance(evidence, str):
        raise TypeError(f"evidence must be a string, got {type(evidence).__name__}")
    if isinstance(condition, (np.ndarray, torch.Tensor)) and condition.ndim > 0:
        raise TypeError("condition must be a single truth value, got an array; use .all() or .any()")
    if test is not None and not isinstance(test, PairedComparison):
        raise TypeError(f"test must be a lrlib.stats.PairedComparison, got {type(test).__name__}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if test is not None and smallest_p(test.n, test.alternative) > alpha:
        raise ValueError(f"test: a {test.alternative} test of {test.n} pairs can never reach p <= {alpha} "
                         f"(its smallest p is {smallest_p(test.n, test.alternative):.3g}); add seeds")
    holds = bool(as_builtin(condition))
    extra: dict[str, Any] = {}
    if test is not None:
        holds = holds and test.p_value <= alpha
        extra = {"test": test.summary(), "n": test.n, "p_value": test.p_value,
                 "effect": None if not math.isfinite(test.effect_size) else test.effect_size}
    record = Claim(statement.strip(), holds, evidence, not _MODE["fast"], **extra)
    CLAIMS.append(record)
    glue(f"{CLAIM_PREFIX}{len(CLAIMS):03d}", json.dumps(asdict(record)))
    if not holds and record.full_mode:
        raise ClaimFailed(f"the run no longer supports: {record.statement!r} "
                          f"({evidence or 'no evidence given'}{'; ' + record.test if test else ''})")
    return holds


def check(condition: Any, statement: str) -> None:
    """Assert a fact that holds by construction (algebra, an identity, an API's behaviour).

    Not evidence, and not listed on the claims page: a false ``check`` is a bug in the
    chapter or in lrlib, so it fails in every mode, FAST included.

    >>> check(2 + 2 == 4, "Addition works.")
    """
    if not isinstance(statement, str) or not statement.strip():
        raise ValueError(f"statement must be a non-empty string, got {statement!r}")
    if isinstance(condition, (np.ndarray, torch.Tensor)) and condition.ndim > 0:
        raise TypeError("condition must be a single truth value, got an array; use .all() or .any()")
    if not bool(as_builtin(condition)):
        raise AssertionError(f"check failed: {statement.strip()}")


def ranges_apart(lower: Sequence[float], higher: Sequence[float]) -> bool:
    """Is every value of ``lower`` below every value of ``higher``? The course's rule for
    "A is better than B" over seeds.

    With ``n`` and ``m`` seeds whose ranges do not overlap, a one-sided Mann-Whitney
    rank test gives ``p = 1 / C(n + m, n)`` (3 vs 3: 0.05; 5 vs 5: 0.004), so the
    rule is a rank test stated plainly; :func:`ranges_apart_p` gives that ``p``.
    NaN (a diverged run) counts as the worst value, +inf.

    Args:
        lower, higher: one number per seed each (at least 2 each).

    Example:
        >>> ranges_apart([0.10, 0.12, 0.11], [0.15, 0.13, 0.2])
        True
        >>> ranges_apart([0.10, 0.14], [0.13, 0.2])
        False
    """
    a, b = _seeds("lower", lower), _seeds("higher", higher)
    return bool(a.max() < b.min())


def ranges_apart_p(n: int, m: int) -> float:
    """The one-sided Mann-Whitney ``p`` when ``n`` values all lie below ``m`` others:
    ``1 / C(n + m, n)``.

    >>> round(ranges_apart_p(5, 5), 4)
    0.004
    """
    if n < 1 or m < 1:
        raise ValueError(f"n and m must be >= 1, got {n} and {m}")
    return 1 / math.comb(n + m, n)


def _seeds(name: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if array.size < 2:
        raise ValueError(f"{name} must hold at least 2 seeds' values, got {array.size}")
    return np.where(np.isnan(array), np.inf, array)


__all__ = ["CLAIMS", "Claim", "ClaimFailed", "GLUED", "as_builtin", "check", "claim", "fast", "glue",
           "ranges_apart", "ranges_apart_p"]
