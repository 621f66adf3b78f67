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

import ast
import copy
import json
import time
from dataclasses import dataclass, field

import nbformat

from lrgrade.delegation import find_delegations
from lrgrade.judge import Judge, JudgeServer
from lrgrade.kernel import Kernel, oracle_modules, own_event_loop
from lrgrade.sandbox import Limits
from lrgrade.submission import is_test, nbgrader_meta
from lrlib._grading import PREFIX
from lrlib._own_work import test_reads

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
    #: why no score could be given (the grader's own side failed twice), or "" when graded
    not_graded: str = ""

    @property
    def score(self) -> float:
        return sum(c.points for c in self.cells)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.cells)


class _NotGraded(Exception):
    """The grader's own side failed twice (an instructor cell or the judge): no score can be given."""


def student_names(code: str) -> list[str]:
    """The names ``code`` (a test or an instructor cell) reads that it does not bind itself: the
    candidates to fetch from the student's notebook (the judge drops those its own cells bound).

    >>> student_names("got = update(0.9, -0.4, lr)\\nexpect(got > 0, 'hint')")
    ['expect', 'lr', 'update']
    """
    return sorted(test_reads(code))


class _Grading:
    """One notebook's grading: the student's kernel runs the notebook, the judge runs the tests."""

    def __init__(self, nb, limits, cell_timeout, judge_timeout, uid, output_cap, max_restarts, isolate):
        self.nb, self.limits, self.uid, self.isolate = nb, limits, uid, isolate
        self.cell_timeout, self.judge_timeout = cell_timeout, judge_timeout
        self.output_cap, self.max_restarts = output_cap, max_restarts
        self.student: Kernel | None = None
        self.judge: Judge | None = None
        self.history: list[tuple[bool, str]] = []  # the student's kernel: (guarded?, code) to replay
        self.judged: list[str] = []  # the judge's cells, to replay after a restart
        self.restarts, self.progress = 0, True
        self.oracles = oracle_modules("\n".join(c.source for c in nb.cells if c.cell_type == "code"
                                                 and not nbgrader_meta(c).get("solution")))
        self.student_left = 0.0  # seconds of student code the current cell may still run
        self.broken = ""  # why the student's kernel cannot answer until the cell ends

    # --- the student's kernel ---------------------------------------------------------------------
    def start_student(self) -> None:
        self.student = Kernel(self.uid, self.limits, self.isolate)
        self.student.install_guard(self.cell_timeout, self.output_cap, self.oracles)

    def restart_student(self, history: list[tuple[bool, str]], timeout: float | None = None) -> None:
        """A fresh student kernel with ``history`` replayed; _GiveUp when that cannot be done."""
        self.restarts += 1
        self.student.close()
        if self.restarts > self.max_restarts or not self.progress:  # hanging again before anything ran
            raise _GiveUp
        self.progress = False
        self.start_student()
        for guarded, code in history:
            status = (self.student.run_guarded(code, timeout or self.cell_timeout).status if guarded
                      else self.student.run(code, timeout=timeout or self.cell_timeout, output_cap=0)[0])
            if status in ("timeout", "dead"):
                raise _GiveUp  # the cells that ran fine before now break it: it was sabotaged
        self.history = list(history)

    def bridge(self, prompt: str) -> tuple[str, str]:
        """Answer one request of the judge by asking the student's kernel: (JSON answer, output)."""
        def grader(why: str) -> tuple[str, str]:
            return json.dumps({"grader": why}), ""

        if not prompt.startswith(PREFIX):
            return grader("the judge asked for input it should not need")
        if self.broken:
            return grader(self.broken)
        if self.student_left <= 0:
            self.broken = "the notebook's code ran past the time limit of this part"
            return grader(self.broken)
        expression = f"__import__('lrlib._grading', fromlist=['serve']).serve({prompt[len(PREFIX):]!r})"
        started = time.monotonic()
        status, out, text = self.student.evaluate(expression, self.student_left, self.output_cap)
        self.student_left -= time.monotonic() - started
        if status == "timeout":
            self.broken = "the notebook's code ran past the time limit of this part"
            if self.student.interrupt():
                self.broken = ""
            return grader("the notebook's code ran past the time limit of this part")
        if status == "dead":
            self.broken = "the notebook's kernel died (os._exit, a crash or the memory limit)"
            return grader(self.broken)
        try:
            answer = ast.literal_eval(text) if status == "ok" and len(text) < MAX_ANSWER else None
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            answer = None
        if type(answer) is not str:
            return json.dumps({"grader": "the notebook's kernel did not answer the grader's request"}), out
        return answer, out

    # --- the judge ----------------------------------------------------------------------------------
    def start_judge(self) -> None:
        self.judge = JudgeServer.shared(self.isolate).spawn(self.output_cap)

    def run_judge(self, code: str, limit: float) -> tuple[str, str]:
        """Run a trusted cell in the judge, with the names it reads from the notebook bound first."""
        names = student_names(code)  # bind() also marks the judge's own objects, so always run it
        bind = f"__import__('lrlib._grading', fromlist=['bind']).bind({names!r})"
        status, out = self.judge.run_judged(bind, limit, self.output_cap, self.bridge)
        if status != "ok":
            return status, out
        status, more = self.judge.run_judged(code, limit, self.output_cap, self.bridge)
        return status, out + more

    def judged_cell(self, code: str, what: str) -> tuple[str, str]:
        """Run ``code`` in the judge; where the judge itself times out or dies, start a fresh one,
        replay its cells and try once more with twice the time; then _NotGraded."""
        status, out = self.run_judge(code, self.judge_timeout)
        if status not in ("timeout", "dead"):
            self.judged.append(code)
            return status, out
        self.judge.close()
        self.start_judge()
        for earlier in self.judged:
            self.student_left = self.cell_timeout
            if self.run_judge(earlier, 2 * self.judge_timeout)[0] in ("timeout", "dead"):
                raise _NotGraded(f"the judge could not replay the cells before {what}")
        self.student_left, self.broken = self.cell_timeout, ""
        status, out = self.run_judge(code, 2 * self.judge_timeout)
        if status not in ("timeout", "dead"):
            self.judged.append(code)
            return status, out
        raise _NotGraded(f"{what} {'timed out' if status == 'timeout' else 'killed the kernel'} in the judge "
                         f"twice (the second time with {2 * self.judge_timeout:g} s)")


MAX_ANSWER = 64 * 2**20  # characters of one answer from the student's kernel (at most 4 bytes each)


@own_event_loop
def grade_notebook(nb: nbformat.NotebookNode, *, limits: Limits | None = None, cell_timeout: float = 60,
                   notebook_timeout: float = 600, judge_timeout: float | None = None, uid: int = 61000,
                   output_cap: int = 10_000, max_restarts: int = 2, isolate: bool = True) -> GradeResult:
    """Run an assembled notebook in a sandboxed kernel and decide its tests in another one.

    The student's kernel runs every cell but the tests: the instructor's cells through the
    guard, the answers through IPython, as in the student's notebook. The tests run in a
    *judge* (:mod:`lrgrade.judge`), a second process, unprivileged and offline, that runs the
    instructor's cells and the tests and never any student code: the names a test reads from
    the notebook are fetched from the student's kernel as plain data, and the calls it makes to
    the student's functions are made there (:mod:`lrlib._grading`). A test passes when it runs
    to its end in the judge.

    Args:
        nb: from :func:`assemble`.
        limits: the sandboxes' resource limits.
        cell_timeout: seconds the student's code may run per cell (an answer, or all the
            calls one test makes).
        notebook_timeout: seconds for the whole notebook.
        judge_timeout: seconds the instructor's own code may run per cell (default twice
            ``cell_timeout``); one that runs past it, or dies, is retried in a fresh kernel with
            twice the time, and if it fails again the notebook is reported *not graded*, never
            scored as the student's failure.
        uid: the sandbox user of the student's kernel (give concurrent graders different ones).
        output_cap: characters of output kept per cell (the rest is dropped).
        max_restarts: restarts of the student's kernel allowed; after that the remaining tests
            are not run (a kernel that keeps hanging has been broken on purpose or by accident).
        isolate: run the student's kernel and the judge each in a :mod:`lrgrade.sandbox`
            (default). ``False`` is unsafe mode: the student's code runs with this process's rights
            and network; only for a machine where isolation is impossible, and only when the
            instructor says so.
    """
    limits = limits or Limits(wall_seconds=int(notebook_timeout) + 60)
    judge_timeout = judge_timeout or 2 * cell_timeout
    start = time.monotonic()
    result = GradeResult()
    grading = _Grading(nb, limits, cell_timeout, judge_timeout, uid, output_cap, max_restarts, isolate)
    part_start = 0
    pending: list[str] = []  # tampering found before an instructor cell: charged to the next test
    try:
        delegated = find_delegations(nb)  # parts handed to lrlib's own implementation score 0
    except Exception as error:  # a reading that fails cannot clear anyone: every own-work part is flagged
        delegated = {nbgrader_meta(c)["grade_id"]: f"could not be read ({type(error).__name__})"
                     for c in nb.cells if nbgrader_meta(c).get("grade") and "# own work:" in c.source}
    try:
        grading.start_student()
        grading.start_judge()
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            meta = nbgrader_meta(cell)
            left = notebook_timeout - (time.monotonic() - start)
            student = grading.student
            if is_test(cell):
                gid, points = meta["grade_id"], float(meta.get("points", 0))
                if left <= 0:
                    result.cells.append(CellResult(gid, 0.0, points, "not run"))
                    continue
                student.kill_strays()
                check = student.run_guarded("", cell_timeout)  # puts back what answers changed, says what
                found = pending + check.tampered
                pending = []
                grading.student_left, grading.broken = min(cell_timeout, left), ""
                status, output = grading.judged_cell(cell.source, f"the test {gid!r}")
                grading.student.kill_strays()
                grading.progress = grading.progress or status in ("ok", "error")
                passed = status == "ok" and not found
                if found:
                    verdict = f"tampered ({', '.join(found[:6])}{', ...' if len(found) > 6 else ''})"
                    result.notes.append(f"{gid}: {verdict}")
                elif gid in delegated:
                    passed, verdict = False, "not own work"
                    result.notes.append(f"{gid}: scored 0, the answer {delegated[gid]}")
                    output += (f"[grader] this part scores 0: the answer {delegated[gid]}, "
                               "which this part asks you to write yourself\n")
                else:
                    verdict = "passed" if passed else "failed"
                result.cells.append(CellResult(gid, points if passed else 0.0, points, verdict, output))
                result.outputs[index] = output
                if grading.broken and not grading.student.interrupt():
                    # this part's answers broke the kernel: leave them out, keep the instructor's cells
                    kept = [h for h in grading.history[part_start:] if h[0]]
                    grading.restart_student(grading.history[:part_start] + kept)
                part_start = len(grading.history)
                continue
            if left <= 0:
                continue
            answer = bool(meta.get("solution"))
            name = meta.get("grade_id", "?")
            if answer:  # the student's own code: through IPython, as in their notebook
                status, result.outputs[index] = student.run(cell.source, min(cell_timeout, left), output_cap)
            else:  # the instructor's: through the guard, which also puts back what answers changed
                run = student.run_guarded(cell.source, min(cell_timeout, left))
                status, result.outputs[index] = run.status, run.output
                pending += run.tampered
                if status in ("timeout", "dead"):  # the instructor's cell, not the student's: once more
                    grading.restart_student(grading.history, timeout=2 * cell_timeout)
                    run = grading.student.run_guarded(cell.source, 2 * cell_timeout)
                    status, result.outputs[index] = run.status, run.output
                    if status in ("timeout", "dead"):
                        raise _NotGraded(f"the instructor cell {name!r} {status} twice "
                                         "in the notebook's kernel")
                grading.student_left, grading.broken = min(cell_timeout, left), ""
                judged, out = grading.judged_cell(cell.source, f"the instructor cell {name!r}")
                if judged in ("error", "failed"):
                    result.notes.append(f"the instructor cell {name!r} raised in the judge: "
                                        f"{(out.strip().splitlines() or ['an error'])[-1]}")
            grading.student.kill_strays()
            if status in ("timeout", "dead"):  # never replayed: it would hang or kill again
                result.notes.append(f"cell {name!r}: {status}")
                result.outputs[index] += _CELL_BROKE[status]
                if not (status == "timeout" and grading.student.interrupt()):
                    grading.restart_student(grading.history)
            else:
                if status in ("error", "failed"):  # the instructor sees which cell raised, not just points
                    raised = result.outputs[index].strip().splitlines()
                    result.notes.append(f"cell {name!r} raised {raised[-1] if raised else 'an error'}")
                grading.history.append((not answer, cell.source))
                grading.progress = True
    except _GiveUp:
        result.notes.append(f"the kernel hung or died more than {max_restarts} times; the rest was not run")
        _close_the_rest(nb, result, "not run")
    except _NotGraded as why:
        result.not_graded = str(why)
        result.notes.append(f"not graded: {why}")
        _close_the_rest(nb, result, "not graded")
    finally:
        for kernel in (grading.student, grading.judge):
            if kernel is not None:
                kernel.close()
        result.seconds = time.monotonic() - start
    return result


def _close_the_rest(nb, result: GradeResult, status: str) -> None:
    graded = {c.grade_id for c in result.cells}
    tests = [nbgrader_meta(c) for c in nb.cells if is_test(c)]
    result.cells += [CellResult(m["grade_id"], 0.0, float(m.get("points", 0)), status)
                     for m in tests if m["grade_id"] not in graded]


HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"

_VERDICTS = {
    "failed": "this test failed; the error above says why",
    "failed (did not run to its end)": "this test did not run to its end (did an answer change how "
                                       "the notebook runs?)",
    "timeout": "this test ran past the time limit per cell",
    "dead": "the kernel died while this test ran (os._exit, a crash, or the memory limit)",
    "not run": "this test was not run: the notebook ran out of time, or the kernel kept dying",
    "not graded": "this test could not be graded: the grader's own side failed "
                  "(your instructor has been told)",
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
