"""lrgrade.overview.describe_exercise: what the exercise pages show must be what the grader uses."""

import nbformat
import pytest

from lrgrade.overview import describe_exercise

from .conftest import ROOT, assignments


@pytest.mark.parametrize("name", assignments())
def test_the_overview_agrees_with_the_nbgrader_metadata(name):
    release = ROOT / "exercises" / name / f"{name}.ipynb"
    overview = describe_exercise(release)
    nb = nbformat.read(release, as_version=4)
    meta = [c.metadata.get("nbgrader", {}) for c in nb.cells]
    tests = [m for m in meta if m.get("grade")]
    # the points the grader gives, part by part and in total
    assert [p.points for p in overview.parts] == [float(m["points"]) for m in tests]
    assert overview.total_points == sum(float(m["points"]) for m in tests)
    # every answer cell belongs to exactly one part, in notebook order
    answers = [m["grade_id"] for m in meta if m.get("solution")]
    assert [a for p in overview.parts for a in p.answers] == answers
    # the headings say the same points as the metadata ("## Part 2: ... (3 points)")
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"
                and c.source.startswith("## Part")]
    assert len(headings) == len(overview.parts)
    for heading, part in zip(headings, overview.parts):
        assert part.title in heading and f"({part.points:g} point" in heading
    assert overview.title.startswith("Exercise ") and overview.goals and "**" not in overview.goals[:2]


def test_the_markdown_table_lists_every_part_and_the_total():
    overview = describe_exercise(ROOT / "exercises" / "ch01_update_rule" / "ch01_update_rule.ipynb")
    table = overview.to_markdown()
    assert table.count("\n| ") == len(overview.parts) + 2  # header, rows, total (separator starts "|---")
    assert f"**{overview.total_points:g}**" in table and "`relative_update`" in table
    assert "| predict |" in table and "**Parts:** 2 implement, 1 predict, 1 measure, 1 decide." in table


def test_a_notebook_without_graded_cells_is_a_clear_error(tmp_path):
    path = tmp_path / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Hello")]), path)
    with pytest.raises(ValueError, match="path: .*plain.ipynb has no graded cell"):
        describe_exercise(path)
