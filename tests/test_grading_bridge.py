"""lrlib._grading: only plain data crosses from a student's kernel to the judge, and calls behave as calls.

The two ends run in one process here (``input`` answered by ``serve``), so the protocol is tested
without kernels; tests/test_autograde.py grades through real ones.
"""

import builtins
import json
import math

import numpy as np
import pytest
import torch

from lrlib import _grading as bridge


@pytest.fixture
def wired(monkeypatch):
    """Two namespaces in this process, a notebook's and a judge's: the judge's requests (``input``)
    are answered by serve() over the notebook's. Returns the notebook's; the judge's is current."""
    judge, notebook = {}, {}
    current = [judge]

    def answer(prompt):
        current[0] = notebook
        try:
            return bridge.serve(prompt[len(bridge.PREFIX):])
        finally:
            current[0] = judge

    monkeypatch.setattr(bridge, "_namespace", lambda: current[0])
    monkeypatch.setattr(builtins, "input", answer)
    bridge._REFS.clear()
    return notebook


def roundtrip(value):
    return bridge.decode(json.loads(json.dumps(bridge.encode(value))))


@pytest.mark.parametrize("value", [
    None, True, 3, -2**70, 0.1, "text", b"bytes", 1 + 2j, [1, [2.5, "x"]], (1, (2,)), {"a": 1, 2: [3]},
    {1, 2}, frozenset({"x"}), range(2, 9, 3), np.float64(0.25), np.int32(-4), np.bool_(True),
    torch.float64, torch.device("cpu"),
])
def test_plain_values_come_back_equal_and_of_the_same_type(value):
    back = roundtrip(value)
    assert back == value and type(back) is type(value)


def test_non_finite_floats_arrays_and_tensors_come_back_exactly():
    back = roundtrip([math.nan, math.inf, -math.inf])
    assert math.isnan(back[0]) and back[1:] == [math.inf, -math.inf]
    array = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]  # not contiguous
    np.testing.assert_array_equal(roundtrip(array), array)
    assert roundtrip(array).dtype == np.float32
    for tensor in (torch.randn(2, 3, dtype=torch.float64, requires_grad=True), torch.arange(5),
                   torch.ones(2, dtype=torch.bfloat16), torch.tensor(True)):
        back = roundtrip(tensor)
        assert type(back) is torch.Tensor and back.dtype == tensor.dtype
        assert torch.equal(back, tensor.detach())
    strings = np.array(["a", "bc"])
    assert list(roundtrip(strings)) == ["a", "bc"]


class Liar(float):
    """A float whose every comparison says yes."""

    __eq__ = __lt__ = __gt__ = lambda self, other: True  # noqa: E731

    def __float__(self):
        return 3e-4


def test_subclasses_arrive_as_their_base_type_with_the_value_they_convert_to():
    back = roundtrip(Liar(1.0))
    assert type(back) is float and back == 3e-4 and not back > 1  # an honest float now
    assert type(roundtrip(torch.Size([2, 3]))) is tuple


@pytest.mark.parametrize("forged,why", [
    ([1, 2], "not a value"),  # containers are always tagged
    ({"t": "pickle", "v": "gASV"}, "unknown tag"),
    ({"t": "ndarray", "dtype": "object", "shape": [1], "data": ""}, "not numeric"),
    ({"t": "ndarray", "dtype": "<f8", "shape": [4], "data": "AAAAAAAA"}, "does not match its shape"),
    ({"t": "tensor", "dtype": "float64", "shape": [-1], "data": ""}, "bad shape"),
    ({"t": "ref", "id": "1"}, "bad handle"),
])
def test_anything_but_what_encode_writes_is_refused(forged, why):
    with pytest.raises(ValueError, match=why):
        bridge.decode(forged)


def test_a_deep_nesting_is_refused():
    deep = 1
    for _ in range(bridge.MAX_DEPTH + 5):
        deep = {"t": "list", "v": [deep]}
    with pytest.raises(ValueError, match="nested too deeply"):
        bridge.decode(deep)


def test_names_values_and_functions_cross_as_data_and_handles(wired):
    wired.update(N=7, rate=np.float64(0.5), square=lambda x: x * x, table={"a": [1, 2]})
    assert bridge.bind(["N", "rate", "square", "table", "absent", "len"]) == ["absent"]
    judge = bridge._namespace()
    assert judge["N"] == 7 and type(judge["rate"]) is np.float64
    assert isinstance(judge["square"], bridge.RemoteFunction) and judge["square"](3) == 9
    assert judge["table"] == {"a": [1, 2]}


def test_a_call_changes_the_judges_arguments_as_it_changed_the_notebooks_copies(wired):
    def in_place(model, array, untouched):
        with torch.no_grad():
            model.weight.fill_(2.0)
        array += 1
        return "done"

    wired["in_place"] = in_place
    bridge.bind(["in_place"])
    model, array, untouched = torch.nn.Linear(2, 1), np.zeros(3), np.zeros(2)
    with pytest.raises(bridge.GradingError, match="changed its argument .* in place"):
        bridge._namespace()["in_place"](model, array, untouched)  # a test that did not allow it
    np.testing.assert_array_equal(array, np.zeros(3))
    with bridge.changes_allowed():
        assert bridge._namespace()["in_place"](model, array, untouched) == "done"
    assert torch.equal(model.weight.detach(), torch.full((1, 2), 2.0))  # copied back into the judge's
    np.testing.assert_array_equal(array, np.ones(3))
    np.testing.assert_array_equal(untouched, np.zeros(2))


def test_the_judges_own_functions_travel_by_value_and_errors_by_type(wired):
    def apply(f, x):
        return f(x)

    def divide(x):
        raise ValueError(f"cannot divide {x}")

    wired.update(apply=apply, divide=divide)
    bridge.bind(["apply", "divide"])
    cell = {"__name__": "__main__"}  # a function a judge's cell defines: its module is __main__
    exec("def times(scale):\n    return lambda x: scale * x", cell)
    assert bridge._namespace()["apply"](cell["times"](3.0), 2.0) == 6.0  # a closure, shipped as code
    with pytest.raises(ValueError, match="cannot divide 4") as raised:
        bridge._namespace()["divide"](4)
    assert isinstance(raised.value, bridge.StudentError)


def test_an_answer_that_is_not_data_fails_the_test_not_the_judge(monkeypatch):
    monkeypatch.setattr(builtins, "input", lambda prompt: json.dumps({"value": {"t": "pickle"}}))
    with pytest.raises(bridge.GradingError, match="not plain data"):
        bridge.RemoteFunction(1, "function")()
    monkeypatch.setattr(builtins, "input", lambda prompt: "not json")
    with pytest.raises(bridge.GradingError, match="could not be read"):
        bridge.RemoteFunction(1, "function")()
    monkeypatch.setattr(builtins, "input", lambda prompt: json.dumps({"grader": "the kernel died"}))
    with pytest.raises(bridge.GradingError, match="the kernel died"):
        bridge.RemoteFunction(1, "function")()


def test_in_notebook_runs_the_judges_function_on_the_notebooks_names(wired, monkeypatch):
    """What only one process can observe (does a returned checkpoint share memory with the model?)
    is asked of the notebook's kernel by running the test's own function there."""
    def save(weights):  # the student's: no copy
        return {"w": weights}

    wired.update(save=save, np=np)
    cell = {"__name__": "__main__"}
    exec("def trained_on(n):\n    w = np.zeros(n)\n    saved = save(w)\n    w += 1\n"
         "    return saved['w'].tolist()", cell)
    monkeypatch.setattr(bridge, "_IN_JUDGE", True)
    assert bridge.in_notebook(cell["trained_on"], 2) == [1.0, 1.0]  # it was not a copy
    monkeypatch.setattr(bridge, "_IN_JUDGE", False)  # in the student's own notebook: a plain call
    assert bridge.in_notebook(lambda x: x + 1, 1) == 2


def test_a_call_cannot_change_what_the_judge_held_before_the_cell(wired):
    """The instructor's objects (and views and wrappers of them) are the judge's: a student's call
    that changes them fails the test instead of leaving them rigged for the oracle after it."""
    def rig(value):
        with torch.no_grad():
            for t in value.parameters() if isinstance(value, torch.nn.Module) else [value]:
                t.fill_(7.0)

    wired["rig"] = rig
    judge = bridge._namespace()
    judge["net"], judge["x0"] = torch.nn.Linear(2, 1), torch.zeros(4)
    bridge.bind(["rig"])  # marks the judge's objects as it starts a cell
    with bridge.changes_allowed():  # even where a test allows changes
        for argument in (judge["net"], judge["x0"], judge["x0"][:2], torch.nn.Sequential(judge["net"])):
            with pytest.raises(bridge.GradingError, match="must leave as it was"):
                judge["rig"](argument)
        assert torch.equal(judge["x0"], torch.zeros(4)) and not (judge["net"].weight == 7).any()
        fresh = torch.zeros(3)  # one the test made for the call: changed as the student's copy was
        judge["rig"](fresh)
    assert torch.equal(fresh, torch.full((3,), 7.0))
