"""nbgrader preprocessors the course's ``nbgrader_config.py`` adds to ``generate_feedback``, so that
feedback made by nbgrader's own commands (a notebook graded by plain ``nbgrader autograde`` or the
formgrader's *Autograde* button) shows no hidden test either.

``ClearHiddenTests`` cuts the hidden regions from a test cell's source, but a failed hidden test's
traceback quotes its lines in the cell's output. :class:`ReduceTestErrors` runs first and keeps of
each test cell's error only what a student should see: the exception's name and message.
"""

from __future__ import annotations

from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor
from traitlets import List

from lrgrade.submission import is_test


class ReduceTestErrors(NbGraderPreprocessor):
    """Replace each error output of a test cell (``grade`` and not ``solution``) by one line,
    ``Name: message``: no traceback, so no line of a hidden test reaches the feedback.

    Example, in ``nbgrader_config.py``::

        c.GenerateFeedback.preprocessors = [ReduceTestErrors, ClearHiddenTestsInFeedback, GetGrades,
                                            CSSHTMLHeaderPreprocessor]
    """

    display_data_priority = List(config=True)  # set on every preprocessor by the HTML exporter

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int):
        if is_test(cell):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources


class ClearHiddenTestsInFeedback(ClearHiddenTests):
    """nbgrader's ``ClearHiddenTests``, accepting the option the HTML exporter sets on every
    preprocessor (which would otherwise log a warning per notebook)."""

    display_data_priority = List(config=True)
