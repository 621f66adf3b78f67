"""lrgrade: autograding the course's exercises safely (instructor infrastructure, the ``grade`` extra).

Students import :mod:`lrlib`; instructors grade with this package, which a student's
kernel can neither read nor import (the sandbox hides it). One module per job:

- :mod:`lrgrade.submission`: rebuild a submission from the instructor's source, taking
  only the student's answer cells (:func:`assemble`, :func:`read_submission`);
- :mod:`lrgrade.sandbox`: run untrusted code without network, with the course and the
  grader hidden, as an unprivileged user under resource limits;
- :mod:`lrgrade.kernel`: a Jupyter kernel in that sandbox, the snapshot taken before any
  student code, and cells run with time limits;
- :mod:`lrgrade.notebook`: grade one notebook, scoring its tests outside the kernel, and
  the feedback without hidden tests (:func:`grade_notebook`, :func:`feedback_notebook`);
- :mod:`lrgrade.classroom`: grade a class in parallel and write the gradebook and the
  graded notebooks (:func:`autograde`);
- :mod:`lrgrade.cli`: ``python -m lrgrade ASSIGNMENT`` (what ``make autograde`` runs);
- :mod:`lrgrade.overview`: what an exercise asks for, for the book's exercise pages.

What it cannot promise: code running in the same interpreter as the tests can, in
principle, subvert them (a hijack written against this grader's source could dig the
guard's key out of memory, see :data:`lrgrade.kernel.GUARD`). The sandbox limits what
such code can reach; the score is still only as trustworthy as the tests' interpreter.
"""

from lrgrade.classroom import Outcome, autograde, grade_submission, record_grades, write_autograded
from lrgrade.notebook import CellResult, GradeResult, feedback_notebook, grade_notebook, strip_hidden_tests
from lrgrade.submission import SubmissionError, assemble, read_submission

__all__ = ["CellResult", "GradeResult", "Outcome", "SubmissionError", "assemble", "autograde",
           "feedback_notebook", "grade_notebook", "grade_submission", "read_submission", "record_grades",
           "strip_hidden_tests", "write_autograded"]
