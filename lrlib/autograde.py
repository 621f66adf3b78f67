"""Grading one submitted notebook safely: rebuild it from the source, run it in the sandbox, score it here.

A submission is untrusted in two ways: what it *contains* (edited test cells, changed
points, deleted cells, metadata from another assignment) and what it *does* when it runs.
:func:`assemble` answers the first: the notebook that runs is the instructor's source,
hidden tests included, with only the answer cells taken from the student, matched by
their nbgrader ``grade_id``. :func:`grade_notebook` answers the second: it executes that
notebook cell by cell in a Jupyter kernel inside :mod:`lrlib.sandbox` (no network, the
course hidden, resource limits), with a timeout per cell and per notebook, and decides in
this process, never in the kernel, what each test cell scored:

- a test passes only if the kernel says it ran without error *and* printed a marker,
  fresh for every cell and run, that the grader appends to the test's code; a kernel that
  died, hung or was hijacked to skip cells does not print it;
- before each test cell, builtins, ``sys`` hooks and the course's assertion helpers are
  put back from a snapshot taken before any student code ran;
- a cell that hangs is interrupted, and a kernel that dies or will not interrupt is
  restarted and the cells before it re-run, so one broken answer costs only its own part.

What it cannot promise: code running in the same interpreter as the tests can, in
principle, subvert them (a hijack written against this grader's source could print
the marker). The sandbox limits what such code can reach; the score is still only as
trustworthy as the tests' interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import copy
import functools
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from lrlib.sandbox import Limits, sandboxed_kernel_manager

SNAPSHOT = """
import builtins as __b, sys as __s
import lrlib.exercise as __e
__grader_saved = (dict(__b.__dict__), __s.excepthook, __s.displayhook, __e.expect, __e.expect_close)
def __grader_restore(saved=__grader_saved, b=__b, s=__s, e=__e, ns=globals()):
    b.__dict__.clear(); b.__dict__.update(saved[0])
    s.settrace(None); s.setprofile(None); s.excepthook, s.displayhook = saved[1], saved[2]
    e.expect, e.expect_close = saved[3], saved[4]
    ns["expect"], ns["expect_close"] = saved[3], saved[4]
    try:  # reap the processes the grader ended: as zombies they would still count against the limit
        while __import__("os").waitpid(-1, 1)[0] > 0:  # 1 == os.WNOHANG
            pass
    except ChildProcessError:
        pass
del __b, __s, __e
"""
RESTORE = "__grader_restore()"


_CELL_BROKE = {
    "timeout": "[grader] this cell ran past the time limit per cell and was stopped; "
               "the tests ran without it\n",
    "dead": "[grader] the kernel died while this cell ran (os._exit, sys.exit, a crash or the memory limit); "
            "it was restarted and the tests ran without this cell\n",
}


class _GiveUp(Exception):
    """The kernel cannot be kept alive: stop running cells."""


class SubmissionError(ValueError):
    """The submission cannot be graded at all (not a notebook, another assignment); says why."""


def _meta(cell) -> dict[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


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
    answer_ids = [_meta(c)["grade_id"] for c in source.cells if _meta(c).get("solution")]
    submitted_answers: dict[str, str] = {}
    notes = []
    for cell in submitted.cells:
        gid = _meta(cell).get("grade_id")
        if gid in answer_ids and cell.get("cell_type") == "code":
            if gid in submitted_answers:
                notes.append(f"answer {gid!r} appears twice; the first is graded")
                continue
            submitted_answers[gid] = cell.get("source", "")
    theirs = {_meta(c).get("grade_id") for c in submitted.cells if _meta(c).get("solution")} - {None}
    if theirs and not theirs & set(answer_ids):
        raise SubmissionError(f"this notebook belongs to another assignment: its answers are "
                              f"{sorted(theirs)[:4]}, this one's are {answer_ids[:4]}")
    stubs = {_meta(c).get("grade_id"): c.source for c in (release.cells if release else [])}
    out = copy.deepcopy(source)
    for cell in out.cells:
        cell.outputs = [] if cell.cell_type == "code" else cell.get("outputs", None)
        if cell.cell_type == "markdown":
            cell.pop("outputs", None)
        gid = _meta(cell).get("grade_id")
        if gid in answer_ids:
            if gid in submitted_answers:
                cell.source = submitted_answers[gid]
            else:
                notes.append(f"answer {gid!r} is missing; graded as the blank stub")
                cell.source = stubs.get(gid, "raise NotImplementedError()")
    return out, notes


@dataclass
class CellResult:
    """One graded test cell: its ``grade_id``, the points it earned of ``max_points``, why
    (``passed``, ``failed``, ``timeout``, ``kernel died``, ``not run``) and its visible output."""

    grade_id: str
    points: float
    max_points: float
    status: str
    output: str = ""


@dataclass
class GradeResult:
    """All test cells of one notebook, the total, notes, and the seconds it took."""

    cells: list[CellResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: what each code cell printed, by its index in the notebook (test cells: without the marker)
    outputs: dict[int, str] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return sum(c.points for c in self.cells)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.cells)


class _Kernel:
    """A sandboxed kernel plus the client that talks to it."""

    def __init__(self, workdir: Path, uid: int, limits: Limits, hide: list[Path], isolate: bool = True):
        self.uid, self.isolate = uid, isolate
        if isolate:
            self.manager = sandboxed_kernel_manager(workdir, uid=uid, limits=limits, hide=hide)
        else:  # unsafe: the student's code runs with the grader's rights
            from jupyter_client import KernelManager

            self.manager = KernelManager(kernel_name="python3")
        # the kernel's own start-up chatter, times a class, would bury the summary
        self.manager.start_kernel(cwd=str(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float, output_cap: int) -> tuple[str, str]:
        """Execute ``code``; return (status, text output). Status: ok, error, timeout, dead."""
        chunks: list[str] = []
        size = [0]

        def keep(msg):
            content = msg["content"]
            text = content.get("text") or ""
            if msg["msg_type"] == "error":
                text = f"{content.get('ename')}: {content.get('evalue')}\n"
            elif msg["msg_type"] in ("execute_result", "display_data"):
                text = content.get("data", {}).get("text/plain", "") + "\n"
            if text and size[0] < output_cap:
                chunks.append(text[: output_cap - size[0]])
                size[0] += len(text)

        # Not execute_interactive: it waits out the whole timeout for a kernel that died (sys.exit),
        # costing a minute per such student. This loop also watches the kernel's process.
        msg_id = self.client.execute(code, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + timeout
        replied = idle = False
        while not (replied and idle):
            if time.monotonic() > deadline:
                return "timeout", "".join(chunks)
            try:
                msg = self.client.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                if not self.manager.is_alive():
                    return "dead", "".join(chunks)
            else:
                if msg["parent_header"].get("msg_id") == msg_id:
                    if msg["msg_type"] == "status":
                        idle = msg["content"]["execution_state"] == "idle"
                    else:
                        keep(msg)
            while not replied:
                try:
                    reply = self.client.get_shell_msg(timeout=0)
                except queue.Empty:
                    break
                replied = reply["parent_header"].get("msg_id") == msg_id
        return reply["content"]["status"], "".join(chunks)

    def kill_strays(self) -> None:
        """End every process the student's code started (the kernel stays): a fork bomb or a
        forgotten pool would otherwise hold the sandbox's process limit for the parts after it.
        The kernel is the PID namespace's first process, so every orphan there is its child."""
        if not self.isolate:
            return
        process = getattr(self.manager.provisioner, "process", None)
        if process is None:
            return
        found = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
        for pid in found.stdout.split():
            subprocess.run(["pkill", "-KILL", "-P", pid], check=False)

    def interrupt(self) -> bool:
        """Interrupt a busy kernel; True if it is idle again within a few seconds."""
        try:
            self.manager.interrupt_kernel()
            status, _ = self.run("pass", timeout=3, output_cap=0)
            return status == "ok"
        except Exception:
            return False

    def close(self) -> None:
        if self.isolate:
            # End everything running as the sandbox's uid first: the kernel changed its user, so it
            # would not die with the namespace tool that started it, and would be left an orphan.
            subprocess.run(["pkill", "-KILL", "-u", str(self.uid)], check=False)
            deadline = time.monotonic() + 3
            while self.manager.is_alive() and time.monotonic() < deadline:
                time.sleep(0.02)  # let the namespace tool reap its child and exit by itself
        try:
            self.client.stop_channels()
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=True)
        except Exception:  # already gone
            pass


def _own_event_loop(function):
    """Run ``function`` in a fresh ``contextvars`` context and close the event loops it made.

    jupyter_client's blocking calls keep their asyncio loop in a context variable; a thread pool
    that copies its caller's context into every worker thread (Dask's does) would share one loop
    between threads ("This event loop is already running"). A fresh context gives each call its own.
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        context = contextvars.Context()
        try:
            return context.run(function, *args, **kwargs)
        finally:
            for value in context.values():
                if isinstance(value, asyncio.AbstractEventLoop) and not value.is_running():
                    value.close()
    return wrapper


@_own_event_loop
def grade_notebook(nb: nbformat.NotebookNode, *, limits: Limits | None = None, cell_timeout: float = 60,
                   notebook_timeout: float = 600, uid: int = 61000, hide: list[str | Path] = (),
                   output_cap: int = 10_000, max_restarts: int = 2, isolate: bool = True) -> GradeResult:
    """Run an assembled notebook in a sandboxed kernel and score its test cells here.

    Args:
        nb: from :func:`assemble`.
        limits: the sandbox's resource limits.
        cell_timeout, notebook_timeout: seconds per cell and for the whole notebook.
        uid: the sandbox user (give concurrent graders different ones).
        hide: paths the student's code must not see (gradebook, sources, other students).
        output_cap: characters of output kept per cell (the rest is dropped).
        max_restarts: kernel restarts allowed; after that the remaining tests are not run
            (a kernel that keeps hanging has been broken on purpose or by accident).
        isolate: run the kernel in :mod:`lrlib.sandbox` (default). ``False`` is unsafe mode:
            the student's code runs with this process's rights and network; only for a
            machine where isolation is impossible, and only when the instructor says so.
    """
    limits = limits or Limits(wall_seconds=int(notebook_timeout) + 60)
    start = time.monotonic()
    result = GradeResult()
    workdir = Path(tempfile.mkdtemp(prefix="lrlib-grade-"))
    workdir.chmod(0o755)
    hide = [Path(p) for p in hide]
    kernel = _Kernel(workdir, uid, limits, hide, isolate)
    history: list[str] = []  # non-test code that ran, to replay after a restart

    restarts, part_start, progress = 0, 0, True

    def restart() -> None:
        nonlocal kernel, restarts, progress
        restarts += 1
        kernel.close()
        if restarts > max_restarts or not progress:  # hanging again before anything ran: give up
            raise _GiveUp
        progress = False
        kernel = _Kernel(workdir, uid, limits, hide, isolate)
        kernel.run(SNAPSHOT, timeout=cell_timeout, output_cap=0)
        for code in history:
            if kernel.run(code, timeout=cell_timeout, output_cap=0)[0] in ("timeout", "dead"):
                raise _GiveUp  # the cells that ran fine before now break it: it was sabotaged

    try:
        kernel.run(SNAPSHOT, timeout=cell_timeout, output_cap=0)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            meta = _meta(cell)
            left = notebook_timeout - (time.monotonic() - start)
            if meta.get("grade"):
                points = float(meta.get("points", 0))
                if left <= 0:
                    result.cells.append(CellResult(meta["grade_id"], 0.0, points, "not run"))
                    continue
                marker = secrets.token_hex(16)
                kernel.kill_strays()
                status, out = kernel.run(RESTORE, timeout=min(cell_timeout, left), output_cap=0)
                if status not in ("timeout", "dead"):  # a kernel that cannot even restore runs no test
                    code = cell.source + f"\nprint({marker!r})"
                    status, out = kernel.run(code, min(cell_timeout, left), output_cap)
                kernel.kill_strays()
                passed = status == "ok" and marker in out
                progress = progress or status in ("ok", "error")
                verdict = "passed" if passed else {"ok": "failed", "error": "failed"}.get(status, status)
                if status == "ok" and not passed:
                    verdict = "failed (did not run to its end)"
                shown = out.replace(marker + "\n", "").replace(marker, "")
                earned = points if passed else 0.0
                result.cells.append(CellResult(meta["grade_id"], earned, points, verdict, shown))
                result.outputs[index] = shown
                if status in ("timeout", "dead") and not (status == "timeout" and kernel.interrupt()):
                    del history[part_start:]  # this part's answers broke the kernel: leave them out
                    restart()
                part_start = len(history)
                continue
            if left <= 0:
                continue
            status, result.outputs[index] = kernel.run(cell.source, min(cell_timeout, left), output_cap)
            kernel.kill_strays()
            if status in ("timeout", "dead"):  # never replayed: it would hang or kill again
                result.notes.append(f"cell {meta.get('grade_id', '?')!r}: {status}")
                result.outputs[index] += _CELL_BROKE[status]
                if not (status == "timeout" and kernel.interrupt()):
                    restart()
            else:
                if status == "error":  # the instructor sees which answer raised, not only the lost points
                    raised = result.outputs[index].strip().splitlines()
                    result.notes.append(f"cell {meta.get('grade_id', '?')!r} raised "
                                        f"{raised[-1] if raised else 'an error'}")
                history.append(cell.source)
                progress = True
    except _GiveUp:
        result.notes.append(f"the kernel hung or died more than {max_restarts} times; the rest was not run")
        graded = {c.grade_id for c in result.cells}
        result.cells += [CellResult(_meta(c)["grade_id"], 0.0, float(_meta(c).get("points", 0)), "not run")
                         for c in nb.cells if _meta(c).get("grade") and _meta(c)["grade_id"] not in graded]
    finally:
        kernel.close()
        shutil.rmtree(workdir, ignore_errors=True)  # the student's files go with the sandbox
        result.seconds = time.monotonic() - start
    return result


HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"

_VERDICTS = {
    "failed": "this test failed; the error above says why",
    "failed (did not run to its end)": "this test did not run to its end (did an answer change how "
                                       "the notebook runs?)",
    "timeout": "this test ran past the time limit per cell",
    "dead": "the kernel died while this test ran (os._exit, a crash, or the memory limit)",
    "not run": "this test was not run: the notebook ran out of time, or the kernel kept dying",
}


def strip_hidden_tests(source: str) -> str:
    """``source`` without its hidden-test regions (the lines from ``BEGIN HIDDEN TESTS`` to
    ``END HIDDEN TESTS``, both included), as ``nbgrader generate_assignment`` strips them.

    Example: ``"a\n### BEGIN HIDDEN TESTS\nb\n### END HIDDEN TESTS\nc"`` -> ``"a\nc"``.
    An unclosed region is removed to the end of the cell, never shown.
    """
    kept, hidden = [], False
    for line in source.split("\n"):
        if HIDDEN_BEGIN in line:
            hidden = True
        elif HIDDEN_END in line:
            hidden = False
        elif not hidden:
            kept.append(line)
    return "\n".join(kept)


def feedback_notebook(nb: nbformat.NotebookNode, result: GradeResult) -> nbformat.NotebookNode:
    """The graded notebook as its student may see it: what each cell printed when it was
    graded, a line under each test that lost points saying why, and no hidden tests.

    Written to ``autograded/<student>/<assignment>/``, it is what ``nbgrader generate_feedback``
    turns into the student's HTML feedback. The kernel's errors carry only the exception's
    name and message (never a traceback quoting the test's code), and the hidden regions are
    cut from the sources, so the hidden tests' code does not reach the student.
    """
    out = copy.deepcopy(nb)
    verdicts = {c.grade_id: c for c in result.cells}
    for index, cell in enumerate(out.cells):
        if cell.cell_type != "code":
            continue
        text = result.outputs.get(index, "")
        meta = _meta(cell)
        graded = verdicts.get(meta.get("grade_id")) if meta.get("grade") else None
        if graded is not None:
            cell.source = strip_hidden_tests(cell.source)
            if graded.points < graded.max_points:
                why = _VERDICTS.get(graded.status, graded.status)
                text += f"[grader] {graded.points:g} of {graded.max_points:g} points: {why}\n"
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)] if text else []
        cell.execution_count = None
    return out


# --- grading a class ----------------------------------------------------------------------------------

#: What a submission's kernel must never see, relative to the course folder.
PRIVATE = ("solutions", "source", "release", "submitted", "autograded", "feedback", "gradebook.db",
           "nbgrader_config.py", ".git")


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
        hide = [course / p for p in PRIVATE if (course / p).exists()]
        result = grade_notebook(nb, cell_timeout=job.get("cell_timeout", 60),
                                notebook_timeout=job.get("notebook_timeout", 600), uid=job["uid"], hide=hide,
                                isolate=job.get("isolate", True))
        result.notes = notes + result.notes
        return Outcome(student, result, notebook=nb)
    except SubmissionError as error:
        return Outcome(student, None, str(error))


def record_grades(gradebook: str | Path, assignment: str, source: nbformat.NotebookNode,
                  outcomes: list[Outcome]) -> None:
    """Write the scores into an nbgrader gradebook, from this (trusted) process only.

    The assignment, its notebook and its grade cells are created from ``source`` when the
    gradebook does not have them yet; each graded student gets a submission whose grade
    cells hold the auto scores. Students whose submission could not be graded get nothing.
    """
    from nbgrader.api import Gradebook, MissingEntry
    from sqlalchemy.exc import SAWarning

    # nbgrader creates a new gradebook by running alembic, found on PATH: use this Python's
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with Gradebook(f"sqlite:///{Path(gradebook).resolve()}") as gb:
        gb.update_or_create_assignment(assignment)
        gb.update_or_create_notebook(assignment, assignment)
        for cell in source.cells:
            meta = _meta(cell)
            if meta.get("grade"):
                points = float(meta.get("points", 0))
                gb.update_or_create_grade_cell(meta["grade_id"], assignment, assignment, max_score=points,
                                               cell_type=cell.cell_type)
            if meta.get("solution"):  # nbgrader's feedback looks up a comment for every answer cell
                gb.update_or_create_solution_cell(meta["grade_id"], assignment, assignment)
        for outcome in outcomes:
            if outcome.result is None:
                continue
            gb.update_or_create_student(outcome.student)
            try:
                gb.find_submission(assignment, outcome.student)
            except MissingEntry:
                with warnings.catch_warnings():  # nbgrader's own autoflush warnings; the rows are written
                    warnings.simplefilter("ignore", category=SAWarning)
                    gb.add_submission(assignment, outcome.student)
            for cell in outcome.result.cells:
                grade = gb.find_grade(cell.grade_id, assignment, assignment, outcome.student)
                grade.auto_score = cell.points
            gb.db.commit()


def _status(outcome: Outcome) -> str:
    if outcome.result is None:
        return "failed"
    return "timed out" if {"timeout", "not run"} & {c.status for c in outcome.result.cells} else "graded"


def write_autograded(course: str | Path, assignment: str, outcome: Outcome) -> Path | None:
    """Save a graded submission where ``nbgrader generate_feedback`` looks for it:
    ``autograded/<student>/<assignment>/<assignment>.ipynb`` (from :func:`feedback_notebook`,
    so without hidden tests), with the submission's ``timestamp.txt`` when it has one."""
    if outcome.result is None or outcome.notebook is None:
        return None
    course = Path(course)
    folder = course / "autograded" / outcome.student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{assignment}.ipynb"
    nbformat.write(feedback_notebook(outcome.notebook, outcome.result), path)
    stamp = course / "submitted" / outcome.student / assignment / "timestamp.txt"
    if stamp.is_file() and not stamp.is_symlink():
        shutil.copyfile(stamp, folder / "timestamp.txt")
    return path


def autograde(course: str | Path, assignment: str, *, workers: int | None = None, executor=None,
              cell_timeout: float = 60, notebook_timeout: float = 600, gradebook: str = "gradebook.db",
              progress: bool = True, allow_unsafe: bool = False):
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

    Returns a ``pandas.DataFrame`` with one row per student: score, max_score, status
    (graded, timed out, failed), seconds, notes.
    """
    from collections import Counter
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    import pandas as pd
    from tqdm.auto import tqdm

    from lrlib.sandbox import isolation_available

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
    source = nbformat.read(source_path, as_version=4)
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
    record_grades(course / gradebook, assignment, source, outcomes)
    for outcome in outcomes:
        write_autograded(course, assignment, outcome)
    rows = []
    for o in outcomes:
        if o.result is None:
            rows.append({"student": o.student, "score": float("nan"), "max_score": float("nan"),
                         "status": "failed", "seconds": 0.0, "notes": o.error})
        else:
            rows.append({"student": o.student, "score": o.result.score, "max_score": o.result.max_score,
                         "status": _status(o), "seconds": o.result.seconds,
                         "notes": "; ".join(o.result.notes)})
    return pd.DataFrame(rows, columns=["student", "score", "max_score", "status", "seconds", "notes"])


def main(argv: list[str] | None = None) -> int:
    """``python -m lrlib.autograde ASSIGNMENT``: grade a class, print the summary (``--help``: options)."""
    parser = argparse.ArgumentParser(prog="python -m lrlib.autograde",
                                     description="Grade submitted/<student>/ASSIGNMENT/ in isolated parallel "
                                                 "workers; record the scores in the nbgrader gradebook.")
    parser.add_argument("assignment")
    parser.add_argument("--course", default=".", help="the course folder (default: here)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: the cores)")
    parser.add_argument("--cell-timeout", type=float, default=60, help="seconds per cell (default 60)")
    parser.add_argument("--notebook-timeout", type=float, default=600,
                        help="seconds per notebook (default 600)")
    parser.add_argument("--dask", metavar="ADDRESS", default=None,
                        help="grade on this Dask scheduler (tcp://host:8786) instead of local processes")
    parser.add_argument("--unsafe", action="store_true",
                        help="run student code WITHOUT isolation where it is impossible (trusted code only)")
    args = parser.parse_args(argv)
    client = executor = None
    if args.dask:
        from distributed import Client  # the optional 'cluster' extra

        client = Client(args.dask)
        executor = client.get_executor()
    try:
        summary = autograde(args.course, args.assignment, workers=args.workers, executor=executor,
                            cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout,
                            allow_unsafe=args.unsafe)
    finally:
        if client is not None:
            client.close()
    if summary.empty:
        print(f"no submissions found in submitted/*/{args.assignment}/")
        return 0
    print(summary.to_string(index=False))
    counts = summary.status.value_counts()
    print(f"\n{len(summary)} submissions: {counts.get('graded', 0)} graded, {counts.get('timed out', 0)} "
          f"graded with a timeout, {counts.get('failed', 0)} failed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
