"""lrgrade: a submission is rebuilt from the source, run in the sandbox and scored outside it."""

import contextlib
import copy
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from lrgrade.notebook import grade_notebook
from lrgrade.sandbox import isolation_available
from lrgrade.submission import SubmissionError, assemble, read_submission

from .conftest import ROOT, run_nbgrader
from .site_check import CHROMIUM, browser

AVAILABLE, WHY = isolation_available()
needs_sandbox = pytest.mark.skipif(not AVAILABLE, reason=f"no isolation here: {WHY}")
NAME = "ch01_update_rule"
SOURCE = nbformat.read(ROOT / "solutions" / NAME / f"{NAME}.ipynb", as_version=4)
RELEASE = nbformat.read(ROOT / "exercises" / NAME / f"{NAME}.ipynb", as_version=4)
PARTS = {"implement-update": 2, "implement-relative_update": 2, "predict-first_step": 2,
         "measure-first_step": 2, "decide-adam_lr": 2}


def submission(**answers):
    """The release with the solution's answers filled in, except those given (grade_id -> code)."""
    nb = copy.deepcopy(RELEASE)
    solution = {c.metadata["nbgrader"]["grade_id"]: c.source for c in SOURCE.cells}
    for cell in nb.cells:
        gid = cell.metadata["nbgrader"]["grade_id"]
        if cell.metadata["nbgrader"].get("solution"):
            cell.source = answers.get(gid, solution[gid])
    return nb


def grade(nb, **kwargs):
    assembled, notes = assemble(SOURCE, nb, RELEASE)
    result = grade_notebook(assembled, cell_timeout=kwargs.pop("cell_timeout", 20), uid=61100, **kwargs)
    return {c.grade_id: c.points for c in result.cells}, result, notes


#: Cases whose defence is the grader's own (rebuilding from the source, the marker, the restore,
#: interrupts and restarts), not the sandbox: they must pass with isolation off too.
isolation = pytest.mark.parametrize("isolate", [pytest.param(True, marks=needs_sandbox, id="isolated"),
                                               pytest.param(False, id="isolation off")])


def both_ways(cases: dict, unsafe_too: str) -> list:
    """``cases`` (id -> value) isolated, and the one named ``unsafe_too`` with isolation off as well:
    the defence is the judge's either way, so one case shows the unsafe path takes it too."""
    return ([pytest.param(v, True, marks=needs_sandbox, id=f"{k}-isolated") for k, v in cases.items()]
            + [pytest.param(cases[unsafe_too], False, id=f"{unsafe_too}-isolation off")])


def test_assemble_takes_only_answers_from_the_student():
    nb = submission()
    for cell in nb.cells:
        meta = cell.metadata["nbgrader"]
        if meta.get("grade"):
            cell.source = "pass"
            meta["points"] = 100
    nb.cells = [c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] != "predict-first_step"]
    assembled, notes = assemble(SOURCE, nb, RELEASE)
    tests = [c for c in assembled.cells if c.metadata["nbgrader"].get("grade")]
    originals = [c.source for c in SOURCE.cells if c.metadata["nbgrader"].get("grade")]
    assert [c.source for c in tests] == originals
    assert all("BEGIN HIDDEN TESTS" in c.source for c in tests)  # hidden tests come from the source
    assert {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"] for c in tests} == PARTS
    blank, notes = assemble(SOURCE, nbformat.v4.new_notebook(cells=[c for c in nb.cells[:3]]), RELEASE)
    assert any("missing" in note for note in notes)


def test_another_assignment_and_broken_files_are_clear_errors(tmp_path):
    other = nbformat.read(ROOT / "solutions" / "ch02_too_big_too_small" / "ch02_too_big_too_small.ipynb", 4)
    with pytest.raises(SubmissionError, match="belongs to another assignment"):
        assemble(SOURCE, other, RELEASE)
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [')
    with pytest.raises(SubmissionError, match="not a valid notebook"):
        read_submission(broken)


def test_the_solution_scores_full_marks_and_the_release_zero_with_isolation_off_too():
    """Isolated, every assignment's solution and release are graded once below
    (test_every_assignment_grades_its_solution_full_and_its_release_zero); here the unsafe path."""
    isolate = False
    scores, result, _ = grade(submission(), isolate=isolate)
    assert scores == PARTS and result.score == result.max_score == 10
    scores, _, notes = grade(copy.deepcopy(RELEASE), isolate=isolate)
    assert scores == dict.fromkeys(PARTS, 0.0)


@isolation
def test_edited_and_deleted_tests_and_changed_metadata_are_ignored(isolate):
    nb = submission(update="def update(theta, grad, lr):\n    return 0")  # wrong
    for cell in nb.cells:
        if cell.metadata["nbgrader"].get("grade"):
            cell.source, cell.metadata["nbgrader"]["points"] = "pass", 100
    nb.cells = [c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] != "decide-adam_lr"]
    for cell in nb.cells:  # an answer relabelled as a test worth 50 points; a test renamed
        if cell.metadata["nbgrader"]["grade_id"] == "relative_update":
            cell.metadata["nbgrader"].update(grade=True, points=50)
        if cell.metadata["nbgrader"]["grade_id"] == "implement-relative_update":
            cell.metadata["nbgrader"].update(grade_id="bonus", points=1000)
    scores, _, _ = grade(nb, isolate=isolate)
    assert scores == {**PARTS, "implement-update": 0.0}  # the deleted test was restored and passed


def test_an_answer_handed_to_lrlib_scores_0_on_its_part_and_the_feedback_says_why():
    from lrgrade.notebook import feedback_notebook

    handed = ("from lrlib.update import sgd_step\n\ndef update(theta, grad, lr):\n"
              "    return sgd_step(theta, grad, lr)")
    assembled, _ = assemble(SOURCE, submission(update=handed), RELEASE)
    result = grade_notebook(assembled, cell_timeout=20, uid=61100, isolate=False)
    scores = {c.grade_id: c.points for c in result.cells}
    assert scores == {**PARTS, "implement-update": 0.0}, result  # the answer is right: only the check cost it
    assert "implement-update: scored 0, the answer uses lrlib.update.sgd_step" in result.notes
    shown = "".join(o.text for c in feedback_notebook(assembled, result).cells for o in c.get("outputs", []))
    assert "this part scores 0: the answer uses lrlib.update.sgd_step" in shown
    assert "0 of 2 points: the answer hands this part" in shown


@pytest.mark.parametrize("answer,isolate", both_ways({
    "loop in the function": "def update(theta, grad, lr):\n    while True:\n        pass",  # hangs in a test
    "loop at definition": "while True:\n    pass",  # hangs where it is defined
    "os._exit": "import os\nos._exit(0)",  # kills the kernel
    "sys.exit": "import sys\nsys.exit()",
}, unsafe_too="loop in the function"))
def test_a_broken_answer_costs_only_its_part(answer, isolate):
    scores, result, _ = grade(submission(update=answer), cell_timeout=5, isolate=isolate)
    assert scores == {**PARTS, "implement-update": 0.0}, result
    # the hang or death was cut short: every later part still ran (none left "not run" by the clock)
    assert all(cell.status != "not run" for cell in result.cells), result


def test_an_answer_cell_that_raises_is_named_in_the_notes():
    scores, result, _ = grade(submission(update="raise ValueError('boom')"), isolate=False)
    assert scores["implement-update"] == 0.0
    assert "cell 'update' raised ValueError: boom" in result.notes, result.notes


WRONG_RATE = "ADAM_LR = 3e-4  # the folklore, wrong for this network\n"


@pytest.mark.parametrize("tamper,isolate", both_ways({
    "helpers": "expect = expect_close = lambda *args, **kwargs: None",  # the assertion helpers
    "builtins": "import builtins\nbuiltins.abs = lambda x: 0.0\nbuiltins.isinstance = lambda *a: True",
    "hooks": "import sys\nsys.excepthook = lambda *a: None\nsys.settrace(lambda *a: None)",  # interpreter's
    "traceback display": "get_ipython().showtraceback = lambda *a, **k: None",  # how errors are shown
    "hijacked run_cell": "ip = get_ipython()\nip.run_cell = lambda *a, **k: ip.run_cell.__self__",
}, unsafe_too="helpers"))
def test_tampering_with_the_machinery_does_not_pass_wrong_answers(tamper, isolate):
    """In part 5, which has no own-work line: only the judge decides whether the wrong rate passes.
    (Tampering in a part that has one also costs every later such part: see test_delegation.)"""
    scores, result, _ = grade(submission(adam_lr=WRONG_RATE + tamper), cell_timeout=5, isolate=isolate)
    assert scores == {**PARTS, "decide-adam_lr": 0.0}, result  # only the tampering part is lost


#: Code a student could put after a wrong answer to make the tests pass anyway: one per class of
#: tampering with the kernel the tests run in. Each must be found, put back and cost its part.
TAMPERING = {
    "AST transformer": (
        "import ast\n"
        "class Skip(ast.NodeTransformer):  # every call statement but print becomes pass\n"
        "    def visit_Expr(self, node):\n"
        "        if isinstance(node.value, ast.Call) and getattr(node.value.func, 'id', '') != 'print':\n"
        "            return ast.Pass()\n"
        "        return node\n"
        "get_ipython().ast_transformers.append(Skip())", "AST transformers"),
    "input transformer": (
        "def last_print_only(lines):  # a cell ending in a print runs only that print\n"
        "    return [lines[-1]] if lines and lines[-1].lstrip().startswith('print(') else lines\n"
        "get_ipython().input_transformers_cleanup.append(last_print_only)", "input transformers"),
    "event callbacks": (
        "import lrlib.exercise as ex\n"
        "def neuter(*args):\n"
        "    ex.expect = ex.expect_close = lambda *a, **k: None\n"
        "    globals()['expect'] = globals()['expect_close'] = ex.expect\n"
        "get_ipython().events.register('pre_run_cell', neuter)\n"
        "get_ipython().events.register('post_run_cell', neuter)", "event 'pre_run_cell'"),
    "exception handlers": (
        "ip = get_ipython()\n"
        "ip.set_custom_exc((BaseException,), lambda *a, **k: None)\n"
        "ip.showtraceback = lambda *a, **k: None\n"
        "import sys\nsys.excepthook = lambda *a: None", "showtraceback"),
    "grader names": (
        "for name in list(globals()):\n"
        "    if any(w in name for w in ('restore', 'grader', 'lrgrade', 'expect')):\n"
        "        globals()[name] = lambda *a, **k: None\n"
        "import lrlib.exercise\nlrlib.exercise.expect = lrlib.exercise.expect_close = expect", "expect"),
    "comparison functions": (
        "import math, numpy, torch\n"
        "numpy.isclose = lambda *a, **k: numpy.True_\nnumpy.allclose = lambda *a, **k: True\n"
        "numpy.testing.assert_allclose = lambda *a, **k: None\nmath.isclose = lambda *a, **k: True\n"
        "torch.allclose = lambda *a, **k: True\ntorch.Tensor.__eq__ = lambda *a: True", "isclose"),
    "oracles": (
        "import torch\n"
        "class Still(torch.optim.SGD):  # the test's oracle now leaves every weight at 0\n"
        "    def step(self, closure=None):\n"
        "        for group in self.param_groups:\n"
        "            for p in group['params']:\n"
        "                p.data.zero_()\n"
        "torch.optim.SGD = Still", "torch.optim.SGD"),
}


def test_each_kind_of_tampering_with_the_tests_kernel_is_found_and_costs_its_part(tmp_path):
    """A class where each student gives a wrong answer (0) plus code that would make its test pass:
    each loses that part, the summary says it was tampered with and with what, and the parts after
    it are graded as usual. (One class, graded in parallel: each kind is its own submission.)"""
    from lrgrade.classroom import autograde

    students = {kind.replace(" ", "_"): submission(adam_lr=WRONG_RATE + code)
                for kind, (code, _) in TAMPERING.items()}
    course = _course(tmp_path, {"alice": submission(), **students})
    summary = autograde(course, NAME, workers=2, cell_timeout=10, progress=False, feedback=False,
                        allow_unsafe=not AVAILABLE).set_index("student")
    assert summary.loc["alice", "score"] == 10.0 and summary.loc["alice", "notes"] == ""
    for kind, (_, seen) in TAMPERING.items():
        row = summary.loc[kind.replace(" ", "_")]
        assert row.score == 10.0 - PARTS["decide-adam_lr"], (kind, row.notes)
        assert "decide-adam_lr: tampered" in row.notes and seen in row.notes, (kind, row.notes)


FAKE_SUCCESS = """
from IPython.core.interactiveshell import ExecutionInfo, ExecutionResult

def skip(raw_cell, *args, **kwargs):  # report success without running anything
    return ExecutionResult(ExecutionInfo(raw_cell, False, False, False, None))

get_ipython().run_cell = skip
"""


@isolation
def test_a_kernel_hijacked_to_report_success_passes_nothing_it_did_not_run(isolate):
    """Tests never run through run_cell: the hijack is found, put back and charged to its part;
    the answers after it run normally again."""
    scores, result, _ = grade(submission(adam_lr=WRONG_RATE + FAKE_SUCCESS), cell_timeout=5, isolate=isolate)
    assert scores == {**PARTS, "decide-adam_lr": 0.0}, result
    lost = next(c for c in result.cells if c.grade_id == "decide-adam_lr")
    assert lost.status.startswith("tampered") and "run_cell" in lost.status, lost


def _course(tmp_path, submissions):
    """A course folder like the real one (sources, release, nbgrader_config.py) with these submissions."""
    import shutil

    course = tmp_path / "course"
    for folder in ("solutions", "exercises"):
        shutil.copytree(ROOT / folder / NAME, course / folder / NAME)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    for student, nb in submissions.items():
        (course / "submitted" / student / NAME).mkdir(parents=True)
        path = course / "submitted" / student / NAME / f"{NAME}.ipynb"
        path.write_text(nb) if isinstance(nb, str) else nbformat.write(nb, path)
    return course


def _hidden_lines():
    """Lines that only the hidden tests contain (none of them is in the release)."""
    release = "\n".join(c.source for c in RELEASE.cells)
    hidden = set()
    for cell in SOURCE.cells:
        if cell.metadata["nbgrader"].get("grade"):
            region = cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
            hidden |= {line.strip() for line in region.splitlines() if len(line.strip()) > 20}
    return {line for line in hidden if line not in release}


def _tests_deleted_and_points_changed():
    nb = submission()
    nb.cells = [c for c in nb.cells if not c.metadata["nbgrader"].get("grade")]
    for cell in nb.cells:
        cell.metadata["nbgrader"]["points"] = 99
    return nb


@needs_sandbox
def test_one_odd_submission_never_costs_the_class_its_feedback_or_its_grades(tmp_path):
    """Region markers in an answer (nbgrader's feedback used to raise on them and stop the round),
    odd bytes and a flood of output, a file that is not a notebook: every other student still gets
    feedback, and grades.csv lists everyone who was graded."""
    import csv
    import subprocess

    solution = next(c.source for c in SOURCE.cells if c.metadata["nbgrader"]["grade_id"] == "update")
    marker = submission(update=solution + "\n# BEGIN HIDDEN TESTS (a student searched for this)\n"
                                                "# BEGIN SOLUTION")
    odd = submission(update=solution + "\nprint('\\udcff\\x00\\x1b[31m' * 3)\nprint('x' * 10**6)")
    course = _course(tmp_path, {"alice": submission(), "marker": marker, "odd": odd, "carol": '{"cells": ['})
    run = subprocess.run(["make", "-C", str(ROOT), "autograde", f"COURSE={course}", f"ASSIGNMENT={NAME}",
                          "AUTOGRADE_FLAGS=--workers 2"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 submissions: 3 graded, 0 graded with a timeout, 1 failed" in run.stdout, run.stdout
    with open(course / "grades.csv") as f:
        assert {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)} == {
            "alice": 10.0, "marker": 10.0, "odd": 10.0}
    for student in ("alice", "marker", "odd"):
        html = (course / "feedback" / student / NAME / f"{NAME}.html").read_text()
        assert "Visible tests for part 1" in html, student
    shown = (course / "feedback" / "marker" / NAME / f"{NAME}.html").read_text()
    assert "a student searched for this" in shown  # their own text is shown, not cut as a region


#: when each student of the class below submitted (``timestamp.txt``, as ``nbgrader collect`` writes it)
STAMPS = {"alice": "2026-12-01 09:00:00.000000 UTC", "bob": "2026-12-02 10:30:00.000000 UTC",
          "eve": "2026-12-03 11:45:00.000000 UTC", "mallory": "2026-12-04 12:00:00.000000 UTC"}
#: the class's roster, imported with ``nbgrader db student import`` before grading
ROSTER = "id,first_name,last_name,email\nalice,Alice,Liddell,alice@example.org\nbob,Bob,Builder,\n"


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """``make autograde`` run once on a class with good, blank, broken and foreign submissions, a
    roster and submission times: (course folder, what make printed)."""
    import subprocess

    course = _course(tmp_path_factory.mktemp("class"), {
        "alice": submission(),
        "bob": copy.deepcopy(RELEASE),
        "eve": submission(update="import os\nos._exit(0)"),
        "mallory": _tests_deleted_and_points_changed(),
        "dave": nbformat.read(ROOT / "exercises" / "ch02_too_big_too_small" / "ch02_too_big_too_small.ipynb",
                              as_version=4),
        "carol": '{"cells": [',
    })
    for student, stamp in STAMPS.items():
        (course / "submitted" / student / NAME / "timestamp.txt").write_text(stamp)
    (course / "roster.csv").write_text(ROSTER)
    run_nbgrader(course, "db", "student", "import", "roster.csv")
    run = subprocess.run(["make", "-C", str(ROOT), "autograde", f"COURSE={course}", f"ASSIGNMENT={NAME}",
                          "AUTOGRADE_FLAGS=--workers 2 --cell-timeout 5"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return course, run.stdout


CLASS_SCORES = {"alice": 10.0, "bob": 0.0, "eve": 8.0, "mallory": 10.0}


@pytest.fixture
def graded_copy(graded_class, tmp_path):
    """A copy of the graded class's course folder, for a test that changes it (a hand grade)."""
    import shutil

    course, printed = graded_class
    shutil.copytree(course, tmp_path / "course", symlinks=True)
    return tmp_path / "course", printed


@needs_sandbox
def test_make_autograde_grades_a_class_records_exactly_the_scores_and_writes_feedback_and_csv(graded_class):
    """The instructor's one command, on a class with good, blank, broken and foreign submissions."""
    import csv

    from nbgrader.api import Gradebook

    course, printed = graded_class
    assert "6 submissions: 4 graded, 0 graded with a timeout, 2 failed" in printed, printed
    assert "not a valid notebook" in printed and "another assignment" in printed
    # the summary names each part lost and why
    assert "eve: implement-update (failed: " in printed and "bob: implement-update" in printed, printed
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert {s.student.id: s.score for s in gb.assignment_submissions(NAME)} == CLASS_SCORES
        assert sorted(s.id for s in gb.students) == sorted(CLASS_SCORES)  # nothing else
        assert gb.find_student("alice").last_name == "Liddell"  # the roster's names survive grading
    with open(course / "grades.csv") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert {k: float(v["score"]) for k, v in rows.items()} == CLASS_SCORES
    assert rows["alice"]["last_name"] == "Liddell"
    assert rows["alice"]["timestamp"].startswith("2026-12-01 09:00")
    hidden = _hidden_lines()
    assert len(hidden) > 10
    for student in CLASS_SCORES:
        html = (course / "feedback" / student / NAME / f"{NAME}.html").read_text()
        assert not [line for line in hidden if line in html.replace("&quot;", '"').replace("&#39;", "'")]
        assert "HIDDEN TESTS" not in html
    eve = (course / "feedback" / "eve" / NAME / f"{NAME}.html").read_text()
    assert "0 of 2 points" in eve and "the kernel died while this cell ran" in eve
    assert not (course / "feedback" / "carol").exists() and not (course / "autograded" / "dave").exists()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@needs_sandbox
def test_nbgraders_formgrader_and_commands_read_what_make_autograde_wrote(graded_copy):
    """The gradebook is one nbgrader would have written: the formgrader's API lists every graded
    student as autograded with their score and nothing to hand-grade; the assignment's cells are
    recorded under the course's id, with the submission times; a hand grade and comment survive a
    later round and reach the feedback and the export."""
    import csv

    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import parse_utc

    from lrgrade import CellResult, GradeResult, Outcome, record_grades
    from lrgrade.gradebook import NO_RESPONSE, course_config

    course, _ = graded_copy
    config = course_config(course)
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    assert api.get_autograded_students(NAME) == set(CLASS_SCORES)  # what Manage Submissions lists as graded
    listed = {s["student"]: s for s in api.get_submissions(NAME)}
    for student, score in CLASS_SCORES.items():
        assert listed[student]["autograded"] and listed[student]["score"] == score, listed[student]
        assert not listed[student]["needs_manual_grade"], listed[student]
    recorded = {c.metadata["nbgrader"]["grade_id"] for c in RELEASE.cells}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="learning-rates-hands-on") as gb:
        assert gb.find_assignment(NAME).course_id == "learning-rates-hands-on"
        assert {c.name for c in gb.find_notebook(NAME, NAME).source_cells} == recorded
        for student, stamp in STAMPS.items():
            assert gb.find_submission(NAME, student).timestamp == parse_utc(stamp).replace(tzinfo=None)
        answers = [c.name for c in gb.find_notebook(NAME, NAME).solution_cells]
        assert {gb.find_comment(a, NAME, NAME, "bob").auto_comment for a in answers} == {NO_RESPONSE}
        assert {gb.find_comment(a, NAME, NAME, "alice").auto_comment for a in answers} == {None}
        # a hand grade and a comment, as the formgrader's page saves them
        gb.find_grade("decide-adam_lr", NAME, NAME, "bob").manual_score = 1.0
        gb.find_comment("adam_lr", NAME, NAME, "bob").manual_comment = "Right idea; see part 4's norm."
        gb.db.commit()
    bob = GradeResult(cells=[CellResult(g, 0.0, float(pts), "failed") for g, pts in PARTS.items()])
    assert record_grades(course, NAME, [Outcome("bob", bob)]) == []  # a later round of make autograde
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        kept = gb.find_grade("decide-adam_lr", NAME, NAME, "bob")
        assert kept.manual_score == 1.0 and kept.needs_manual_grade  # kept, and flagged for review
    run_nbgrader(course, "generate_feedback", NAME, "--force", "--student", "bob")
    html = (course / "feedback" / "bob" / NAME / f"{NAME}.html").read_text()
    assert "see part 4" in html and "1.0 / 10.0" in html.replace("(Score: ", "")
    run_nbgrader(course, "export", "--to", "grades.csv")
    with open(course / "grades.csv") as f:
        assert {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}["bob"] == 1.0
    # the formgrader's Generate and Autograde buttons (nbgrader's generate_assignment and autograde
    # --force --student) are pressed in test_the_formgrader_shows_..., below


def _sources_of(folder: Path, only: str | None = None) -> dict[str, list]:
    return {str(p.relative_to(folder)): [(c.cell_type, c.source) for c in nbformat.read(p, 4).cells]
            for p in sorted(folder.rglob("*.ipynb")) if only is None or p.parent.name == only}


def test_plain_nbgrader_on_a_fresh_course_as_the_readme_says_and_its_feedback_hides_hidden_tests(tmp_path):
    """The README's plain commands, on a fresh course, for an answer that passes the visible tests
    and fails a hidden one: they run, the score agrees with lrgrade's, and the feedback quotes no
    hidden line (nbgrader_config.py cuts a failed test's traceback to its message)."""
    in_place = "def update(theta, grad, lr):\n    theta -= lr * grad\n    return theta"
    course = _course(tmp_path, {"frank": submission(update=in_place)})
    for args in (["generate_assignment", NAME, "--force"], ["autograde", NAME, "--create"],
                 ["generate_feedback", NAME], ["export", "--to", "grades.csv"]):
        run_nbgrader(course, *args)
    assert _sources_of(course / "exercises") == _sources_of(ROOT / "exercises", only=NAME)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        plain = {g.name: g.score for g in gb.find_submission_notebook(NAME, NAME, "frank").grades}
    scores, _, _ = grade(submission(update=in_place), isolate=False)
    assert plain == scores and scores["implement-update"] == 0.0, (plain, scores)
    html = (course / "feedback" / "frank" / NAME / f"{NAME}.html").read_text()
    html = html.replace("&quot;", '"').replace("&#39;", "'")
    assert not [line for line in _hidden_lines() if line in html]
    assert "most recent call last" not in html and "HIDDEN TESTS" not in html


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader's own autoflush
def test_a_written_answer_is_left_for_hand_grading_and_a_scored_test_is_not(tmp_path):
    """nbgrader's own rule: a cell no test scores (an "explain" part, markdown graded by hand) keeps no
    auto score and needs a hand grade; a scored test needs none; "No response." on blank answers."""
    from nbgrader.api import Gradebook

    from lrgrade import CellResult, GradeResult, Outcome, record_grades
    from lrgrade.gradebook import NO_RESPONSE

    course = _course(tmp_path, {})
    source = copy.deepcopy(SOURCE)
    explain = nbformat.v4.new_markdown_cell("### BEGIN SOLUTION\nBecause the step is lr times the gradient."
                                            "\n### END SOLUTION")
    explain.metadata["nbgrader"] = {"grade": True, "solution": True, "locked": False, "points": 1,
                                    "grade_id": "explain-why", "schema_version": 3}
    source.cells.append(explain)
    nbformat.write(source, course / "solutions" / NAME / f"{NAME}.ipynb")
    scored = GradeResult(cells=[CellResult(g, float(p), float(p), "passed") for g, p in PARTS.items()])
    blank = copy.deepcopy(RELEASE)
    notes = record_grades(course, NAME, [Outcome("ann", scored, notebook=source),
                                         Outcome("ben", scored, notebook=blank)])
    assert len(notes) == 1 and "make exercises" in notes[0]  # the committed release has no explain part
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        grades = {g.name: g for g in gb.find_submission_notebook(NAME, NAME, "ann").grades}
        assert grades["explain-why"].auto_score is None and grades["explain-why"].needs_manual_grade
        assert not any(grades[g].needs_manual_grade for g in PARTS)
        assert gb.find_comment("update", NAME, NAME, "ben").auto_comment == NO_RESPONSE
        assert gb.find_comment("update", NAME, NAME, "ann").auto_comment is None


def test_what_the_trusted_process_reads_from_a_student_folder_is_a_plain_file_never_a_link(tmp_path):
    """The worker that reads a submission runs with the grader's rights: a link to the solutions or
    to another student's notebook, a FIFO, an oversized file or an answer that is not text is
    refused or graded as blank, never followed, read without end, or allowed to stop the round."""
    import os

    from lrgrade.submission import read_plain_file

    folder = tmp_path / "submitted" / "mallory" / NAME
    folder.mkdir(parents=True)
    mine = folder / f"{NAME}.ipynb"
    mine.symlink_to(ROOT / "solutions" / NAME / f"{NAME}.ipynb")
    with pytest.raises(SubmissionError, match="link"):
        read_submission(mine)
    mine.unlink()
    os.mkfifo(mine)  # would block a plain open() for ever
    with pytest.raises(SubmissionError, match="not a plain file"):
        read_submission(mine)
    mine.unlink()
    mine.write_bytes(b"x" * 101)
    with pytest.raises(SubmissionError, match="limit"):
        read_plain_file(mine, 100)
    (tmp_path / "submitted" / "eve").mkdir()
    (tmp_path / "submitted" / "eve" / NAME).symlink_to(folder)  # a folder that is a link
    with pytest.raises(SubmissionError, match="link"):
        read_submission(tmp_path / "submitted" / "eve" / NAME / f"{NAME}.ipynb")
    nb = submission()
    for cell in nb.cells:
        if cell.metadata["nbgrader"]["grade_id"] == "update":
            cell.source = 0  # nbformat only logs a schema error for this
    assembled, notes = assemble(SOURCE, nb, RELEASE)
    assert any("'update' is not text" in n for n in notes), notes
    assert all(isinstance(c.source, str) for c in assembled.cells)


@pytest.mark.parametrize("text,when", [
    ("2026-12-01 09:00:00.000000 UTC", "2026-12-01 09:00:00"),  # as nbgrader collect writes it
    ("2026-12-01 09:00:00", "2026-12-01 09:00:00"),  # no zone: UTC
    ("2026-12-01 09:00:00 /etc/shadow", None),  # a zone name dateutil would open as a file
    ("2026-12-01 09:00:00 ../../../etc/passwd", None),
    ("0001-01-01 00:00:00 UTC", None),  # out of range for a class
    ("yesterday", None),
    ("2026-12-01 09:00:00 UTC" + " " * 200, None),  # longer than a time
])
def test_a_timestamp_is_read_only_when_it_is_a_plain_time(tmp_path, text, when):
    from datetime import datetime

    from lrgrade.gradebook import submitted_timestamp

    folder = tmp_path / "submitted" / "zoe" / NAME
    folder.mkdir(parents=True)
    (folder / "timestamp.txt").write_text(text)
    got = submitted_timestamp(tmp_path, NAME, "zoe")
    assert got == (datetime.fromisoformat(when) if when else None), got
    (folder / "timestamp.txt").unlink()
    (folder / "timestamp.txt").symlink_to(tmp_path / "elsewhere.txt")
    (tmp_path / "elsewhere.txt").write_text("2026-12-01 09:00:00.000000 UTC")
    assert submitted_timestamp(tmp_path, NAME, "zoe") is None  # never through a link


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader's own autoflush
def test_a_release_that_is_not_what_the_source_generates_is_named_and_left_as_it_is(tmp_path):
    from lrgrade.gradebook import release_into_gradebook

    course = _course(tmp_path, {})
    assert release_into_gradebook(course, NAME, course / "gradebook.db") == []
    stale = copy.deepcopy(RELEASE)
    stale.cells[0].source += "\nAn old sentence."
    nbformat.write(stale, course / "exercises" / NAME / f"{NAME}.ipynb")
    notes = release_into_gradebook(course, NAME, course / "gradebook.db")
    assert len(notes) == 1 and "run `make exercises`" in notes[0], notes
    assert "An old sentence." in (course / "exercises" / NAME / f"{NAME}.ipynb").read_text()  # untouched
    # a source whose cells changed after students were graded: nbgrader refuses, and so do we, saying why
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="learning-rates-hands-on") as gb:
        gb.add_student("zoe")
        gb.add_submission(NAME, "zoe")
    changed = copy.deepcopy(SOURCE)
    changed.cells = [c for c in changed.cells if c.metadata["nbgrader"]["grade_id"] != "decide-adam_lr"]
    nbformat.write(changed, course / "solutions" / NAME / f"{NAME}.ipynb")
    with pytest.raises(RuntimeError, match="move gradebook.db aside"):
        release_into_gradebook(course, NAME, course / "gradebook.db")


@needs_sandbox
def test_a_kernel_that_cannot_start_stops_the_round_before_any_grading(tmp_path, monkeypatch):
    import lrgrade.sandbox
    from lrgrade.classroom import autograde
    from lrgrade.sandbox import SandboxResult

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    course = _course(home, {"alice": submission()})
    failed = SandboxResult(1, b"", b"ModuleNotFoundError: No module named 'ipykernel'", False, (False, False))
    monkeypatch.setattr(lrgrade.sandbox, "run_sandboxed", lambda *args, **kwargs: failed)
    with pytest.raises(RuntimeError, match="cannot start the kernel's Python.*No module named 'ipykernel'"
                                           r".*other users cannot read: none\. Fix: "):
        autograde(course, NAME, progress=False)
    assert not (course / "gradebook.db").exists() and not (course / "autograded").exists()


@needs_sandbox
def test_a_course_inside_a_closed_folder_with_its_venv_behind_a_symlink_is_graded(tmp_path):
    """An instructor's clone under a 0700 home: the course, and the venv the grader runs from (a
    symlink to the real one), sit below a folder the sandbox user cannot enter. The kernel still
    gets its interpreter, lrlib and its working folder; the instructor's folders stay closed."""
    import subprocess
    import sys
    from pathlib import Path

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    course = _course(home, {"alice": submission(), "bob": copy.deepcopy(RELEASE)})
    venv = home / "venv"
    venv.symlink_to(Path(sys.prefix).resolve(), target_is_directory=True)
    run = subprocess.run(["make", "-C", str(ROOT), "autograde", f"COURSE={course}", f"ASSIGNMENT={NAME}",
                          f"VENV={venv}", "AUTOGRADE_FLAGS=--workers 2"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 submissions: 2 graded" in run.stdout, run.stdout
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert {s.student.id: s.score for s in gb.assignment_submissions(NAME)} == {"alice": 10.0, "bob": 0.0}
    assert (home.stat().st_mode & 0o777) == 0o700  # nothing was opened to make it work


@needs_sandbox
def test_a_class_is_graded_on_a_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    from lrgrade.classroom import autograde

    eve = submission(update="import os\nos._exit(0)")
    course = _course(tmp_path, {"alice": submission(), "eve": eve})
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as dk:
        summary = autograde(course, NAME, executor=dk.get_executor(), cell_timeout=5, progress=False)
    assert dict(zip(summary.student, summary.score)) == {"alice": 10.0, "eve": 8.0}


def test_feedback_notebook_strips_hidden_tests_and_says_why_points_were_lost():
    from lrgrade.notebook import CellResult, GradeResult, feedback_notebook, strip_hidden_tests

    assert strip_hidden_tests("a\n### BEGIN HIDDEN TESTS\nb\n### END HIDDEN TESTS\nc") == "a\nc"
    assert strip_hidden_tests("a\n# BEGIN HIDDEN TESTS\nsecret") == "a"  # unclosed: cut to the end
    nb, _ = assemble(SOURCE, submission(), RELEASE)
    tests = [i for i, c in enumerate(nb.cells) if c.metadata["nbgrader"].get("grade")]
    result = GradeResult(cells=[CellResult(nb.cells[i].metadata["nbgrader"]["grade_id"], 0.0, 2.0, "timeout")
                                for i in tests], outputs={tests[0]: "AssertionError: wrong\n"})
    out = feedback_notebook(nb, result)
    assert all("HIDDEN" not in c.source for c in out.cells)
    first = out.cells[tests[0]].outputs[0].text
    assert first.startswith("AssertionError: wrong") and "0 of 2 points" in first and "time limit" in first
    assert nb.cells[tests[0]].outputs == []  # the input is not changed


# --- what the sandbox adds: the same exploits with and without isolation ---------------------------------

@pytest.fixture
def exposed_course():
    """A course folder others could read (and a gradebook anyone could write), as careless ones are."""
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="course-"))
    (root / "solutions" / NAME).mkdir(parents=True)
    nbformat.write(SOURCE, root / "solutions" / NAME / f"{NAME}.ipynb")
    (root / "gradebook.db").write_text("grades")
    (root / "Makefile").write_text("all:\n")
    other = OTHER_KERNEL  # another student's kernel, as the host has it (root-only, like the real ones)
    other.mkdir(mode=0o700, exist_ok=True)
    (other / "connection.json").write_text('{"key": "secret"}')
    for path in [root, root / "solutions", root / "solutions" / NAME]:
        path.chmod(0o755)
    (root / "solutions" / NAME / f"{NAME}.ipynb").chmod(0o644)
    (root / "gradebook.db").chmod(0o666)
    yield root
    shutil.rmtree(root)
    shutil.rmtree(other)


OTHER_KERNEL = Path(tempfile.gettempdir()) / "lrgrade-sandbox-another-student"


def _gated(check):
    """The correct update, but only when ``check`` (code that may raise OSError) succeeds."""
    solution = next(c.source for c in SOURCE.cells if c.metadata["nbgrader"]["grade_id"] == "update")
    return (solution + "\n_real = update\n\ndef update(theta, grad, lr):\n    try:\n"
            + "".join(f"        {line}\n" for line in check.splitlines())
            + "        return _real(theta, grad, lr)\n    except Exception:\n        return -1\n")


def _exploits(course, port):
    return {
        "read another kernel's key": _gated(f"assert 'key' in open('{OTHER_KERNEL}/connection.json').read()"),
        "write a host file": _gated(f"open('{course}/Makefile', 'a').write('pwned')\n"
                                    f"assert 'pwned' in open('{course}/Makefile').read()"),
        "network": _gated(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)"),
        "read the hidden tests": _gated(f"source = '{course}/solutions/{NAME}/{NAME}.ipynb'\n"
                                        "assert 'HIDDEN' in open(source).read()"),
        "write the gradebook": _gated(f"open('{course}/gradebook.db', 'w').write('hacked')\n"
                                      f"assert open('{course}/gradebook.db').read() == 'hacked'"),
    }


@needs_sandbox
@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "unsafe"])
def test_network_source_and_gradebook_are_out_of_reach_only_with_isolation(exposed_course, isolate):
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: [server.accept() for _ in range(10)], daemon=True).start()
    for name, answer in _exploits(exposed_course, server.getsockname()[1]).items():
        assembled, _ = assemble(SOURCE, submission(update=answer), RELEASE)
        result = grade_notebook(assembled, cell_timeout=20, uid=61200, isolate=isolate)
        scores = {c.grade_id: c.points for c in result.cells}
        # isolated, the exploit fails and costs its own part; unsafe, it works: the sandbox is the defence
        expected = {**PARTS, "implement-update": 0.0} if isolate else PARTS
        assert scores == expected, (name, result)
    server.close()
    assert ((exposed_course / "gradebook.db").read_text() == "grades") == isolate
    assert ("pwned" not in (exposed_course / "Makefile").read_text()) == isolate


SOLUTION_UPDATE = next(c.source for c in SOURCE.cells if c.metadata["nbgrader"]["grade_id"] == "update")


@needs_sandbox
def test_links_left_for_a_restart_reach_nothing_of_the_host(tmp_path):
    """The old grader chowned the working folder's contents, links followed, at every kernel start: a
    link to a course file, then os._exit, handed that file to the student. Now each start gets a fresh
    folder and nothing is chowned or followed; the link's target does not even exist in there."""
    target = tmp_path / "Makefile"
    target.write_text("all:\n")
    plant = (f"import os\nos.symlink({str(target)!r}, 'notes.txt')\n"
             f"os.symlink({str(tmp_path)!r}, 'course')\nos._exit(0)")
    use = ("def relative_update(before, after):\n    try:\n        open('notes.txt', 'a').write('pwned')\n"
           "    except OSError:\n        pass\n    return 0.0")
    scores, result, _ = grade(submission(update=plant, relative_update=use), cell_timeout=10)
    assert scores["implement-update"] == 0 and scores["predict-first_step"] == 2, result
    assert target.read_text() == "all:\n" and target.stat().st_uid == 0 and tmp_path.stat().st_uid == 0


#: Attacks on the verdict itself, after a wrong ADAM_LR in part 5 (which has no own-work line, so only
#: the judge stands between them and the points). Each scored 8 or 10 of 10 before the judge existed.
VERDICT_ATTACKS = {
    "code swap": ("import lrlib.exercise as ex\n"
                  "ex.expect.__code__ = (lambda condition, hint: None).__code__\n"
                  "ex.expect_close.__code__ = (lambda *a, **k: None).__code__"),
    "lying values": (
        "import sys, numpy as np\nclass Liar(float):\n"
        "    __eq__ = __lt__ = __le__ = __gt__ = __ge__ = lambda self, other: True\n"
        "    __ne__ = lambda self, other: False\n"
        "    __abs__ = __truediv__ = __rtruediv__ = __sub__ = __rsub__ = lambda self, *a: Liar(0.0)\n"
        "    def __array__(self, *a, **k):  # what the comparison expects, read from its own frame\n"
        "        frame = sys._getframe(1)\n"
        "        return np.asarray(frame.f_locals.get('expected', 1e-3))\n"
        "ADAM_LR = Liar(3e-4)"),
    "guard entry and key": (
        "import sys, json\nfor name in [n for n in vars(sys) if n.startswith('_') and len(n) == 25]:\n"
        "    setattr(sys, name, lambda nonce, code: json.dumps(\n"
        "        {'status': 'ok', 'output': '', 'tampered': [], 'proof': 'forged'}))"),
    "patched oracle class": ("import torch\ntorch.optim.Adam.step = lambda self, closure=None: None\n"
                             "torch.Tensor.norm = lambda self, *a, **k: torch.tensor(1.0)"),
    "rigged arguments": (  # the test's own net, left rigged so that its oracle agrees with the answer
        "ADAM_LR = 0.05\n_measure = measure_first_step\n"
        "def measure_first_step(model, x, y, lr):\n    if lr != ADAM_LR:\n"
        "        return _measure(model, x, y, lr)\n    with torch.no_grad():\n"
        "        for p in model.parameters():\n            p.zero_()\n"
        "        list(model.parameters())[-1][0] = lr * 10**0.5 / 1e-3\n    return 1e-3"),
}
REWRITE_LATER_ANSWER = (  # part 1's cell makes part 2's innocent text run code handed to lrlib
    "from IPython.core.interactiveshell import InteractiveShell\n_real = InteractiveShell.transform_cell\n"
    "def _swap(self, cell):\n"
    "    return _real(self, cell.replace('# mine', 'from lrlib.update import global_norm\\n'\n"
    "        'relative_update = lambda b, a: global_norm([x - y for x, y in zip(a, b)]) / global_norm(b)'))\n"
    "InteractiveShell.transform_cell = _swap\n")


@needs_sandbox
def test_attacks_on_the_verdict_score_nothing_on_the_parts_they_attack(tmp_path):
    """Graded end to end, as one class: code swapped behind watched objects, values that lie, a forged
    guard, a patched oracle class, and a later answer rewritten as it runs. Each loses the parts it
    attacks and nothing else; the correct student beside them scores 10."""
    from lrgrade.classroom import autograde

    students = {name.replace(" ", "_"): submission(adam_lr="ADAM_LR = 3e-4\n" + code)
                for name, code in VERDICT_ATTACKS.items()}
    students["rewrite"] = submission(update=SOLUTION_UPDATE + "\n" + REWRITE_LATER_ANSWER,
                                     relative_update="# mine\nrelative_update = None")
    course = _course(tmp_path, {"alice": submission(), **students})
    summary = autograde(course, NAME, workers=2, cell_timeout=20, progress=False,
                        feedback=False).set_index("student")
    assert summary.loc["alice", "score"] == 10.0, summary.loc["alice", "notes"]
    for name in VERDICT_ATTACKS:
        row = summary.loc[name.replace(" ", "_")]
        assert row.score == 8.0, (name, row.notes)  # part 5 only
    rewrite = summary.loc["rewrite"].notes  # parts 1 and 2 (and the own-work parts after them) score 0
    assert "implement-update: scored 0, the answer reaches code by name" in rewrite, rewrite
    assert "implement-relative_update: scored 0, the answer reaches code by name" in rewrite, rewrite


BUSY_DECOYS = SOLUTION_UPDATE + """
import os
def _chain(depth):  # busy processes, each behind a decoy parent
    if os.fork() == 0:
        if depth:
            _chain(depth - 1)
        while True:
            pass
for _ in range(3):
    _chain(4)
"""


@needs_sandbox
@pytest.mark.exclusive
def test_a_correct_submission_scores_full_marks_beside_a_cpu_hog_and_a_hostile_neighbour(tmp_path):
    """Both cores busy outside the grader, and a neighbour whose answer leaves chains of busy processes:
    the correct student still gets 10, and nothing of the neighbour outlives the grading."""
    import subprocess
    import sys
    from pathlib import Path

    from lrgrade.classroom import autograde

    from .conftest import wait_for_background_build

    wait_for_background_build()  # two hogs, as the docstring says: not two hogs and the book's build

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        course = _course(tmp_path, {"alice": submission(), "mallory": submission(update=BUSY_DECOYS)})
        summary = autograde(course, NAME, workers=2, progress=False, feedback=False).set_index("student")
    finally:
        for hog in hogs:
            hog.kill()
    assert summary.loc["alice", "score"] == 10.0, summary.loc["alice", "notes"]
    assert list(Path("/sys/fs/cgroup/pids").rglob("lrgrade-62*")) == []  # the students' (judges' are 60xxx)
    # nothing left running as the two students (uids 62000, 62001); other kernels (the book's) may run
    assert subprocess.run(["pgrep", "-u", "62000,62001"], capture_output=True).stdout == b""


def _slow_judge_notebook(path, slow_runs):
    """An instructor cell that sleeps on the given runs (counted across kernels in a file): the first
    run is the notebook's kernel, the second the judge's, the third the judge's retry."""
    def cell(source, **meta):
        out = nbformat.v4.new_code_cell(source)
        out.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": True, **meta}
        return out

    count = (f"import os, time\nfile = {str(path)!r}\n"
             "n = int(open(file).read()) if os.path.exists(file) else 0\n"
             f"open(file, 'w').write(str(n + 1))\nif n in {slow_runs!r}:\n    time.sleep(8)")
    return nbformat.v4.new_notebook(cells=[
        cell(count, grade_id="setup"), cell("x = 2", solution=True, locked=False, grade_id="x"),
        cell("assert x == 2", grade=True, points=1, grade_id="test-x")])


def test_an_instructor_cell_that_times_out_is_retried_and_never_charged_to_the_student(tmp_path):
    once = grade_notebook(_slow_judge_notebook(tmp_path / "once", [1]), cell_timeout=5, judge_timeout=3,
                          isolate=False)
    assert once.score == 1 and not once.not_graded, once  # the retry, with twice the time, went through
    always = grade_notebook(_slow_judge_notebook(tmp_path / "always", [1, 2]), cell_timeout=5,
                            judge_timeout=3, isolate=False)
    assert always.not_graded.startswith("the instructor cell 'setup' timed out in the judge twice"), always
    assert [c.status for c in always.cells] == ["not graded"]


@needs_sandbox
@pytest.mark.parametrize("answer,lost", [
    ("hog = bytearray(16 * 2**30)", "implement-update"),  # a memory bomb: MemoryError, that part only
    ("import sys\nfor _ in range(200):\n    sys.stdout.write('x' * 2**19)", None),  # 100 MB of output
    ("import os, time\nfor _ in range(2000):\n    try:\n        pid = os.fork()\n    except OSError:\n"
     "        break\n    if pid == 0:\n        time.sleep(60)\n        os._exit(0)", "maybe"),  # a fork bomb
], ids=["memory bomb", "100 MB of output", "fork bomb"])
def test_resource_bombs_are_contained(answer, lost):
    import subprocess
    import time

    solution = next(c.source for c in SOURCE.cells if c.metadata["nbgrader"]["grade_id"] == "update")
    code = answer if lost == "implement-update" else solution + "\n" + answer
    scores, result, _ = grade(submission(update=code), cell_timeout=10)
    assert all(cell.status != "not run" for cell in result.cells), result
    others = {k: v for k, v in PARTS.items() if k != "implement-update"}
    assert {k: scores[k] for k in others} == others, result  # the other parts are graded normally
    if lost == "implement-update":
        assert scores["implement-update"] == 0.0
    elif lost is None:
        assert scores["implement-update"] == PARTS["implement-update"]
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-u", "61100"], capture_output=True, text=True).stdout.split()
    assert left == [], "the sandbox's processes outlived the grading"


def test_without_isolation_grading_refuses_unless_unsafe_mode_is_asked_for(tmp_path, monkeypatch, capsys):
    import lrgrade.sandbox
    from lrgrade.classroom import autograde

    monkeypatch.setattr(lrgrade.sandbox, "isolation_available", lambda: (False, "needs root (pretend)"))
    course = _course(tmp_path, {"alice": submission()})
    with pytest.raises(RuntimeError, match=r"refusing to grade .* without isolation: needs root \(pretend\)"):
        autograde(course, NAME, workers=1)
    assert not (course / "gradebook.db").exists()
    with pytest.warns(UserWarning, match="WITHOUT isolation"):
        summary = autograde(course, NAME, workers=1, allow_unsafe=True, cell_timeout=20)
    assert summary.score.tolist() == [10.0]
    assert "graded=1" in capsys.readouterr().err  # the progress bar's live counts
    with pytest.raises(ValueError, match="assignment: no source notebook"):
        autograde(course, "ch99_nothing", allow_unsafe=True)


ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_every_assignment_grades_its_solution_full_and_its_release_zero(name):
    """The one run of each solution per test session: graded as `make autograde` grades it (in the
    sandbox where this machine allows one), every cell clean, every test passed, on the CPU."""
    source = nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", as_version=4)
    release = nbformat.read(ROOT / "exercises" / name / f"{name}.ipynb", as_version=4)
    solved, _ = assemble(source, source, release)
    result = grade_notebook(solved, cell_timeout=120, uid=61300, isolate=AVAILABLE)
    assert result.score == result.max_score >= 10, result
    assert result.notes == [], result.notes  # no cell raised, hung or killed the kernel
    assert "Running on device: cpu" in "".join(result.outputs.values())
    blank, _ = assemble(source, release, release)
    graded = grade_notebook(blank, cell_timeout=120, uid=61300, isolate=AVAILABLE)
    assert graded.score == 0, graded


# --- nbgrader's formgrader, driven in Chromium on the class make autograde graded ------------------------

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium (make test installs it)")
#: hang guard for the server's start and each wait on the page (several times what they take)
WAIT_S = 120


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def formgrader(course: Path):
    """Jupyter's server with nbgrader's extensions, run from ``course`` as an instructor runs it;
    yields (base URL, token)."""
    import os
    import secrets
    import subprocess
    import sys
    import urllib.request

    course = course.resolve()  # nbgrader wants the course inside the server's root, symlinks resolved
    port, token = _free_port(), secrets.token_hex(16)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "JUPYTER_NO_CONFIG": ""}
    server = subprocess.Popen(
        [str(bin_dir / "jupyter"), "server", f"--port={port}", "--ip=127.0.0.1", "--no-browser",
         "--allow-root", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={course}"],
        cwd=course, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("jupyter server with the formgrader did not start") from None
                time.sleep(0.5)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _rows(page) -> dict[str, tuple[str, str]]:
    """Manage Submissions' table: student id -> (status, score) as shown."""
    page.wait_for_selector("td.student-id", timeout=WAIT_S * 1000)
    return {r[0]: (r[1], r[2]) for r in page.eval_on_selector_all(
        "tbody tr", "rows => rows.map(r => [r.querySelector('.student-id').innerText.trim(), "
        "r.querySelector('.status').innerText.trim(), r.querySelector('.score').innerText.trim()])")}


def _wait_for(condition, what: str):
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"the formgrader never {what}"
        time.sleep(0.5)


@needs_sandbox
@needs_chromium
def test_the_formgrader_shows_the_grades_takes_a_hand_grade_and_its_buttons_delete_nothing(graded_copy):
    import csv

    from nbgrader.api import Gradebook

    course, _ = graded_copy
    db = f"sqlite:///{course / 'gradebook.db'}"
    release, autograded = _files(course / "exercises"), _files(course / "autograded")
    with Gradebook(db) as gb:
        eve_id = gb.find_submission_notebook(NAME, NAME, "eve").id
    with formgrader(course) as (base, token), browser() as page:
        page.set_extra_http_headers({"Authorization": f"token {token}"})  # the page's own API calls too
        page.goto(f"{base}/formgrader/manage_submissions/{NAME}?token={token}")
        shown = _rows(page)
        for student, score in CLASS_SCORES.items():  # graded, with the grader's score, nothing to hand-grade
            assert shown[student][0] == "graded", shown
            assert float(shown[student][1].split("/")[0]) == score, shown
        # a hand grade and a comment, typed into the grading page as an instructor does
        page.goto(f"{base}/formgrader/submissions/{eve_id}/?index=0&token={token}")
        page.wait_for_load_state("networkidle", timeout=WAIT_S * 1000)  # its grades loaded and bound
        with page.expect_response(lambda r: "/formgrader/api/grade/" in r.url and r.request.method == "PUT",
                                  timeout=WAIT_S * 1000):
            page.fill("input.score#implement-update", "1")
            page.press("input.score#implement-update", "Tab")
        with page.expect_response(lambda r: "/formgrader/api/comment/" in r.url
                                  and r.request.method == "PUT", timeout=WAIT_S * 1000):
            page.fill("textarea#update-comment", "Your kernel died: os._exit ends the notebook.")
            page.press("textarea#update-comment", "Tab")

        def saved():
            with Gradebook(db) as gb:
                return (gb.find_grade("implement-update", NAME, NAME, "eve").manual_score == 1.0
                        and gb.find_comment("update", NAME, NAME, "eve").manual_comment is not None)
        _wait_for(saved, "saved the hand grade")
        # Generate (the release) and Autograde (one student, unsandboxed): nothing deleted
        page.goto(f"{base}/formgrader/manage_assignments?token={token}")
        page.wait_for_selector("td.assign a", timeout=WAIT_S * 1000)
        with page.expect_response(lambda r: r.url.endswith("/assign"), timeout=WAIT_S * 1000) as answer:
            page.click("td.assign a")
        assert answer.value.json()["success"], answer.value.json()
        page.goto(f"{base}/formgrader/manage_submissions/{NAME}?token={token}")
        _rows(page)
        row = page.locator("tbody tr", has=page.locator("td.student-id", has_text="mallory"))
        with page.expect_response(lambda r: r.url.endswith("/autograde"), timeout=WAIT_S * 1000) as answer:
            row.locator("td.autograde a").click()
        assert answer.value.json()["success"], answer.value.json()
        page.goto(f"{base}/formgrader/manage_submissions/{NAME}?token={token}")
        after = _rows(page)
        assert after["mallory"] == shown["mallory"]  # nbgrader's own run agrees with the grader
        assert after["eve"][1].startswith("9")  # 8 + the hand-given point
    assert _sources_of(course / "exercises") == _sources_of(ROOT / "exercises", only=NAME)
    assert set(_files(course / "exercises")) == set(release)
    assert set(_files(course / "autograded")) == set(autograded)  # mallory's graded again, none removed
    run_nbgrader(course, "generate_feedback", NAME, "--force", "--student", "eve")
    html = (course / "feedback" / "eve" / NAME / f"{NAME}.html").read_text()
    assert "os._exit ends the notebook" in html
    run_nbgrader(course, "export", "--to", "grades.csv")
    with open(course / "grades.csv") as f:
        assert {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}["eve"] == 9.0
