"""The plain-data bridge between a student's kernel and the grader's judge (private: used by ``lrgrade``).

When a notebook is graded, its tests do not run in the student's kernel. They run in a
*judge* kernel that no student code has touched, with the instructor's cells and oracles;
every name a test reads from the student's notebook (``update``, ``N_MOVING``) is fetched
from the student's kernel through the grader, and every call to a student's function is made
there, on inputs the judge chose. This module is both ends of that bridge:

- in the student's kernel, :func:`serve` answers one request (read a name, call a function,
  read an attribute) and returns its result as JSON of plain data (:func:`encode`);
- in the judge, :func:`decode` turns that JSON back into values, accepting only exact
  ``None``/``bool``/``int``/``float``/``str``, lists, tuples, dicts and sets of them, numeric
  NumPy arrays and scalars and torch tensors built here from raw bytes, and :class:`Remote`
  handles for everything else (a function, a model), whose every use is another request.
  Nothing from the student's process is unpickled, and no object it made reaches the judge.

Arguments go the other way (judge to student) pickled: the student's kernel is untrusted,
so it may unpickle what the trusted judge sends, never the reverse. Functions the judge's
cells define (a lambda passed as a loss) travel by value, so a student cannot swap them.
A call also returns the arguments' state after it (a model's weights, an optimizer's state, an
array's values) when the call changed them: a call that changed an input in place fails the
test, unless the test allowed it (:class:`changes_allowed`, for a function whose job is to
change them, like loading a checkpoint), and then the judge copies that state into the objects
the test made for the call (never into the judge's objects from earlier cells).
"""

from __future__ import annotations

import base64
import builtins
import io
import json
import marshal
import math
import pickle
import sys
import types
from typing import Any

import numpy as np

#: the prefix of a judge's request to the grader (the prompt of an ``input()`` call)
PREFIX = "\x00lrgrade-request:"
#: nesting allowed in a value
MAX_DEPTH = 64


# --- the student's side ------------------------------------------------------------------------------

_REFS: dict[int, Any] = {}


def _namespace() -> dict:
    try:
        return get_ipython().user_ns  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        return vars(sys.modules["__main__"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready plain data; objects that are not data become handles (``{"t": "ref"}``)."""
    import torch

    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return value if math.isfinite(value) else {"t": "float", "v": repr(value)}
    if isinstance(value, (bool, int, float, str)) and not isinstance(value, np.generic):
        base = next(b for b in (bool, int, float, str) if isinstance(value, b))
        return encode(base(value), depth)
    if isinstance(value, complex):
        return {"t": "complex", "v": [encode(float(value.real)), encode(float(value.imag))]}
    if isinstance(value, bytes):
        return {"t": "bytes", "v": _b64(value)}
    if isinstance(value, range):
        return {"t": "range", "v": [value.start, value.stop, value.step]}
    if isinstance(value, torch.Tensor):
        if not value.is_sparse and (value.dtype.is_floating_point or value.dtype.is_complex
                                    or value.dtype in (torch.bool, torch.int8, torch.int16, torch.int32,
                                                       torch.int64, torch.uint8)):
            dtype = str(value.dtype).removeprefix("torch.")
            array = value.detach().cpu()
            array = (array.float() if value.dtype == torch.bfloat16 else array).contiguous().numpy()
            return {"t": "tensor", "dtype": dtype, "shape": list(array.shape), "data": _b64(array.tobytes())}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc" and value.dtype.fields is None:
            array = np.ascontiguousarray(value)
            return {"t": "ndarray", "dtype": array.dtype.str, "shape": list(array.shape),
                    "data": _b64(array.tobytes())}
        return {"t": "array", "dtype": "object" if value.dtype.kind == "O" else value.dtype.str,
                "shape": list(value.shape), "v": encode(value.ravel().tolist(), depth + 1)}
    if isinstance(value, np.generic):
        if value.dtype.kind in "biufc":
            return {"t": "npscalar", "dtype": value.dtype.str, "data": _b64(value.tobytes())}
        if value.dtype.kind == "U":
            return str(value)
    if isinstance(value, (torch.dtype, torch.device)):
        return {"t": "torch." + type(value).__name__, "v": str(value).removeprefix("torch.")}
    for base, tag in ((tuple, "tuple"), (list, "list"), (frozenset, "frozenset"), (set, "set")):
        if isinstance(value, base):
            return {"t": tag, "v": [encode(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"t": "dict", "v": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    handle = len(_REFS) + 1
    _REFS[handle] = value
    return {"t": "ref", "id": handle, "type": type(value).__name__[:80], "callable": callable(value)}


def _state(value: Any) -> Any:
    """What a call may have changed in an argument, as data (None for arguments that have none)."""
    import torch

    if isinstance(value, (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)):
        return value.state_dict()
    if isinstance(value, (torch.Tensor, np.ndarray, list, dict)):
        return value
    return None


def _rebuild_function(code: bytes, name: str, defaults, kwdefaults, cells):
    """A function the judge sent by value, with the student's notebook namespace as its globals."""
    function = types.FunctionType(marshal.loads(code), _namespace(), name, defaults,
                                  tuple(types.CellType(c) for c in cells) or None)
    function.__kwdefaults__ = kwdefaults
    return function


def _ref(handle: int) -> Any:
    return _REFS[handle]


def serve(request: str) -> str:
    """Answer one request of the judge (JSON) in the student's kernel; the answer is JSON of plain data.

    Requests: ``{"op": "get", "name": ...}``, ``{"op": "call", "ref": id, "args": pickled}``,
    ``{"op": "run", "args": pickled (function, args, kwargs)}`` (see :func:`in_notebook`),
    ``{"op": "getattr", "ref": id, "name": ...}``, ``{"op": "getitem", "ref": id, "args": pickled}``,
    ``{"op": "len"|"iter"|"repr"|"str"|"bool", "ref": id}``. Answers: ``{"value": ...}`` (and, for a call,
    ``"after"``: the changed arguments' state), ``{"missing": true}`` or ``{"error": {"type", "message"}}``.
    """
    try:
        ask = json.loads(request)
        op = ask["op"]
        if op == "get":
            namespace = _namespace()
            if ask["name"] not in namespace:
                return json.dumps({"missing": True})
            return json.dumps({"value": encode(namespace[ask["name"]])})
        if op == "run":  # a function of the judge's, by value, run here on the notebook's names
            (function, args, kwargs), _ = pickle.loads(base64.b64decode(ask["args"]))
            return json.dumps({"value": encode(function(*args, **kwargs))})
        target = _REFS[ask["ref"]]
        if op in ("call", "getitem"):
            args, kwargs = pickle.loads(base64.b64decode(ask["args"]))
            if op == "getitem":
                return json.dumps({"value": encode(target[args[0]])})
            before = [json.dumps(encode(_state(a))) for a in args]
            before_kw = {k: json.dumps(encode(_state(a))) for k, a in kwargs.items()}
            value = target(*args, **kwargs)
            after = [None if b == (now := json.dumps(encode(_state(a)))) else json.loads(now)
                     for a, b in zip(args, before)]
            after_kw = {k: json.loads(now) for k, a in kwargs.items()
                        if before_kw[k] != (now := json.dumps(encode(_state(a))))}
            return json.dumps({"value": encode(value), "after": after, "after_kw": after_kw})
        if op == "getattr":
            return json.dumps({"value": encode(getattr(target, ask["name"]))})
        simple = {"len": len, "iter": list, "repr": repr, "str": str, "bool": bool}
        return json.dumps({"value": encode(simple[op](target))})
    except Exception as error:  # the student's code raised: the judge raises it in the test
        return json.dumps({"error": {"type": type(error).__name__, "message": str(error)[:2000]}})


# --- the judge's side ---------------------------------------------------------------------------------

class GradingError(Exception):
    """Raised in the judge when the student's kernel could not answer (it died, ran out of time,
    or answered with something that is not plain data)."""


_RAISED: dict[str, type] = {}


def student_error(type_name: str, message: str) -> Exception:
    """The exception a student's code raised, rebuilt in the judge: a :class:`StudentError` that is
    also the built-in exception of that name (so ``except ValueError`` still catches it)."""
    base = getattr(builtins, type_name, None) if isinstance(type_name, str) else None
    if (not (isinstance(base, type) and issubclass(base, Exception))
            or issubclass(base, (StopIteration, StopAsyncIteration))):  # would end a loop of the test's
        base = Exception
    if type_name not in _RAISED:
        _RAISED[type_name] = type(str(type_name)[:80], (StudentError, base), {})
    try:
        return _RAISED[type_name](str(message))
    except Exception:
        return StudentError(f"{type_name}: {message}")


class StudentError(Exception):
    """An exception the student's code raised in its own kernel, as the judge sees it."""


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_INT_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8")


def _dtype(text: Any) -> np.dtype:
    if not isinstance(text, str) or len(text) > 16:
        raise ValueError("bad dtype")
    dtype = np.dtype(text)
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.hasobject:
        raise ValueError(f"dtype {text!r} is not numeric")
    return dtype


def _array(o: dict, dtype: np.dtype) -> np.ndarray:
    shape = o["shape"]
    if type(shape) is not list or len(shape) > 32 or any(type(n) is not int or n < 0 for n in shape):
        raise ValueError("bad shape")
    data = base64.b64decode(o["data"], validate=True)
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise ValueError("array data does not match its shape")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def decode(o: Any, depth: int = 0) -> Any:
    """A value from :func:`encode`'s output (already parsed from JSON), rebuilt from plain data only.

    Raises ``ValueError`` for anything that is not what :func:`encode` writes.
    """
    import torch

    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if o is None or type(o) in (bool, int, float, str):
        return o
    if type(o) is not dict or type(o.get("t")) is not str:
        raise ValueError(f"not a value: {type(o).__name__}")
    tag = o["t"]
    if tag in ("list", "tuple", "set", "frozenset"):
        items = o["v"]
        if type(items) is not list:
            raise ValueError("bad container")
        decoded = [decode(v, depth + 1) for v in items]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](decoded)
    if tag == "dict":
        pairs = o["v"]
        if type(pairs) is not list or any(type(p) is not list or len(p) != 2 for p in pairs):
            raise ValueError("bad dict")
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in pairs}
    if tag == "float":
        return _FLOATS[o["v"]]
    if tag == "complex":
        return complex(*(float(decode(v)) for v in o["v"][:2]))
    if tag == "bytes":
        return base64.b64decode(o["v"], validate=True)
    if tag == "range":
        start, stop, step = o["v"]
        if not all(type(n) is int for n in (start, stop, step)):
            raise ValueError("bad range")
        return range(start, stop, step)
    if tag == "ndarray":
        return _array(o, _dtype(o["dtype"]))
    if tag == "npscalar":
        return _array({"shape": [], "data": o["data"]}, _dtype(o["dtype"]))[()]
    if tag == "array":  # strings, or objects (each itself decoded from plain data)
        values = decode(o["v"], depth + 1)
        if type(values) is not list:
            raise ValueError("bad array")
        if o["dtype"] == "object":
            array = np.empty(len(values), dtype=object)
            array[:] = values
        elif isinstance(o["dtype"], str) and len(o["dtype"]) < 16 and np.dtype(o["dtype"]).kind in "US":
            array = np.array(values, dtype=o["dtype"])
        else:
            raise ValueError("bad array")
        return array.reshape(o["shape"])
    if tag == "tensor":
        name = o["dtype"]
        if name not in ("float16", "bfloat16", "float32", "float64", "complex64", "complex128", *_INT_DTYPES):
            raise ValueError(f"tensor dtype {name!r}")
        array = _array(o, np.dtype("float32" if name == "bfloat16" else name))
        tensor = torch.from_numpy(array)
        return tensor.to(torch.bfloat16) if name == "bfloat16" else tensor
    if tag == "torch.dtype":
        value = getattr(torch, str(o["v"]), None)
        if not isinstance(value, torch.dtype):
            raise ValueError("bad dtype")
        return value
    if tag == "torch.device":
        return torch.device(str(o["v"])[:16])
    if tag == "ref":
        if type(o["id"]) is not int:
            raise ValueError("bad handle")
        cls = RemoteFunction if o.get("callable") is True else Remote
        return cls(o["id"], str(o.get("type", "object"))[:80])
    raise ValueError(f"unknown tag {tag!r}")


def _ask(request: dict) -> dict:
    """Send one request to the student's kernel through the grader (an ``input()`` the grader answers)."""
    reply = builtins.input(PREFIX + json.dumps(request))
    try:
        answer = json.loads(reply)
        if type(answer) is not dict:
            raise ValueError("not an answer")
    except (ValueError, RecursionError) as error:
        raise GradingError(f"the notebook's answer could not be read: {error}") from None
    if "grader" in answer:  # the grader itself: the kernel died, ran out of time, answered too much
        raise GradingError(str(answer["grader"]))
    if "error" in answer:
        error = answer["error"] if type(answer["error"]) is dict else {}
        raise student_error(str(error.get("type", "Exception")), str(error.get("message", "")))
    return answer


def _value(answer: dict) -> Any:
    try:
        return decode(answer.get("value"))
    except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as error:
        raise GradingError(f"the notebook answered with something that is not plain data: {error}") from None


class _ByValue(pickle.Pickler):
    """Pickles the judge's own functions by value and handles by their number."""

    def reducer_override(self, obj):
        if isinstance(obj, Remote):
            return _ref, (object.__getattribute__(obj, "_id"),)
        if isinstance(obj, types.FunctionType) and obj.__module__ == "__main__":
            cells = tuple(c.cell_contents for c in obj.__closure__ or ())
            return _rebuild_function, (marshal.dumps(obj.__code__), obj.__name__, obj.__defaults__,
                                       obj.__kwdefaults__, cells)
        return NotImplemented


def _pickled(args: tuple, kwargs: dict) -> str:
    buffer = io.BytesIO()
    _ByValue(buffer, protocol=4).dump((args, kwargs))
    return _b64(buffer.getvalue())


def _holds_handle(value: Any, depth: int = 0) -> bool:
    """Whether a decoded value holds a :class:`Remote` anywhere (state must be data all the way down)."""
    if isinstance(value, Remote) or depth > MAX_DEPTH:
        return True
    if isinstance(value, dict):
        return any(_holds_handle(k, depth + 1) or _holds_handle(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_handle(v, depth + 1) for v in value)
    return False


def _copy_back(target: Any, state: Any) -> None:
    """Put into the judge's argument what the student's function left in its copy: an object the
    test made for this call. One the judge had before the cell (the instructor's ``net``, ``x0``)
    is never changed by a student's call: a test would compute its oracle on what the student left."""
    import torch

    shared = [id(target)]  # what writing into the target writes into
    if isinstance(target, torch.nn.Module):
        shared += [id(t) for t in [*target.parameters(), *target.buffers()]]
    if (set(shared) & _PROTECTED or (isinstance(target, torch.Tensor) and target._base is not None)
            or (isinstance(target, np.ndarray) and target.base is not None)):
        raise GradingError(f"the notebook's function changed its argument (a {type(target).__name__} the "
                           "test passed in, or a view of one), which it must leave as it was")
    if _holds_handle(state):
        raise GradingError("the call left its arguments holding something that is not data")
    if isinstance(target, torch.optim.lr_scheduler.LRScheduler):
        if not isinstance(state, dict) or set(state) - set(target.state_dict()):
            raise GradingError("the call left its scheduler with attributes a scheduler does not have")
        target.load_state_dict(state)
    elif isinstance(target, (torch.nn.Module, torch.optim.Optimizer)):
        target.load_state_dict(state)
    elif isinstance(target, torch.Tensor) and isinstance(state, torch.Tensor) and state.shape == target.shape:
        with torch.no_grad():
            target.copy_(state.to(target.dtype))
    elif isinstance(target, np.ndarray) and isinstance(state, np.ndarray) and state.shape == target.shape:
        if target.flags.writeable:
            target[...] = state
    elif isinstance(target, list) and isinstance(state, list):
        target[:] = state
    elif isinstance(target, dict) and isinstance(state, dict):
        target.clear()
        target.update(state)


class Remote:
    """A handle, in the judge, to an object that lives in the student's kernel: every use is a request."""

    __slots__ = ("_id", "_type")

    def __init__(self, handle: int, type_name: str):
        object.__setattr__(self, "_id", handle)
        object.__setattr__(self, "_type", type_name)

    def _op(self, op: str, **more) -> Any:
        return _value(_ask({"op": op, "ref": object.__getattribute__(self, "_id"), **more}))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._op("getattr", name=name)

    def __getitem__(self, key: Any) -> Any:
        return self._op("getitem", args=_pickled((key,), {}))

    def __len__(self) -> int:
        n = self._op("len")
        if type(n) is not int:
            raise GradingError("len() of a notebook object was not an int")
        return n

    def __iter__(self):
        return iter(self._op("iter"))

    def __bool__(self) -> bool:
        return self._op("bool") is True

    def __repr__(self) -> str:
        return str(self._op("repr"))

    def __str__(self) -> str:
        return str(self._op("str"))


class RemoteFunction(Remote):
    """A handle to a function (or any callable) of the student's notebook: calling it calls it there,
    on a copy of the arguments, and copies back what it changed in them."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        handle = object.__getattribute__(self, "_id")
        answer = _ask({"op": "call", "ref": handle, "args": _pickled(args, kwargs)})
        value = _value(answer)
        after = answer.get("after") if type(answer.get("after")) is list else []
        after_kw = answer.get("after_kw") if type(answer.get("after_kw")) is dict else {}
        changed = [(target, state) for target, state in zip(args, after) if state is not None]
        changed += [(kwargs[key], state) for key, state in after_kw.items() if key in kwargs]
        if changed and not _CHANGES_ALLOWED:  # an input changed in place would rig the test's own use of it
            kind = type(changed[0][0]).__name__
            raise GradingError(f"the notebook's function changed its argument (a {kind}) in place; this "
                               "test needs its inputs left as they were")
        try:
            for target, state in changed:
                _copy_back(target, decode(state))
        except (ValueError, KeyError, TypeError, RuntimeError, RecursionError, AttributeError,
                IndexError) as error:
            raise GradingError(f"the call changed its arguments into something else: {error}") from None
        return value


_CHANGES_ALLOWED = False


class changes_allowed:
    """``with changes_allowed(): load_checkpoint(checkpoint, model, optimizer, scheduler)``: in a test,
    the calls inside may change the arguments the test made for them, as the function is meant to
    (the judge copies the change into its own objects). Elsewhere a call that changes an argument in
    place fails the test: the test would otherwise compute its own expectation on what the student
    left. The judge's objects from earlier cells stay protected even here. Outside a judge (the
    student's own notebook) it changes nothing."""

    def __enter__(self) -> changes_allowed:
        global _CHANGES_ALLOWED
        self._before, _CHANGES_ALLOWED = _CHANGES_ALLOWED, True
        return self

    def __exit__(self, *exc) -> None:
        global _CHANGES_ALLOWED
        _CHANGES_ALLOWED = self._before


def in_notebook(function, *args, **kwargs) -> Any:
    """In the judge: run ``function`` (a test's own, sent by value) in the student's kernel, where the
    names it uses are the notebook's, and return its result as plain data.

    For what only one process can observe: whether a value a student's function returned shares
    memory with its argument (a checkpoint that is a copy, or a view that training on changes).
    The result is the student's kernel's answer: a test compares it with what it expects, as with
    any other value. Outside a judge (the student's own notebook) it simply calls ``function``.
    """
    if not _IN_JUDGE:
        return function(*args, **kwargs)
    return _value(_ask({"op": "run", "args": _pickled((function, args, kwargs), {})}))


_IN_JUDGE = False  # set by the grader's judge before it runs any cell


def bind(names: list[str]) -> list[str]:
    """In the judge, before each cell: mark what the judge holds as its own (:func:`protect`), then
    fetch each name the judge's own cells did not bind from the student's notebook into the
    judge's namespace (a value as data, a function as a :class:`RemoteFunction`).

    Returns the names the notebook does not have (or could not give as plain data: it says which).
    """
    protect()
    namespace, missing = _namespace(), []
    own = set(judge_names()) | set(dir(builtins))
    for name in names:
        if name in own:
            continue
        try:
            answer = _ask({"op": "get", "name": name})
            value = None if answer.get("missing") is True else _value(answer)
        except (GradingError, StudentError) as error:
            print(f"[grader] could not read {name} from the notebook: {error}")
            answer = {"missing": True}
        if answer.get("missing") is True:
            missing.append(name)
            if name in _BOUND:
                namespace.pop(name, None)
                _BOUND.pop(name)
            continue
        namespace[name] = value
        _BOUND[name] = value
    return missing


_BOUND: dict[str, Any] = {}
#: ids of the objects the judge's namespace held when the current cell began (kept alive by _HELD)
_PROTECTED: set[int] = set()
_HELD: list[Any] = []


def protect() -> None:
    """Mark what the judge's namespace holds now (values, their items and attributes, a few levels
    deep) as the judge's own: a student's call may not change them (see :func:`_copy_back`)."""
    import torch

    held, seen = [], set()
    stack = [(v, 0) for k, v in _namespace().items() if not k.startswith("_")]
    while stack:
        value, depth = stack.pop()
        if id(value) in seen or isinstance(value, (types.ModuleType, type, types.FunctionType, Remote)):
            continue
        seen.add(id(value))
        held.append(value)
        if depth >= 4:
            continue
        if isinstance(value, (list, tuple, set, frozenset)):
            stack += [(v, depth + 1) for v in value]
        elif isinstance(value, dict):
            stack += [(v, depth + 1) for v in value.values()]
        elif isinstance(value, torch.nn.Module):
            stack += [(v, depth + 1) for v in [*value.parameters(), *value.buffers()]]
        elif hasattr(value, "__dict__") and not isinstance(value, torch.Tensor):
            stack += [(v, depth + 1) for v in vars(value).values()]
    _PROTECTED.clear()
    _PROTECTED.update(seen)
    _HELD[:] = held


def judge_names() -> list[str]:
    """The names of the judge's namespace that its own cells bound (not those :func:`bind` put there)."""
    return [k for k, v in _namespace().items() if not (k in _BOUND and _BOUND[k] is v)]
