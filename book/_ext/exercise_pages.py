"""The ``exercise-overview`` directive: an exercise page's goals, parts, points and download link.

Read at build time from the released notebook (``exercises/<name>/<name>.ipynb``) with
:func:`lrgrade.overview.describe_exercise`, so the pages cannot disagree with what students
download or with the points the grader gives. Usage, in a page of the book::

    ```{exercise-overview} ch01_update_rule
    ```
"""

from __future__ import annotations

import os
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

from lrgrade.overview import describe_exercise


class ExerciseOverview(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        release = Path(self.env.srcdir) / "exercises" / name / f"{name}.ipynb"
        if not release.is_file():
            raise self.error(f"exercise-overview: no released notebook {release}; run `make exercises`")
        self.env.note_dependency(str(release))
        overview = describe_exercise(release)
        here = Path(self.env.doc2path(self.env.docname)).parent
        link = os.path.relpath(release, here)
        text = (f"{overview.to_markdown()}\n\n"
                f"{{download}}`Download the exercise: {name}.ipynb <{link}>` "
                f"({len(overview.parts)} parts, {overview.total_points:g} points)\n")
        container = nodes.container(classes=["exercise-overview"])
        lines = StringList(text.splitlines(), source=str(release))
        self.state.nested_parse(lines, self.content_offset, container)
        return container.children


def setup(app):
    app.add_directive("exercise-overview", ExerciseOverview)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
