"""The exercises: what their pages show is what the grader uses; every part has a kind, usual mistakes
that fail with a hint, and is flagged when handed to an existing implementation."""

import importlib

import nbformat
import pytest

from lrgrade.delegation import find_delegations
from lrgrade.overview import describe_exercise, part_kind

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


#: Each exercise's test module: its cells (EX), usual mistakes (MISTAKES: test id, wrong answers,
#: the hint that must appear), answers handed to an implementation (DELEGATED) and the parts that
#: must be flagged for them (DELEGABLE).
MODULES = {name: importlib.import_module(f"tests.test_exercise_{name[:4]}") for name in assignments()}
SOLVED = [(name, test_id) for name, m in MODULES.items() for test_id in m.EX.tests]
MISTAKES = [(name, *mistake) for name, m in MODULES.items() for mistake in m.MISTAKES]


@pytest.mark.parametrize("name,test_id", SOLVED, ids=[f"{n}-{t}" for n, t in SOLVED])
def test_the_solution_passes_its_visible_and_hidden_tests(name, test_id):
    ex = MODULES[name].EX
    exec(ex.hidden(test_id), ex.namespace())


@pytest.mark.parametrize("name,test_id,wrong,hint", MISTAKES, ids=[f"{m[0]}-{m[1]}-{m[3]}" for m in MISTAKES])
def test_a_usual_mistake_fails_the_visible_test_with_a_hint(name, test_id, wrong, hint):
    assert hint in MODULES[name].EX.visible_output_when_failing(test_id, **wrong)


@pytest.mark.parametrize("name", list(MODULES))
def test_every_part_is_named_by_kind_and_has_two_usual_mistakes_tested(name):
    module = MODULES[name]
    kinds = [part_kind(t) for t in module.EX.tests]
    assert all(kinds), module.EX.tests
    assert {"implement", "predict", "measure", "decide"} <= set(kinds)
    assert kinds.count("implement") <= 2
    assert all(sum(m[0] == t for m in module.MISTAKES) >= 2 for t in module.EX.tests)


@pytest.mark.parametrize("name", list(MODULES))
def test_answers_handed_to_an_implementation_are_flagged_part_by_part(name):
    module = MODULES[name]
    assert set(find_delegations(module.EX.notebook(**module.DELEGATED))) == module.DELEGABLE
    assert find_delegations(module.EX.notebook()) == {}  # the solution is its own work
