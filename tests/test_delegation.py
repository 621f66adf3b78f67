"""lrgrade.delegation: a part whose answers use what the part asks the student to write scores 0."""

import nbformat
import pytest

from lrgrade.delegation import find_delegations, own_work_entries


def notebook(*cells):
    """Cells given as ("answer"|"test", source); tests get grade ids test-1, test-2, ..."""
    out, n = [], 0
    for kind, source in cells:
        cell = nbformat.v4.new_code_cell(source)
        if kind == "answer":
            cell.metadata["nbgrader"] = {"solution": True, "grade": False, "grade_id": f"a{len(out)}"}
        else:
            n += 1
            cell.metadata["nbgrader"] = {"solution": False, "grade": True, "grade_id": f"test-{n}",
                                         "points": 1}
        out.append(cell)
    return nbformat.v4.new_notebook(cells=out)


TEST = "# own work: lrlib.update.sgd_step, lrlib.schedules\nexpect(True, '')"


def test_the_directive_lists_its_entries():
    assert own_work_entries(TEST) == ["lrlib.update.sgd_step", "lrlib.schedules"]
    assert own_work_entries("expect(True, '')") == []


@pytest.mark.parametrize("answer", [
    "from lrlib.update import sgd_step\ndef update(t, g, lr):\n    return sgd_step(t, g, lr)",
    "import lrlib\ndef update(t, g, lr):\n    return lrlib.update.sgd_step(t, g, lr)",
    "import lrlib.update as u\nupdate = u.sgd_step",
    "from lrlib.update import *\ndef update(t, g, lr):\n    return sgd_step(t, g, lr)",
    "from lrlib.schedules import cosine\nupdate = None",
    "import lrlib.schedules\nupdate = None",
    "import lrlib\nupdate = getattr(lrlib.update, 'sgd' + '_step')",
    "update = __import__('lrlib.update').update.sgd_step",
    "import importlib\nupdate = importlib.import_module('lrlib.update').sgd_step",
    "import sys\nupdate = sys.modules['lrlib.update'].__dict__['sgd_step']",
    "update = eval('lrlib.update.sgd' + '_step')",
], ids=["from-import", "attribute", "module alias", "star import", "module entry", "module import",
        "getattr", "__import__", "importlib", "sys.modules", "eval"])
def test_each_way_of_reaching_the_forbidden_code_is_found(answer):
    found = find_delegations(notebook(("answer", answer), ("test", TEST)))
    assert list(found) == ["test-1"]


@pytest.mark.parametrize("answer", [
    "def update(theta, grad, lr):\n    return theta - lr * grad",
    "import lrlib\nfrom lrlib.update import global_norm\ndef update(t, g, lr):\n    return t - lr * g",
    "def update(theta, grad, lr):\n    sgd_step = lr * grad  # a name of its own\n    return theta - "
    "sgd_step",
])
def test_own_work_and_other_lrlib_helpers_are_not_flagged(answer):
    assert find_delegations(notebook(("answer", answer), ("test", TEST))) == {}


def test_a_part_is_charged_for_the_earlier_helpers_it_uses_and_only_those():
    nb = notebook(("answer", "from lrlib.update import sgd_step as helper\nx = 1"), ("test", "pass"),
                  ("answer", "def update(t, g, lr):\n    return helper(t, g, lr)"), ("test", TEST),
                  ("answer", "y = 2"), ("test", TEST))
    assert set(find_delegations(nb)) == {"test-2"}  # test-1 forbids nothing; part 3 uses no helper


def test_code_that_cannot_be_parsed_is_not_flagged_and_does_not_crash():
    assert find_delegations(notebook(("answer", "%timeit 1 + 1"), ("test", TEST))) == {}
