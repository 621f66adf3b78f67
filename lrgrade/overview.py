"""What an exercise asks for, read from its released notebook: the exercise pages of the book use it.

Build-time infrastructure, not something a student's notebook imports: the
``exercise-overview`` directive (book/_ext/exercise_pages.py) renders
:func:`describe_exercise` of each released notebook, so the pages cannot disagree with
what the grader scores.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

#: The kinds of graded part, by the prefix of the test cell's ``grade_id`` ("predict-steps").
KINDS = {
    "implement": "write a piece of the method by hand",
    "predict": "compute a number from the theory, before running anything",
    "measure": "run the experiment that checks a prediction",
    "decide": "make the chapter's decision from your own runs",
    "explain": "a written answer, graded by hand",
}


def part_kind(grade_id: str) -> str:
    """The kind of a graded cell from its ``grade_id`` ("predict-steps" -> "predict"); "" if none.

    >>> part_kind("measure-first_step"), part_kind("test-update")
    ('measure', '')
    """
    kind = grade_id.split("-", 1)[0]
    return kind if kind in KINDS else ""


@dataclass
class ExercisePart:
    """One graded part of an exercise: its heading, the answers the student writes, its points,
    and its kind (``implement``, ``predict``, ``measure``, ``decide``, ``explain``), read from the
    test cell's ``grade_id``."""

    title: str
    answers: list[str]
    points: float
    kind: str = ""


@dataclass
class ExerciseOverview:
    """What an exercise notebook asks for, read from its nbgrader metadata (see :func:`describe_exercise`)."""

    name: str
    title: str
    goals: str
    parts: list[ExercisePart] = field(default_factory=list)
    time: str = ""  # the "**Time.**" paragraph of the introduction, without its label

    @property
    def total_points(self) -> float:
        return sum(part.points for part in self.parts)

    def kinds(self) -> dict[str, int]:
        """How many parts of each kind, in :data:`KINDS` order."""
        return {k: n for k in KINDS if (n := sum(p.kind == k for p in self.parts))}

    def to_markdown(self) -> str:
        """The goals, the time, and a table of the parts with their kinds and points, as Markdown."""
        rows = [f"| {i} | {p.kind} | {p.title} | {', '.join(f'`{a}`' for a in p.answers)} | {p.points:g} |"
                for i, p in enumerate(self.parts, 1)]
        mix = ", ".join(f"{n} {k}" for k, n in self.kinds().items())
        head = [self.goals, ""] + ([f"**Time:** {self.time}", ""] if self.time else [])
        head += [f"**Parts:** {mix}.", ""] if mix else []
        return "\n".join([*head,
                          "| part | kind | what you do | you write | points |", "|---|---|---|---|---|",
                          *rows, f"| | | **total** | | **{self.total_points:g}** |"])


def describe_exercise(path: str | Path) -> ExerciseOverview:
    """Read an exercise (or solution) notebook: its title, goals and graded parts with their points.

    The points come from the nbgrader metadata of the test cells (what the grader uses),
    the part titles from the ``## Part N: ...`` heading above them (without the "(k points)"
    the heading repeats), the goals from the first Markdown cell up to its first bold
    "**How to work.**"-style paragraph, the time from its "**Time.**" paragraph, each part's
    kind from its test cell's ``grade_id`` prefix (see :data:`KINDS`). Used by the book's exercise
    pages (see "For instructors").

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
    time = next((p.split("**", 2)[2].strip() for p in paragraphs if p.startswith("**Time.**")), "")
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
            parts.append(ExercisePart(heading, answers, float(meta.get("points", 0)),
                                      part_kind(meta["grade_id"])))
            answers = []
    if not parts:
        raise ValueError(f"path: {path} has no graded cell (nbgrader 'grade' metadata); is it an exercise?")
    return ExerciseOverview(path.stem, title, goals, parts, time)
