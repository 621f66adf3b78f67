"""The gradebook as nbgrader itself would have written it, so that its formgrader and commands
(``autograde``, ``generate_feedback``, ``export``, ``generate_assignment``) work on the course
folder ``make autograde`` fills.

nbgrader keeps, per assignment, what ``generate_assignment`` recorded (the notebook, its grade,
solution and source cells with their checksums, under the course id the course configures) and,
per student, a submission with the time in ``timestamp.txt``, a grade per graded cell and a
comment per answer cell. The formgrader lists a submission as autograded only when that time
matches ``submitted/<student>/<assignment>/timestamp.txt``; its *Autograde* and *Generate* only
work when the source cells are there. Everything here runs in the trusted grading process.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import warnings
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat

from lrgrade.submission import nbgrader_meta

if TYPE_CHECKING:
    from lrgrade.classroom import Outcome

#: The comment nbgrader writes on an answer cell the student left as released.
NO_RESPONSE = "No response."
#: A ``timestamp.txt`` longer than this is not a time (the student's side writes that file).
_MAX_STAMP = 100


def course_config(course: str | Path):
    """The course's ``nbgrader_config.py``, read as nbgrader reads it, rooted at ``course``."""
    from traitlets.config.loader import Config, PyFileConfigLoader

    course = Path(course).resolve()
    config = (PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
              if (course / "nbgrader_config.py").is_file() else Config())
    config.CourseDirectory.root = str(course)
    return config


def course_id(course: str | Path) -> str:
    """The course id ``nbgrader_config.py`` sets (nbgrader's default, ``default_course``, otherwise)."""
    return _course_id_in(course_config(course))


def _course_id_in(config) -> str:
    from nbgrader.coursedir import CourseDirectory

    return CourseDirectory(config=config).course_id or "default_course"


def _nbgrader_on_path() -> None:
    # nbgrader creates a new gradebook by running alembic, found on PATH: use this Python's
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def release_into_gradebook(course: str | Path, assignment: str, gradebook: str | Path) -> list[str]:
    """Record ``assignment`` in ``gradebook`` exactly as ``nbgrader generate_assignment`` does
    (its notebook, grade, solution, task and source cells, under the course's id), without
    touching the course's ``exercises/``: the release is generated into a scratch copy of the
    course. Returns notes: a release that differs from the committed one is named there.

    Raises ``RuntimeError`` when nbgrader refuses (a gradebook whose recorded cells differ from
    the source while it holds submissions: nbgrader never rewrites those).
    """
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    _nbgrader_on_path()
    course = Path(course).resolve()
    notes = []
    with tempfile.TemporaryDirectory(prefix="lrgrade-release-") as scratch:
        shutil.copytree(course / "solutions" / assignment, Path(scratch) / "solutions" / assignment)
        config = course_config(course)
        config.CourseDirectory.course_id = _course_id_in(config)
        config.CourseDirectory.root = scratch
        config.CourseDirectory.db_url = f"sqlite:///{Path(gradebook).resolve()}"
        config.CourseDirectory.source_directory = "solutions"
        config.CourseDirectory.release_directory = "exercises"
        api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
        api.log.setLevel("ERROR")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            done = api.generate_assignment(assignment, force=True, create=True)
        if not done["success"]:
            why = (done.get("error") or done.get("log") or "").strip().splitlines()
            raise RuntimeError(
                f"nbgrader could not record {assignment} in {gradebook}: "
                f"{why[-1] if why else 'no reason given'}. nbgrader never changes the cells of an "
                "assignment that has submissions: if solutions/ changed since it was graded, or the "
                "gradebook was written without the assignment's cells (by lrgrade before 2026-12), "
                "export what you need (nbgrader export), move gradebook.db aside and grade again")
        made = Path(scratch) / "exercises" / assignment / f"{assignment}.ipynb"
        committed = course / "exercises" / assignment / f"{assignment}.ipynb"
        if committed.is_file() and _sources(made) != _sources(committed):
            notes.append(f"exercises/{assignment} differs from what solutions/ generates: "
                         "run `make exercises` and release it again")
    return notes


def _sources(path: Path) -> list[tuple[str, str]]:
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source) for c in nb.cells]


#: what ``timestamp.txt`` may hold: a date, a time, and an offset or a zone *name* (nbgrader hands
#: the third field to ``dateutil.tz.gettz``, which would open an absolute or ``..`` path as a file)
_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
                    r"( ([+-]?\d{1,4}|[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*))?")


def submission_stamp(course: str | Path, assignment: str, student: str) -> tuple[str, datetime] | None:
    """The time in ``submitted/<student>/<assignment>/timestamp.txt``: its text and the time
    nbgrader reads from it. ``None`` without one, or when it is not a plain file (never followed)
    holding a date and time in nbgrader's format, between the years 2000 and 2100."""
    from nbgrader.utils import parse_utc

    from lrgrade.submission import SubmissionError, read_plain_file

    try:
        text = read_plain_file(Path(course) / "submitted" / student / assignment / "timestamp.txt",
                               _MAX_STAMP).decode("utf-8").strip()
    except (SubmissionError, UnicodeDecodeError):
        return None
    if not _STAMP.fullmatch(text):
        return None
    try:
        when = parse_utc(text)
    except Exception:  # whatever the file holds, it is not a time nbgrader can read either
        return None
    return (text, when) if when is not None and 2000 <= when.year <= 2100 else None


def submitted_timestamp(course: str | Path, assignment: str, student: str) -> datetime | None:
    """The submission time nbgrader reads from ``timestamp.txt`` (see :func:`submission_stamp`)."""
    stamp = submission_stamp(course, assignment, student)
    return stamp[1] if stamp else None


def _answers(nb: nbformat.NotebookNode) -> dict[str, str]:
    """Each answer cell's text, by ``grade_id``."""
    return {nbgrader_meta(c).get("grade_id"): c.source.strip() for c in nb.cells
            if nbgrader_meta(c).get("solution")}


def _unanswered(outcome: Outcome, released: dict[str, str]) -> set[str]:
    """The answer cells this student left as released (nbgrader comments "No response.")."""
    if outcome.notebook is None:
        return set()
    return {gid for gid, text in _answers(outcome.notebook).items() if released.get(gid) == text}


def record_grades(course: str | Path, assignment: str, outcomes: list[Outcome],
                  gradebook: str | Path = "gradebook.db", *, release: bool = True) -> list[str]:
    """Write the scores into the course's nbgrader gradebook, from this (trusted) process only.

    First (unless ``release`` is false: the caller already did) the assignment is recorded
    as ``nbgrader generate_assignment`` records it (:func:`release_into_gradebook`). Then each
    graded student gets a submission stamped with their ``timestamp.txt``; each test cell
    the grader scored gets its auto score, and needs a hand grade only where a grader
    already gave one (nbgrader's own rule); cells no test scores (written answers) keep no
    auto score and need a hand grade; an answer cell left as released gets nbgrader's
    "No response." comment. Hand grades and comments already there are kept. Students whose
    submission could not be graded get nothing. Returns notes for the instructor.
    """
    from nbgrader.api import Gradebook

    course = Path(course).resolve()
    gradebook = course / gradebook
    notes = release_into_gradebook(course, assignment, gradebook) if release else []
    release_path = course / "exercises" / assignment / f"{assignment}.ipynb"
    released = _answers(nbformat.read(release_path, as_version=4)) if release_path.is_file() else {}
    with Gradebook(f"sqlite:///{gradebook}", course_id=course_id(course)) as gb:
        notebook = gb.find_notebook(assignment, assignment)
        answer_cells = [c.name for c in notebook.solution_cells]
        for outcome in outcomes:
            if outcome.result is None or outcome.result.not_graded:
                continue
            try:
                _record_one(gb, assignment, notebook, answer_cells, course, outcome, released)
            except Exception as error:  # one odd submission must not cost the class its grades
                gb.db.rollback()
                why = f"not recorded in the gradebook: {type(error).__name__}: {error}"
                outcome.result.notes.append(why)
                outcome.result.not_graded = outcome.result.not_graded or why
    return notes


def _record_one(gb, assignment: str, notebook, answer_cells: list[str], course: Path,
                outcome: Outcome, released: dict[str, str]) -> None:
    """One student's submission, grades and comments (see :func:`record_grades`)."""
    from nbgrader.api import MissingEntry
    from sqlalchemy.exc import SAWarning

    gb.update_or_create_student(outcome.student)  # a roster's names and e-mail are kept
    stamp = submitted_timestamp(course, assignment, outcome.student)
    stamp_file = course / "submitted" / outcome.student / assignment / "timestamp.txt"
    if stamp is None and os.path.lexists(stamp_file):
        outcome.result.notes.append("its timestamp.txt is not a plain file holding a time: no submission "
                                    "time recorded (nbgrader's formgrader cannot read it either)")
    try:
        submission = gb.find_submission(assignment, outcome.student)
    except MissingEntry:
        with warnings.catch_warnings():  # nbgrader's own autoflush warnings; the rows are written
            warnings.simplefilter("ignore", category=SAWarning)
            submission = gb.add_submission(assignment, outcome.student, timestamp=stamp)
    submission.timestamp = stamp
    scored = {cell.grade_id: cell.points for cell in outcome.result.cells}
    for cell in notebook.grade_cells:
        grade = gb.find_grade(cell.name, assignment, assignment, outcome.student)
        grade.auto_score = scored.get(cell.name)
        grade.needs_manual_grade = grade.auto_score is None or grade.manual_score is not None
    unanswered = _unanswered(outcome, released)
    for name in answer_cells:
        comment = gb.find_comment(name, assignment, assignment, outcome.student)
        comment.auto_comment = NO_RESPONSE if name in unanswered else None
    gb.db.commit()
