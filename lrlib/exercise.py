"""Checks for the exercise notebooks' test cells (every exercise, from chapter 1 on).

A failing check prints a hint that says what is wrong, then raises
``AssertionError`` so nbgrader marks the test cell as failed.
"""

from __future__ import annotations

import math

import numpy as np


def expect(condition: bool, hint: str) -> None:
    """Pass silently when ``condition`` holds; otherwise print ``hint`` and fail.

    >>> expect(1 + 1 == 2, "arithmetic is broken")
    """
    if not condition:
        print(f"Not yet: {hint}")
        raise AssertionError(hint)


def expect_close(actual: object, expected: object, what: str, *, rtol: float = 1e-7,
                 atol: float = 1e-12, hint: str = "") -> None:
    """Fail with a hint unless ``actual`` equals ``expected`` to ``rtol``/``atol`` (NumPy's rule).

    Args:
        actual: the student's value (number, array or tensor).
        expected: the right value.
        what: what is being checked, e.g. ``"update(0.90, -0.4, 0.1)"``.
        rtol, atol: tolerances, as in :func:`numpy.allclose`.
        hint: what to look at when it fails.
    """
    try:
        a = np.asarray(actual.detach().cpu() if hasattr(actual, "detach") else actual)
    except (TypeError, ValueError):
        a = np.asarray(None)
    expect(a.dtype.kind in "biuf",
           f"{what} should be a number or an array of numbers, got {actual!r}. {hint}")
    a = a.astype(float)
    e = np.asarray(expected, dtype=float)
    expect(a.shape == e.shape, f"{what} should have shape {e.shape}, got {a.shape}. {hint}")
    ok = bool(np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=False))
    shown = float(a) if a.ndim == 0 and math.isfinite(float(a)) else a
    expect(ok, f"{what} should be {e if e.ndim else float(e)!r}, got {shown!r}. {hint}")
