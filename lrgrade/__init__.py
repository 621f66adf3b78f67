"""lrgrade: autograding the course's exercises safely (instructor infrastructure, the ``grade`` extra).

Students import :mod:`lrlib`; instructors grade with this package, which a student's
kernel can neither read nor import (the sandbox hides it). One module per job:

- :mod:`lrgrade.submission`: rebuild a submission from the instructor's source, taking
  only the student's answer cells (:func:`assemble`, :func:`read_submission`);
- :mod:`lrgrade.sandbox`: run untrusted code in bubblewrap (no network, no view of the
  host but an allowlist), as an unprivileged user, in a cgroup bounded and killed as a whole;
- :mod:`lrgrade.kernel`: a Jupyter kernel in that sandbox, the guard's snapshot taken before
  any student code, and cells run with time limits;
- :mod:`lrgrade.notebook`: grade one notebook: the student's kernel runs it, a judge kernel
  that runs no student code decides its tests on plain data (:mod:`lrlib._grading`); and the
  feedback without hidden tests (:func:`grade_notebook`, :func:`feedback_notebook`);
- :mod:`lrgrade.classroom`: grade a class in parallel and write the gradebook and the
  graded notebooks (:func:`autograde`);
- :mod:`lrgrade.cli`: ``python -m lrgrade ASSIGNMENT`` (what ``make autograde`` runs);
- :mod:`lrgrade.overview`: what an exercise asks for, for the book's exercise pages.

What it promises: no student code runs with the grader's rights or sees the host, the
network, another submission or the verdict's code; a test's verdict depends only on plain data
the student's kernel returned. What it cannot see: object identity across the two processes
(a test that needs it runs its own function in the notebook's kernel with
:func:`lrlib.exercise.in_notebook`), and code copied from lrlib's source.
"""

from lrgrade.classroom import Outcome, autograde, grade_submission, write_autograded
from lrgrade.gradebook import record_grades
from lrgrade.notebook import CellResult, GradeResult, feedback_notebook, grade_notebook, strip_hidden_tests
from lrgrade.submission import SubmissionError, assemble, read_submission

__all__ = ["CellResult", "GradeResult", "Outcome", "SubmissionError", "assemble", "autograde",
           "feedback_notebook", "grade_notebook", "grade_submission", "read_submission", "record_grades",
           "strip_hidden_tests", "write_autograded"]
