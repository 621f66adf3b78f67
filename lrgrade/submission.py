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


def is_test(cell) -> bool:
    """An nbgrader autograder test: a graded code cell that is not an answer (a graded answer, such
    as a written "explain" part, is the instructor's to grade by hand)."""
    meta = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


class SubmissionError(ValueError):
    """The submission cannot be graded at all (not a notebook, another assignment); says why."""


#: the largest submitted notebook read (bytes): a notebook of answers is far smaller
MAX_NOTEBOOK = 50 * 2**20


def read_plain_file(path: str | Path, limit: int) -> bytes:
    """The bytes of ``path``, read by a trusted process from a folder a student wrote: never
    through a symlink (in the file or its two parent folders), only a regular file, at most
    ``limit`` bytes. Raises :class:`SubmissionError` naming what is wrong."""
    import os
    import stat

    path = Path(path)
    name = path.name
    if path.parent.is_symlink() or path.parent.parent.is_symlink():
        raise SubmissionError(f"{name} is reached through a link; links are not followed")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise SubmissionError(f"{name} cannot be opened as a plain file (a link?): "
                              f"{error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SubmissionError(f"{name} is not a plain file")
        if info.st_size > limit:
            raise SubmissionError(f"{name} is {info.st_size:,} bytes; the limit is {limit:,}")
        chunks, left = [], limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 2**20))):
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise SubmissionError(f"{name} is over the limit of {limit:,} bytes")
    return data


def read_submission(path: str | Path) -> nbformat.NotebookNode:
    """The submitted notebook, or :class:`SubmissionError` naming the problem (not a notebook,
    a link, not a plain file, too large)."""
    data = read_plain_file(path, MAX_NOTEBOOK)
    try:
        return nbformat.reads(data.decode("utf-8", errors="replace"), as_version=4)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError) as error:
        raise SubmissionError(f"{Path(path).name} is not a valid notebook (not JSON): {error}") from None
    except Exception as error:  # nbformat raises several kinds for broken files
        raise SubmissionError(f"{Path(path).name} is not a valid notebook: {error}") from None


def _text(source: Any) -> str | None:
    """A cell's source as the text it stands for (a list of lines joined), or None if it is not
    text at all (nbformat only logs a schema error for a number or a mapping there)."""
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        return "".join(source)
    return None


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
            text = _text(cell.get("source", ""))
            if text is None:
                notes.append(f"answer {gid!r} is not text; graded as the blank stub")
                continue
            submitted_answers[gid] = text
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
