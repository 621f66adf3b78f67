"""lrlib.autograde: a submission is rebuilt from the source, run in the sandbox and scored outside it."""

import copy

import nbformat
import pytest

from lrlib.autograde import SubmissionError, assemble, grade_notebook, read_submission
from lrlib.sandbox import isolation_available

from .conftest import ROOT

AVAILABLE, WHY = isolation_available()
needs_sandbox = pytest.mark.skipif(not AVAILABLE, reason=f"no isolation here: {WHY}")
NAME = "ch01_update_rule"
SOURCE = nbformat.read(ROOT / "solutions" / NAME / f"{NAME}.ipynb", as_version=4)
RELEASE = nbformat.read(ROOT / "exercises" / NAME / f"{NAME}.ipynb", as_version=4)
PARTS = {"test-update": 2, "test-run_descent": 3, "test-layer_params": 3, "test-relative_update": 2}


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


def test_assemble_takes_only_answers_from_the_student():
    nb = submission()
    for cell in nb.cells:
        meta = cell.metadata["nbgrader"]
        if meta.get("grade"):
            cell.source = "pass"
            meta["points"] = 100
    nb.cells = [c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] != "test-layer_params"]
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


@needs_sandbox
def test_the_solution_scores_full_marks_and_the_release_zero():
    scores, result, _ = grade(submission())
    assert scores == PARTS and result.score == result.max_score == 10
    scores, _, notes = grade(copy.deepcopy(RELEASE))
    assert scores == dict.fromkeys(PARTS, 0.0)


@needs_sandbox
def test_edited_tests_and_points_are_ignored():
    nb = submission(layer_params="def layer_params(d_model, d_ff):\n    return 0")  # wrong
    for cell in nb.cells:
        if cell.metadata["nbgrader"].get("grade"):
            cell.source, cell.metadata["nbgrader"]["points"] = "pass", 100
    scores, _, _ = grade(nb)
    assert scores == {**PARTS, "test-layer_params": 0.0}


@needs_sandbox
@pytest.mark.parametrize("answer", [
    "def layer_params(d_model, d_ff):\n    while True:\n        pass",  # hangs when the test calls it
    "while True:\n    pass",  # hangs where it is defined
    "import os\nos._exit(0)",  # kills the kernel
    "import sys\nsys.exit()",
], ids=["loop in the function", "loop at definition", "os._exit", "sys.exit"])
def test_a_broken_answer_costs_only_its_part(answer):
    scores, result, _ = grade(submission(layer_params=answer), cell_timeout=5)
    assert scores == {**PARTS, "test-layer_params": 0.0}, result
    assert result.seconds < 90


@needs_sandbox
@pytest.mark.parametrize("tamper", [
    "expect = expect_close = lambda *args, **kwargs: None",  # the assertion helpers
    "import builtins\nbuiltins.abs = lambda x: 0.0\nbuiltins.isinstance = lambda *a: True",  # builtins
    "import sys\nsys.excepthook = lambda *a: None\nsys.settrace(lambda *a: None)",  # interpreter hooks
    "get_ipython().showtraceback = lambda *a, **k: None",  # how errors are shown
    "ip = get_ipython()\nip.run_cell = lambda *a, **k: ip.run_cell.__self__",  # a hijacked kernel
], ids=["helpers", "builtins", "hooks", "traceback display", "hijacked run_cell"])
def test_tampering_with_the_machinery_does_not_pass_wrong_answers(tamper):
    wrong = "def layer_params(d_model, d_ff):\n    return 0\n" + tamper
    scores, result, _ = grade(submission(layer_params=wrong), cell_timeout=5)
    assert scores == {**PARTS, "test-layer_params": 0.0}, result  # only the tampering part is lost


FAKE_SUCCESS = """
from IPython.core.interactiveshell import ExecutionInfo, ExecutionResult

def skip(raw_cell, *args, **kwargs):  # report success without running anything
    return ExecutionResult(ExecutionInfo(raw_cell, False, False, False, None))

get_ipython().run_cell = skip
"""


@needs_sandbox
def test_a_kernel_hijacked_to_report_success_passes_nothing_it_did_not_run():
    wrong = "def layer_params(d_model, d_ff):\n    return 0\n" + FAKE_SUCCESS
    scores, result, _ = grade(submission(layer_params=wrong), cell_timeout=5)
    assert scores == {**PARTS, "test-layer_params": 0.0, "test-relative_update": 0.0}, result
    assert {c.status for c in result.cells if c.points == 0} == {"failed (did not run to its end)"}


@needs_sandbox
def test_a_class_is_graded_in_parallel_and_only_the_expected_scores_are_recorded(tmp_path):
    import shutil

    from nbgrader.api import Gradebook

    from lrlib.autograde import autograde

    course = tmp_path / "course"
    for folder in ("solutions", "exercises"):
        shutil.copytree(ROOT / folder / NAME, course / folder / NAME)
    submissions = {
        "alice": submission(),
        "bob": copy.deepcopy(RELEASE),
        "eve": submission(layer_params="import os\nos._exit(0)"),
        "dave": nbformat.read(ROOT / "exercises" / "ch02_too_big_too_small" / "ch02_too_big_too_small.ipynb",
                              as_version=4),
    }
    for student, nb in submissions.items():
        (course / "submitted" / student / NAME).mkdir(parents=True)
        nbformat.write(nb, course / "submitted" / student / NAME / f"{NAME}.ipynb")
    (course / "submitted" / "carol" / NAME).mkdir(parents=True)
    (course / "submitted" / "carol" / NAME / f"{NAME}.ipynb").write_text('{"cells": [')
    summary = autograde(course, NAME, workers=2, cell_timeout=5, progress=False).set_index("student")
    assert summary.loc[["alice", "bob", "eve"], "score"].tolist() == [10.0, 0.0, 7.0]
    assert summary.loc[["carol", "dave"], "status"].tolist() == ["error", "error"]
    assert "not a valid notebook" in summary.loc["carol", "notes"]
    assert "another assignment" in summary.loc["dave", "notes"]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        recorded = {s.student.id: s.score for s in gb.assignment_submissions(NAME)}
        assert recorded == {"alice": 10.0, "bob": 0.0, "eve": 7.0}  # and nothing else
        assert sorted(s.id for s in gb.students) == ["alice", "bob", "eve"]
