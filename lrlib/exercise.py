"""Checks for the exercise notebooks' test cells (every exercise, from chapter 1 on).

A failing check prints a hint that says what is wrong, then raises
``AssertionError`` so nbgrader marks the test cell as failed.
"""

from __future__ import annotations

import math

import numpy as np

from lrlib._grading import changes_allowed, in_notebook

__all__ = ["changes_allowed", "expect", "expect_close", "expect_own_work", "in_notebook"]


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


def expect_own_work(part: int) -> None:
    """In a visible test whose first line reads ``# own work: ...``: fail with a hint, before any
    grading, when the notebook hands this part to one of the implementations that line names.

    It reads, in the student's own kernel, the test cell that calls it (IPython's input history):
    the names it forbids and the names the test takes from the answers. It fails when a function
    the test reads reaches a forbidden function, class or module (through its code's names, its
    closure or a wrapper), or when a cell run so far reaches code by a string or reconfigures the
    kernel (``getattr``, ``eval``, ``get_ipython``, a magic, ...), which the grader cannot read and
    scores 0. The grader's own check (in ``lrgrade``) reads the answer cells as written and is what
    counts; this one tells you first. Outside IPython (a script, the grader's judge) it does nothing.

    Args:
        part: the part's number, for the hint.
    """
    import importlib
    import types

    from lrlib import _own_work

    try:
        shell = get_ipython()  # type: ignore[name-defined]  # noqa: F821
        raw = list(shell.history_manager.input_hist_raw)
    except (NameError, AttributeError):
        return
    if len(raw) < 2:
        return
    test, earlier = raw[-1], [cell for cell in raw[1:-1] if cell.strip()]
    entries = _own_work.own_work_entries(test)
    for cell in earlier:
        dynamic = _own_work.uses_of(cell).dynamic
        expect(not dynamic, f"part {part} must be your own work, but a cell you ran uses "
               f"{', '.join(sorted(dynamic))}: the grader cannot read where such code leads, so it "
               f"gives 0 to this part and every later one that names what you must write. Remove it "
               "and run the notebook again from the top.")
    forbidden = {}
    for entry in entries:
        module, _, name = entry.rpartition(".")
        try:
            forbidden[id(importlib.import_module(entry))] = entry
        except ImportError:
            try:
                forbidden[id(getattr(importlib.import_module(module), name))] = entry
            except (ImportError, AttributeError, ValueError):
                continue
    seen: set[int] = set()

    def reaches(value, depth: int) -> str:
        if id(value) in forbidden:
            return forbidden[id(value)]
        if depth > 4 or id(value) in seen:
            return ""
        seen.add(id(value))
        inner = [getattr(value, a, None) for a in ("func", "__wrapped__", "__func__")]
        if isinstance(value, types.FunctionType):
            code, names = [value.__code__], set()
            while code:
                current = code.pop()
                names.update(current.co_names)
                code += [c for c in current.co_consts if isinstance(c, types.CodeType)]
            inner += [value.__globals__.get(n) for n in names]
            inner += [c.cell_contents for c in value.__closure__ or () if _filled(c)]
            for candidate in list(inner):  # a module whose forbidden attribute the code names
                if isinstance(candidate, types.ModuleType):
                    inner += [getattr(candidate, n, None) for n in names]
        elif isinstance(value, type):
            inner += list(vars(value).values()) + list(value.__mro__[1:])
        return next((hit for v in inner if v is not None and (hit := reaches(v, depth + 1))), "")

    namespace = shell.user_ns
    for name in sorted(_own_work.test_reads(test)):
        if name in namespace:
            hit = reaches(namespace[name], 0)
            expect(not hit, f"part {part} must not call {hit}: {name} uses it. Write it yourself; "
                   "when graded, a part handed to that implementation scores 0.")


def _filled(cell) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True
