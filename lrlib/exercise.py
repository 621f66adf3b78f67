"""Checks for the exercise notebooks' test cells (every exercise, from chapter 1 on).

A failing check prints a hint that says what is wrong, then raises
``AssertionError`` so nbgrader marks the test cell as failed.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class ExercisePart:
    """One graded part of an exercise: its heading, the answers the student writes, its points."""

    title: str
    answers: list[str]
    points: float


@dataclass
class ExerciseOverview:
    """What an exercise notebook asks for, read from its nbgrader metadata (see :func:`describe_exercise`)."""

    name: str
    title: str
    goals: str
    parts: list[ExercisePart] = field(default_factory=list)

    @property
    def total_points(self) -> float:
        return sum(part.points for part in self.parts)

    def to_markdown(self) -> str:
        """The goals and a table of the parts and their points, as Markdown."""
        rows = [f"| {i} | {p.title} | {', '.join(f'`{a}`' for a in p.answers)} | {p.points:g} |"
                for i, p in enumerate(self.parts, 1)]
        return "\n".join([self.goals, "", "| part | what you do | you write | points |", "|---|---|---|---|",
                          *rows, f"| | **total** | | **{self.total_points:g}** |"])


def describe_exercise(path: str | Path) -> ExerciseOverview:
    """Read an exercise (or solution) notebook: its title, goals and graded parts with their points.

    The points come from the nbgrader metadata of the test cells (what the grader uses),
    the part titles from the ``## Part N: ...`` heading above them (without the "(k points)"
    the heading repeats), the goals from the first Markdown cell up to its first bold
    "**How to work.**"-style paragraph. Used by the book's exercise pages (see "For instructors").

    Raises ``ValueError`` naming the file when it has no graded cell.
    """
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    lines = first.strip().splitlines()
    title = lines[0].lstrip("# ").strip() if lines and lines[0].startswith("#") else path.stem
    paragraphs = "\n".join(lines[1:]).strip().split("\n\n")
    goals = "\n\n".join(p for p in itertools.takewhile(lambda p: not p.startswith("**"), paragraphs))
    parts: list[ExercisePart] = []
    heading, answers = "", []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            heading = re.sub(r"\s*\(\d+(\.\d+)? points?\)\s*$", "", cell.source.splitlines()[0][3:]).strip()
            heading = re.sub(r"^Part \d+:\s*", "", heading)
        elif meta.get("solution"):
            answers.append(meta["grade_id"])
        elif meta.get("grade"):
            parts.append(ExercisePart(heading, answers, float(meta.get("points", 0))))
            answers = []
    if not parts:
        raise ValueError(f"path: {path} has no graded cell (nbgrader 'grade' metadata); is it an exercise?")
    return ExerciseOverview(path.stem, title, goals, parts)
