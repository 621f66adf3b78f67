"""Every assignment in solutions/: well-formed, released in sync, graded end to end by plain nbgrader.

A new assignment is covered by adding solutions/<name>/<name>.ipynb. Each solution runs
once per test session, graded as `make autograde` grades it
(tests/test_autograde.py::test_every_assignment_grades_its_solution_full_and_its_release_zero);
how long it takes is measured by ``make bench``, never asserted.
"""

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from .conftest import ROOT, assignments, error_outputs, run_nbgrader, run_notebook, solution_notebook

ASSIGNMENTS = assignments()


def grade_cells(nb):
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]


def test_there_are_assignments():
    assert ASSIGNMENTS, "solutions/ holds no assignment"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_is_a_well_formed_nbgrader_source(assignment):
    nb = nbformat.read(solution_notebook(assignment), as_version=4)
    nbformat.validate(nb)
    meta = [c.metadata.get("nbgrader") for c in nb.cells]
    assert all(m and m["schema_version"] == 3 for m in meta), "every cell carries nbgrader schema v3"
    ids = [m["grade_id"] for m in meta]
    assert len(ids) == len(set(ids)), "grade ids must be unique"
    tests = grade_cells(nb)
    answers = [c for c in nb.cells if c.metadata["nbgrader"]["solution"]]
    assert len(tests) >= 3 and len(answers) >= 3, "at least three graded parts"
    assert sum(c.metadata["nbgrader"]["points"] for c in tests) >= 10
    assert all(c.metadata["nbgrader"]["locked"] for c in tests)
    assert all("### BEGIN SOLUTION" in c.source for c in answers)
    assert all("### BEGIN HIDDEN TESTS" in c.source for c in tests), "each test cell has hidden tests"
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in nb.cells if c.cell_type == "code"), "solutions are committed without outputs"


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_passes_all_its_tests_on_cuda(assignment, tmp_path):
    """On a GPU (skipped without one; on the CPU the graded run in test_autograde is the test)."""
    nb = nbformat.read(solution_notebook(assignment), as_version=4)
    out, _ = run_notebook(nb, tmp_path / f"{assignment}.ipynb", device="cuda",
                          cwd=solution_notebook(assignment).parent)
    assert not error_outputs(out), error_outputs(out)
    assert all(c.get("execution_count") for c in out.cells if c.cell_type == "code")
    assert "Running on device: cuda" in "".join(
        o.get("text", "") for c in out.cells for o in c.get("outputs", []))


def _course(tmp_path: Path) -> Path:
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions", course / "solutions")
    return course


@pytest.mark.slow
def test_exercises_are_in_sync_with_solutions(tmp_path):
    """exercises/ is exactly what `make exercises` generates from solutions/ now."""
    course = _course(tmp_path)
    for assignment in ASSIGNMENTS:
        run_nbgrader(course, "generate_assignment", assignment, "--force", "--no-db", "--log-level=WARN")
    fresh = sorted(p.relative_to(course / "exercises") for p in (course / "exercises").rglob("*.ipynb"))
    committed = sorted(p.relative_to(ROOT / "exercises") for p in (ROOT / "exercises").rglob("*.ipynb"))
    assert fresh == committed, "exercises/ holds different files: run `make exercises`"
    for rel in fresh:
        new = json.loads((course / "exercises" / rel).read_text())
        old = json.loads((ROOT / "exercises" / rel).read_text())
        assert new == old, f"exercises/{rel} is out of date: run `make exercises` and commit it"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_hides_solutions_and_hidden_tests(assignment):
    path = ROOT / "exercises" / assignment / f"{assignment}.ipynb"
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert answers and all("raise NotImplementedError()" in c.source for c in answers)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def _fill_in(release: nbformat.NotebookNode, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What a perfect student hands in: the release with each answer cell replaced by the solution."""
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    done = nbformat.from_dict(json.loads(json.dumps(release)))
    for cell in done.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return done


@pytest.mark.slow
def test_plain_nbgrader_autograde_grades_the_blank_release_zero_and_the_solution_full(tmp_path):
    """The instructor's plain nbgrader commands work on the course as committed: generate, collect,
    autograde, on the first assignment (the cheapest, which the grader's own tests run anyway).
    Every assignment's solution full and release zero come from their one graded run in
    test_autograde, through the same nbgrader metadata."""
    from nbgrader.api import Gradebook

    course = _course(tmp_path)
    for assignment in ASSIGNMENTS[:1]:
        run_nbgrader(course, "generate_assignment", assignment, "--force", "--log-level=WARN")
        blank = nbformat.read(course / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)
        students = {"blank_student": blank,
                    "perfect_student": _fill_in(blank, nbformat.read(solution_notebook(assignment), 4))}
        for student, nb in students.items():
            folder = course / "submitted" / student / assignment
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / f"{assignment}.ipynb")
        run_nbgrader(course, "autograde", assignment, "--create", "--force", "--log-level=WARN")

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for assignment in ASSIGNMENTS[:1]:
            assert gb.find_assignment(assignment).max_score >= 10
            blank = gb.find_submission(assignment, "blank_student")
            assert blank.score == 0, f"{assignment}: the untouched release scored {blank.score}"
            for notebook in blank.notebooks:
                for grade in notebook.grades:
                    assert grade.auto_score in (0, None), f"{grade.name} passes without an answer"
        first = gb.find_assignment(ASSIGNMENTS[0])
        assert gb.find_submission(ASSIGNMENTS[0], "perfect_student").score == pytest.approx(first.max_score)
