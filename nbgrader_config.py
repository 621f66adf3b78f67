"""nbgrader settings for the course: solutions/ is the source, exercises/ the release."""

import os

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades
from traitlets import List

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
# Feedback never shows hidden tests, even for notebooks graded by plain `nbgrader autograde`
# (`make autograde` already writes them without): cut the regions before the grades are read.


class ClearHiddenTestsInFeedback(ClearHiddenTests):
    # the HTML exporter configures this on every preprocessor; accepting it keeps the log quiet
    display_data_priority = List(config=True)


c.GenerateFeedback.preprocessors = [ClearHiddenTestsInFeedback, GetGrades, CSSHTMLHeaderPreprocessor]
