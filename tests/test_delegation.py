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


@pytest.mark.parametrize("answer", [
    "%time pass\nfrom lrlib.update import sgd_step\nupdate = sgd_step",  # a magic first: still read
    "%time from lrlib.update import sgd_step",  # the magic's own code cannot be read
    "!python -c 'import lrlib'",  # a shell command
    "def update(:\n    pass",  # does not parse
])
def test_magics_shell_commands_and_code_that_does_not_parse_are_not_own_work(answer):
    assert list(find_delegations(notebook(("answer", answer), ("test", TEST)))) == ["test-1"]


#: Dynamic routes to the forbidden code that a reading of names cannot follow (issue: 15 of 16 passed).
ROUTES = {
    "getattr on an alias": "import lrlib.update as u\nupdate = getattr(u, 'sgd_step')",
    "getattr on any object": "import numpy as np\nupdate = getattr(np, 'sum')",
    "vars()": "import lrlib.update as u\nupdate = vars(u)['sgd' + '_step']",
    "globals()": "update = globals()['sgd_step']",
    "attrgetter": "import operator, lrlib\nupdate = operator.attrgetter('update.sgd_step')(lrlib)",
    "reduce(getattr)": ("import functools, lrlib\n"
                        "update = functools.reduce(getattr, ['update', 'sgd_step'], lrlib)"),
    "inspect": "import inspect, lrlib.update as u\nupdate = inspect.getattr_static(u, 'sgd_step')",
    "pickle": "import pickle\nupdate = pickle.loads(b'clrlib.update\\nsgd_step\\n.')",
    "marshal": "import marshal\nupdate = None",
    "setattr on builtins": ("import builtins, lrlib.update as u\n"
                            "setattr(builtins, 'helper', u.descend)\nupdate = None"),
    "a decorator": ("def swap(f):\n    return __import__('lrlib.update', fromlist=['x']).sgd_step\n"
                    "@swap\ndef update(t, g, lr):\n    return t - lr * g"),
    "__globals__ of a subclass": ("import lrlib.models as m\nclass Mine(m.MLP):\n    pass\n"
                                  "update = Mine.__init__.__globals__['torch']"),
    "a star import with a dead store": ("from lrlib.update import *\ndef update(t, g, lr):\n"
                                        "    return sgd_step(t, g, lr)\nsgd_step = sgd_step"),
    "get_ipython": "get_ipython().run_cell('from lrlib.update import sgd_step')\nupdate = sgd_step",
    "compile": "exec(compile('from lrlib.update import sgd_step', 'x', 'exec'))",
    "sys.modules": "from sys import modules\nupdate = modules['lrlib.update'].sgd_step",
}


@pytest.mark.parametrize("answer", ROUTES.values(), ids=ROUTES.keys())
def test_every_dynamic_route_counts_as_using_every_entry(answer):
    found = find_delegations(notebook(("answer", answer), ("test", TEST)))
    assert list(found) == ["test-1"], found


def test_part_two_written_in_part_ones_cell_is_part_twos():
    """Cells join by the names the *test* reads: the cell that binds `update` is its part's."""
    nb = notebook(("answer", "from lrlib.update import sgd_step\nupdate = sgd_step\nx = 1"), ("test", "pass"),
                  ("answer", "pass"), ("test", TEST.replace("expect(True, '')", "update(1.0, 2.0, 0.1)")))
    assert list(find_delegations(nb)) == ["test-2"]


def test_a_cell_that_reconfigures_the_kernel_taints_every_later_part():
    """Rewriting how later cells run (here IPython's transform_cell) makes later parts unreadable."""
    patch = ("from IPython.core.interactiveshell import InteractiveShell\n"
             "InteractiveShell.transform_cell = lambda self, cell: cell")
    nb = notebook(("answer", patch), ("test", "pass"), ("answer", "def update(t, g, lr):\n    return 0"),
                  ("test", TEST))
    assert list(find_delegations(nb)) == ["test-2"]


# --- the student's own notebook says so first (lrlib.exercise.expect_own_work) ---------------------------

@pytest.fixture
def shell():
    """An IPython shell in this process, with its input history emptied."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.history_manager.reset()
    ip.run_cell("import lrlib\nfrom lrlib.exercise import expect", store_history=True)
    return ip


def run_cells(shell, *cells):
    """Run cells as a notebook would (kept in the history); the last one's output and success."""
    import contextlib
    import io

    for cell in cells[:-1]:
        shell.run_cell(cell, store_history=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = shell.run_cell(cells[-1], store_history=True)
    return out.getvalue(), result.success


LOCAL_TEST = ("# own work: lrlib.update.sgd_step, lrlib.update.descend\nlrlib.exercise.expect_own_work(1)\n"
              "expect(abs(update(1.0, 2.0, 0.5)) < 1e-12, 'wrong')")


@pytest.mark.parametrize("answer,hint", [
    ("from lrlib.update import sgd_step\ndef update(t, g, lr):\n    return sgd_step(t, g, lr)",
     "part 1 must not call lrlib.update.sgd_step: update uses it"),
    ("import lrlib.update as u\ndef helper(t, g, lr):\n    return u.sgd_step(t, g, lr)\n"
     "def update(t, g, lr):\n    return helper(t, g, lr)", "must not call lrlib.update.sgd_step"),
    ("import functools, lrlib.update\nupdate = functools.partial(lrlib.update.sgd_step)",
     "must not call lrlib.update.sgd_step"),
    ("def update(t, g, lr):\n    return getattr(__import__('math'), 'fsum')([t, -lr * g])",
     "a cell you ran uses __import__, getattr"),
    ("%time x = 1\ndef update(t, g, lr):\n    return t - lr * g", "a magic or shell command"),
])
def test_a_visible_test_says_not_yet_when_a_part_is_not_own_work(shell, answer, hint):
    out, ok = run_cells(shell, answer, LOCAL_TEST)
    assert not ok and "Not yet: part 1 " in out and hint in out, out


def test_own_work_passes_the_local_check_and_outside_ipython_it_does_nothing(shell):
    from lrlib.exercise import expect_own_work

    out, ok = run_cells(shell, "import math\ndef update(t, g, lr):\n    return math.fsum([t, -lr * g])",
                        LOCAL_TEST)
    assert ok and out == "", out
    expect_own_work(1)  # no IPython here: nothing to read, nothing raised


#: Routes an attacker who had read this check found (all returned {} before they were handled).
MORE_ROUTES = {
    "a class pattern": ("import lrlib.update as u\nmatch u:\n    case object(sgd_step=_s):\n        pass\n"
                        "update = _s"),
    "pydoc.locate": "import pydoc\nupdate = pydoc.locate('lrlib.update.' + 'sgd_step')",
    "string.Formatter": ("import string, lrlib\n"
                         "update = string.Formatter().get_field('m.update.sgd_step', (), {'m': lrlib})[0]"),
    "typing.get_type_hints": ("import typing\ndef f(x: 'lrlib.update.sgd_step'): pass\n"
                              "update = typing.get_type_hints(f)['x']"),
    "timeit setup": "import timeit\ntimeit.Timer(setup='from lrlib.update import sgd_step')",
    "sys under another name": "import sys as s\nupdate = s.modules['lrlib.update'].sgd_step",
    "nested too deeply": "x = " + "+".join(["1"] * 3000) + "\nupdate = None",
}


@pytest.mark.parametrize("answer", MORE_ROUTES.values(), ids=MORE_ROUTES.keys())
def test_routes_found_by_an_attacker_are_closed(answer):
    assert list(find_delegations(notebook(("answer", answer), ("test", TEST)))) == ["test-1"]


def test_a_helper_hidden_as_an_attribute_of_a_module_joins_the_part_that_uses_it():
    """np.gn = lrlib.update.global_norm in part 1's cell, used by part 2's function: part 2's."""
    part2 = TEST.replace("lrlib.update.sgd_step, lrlib.schedules", "lrlib.update.global_norm")
    nb = notebook(("answer", "import numpy as np, lrlib.update\nnp.gn = lrlib.update.global_norm\nx = 1"),
                  ("test", "# own work: lrlib.update.sgd_step\npass"),
                  ("answer", "import numpy as np\ndef norm(t):\n    return np.gn(t)"), ("test", part2))
    assert list(find_delegations(nb)) == ["test-2"]


def test_a_value_an_earlier_test_read_is_that_parts_answer_not_this_ones():
    """A measure part's test compares with the prediction: a prediction computed with the forbidden
    code costs the predict part, not the measure part that only reads it."""
    predict = "# own work: lrlib.update.sgd_step\nexpect(PREDICTED > 0, '')"
    measure = "# own work: lrlib.update.sgd_step\nexpect(abs(MEASURED - PREDICTED) < 1, '')"
    nb = notebook(("answer", "from lrlib.update import sgd_step\nPREDICTED = sgd_step(1.0, 1.0, 0.5)"),
                  ("test", predict), ("answer", "MEASURED = 0.5"), ("test", measure))
    assert list(find_delegations(nb)) == ["test-1"]


#: A second attacker read: routes through allowed modules, private helpers, global statements, match
#: captures and sys reached through os.
SECOND_ROUTES = {
    "torch's private importer": ("import torch._utils\n"
                                 "update = torch._utils._import_dotted_name('lrlib.update.' + 'sgd_step')"),
    "logging.config": ("import logging.config\n"
                       "update = logging.config.BaseConfigurator({}).resolve('lrlib.update.sgd_step')"),
    "a pickle loader": "import numpy as np\nupdate = np.load('f.npy', allow_pickle=True)[()]",
    "pandas.eval": "import pandas as pd, lrlib\nupdate = pd.eval('lrlib.update.sgd_step')",
    "os.sys.modules": "import os\nupdate = os.sys.modules['lrlib.update'].sgd_step",
    "from os import sys": "from os import sys as S\nupdate = S.modules['lrlib.update'].sgd_step",
}


@pytest.mark.parametrize("answer", SECOND_ROUTES.values(), ids=SECOND_ROUTES.keys())
def test_routes_found_by_a_second_attacker_read_are_closed(answer):
    assert list(find_delegations(notebook(("answer", answer), ("test", TEST)))) == ["test-1"]


@pytest.mark.parametrize("earlier", [
    "import lrlib.update as U\ndef _s():\n    global helper\n    helper = U.sgd_step\n_s()",
    "import lrlib.update as U\nmatch U.sgd_step:\n    case helper:\n        pass",
])
def test_a_name_bound_by_a_global_statement_or_a_match_joins_the_part_that_reads_it(earlier):
    nb = notebook(("answer", earlier), ("test", "pass"),
                  ("answer", "def update(t, g, lr):\n    return helper(t, g, lr)"), ("test", TEST))
    assert list(find_delegations(nb)) == ["test-2"]
