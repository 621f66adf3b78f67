"""Assembling a submission: the instructor's notebook with only the student's answers in it.

A submission is untrusted in what it *contains*: edited test cells, changed points,
deleted cells, metadata from another assignment. :func:`assemble` answers that: the
notebook that runs is the instructor's source, hidden tests included, with only the
answer cells taken from the student, matched by their nbgrader ``grade_id``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import nbformat


def nbgrader_meta(cell) -> dict[str, Any]:
    """A cell's nbgrader metadata (empty when it has none)."""
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


class SubmissionError(ValueError):
    """The submission cannot be graded at all (not a notebook, another assignment); says why."""


def read_submission(path: str | Path) -> nbformat.NotebookNode:
    """The submitted notebook, or :class:`SubmissionError` naming the problem."""
    try:
        return nbformat.read(str(path), as_version=4)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError) as error:
        raise SubmissionError(f"{Path(path).name} is not a valid notebook (not JSON): {error}") from None
    except Exception as error:  # nbformat raises several kinds for broken files
        raise SubmissionError(f"{Path(path).name} is not a valid notebook: {error}") from None


def assemble(source: nbformat.NotebookNode, submitted: nbformat.NotebookNode,
             release: nbformat.NotebookNode | None = None) -> tuple[nbformat.NotebookNode, list[str]]:
    """The notebook to run: every cell from ``source`` except the answers, which come from
    ``submitted`` (matched by ``grade_id``), or from ``release`` (the blank stub) when missing.

    Returns the notebook and a list of notes (answers missing or duplicated). Raises
    :class:`SubmissionError` when no answer cell of this assignment is in the submission.
    """
    answer_ids = [nbgrader_meta(c)["grade_id"] for c in source.cells if nbgrader_meta(c).get("solution")]
    submitted_answers: dict[str, str] = {}
    notes = []
    for cell in submitted.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if gid in answer_ids and cell.get("cell_type") == "code":
            if gid in submitted_answers:
                notes.append(f"answer {gid!r} appears twice; the first is graded")
                continue
            submitted_answers[gid] = cell.get("source", "")
    theirs = {nbgrader_meta(c).get("grade_id") for c in submitted.cells
              if nbgrader_meta(c).get("solution")} - {None}
    if theirs and not theirs & set(answer_ids):
        raise SubmissionError(f"this notebook belongs to another assignment: its answers are "
                              f"{sorted(theirs)[:4]}, this one's are {answer_ids[:4]}")
    stubs = {nbgrader_meta(c).get("grade_id"): c.source for c in (release.cells if release else [])}
    out = copy.deepcopy(source)
    for cell in out.cells:
        cell.outputs = [] if cell.cell_type == "code" else cell.get("outputs", None)
        if cell.cell_type == "markdown":
            cell.pop("outputs", None)
        gid = nbgrader_meta(cell).get("grade_id")
        if gid in answer_ids:
            if gid in submitted_answers:
                cell.source = submitted_answers[gid]
            else:
                notes.append(f"answer {gid!r} is missing; graded as the blank stub")
                cell.source = stubs.get(gid, "raise NotImplementedError()")
    return out, notes
