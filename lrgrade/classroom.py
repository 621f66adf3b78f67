"""Grading a class: every submission in parallel, each in its own sandbox; the gradebook and the
graded notebooks written by this (trusted) process only.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from lrgrade.gradebook import record_grades, release_into_gradebook, submission_stamp
from lrgrade.notebook import GradeResult, feedback_notebook, grade_notebook
from lrgrade.submission import SubmissionError, assemble, read_submission


@dataclass
class Outcome:
    """One student's submission: the grading result, or the error that prevented it."""

    student: str
    result: GradeResult | None
    error: str | None = None
    notebook: nbformat.NotebookNode | None = None  # what ran: the source with this student's answers


def grade_submission(job: dict[str, Any]) -> Outcome:
    """Grade one submission (a worker's job; a pure function of ``job``, so any executor can run it).

    ``job`` holds ``course``, ``assignment``, ``student``, ``uid`` and the timeouts.
    """
    course, assignment, student = Path(job["course"]), job["assignment"], job["student"]
    notebook = f"{assignment}.ipynb"
    try:
        submitted = read_submission(course / "submitted" / student / assignment / notebook)
        source = nbformat.read(course / "solutions" / assignment / notebook, as_version=4)
        release_path = course / "exercises" / assignment / notebook
        release = nbformat.read(release_path, as_version=4) if release_path.exists() else None
        nb, notes = assemble(source, submitted, release)
        result = grade_notebook(nb, cell_timeout=job.get("cell_timeout", 60),
                                notebook_timeout=job.get("notebook_timeout", 600), uid=job["uid"],
                                isolate=job.get("isolate", True))
        result.notes = notes + result.notes
        return Outcome(student, result, notebook=nb)
    except SubmissionError as error:
        return Outcome(student, None, str(error))


def _status(outcome: Outcome) -> str:
    if outcome.result is None:
        return "failed"
    if outcome.result.not_graded:
        return "not graded"
    return "timed out" if {"timeout", "not run"} & {c.status for c in outcome.result.cells} else "graded"


def write_autograded(course: str | Path, assignment: str, outcome: Outcome) -> Path | None:
    """Save a graded submission where ``nbgrader generate_feedback`` looks for it:
    ``autograded/<student>/<assignment>/<assignment>.ipynb`` (from :func:`feedback_notebook`,
    so without hidden tests), with the submission's time (:func:`~lrgrade.gradebook.submission_stamp`)
    in ``timestamp.txt`` when it has a valid one."""
    if outcome.result is None or outcome.notebook is None:
        return None
    course = Path(course)
    folder = course / "autograded" / outcome.student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{assignment}.ipynb"
    nbformat.write(feedback_notebook(outcome.notebook, outcome.result), path)
    stamp = submission_stamp(course, assignment, outcome.student)
    if stamp is not None:  # the checked text, never the student's file itself
        (folder / "timestamp.txt").write_text(stamp[0] + "\n")
    return path


def write_feedback(course: str | Path, assignment: str, students: list[str]) -> dict[str, str]:
    """``nbgrader generate_feedback`` for each student, one at a time, in this process.

    A student whose feedback fails (whatever their notebook holds) gets an entry in the
    returned ``{student: why}``; everyone else gets ``feedback/<student>/<assignment>/``.
    One bad submission never costs the class its feedback.
    """
    import logging

    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    course = Path(course).resolve()
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    config.CourseDirectory.root = str(course)
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    api.log.setLevel(logging.ERROR)
    failed = {}
    for student in students:
        try:
            done = api.generate_feedback(assignment, student, force=True)
            ok, why = done["success"], (done.get("error") or done.get("log") or "").strip()
        except Exception as error:  # nbgrader raises for some notebooks instead of reporting
            ok, why = False, f"{type(error).__name__}: {error}"
        if not ok:
            failed[student] = why.splitlines()[-1] if why else "nbgrader generate_feedback failed"
    return failed


def check_the_kernel_can_start(course: str | Path) -> None:
    """Before grading anything: start the kernel's Python in the sandbox, as a submission's would
    be, and import what the kernel needs. Raises ``RuntimeError`` naming what blocked it (and the
    exposed folders the sandbox user cannot read) rather than failing every submission."""
    from lrgrade.sandbox import run_sandboxed, unreadable_exposed

    probe = run_sandboxed([sys.executable, "-c", "import lrlib, lrlib._grading, ipykernel"], uid=61999)
    if probe.returncode != 0:
        closed = unreadable_exposed()
        raise RuntimeError(
            "the sandbox user cannot start the kernel's Python, so every submission would fail: "
            f"{probe.stderr.decode(errors='replace').strip()[-500:]}. Folders the sandbox shows it "
            f"but other users cannot read: {[str(c) for c in closed] or 'none'}. Fix: open those to "
            "other users (chmod -R o+rX), or install the venv with ipykernel and lrlib in it "
            "(make venv) and grade with its Python.")


def autograde(course: str | Path, assignment: str, *, workers: int | None = None, executor=None,
              cell_timeout: float = 60, notebook_timeout: float = 600, gradebook: str = "gradebook.db",
              progress: bool = True, allow_unsafe: bool = False, feedback: bool = True):
    """Grade every ``submitted/<student>/<assignment>/`` of a course in parallel, isolated; record the scores.

    Each submission runs in its own sandbox (its own user id, no network, the course's
    private folders hidden); the scores are merged into the gradebook by this process, and
    each graded notebook is written to ``autograded/`` for ``nbgrader generate_feedback``.
    Refuses to start where isolation is unavailable.

    Args:
        course: the course folder (holds ``solutions/``, ``exercises/``, ``submitted/``).
        assignment: the assignment's name, e.g. ``"ch01_update_rule"``.
        workers: parallel worker processes when no ``executor`` is given (default: the cores).
        executor: any ``concurrent.futures``-style executor with ``submit`` (a process pool,
            or a Dask cluster's ``Client(...).get_executor()`` for a class too big for one machine).
        cell_timeout, notebook_timeout: seconds per cell and per notebook.
        gradebook: the nbgrader gradebook file, relative to ``course``.
        progress: show a progress bar with live counts and an ETA.
        allow_unsafe: where isolation is impossible, grade anyway with the student's code
            running with this process's rights (warned). Without it, such a machine refuses.
        feedback: write each graded student's HTML feedback (:func:`write_feedback`).

    Returns a ``pandas.DataFrame`` with one row per student: score, max_score, status
    (graded, timed out, not graded, failed), the parts lost and why (:func:`lost_parts`),
    seconds, notes; ``.attrs["notes"]`` holds notes about the course (a stale release).
    """
    from collections import Counter
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    import pandas as pd
    from tqdm.auto import tqdm

    from lrgrade.sandbox import isolation_available

    course = Path(course).resolve()
    source_path = course / "solutions" / assignment / f"{assignment}.ipynb"
    if not source_path.is_file():
        known = sorted(p.name for p in (course / "solutions").glob("*") if p.is_dir())
        raise ValueError(f"assignment: no source notebook {source_path}; the course has {known}")
    ok, why = isolation_available()
    if not ok and not allow_unsafe:
        raise RuntimeError(f"refusing to grade untrusted notebooks without isolation: {why}. "
                           "Pass allow_unsafe=True (--unsafe) only for code you trust.")
    if not ok:
        warnings.warn(f"grading WITHOUT isolation ({why}): student code runs with your rights", stacklevel=2)
    else:
        check_the_kernel_can_start(course)
    # recorded first, as nbgrader would: a gradebook nbgrader refuses stops the round before grading
    course_notes = release_into_gradebook(course, assignment, course / gradebook)
    found = (course / "submitted").glob(f"*/{assignment}/{assignment}.ipynb")
    students = sorted(p.parent.parent.name for p in found)
    jobs = [{"course": str(course), "assignment": assignment, "student": s, "uid": 62000 + i,
             "cell_timeout": cell_timeout, "notebook_timeout": notebook_timeout, "isolate": ok}
            for i, s in enumerate(students)]
    own_pool = executor is None
    if own_pool:
        executor = ProcessPoolExecutor(workers or os.cpu_count() or 1, mp_context=get_context("spawn"))
    outcomes: list[Outcome] = []
    counts: Counter[str] = Counter()
    try:
        futures = {executor.submit(grade_submission, job): job["student"] for job in jobs}
        with tqdm(total=len(jobs), disable=not progress, desc=f"grading {assignment}", unit="student") as bar:
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except Exception as error:  # a worker that broke must not stop the class
                    why = f"grading failed: {type(error).__name__}: {error}"
                    outcome = Outcome(futures[future], None, why)
                outcomes.append(outcome)
                counts[_status(outcome)] += 1
                bar.set_postfix(counts, refresh=False)
                bar.update()
    finally:
        if own_pool:
            executor.shutdown()
    outcomes.sort(key=lambda o: o.student)
    record_grades(course, assignment, outcomes, gradebook, release=False)
    written = []
    for outcome in outcomes:  # one notebook that cannot be written must not cost the others theirs
        try:
            if write_autograded(course, assignment, outcome) is not None:
                written.append(outcome.student)
        except Exception as error:
            outcome.result.notes.append(f"its graded notebook could not be written: {type(error).__name__}: "
                                        f"{error}")
    if feedback:
        for student, why in write_feedback(course, assignment, written).items():
            next(o for o in outcomes if o.student == student).result.notes.append(f"no feedback: {why}")
    rows = []
    for o in outcomes:
        if o.result is None:
            rows.append({"student": o.student, "score": float("nan"), "max_score": float("nan"),
                         "status": "failed", "lost": "", "seconds": 0.0, "notes": o.error})
        else:
            rows.append({"student": o.student, "score": o.result.score, "max_score": o.result.max_score,
                         "status": _status(o), "lost": lost_parts(o.result), "seconds": o.result.seconds,
                         "notes": "; ".join(o.result.notes)})
    columns = ["student", "score", "max_score", "status", "lost", "seconds", "notes"]
    summary = pd.DataFrame(rows, columns=columns)
    summary.attrs["notes"] = course_notes
    return summary


def lost_parts(result: GradeResult) -> str:
    """The parts a student lost points on and why, one clause each:
    ``"implement-update (failed: NameError: name 'update' is not defined)"``."""
    clauses = []
    for cell in result.cells:
        if cell.points < cell.max_points:
            lines = [line.strip() for line in cell.output.splitlines() if line.strip()]
            why = f"{cell.status}: {lines[-1][:100]}" if lines and cell.status == "failed" else cell.status
            clauses.append(f"{cell.grade_id} ({why})")
    return "; ".join(clauses)
