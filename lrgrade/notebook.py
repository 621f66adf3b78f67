"""Grading one notebook: run it cell by cell in a sandboxed kernel, score its tests here, and
write the feedback its student may see.

:func:`grade_notebook` executes an assembled notebook (:mod:`lrgrade.submission`) in a
:class:`~lrgrade.kernel.Kernel`, with a timeout per cell and per notebook, and decides
in this process, never in the kernel, what each test cell scored:

- answer cells run through IPython, as in the student's notebook; instructor cells and
  tests run through the kernel's guard (:data:`lrgrade.kernel.GUARD`), which first puts
  back, and reports, whatever answers changed that instructor code relies on;
- a test passes only if the guard answered, with a valid signature, that it ran without
  error, and nothing had been tampered with since the previous test; a kernel that died,
  hung or was hijacked does not give such an answer;
- a cell that hangs is interrupted, and a kernel that dies or will not interrupt is
  restarted and the cells before it re-run, so one broken answer costs only its own part.

:func:`feedback_notebook` turns the result into the notebook ``nbgrader generate_feedback``
renders, without the hidden tests.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from lrgrade.delegation import find_delegations
from lrgrade.kernel import Kernel, oracle_modules, own_event_loop
from lrgrade.sandbox import Limits
from lrgrade.submission import nbgrader_meta

_CELL_BROKE = {
    "timeout": "[grader] this cell ran past the time limit per cell and was stopped; "
               "the tests ran without it\n",
    "dead": "[grader] the kernel died while this cell ran (os._exit, sys.exit, a crash or the memory limit); "
            "it was restarted and the tests ran without this cell\n",
}


class _GiveUp(Exception):
    """The kernel cannot be kept alive: stop running cells."""


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
    #: what each code cell printed, by its index in the notebook
    outputs: dict[int, str] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return sum(c.points for c in self.cells)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.cells)


@own_event_loop
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
        isolate: run the kernel in :mod:`lrgrade.sandbox` (default). ``False`` is unsafe mode:
            the student's code runs with this process's rights and network; only for a
            machine where isolation is impossible, and only when the instructor says so.
    """
    limits = limits or Limits(wall_seconds=int(notebook_timeout) + 60)
    start = time.monotonic()
    result = GradeResult()
    workdir = Path(tempfile.mkdtemp(prefix="lrlib-grade-"))
    workdir.chmod(0o755)
    hide = [Path(p) for p in hide]
    kernel = Kernel(workdir, uid, limits, hide, isolate)
    history: list[tuple[bool, str]] = []  # (guarded?, code) that ran, to replay after a restart

    restarts, part_start, progress = 0, 0, True
    pending: list[str] = []  # tampering found before an instructor cell: charged to the next test

    def restart() -> None:
        nonlocal kernel, restarts, progress
        restarts += 1
        kernel.close()
        if restarts > max_restarts or not progress:  # hanging again before anything ran: give up
            raise _GiveUp
        progress = False
        kernel = Kernel(workdir, uid, limits, hide, isolate)
        kernel.install_guard(cell_timeout, output_cap, oracles)
        for guarded, code in history:
            status = (kernel.run_guarded(code, cell_timeout).status if guarded
                      else kernel.run(code, timeout=cell_timeout, output_cap=0)[0])
            if status in ("timeout", "dead"):
                raise _GiveUp  # the cells that ran fine before now break it: it was sabotaged

    delegated = find_delegations(nb)  # parts handed to lrlib's own implementation score 0
    oracles = oracle_modules("\n".join(c.source for c in nb.cells if c.cell_type == "code"
                                        and not nbgrader_meta(c).get("solution")))
    try:
        kernel.install_guard(cell_timeout, output_cap, oracles)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            meta = nbgrader_meta(cell)
            left = notebook_timeout - (time.monotonic() - start)
            if meta.get("grade"):
                points = float(meta.get("points", 0))
                if left <= 0:
                    result.cells.append(CellResult(meta["grade_id"], 0.0, points, "not run"))
                    continue
                kernel.kill_strays()
                run = kernel.run_guarded(cell.source, min(cell_timeout, left))
                kernel.kill_strays()
                status, found = run.status, pending + run.tampered
                pending = []
                progress = progress or status in ("ok", "error")
                passed = status == "ok" and run.proven and not found
                if found:
                    verdict = f"tampered ({', '.join(found[:6])}{', ...' if len(found) > 6 else ''})"
                    result.notes.append(f"{meta['grade_id']}: {verdict}")
                elif meta["grade_id"] in delegated:
                    passed, verdict = False, "not own work"
                    result.notes.append(f"{meta['grade_id']}: scored 0, the answer "
                                        f"{delegated[meta['grade_id']]}")
                    run.output += (f"[grader] this part scores 0: the answer {delegated[meta['grade_id']]}, "
                                   "which this part asks you to write yourself\n")
                elif passed:
                    verdict = "passed"
                elif status in ("ok", "error"):
                    verdict = "failed"
                elif status == "failed":
                    verdict = "failed (did not run to its end)"
                else:
                    verdict = status
                earned = points if passed else 0.0
                result.cells.append(CellResult(meta["grade_id"], earned, points, verdict, run.output))
                result.outputs[index] = run.output
                if status in ("timeout", "dead") and not (status == "timeout" and kernel.interrupt()):
                    # this part's answers broke the kernel: leave them out, keep the instructor's cells
                    history[part_start:] = [h for h in history[part_start:] if h[0]]
                    restart()
                part_start = len(history)
                continue
            if left <= 0:
                continue
            answer = bool(meta.get("solution"))
            if answer:  # the student's own code: through IPython, as in their notebook
                status, result.outputs[index] = kernel.run(cell.source, min(cell_timeout, left), output_cap)
            else:  # the instructor's: through the guard, which also puts back what answers changed
                run = kernel.run_guarded(cell.source, min(cell_timeout, left))
                status, result.outputs[index] = run.status, run.output
                pending += run.tampered
            kernel.kill_strays()
            if status in ("timeout", "dead"):  # never replayed: it would hang or kill again
                result.notes.append(f"cell {meta.get('grade_id', '?')!r}: {status}")
                result.outputs[index] += _CELL_BROKE[status]
                if not (status == "timeout" and kernel.interrupt()):
                    restart()
            else:
                if status in ("error", "failed"):  # the instructor sees which cell raised, not just points
                    raised = result.outputs[index].strip().splitlines()
                    result.notes.append(f"cell {meta.get('grade_id', '?')!r} raised "
                                        f"{raised[-1] if raised else 'an error'}")
                history.append((not answer, cell.source))
                progress = True
    except _GiveUp:
        result.notes.append(f"the kernel hung or died more than {max_restarts} times; the rest was not run")
        graded = {c.grade_id for c in result.cells}
        tests = [nbgrader_meta(c) for c in nb.cells if nbgrader_meta(c).get("grade")]
        result.cells += [CellResult(m["grade_id"], 0.0, float(m.get("points", 0)), "not run")
                         for m in tests if m["grade_id"] not in graded]
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
    "not own work": "the answer hands this part to the implementation it asks you to write "
                    "(see the line above)",
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
        meta = nbgrader_meta(cell)
        graded = verdicts.get(meta.get("grade_id")) if meta.get("grade") else None
        if graded is None:  # the student's text: shown, but nbgrader must not act on markers in it
            cell.source = neutralise_markers(cell.source)
        if cell.cell_type != "code":
            continue
        text = printable(result.outputs.get(index, ""))
        if graded is not None:
            cell.source = strip_hidden_tests(cell.source)
            if graded.points < graded.max_points:
                why = _VERDICTS.get(graded.status, graded.status)
                if graded.status.startswith("tampered"):
                    why = (f"{graded.status}: your code changed what the tests rely on, so this part "
                           "scores 0 (the grader put it back before testing)")
                text += f"[grader] {graded.points:g} of {graded.max_points:g} points: {why}\n"
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)] if text else []
        cell.execution_count = None
    return out


#: nbgrader's region markers; in a student's own cell they are text, not instructions.
MARKERS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "BEGIN SOLUTION", "END SOLUTION")


def neutralise_markers(source: str) -> str:
    """``source`` with nbgrader's region markers broken by a zero-width space, so that it reads the
    same but no preprocessor (``ClearHiddenTests`` in ``generate_feedback``) takes it for a region:
    an answer that contains the text ``BEGIN HIDDEN TESTS`` must not stop the class's feedback.

    >>> neutralise_markers("# BEGIN HIDDEN TESTS") == "# BEGIN HIDDEN TESTS"
    False
    """
    for marker in MARKERS:
        first, rest = marker.split(" ", 1)
        source = source.replace(marker, f"{first} \u200b{rest}")
    return source


def printable(text: str) -> str:
    """Output text that any notebook file can hold: lone surrogates and control characters
    (other than newline and tab) replaced, so odd bytes printed by an answer cannot break
    writing the graded notebook."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(c if c in "\n\t" or c >= " " else "\ufffd" for c in text)
