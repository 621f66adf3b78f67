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
import copy
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
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
        self.manager.start_kernel(cwd=str(workdir))
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

        try:
            reply = self.client.execute_interactive(code, timeout=timeout, output_hook=keep,
                                                    store_history=False, allow_stdin=False)
            status = reply["content"]["status"]
        except TimeoutError:
            status = "timeout"
        except (RuntimeError, queue.Empty):
            status = "dead"
        if status != "timeout" and not self.manager.is_alive():
            status = "dead"
        return status, "".join(chunks)

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
        for cell in nb.cells:
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
                result.cells.append(CellResult(meta["grade_id"], points if passed else 0.0, points, verdict,
                                               out.replace(marker, "")))
                if status in ("timeout", "dead") and not (status == "timeout" and kernel.interrupt()):
                    del history[part_start:]  # this part's answers broke the kernel: leave them out
                    restart()
                part_start = len(history)
                continue
            if left <= 0:
                continue
            status, _ = kernel.run(cell.source, min(cell_timeout, left), output_cap)
            kernel.kill_strays()
            if status in ("timeout", "dead"):  # never replayed: it would hang or kill again
                result.notes.append(f"cell {meta.get('grade_id', '?')!r}: {status}")
                if not (status == "timeout" and kernel.interrupt()):
                    restart()
            else:
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
                                notebook_timeout=job.get("notebook_timeout", 600), uid=job["uid"], hide=hide)
        result.notes = notes + result.notes
        return Outcome(student, result)
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
        for outcome in outcomes:
            if outcome.result is None:
                continue
            gb.update_or_create_student(outcome.student)
            try:
                gb.find_submission(assignment, outcome.student)
            except MissingEntry:
                gb.add_submission(assignment, outcome.student)
            for cell in outcome.result.cells:
                grade = gb.find_grade(cell.grade_id, assignment, assignment, outcome.student)
                grade.auto_score = cell.points
            gb.db.commit()


def autograde(course: str | Path, assignment: str, *, workers: int | None = None, executor=None,
              cell_timeout: float = 60, notebook_timeout: float = 600, gradebook: str = "gradebook.db",
              progress: bool = True):
    """Grade every ``submitted/<student>/<assignment>/`` of a course in parallel, isolated; record the scores.

    Each submission runs in its own sandbox (its own user id, no network, the course's
    private folders hidden); the scores are merged into the gradebook by this process.
    Refuses to start where isolation is unavailable.

    Returns a ``pandas.DataFrame`` with one row per student: score, max_score, status, seconds, notes.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    import pandas as pd
    from tqdm.auto import tqdm

    from lrlib.sandbox import isolation_available

    ok, why = isolation_available()
    if not ok:
        raise RuntimeError(f"refusing to grade untrusted notebooks without isolation: {why}")
    course = Path(course).resolve()
    source = nbformat.read(course / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    found = (course / "submitted").glob(f"*/{assignment}/{assignment}.ipynb")
    students = sorted(p.parent.parent.name for p in found)
    jobs = [{"course": str(course), "assignment": assignment, "student": s, "uid": 62000 + i,
             "cell_timeout": cell_timeout, "notebook_timeout": notebook_timeout}
            for i, s in enumerate(students)]
    own_pool = executor is None
    if own_pool:
        executor = ProcessPoolExecutor(workers or os.cpu_count() or 1, mp_context=get_context("spawn"))
    try:
        outcomes = list(tqdm(executor.map(grade_submission, jobs), total=len(jobs), disable=not progress,
                             desc=f"grading {assignment}"))
    finally:
        if own_pool:
            executor.shutdown()
    record_grades(course / gradebook, assignment, source, outcomes)
    rows = []
    for o in outcomes:
        if o.result is None:
            rows.append({"student": o.student, "score": float("nan"), "max_score": float("nan"),
                         "status": "error", "seconds": 0.0, "notes": o.error})
        else:
            statuses = {c.status for c in o.result.cells}
            status = "timed out" if {"timeout", "not run"} & statuses else "graded"
            rows.append({"student": o.student, "score": o.result.score, "max_score": o.result.max_score,
                         "status": status, "seconds": o.result.seconds, "notes": "; ".join(o.result.notes)})
    return pd.DataFrame(rows, columns=["student", "score", "max_score", "status", "seconds", "notes"])


def main(argv: list[str] | None = None) -> int:
    """``python -m lrlib.autograde ASSIGNMENT [--course DIR] [--workers N]``: grade and print a summary."""
    parser = argparse.ArgumentParser(description="Grade submitted notebooks in isolated parallel workers.")
    parser.add_argument("assignment")
    parser.add_argument("--course", default=".")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--cell-timeout", type=float, default=60)
    parser.add_argument("--notebook-timeout", type=float, default=600)
    args = parser.parse_args(argv)
    summary = autograde(args.course, args.assignment, workers=args.workers, cell_timeout=args.cell_timeout,
                        notebook_timeout=args.notebook_timeout)
    print(summary.to_string(index=False))
    print(f"\n{(summary.status != 'error').sum()} graded, {(summary.status == 'error').sum()} failed, "
          f"{(summary.status == 'timed out').sum()} timed out")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
