"""nbgrader settings for the course: solutions/ is the source, exercises/ the release."""

import os

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import GetGrades

from lrgrade.preprocessors import ClearHiddenTestsInFeedback, ReduceTestErrors

c = get_config()  # noqa: F821  (injected by nbgrader when it loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "learning-rates-hands-on"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# A student's notebook must finish: no cell may run longer than this.
c.ExecutePreprocessor.timeout = 120
c.Execute.timeout = 120
# Feedback never shows hidden tests, even for notebooks graded by plain `nbgrader autograde` or the
# formgrader's Autograde button (`make autograde` already writes them without): a failed test's
# traceback is cut to its message, then the hidden regions are cut, before the grades are read.
c.GenerateFeedback.preprocessors = [ReduceTestErrors, ClearHiddenTestsInFeedback, GetGrades,
                                    CSSHTMLHeaderPreprocessor]
