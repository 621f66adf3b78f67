"""Every assignment in solutions/: well-formed, runs clean, released in sync, graded end to end.

A new assignment is covered by adding solutions/<name>/<name>.ipynb.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from .conftest import ROOT, assignments, devices, error_outputs, run_notebook, solution_notebook

SOLUTION_BUDGET_S = 30  # DESIGN.md: an exercise's solution runs in under 30 s
ASSIGNMENTS = assignments()
NBGRADER = [sys.executable, "-m", "nbgrader"]


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
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_passes_all_its_tests(assignment, device, tmp_path):
    nb = nbformat.read(solution_notebook(assignment), as_version=4)
    out, seconds = run_notebook(nb, tmp_path / f"{assignment}.ipynb", device=device,
                                cwd=solution_notebook(assignment).parent)
    assert not error_outputs(out), error_outputs(out)
    assert all(c.get("execution_count") for c in out.cells if c.cell_type == "code")
    assert f"Running on device: {device}" in "".join(
        o.get("text", "") for c in out.cells for o in c.get("outputs", []))
    assert seconds < SOLUTION_BUDGET_S, f"{assignment} took {seconds:.1f} s"


def _course(tmp_path: Path) -> Path:
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions", course / "solutions")
    return course


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    # nbgrader runs `alembic` from PATH to create the gradebook: put this venv's bin first
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([*NBGRADER, *args], cwd=course, capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.slow
def test_exercises_are_in_sync_with_solutions(tmp_path):
    """exercises/ is exactly what `make exercises` generates from solutions/ now."""
    course = _course(tmp_path)
    for assignment in ASSIGNMENTS:
        _nbgrader(course, "generate_assignment", assignment, "--force", "--no-db", "--log-level=WARN")
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
@pytest.mark.parametrize("device", devices())
def test_nbgrader_grades_the_solution_full_and_the_blank_release_zero(tmp_path, device, monkeypatch):
    from nbgrader.api import Gradebook

    monkeypatch.setenv("LRLIB_DEVICE", device)
    course = _course(tmp_path)
    for assignment in ASSIGNMENTS:
        _nbgrader(course, "generate_assignment", assignment, "--force", "--log-level=WARN")
        release = course / "exercises" / assignment / f"{assignment}.ipynb"
        blank = nbformat.read(release, as_version=4)
        perfect = _fill_in(blank, nbformat.read(solution_notebook(assignment), as_version=4))
        for student, nb in (("perfect_student", perfect), ("blank_student", blank)):
            folder = course / "submitted" / student / assignment
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / f"{assignment}.ipynb")
        _nbgrader(course, "autograde", assignment, "--create", "--force", "--log-level=WARN")

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for assignment in ASSIGNMENTS:
            max_score = gb.find_assignment(assignment).max_score
            assert max_score >= 10
            perfect = gb.find_submission(assignment, "perfect_student")
            blank = gb.find_submission(assignment, "blank_student")
            assert perfect.score == pytest.approx(max_score), f"{assignment}: solution lost points"
            assert blank.score == 0, f"{assignment}: the untouched release scored {blank.score}"
            for notebook in blank.notebooks:
                for grade in notebook.grades:
                    assert grade.auto_score in (0, None), f"{grade.name} passes without an answer"
