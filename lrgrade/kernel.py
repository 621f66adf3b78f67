"""The kernel protocol: a (sandboxed) Jupyter kernel, the grader's snapshot in it, and cells run with limits.

:class:`Kernel` starts a kernel inside its own :class:`~lrgrade.sandbox.Sandbox` (or, in
unsafe mode, as this process's user) and runs one cell at a time, watching the kernel's
process so that a cell that kills it costs seconds, not the whole timeout.

In the student's kernel, :data:`GUARD` runs before any student code: it snapshots what
instructor code relies on, and every instructor cell then runs through it
(:meth:`Kernel.run_guarded`), never through IPython's ``run_cell``, which a student's answer
can reconfigure; before each test it puts back and reports what answers changed. It is a
diagnosis, not the verdict: tests are decided in the judge (:mod:`lrgrade.notebook`).
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import functools
import hashlib
import hmac
import json
import math
import queue
import re
import secrets
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from lrgrade.sandbox import Limits, sandboxed_kernel_manager

MAX_MESSAGE = 80 * 2**20  # bytes of one message from a kernel (an answer to the judge is at most 64 MiB)
QUEUED = 64  # messages a channel keeps waiting
IDLE_GRACE_S = 2.0  # seconds to wait for "idle" after the reply before the output counts as lost

#: Installed in the kernel before any student code runs (see :func:`guard_code`).
#: It snapshots what instructor code relies on and defines ``run``, the only way instructor
#: cells and tests are executed: it puts back and reports whatever student code changed (the
#: watched modules' functions, torch's Tensor and Module classes, IPython's transformers,
#: events, exception handlers and methods, sys hooks and modules, the names instructor cells
#: bound), then compiles and executes the code itself, with its output captured, never through
#: ``run_cell`` (which student code can rewrite). Its answer carries an HMAC of the outcome
#: under a key kept only in a closure, so a stand-in cannot report success.
GUARD = r"""
def __lrgrade_install(key, name, output_cap, oracles):
    import builtins, hashlib, hmac, importlib, io, json, os, sys, types, warnings
    import math, numpy, torch
    import lrlib, lrlib.exercise
    for dotted in oracles:  # what instructor cells and tests use: import it before the snapshot
        parts = dotted.split(".")
        for end in range(len(parts), 1, -1):  # lrlib.models.f -> lrlib.models
            try:
                importlib.import_module(".".join(parts[:end]))
                break
            except Exception:
                continue
    weight = torch.nn.Parameter(torch.zeros(2))  # an optimizer's first step loads modules: not in a test
    for optimizer in (torch.optim.SGD([weight], lr=0.1), torch.optim.Adam([weight])):
        weight.grad = torch.ones(2)
        optimizer.step()
    del weight, optimizer
    ip = get_ipython()
    missing = object()
    written = [0]

    def cap_stream(stream):  # a flood of output is cut here, at the source, before it is a message
        base = type(stream).write

        def capped(self, text, *args, **kwargs):
            room = output_cap - written[0]
            written[0] += len(text)
            if room > 0:
                base(self, text[:room], *args, **kwargs)
            return len(text)

        # a class with ``write`` as a property that ignores assignment: IPython 9 wraps and puts
        # back an instance's write around every cell (for its output history), which would undo it
        CappedStream = type("CappedStream", (type(stream),), {
            "write": property(lambda self: capped.__get__(self), lambda self, value: None)})
        vars(stream).pop("write", None)
        stream.__class__ = CappedStream

    for stream in (sys.stdout, sys.stderr):
        cap_stream(stream)
    ip.events.register("pre_execute", lambda: written.__setitem__(0, 0))

    def watched(n):
        return (n in ("builtins", "math", "numpy", "torch", "lrlib")
                or n.startswith(("numpy.", "lrlib.")) or (n.startswith("torch.") and "._" not in n))

    def functions(d):
        return {k: v for k, v in d.items()
                if not k.startswith("_") and (callable(v) or isinstance(v, types.ModuleType))}

    state = {}
    torch_dir = os.path.dirname(torch.__file__) + os.sep

    def torch_wrapper(new, old):
        code = getattr(new, "__code__", None)
        inner = getattr(new, "__wrapped__", None)
        while inner is not None and inner is not old:
            inner = getattr(inner, "__wrapped__", None)
        return inner is old and code is not None and code.co_filename.startswith(torch_dir)

    def snapshot():  # taken at the first run, in the context every later run has, before any answer
        modules = {n: (m, functions(vars(m))) for n, m in list(sys.modules.items())
                   if m is not None and watched(n)}
        classes = [(c, dict(vars(c))) for c in (torch.Tensor, torch.nn.Module)]
        tm = ip.input_transformer_manager
        lists = {"AST transformers": ip.ast_transformers,
                 "input transformers": ip.input_transformers_cleanup,
                 "input transformers (post)": ip.input_transformers_post,
                 "cleanup transforms": tm.cleanup_transforms, "line transforms": tm.line_transforms,
                 "token transformers": tm.token_transformers}
        lists.update({f"event {e!r}": cbs for e, cbs in ip.events.callbacks.items()})
        saved_lists = {label: (lst, list(lst)) for label, lst in lists.items()}
        callbacks = ip.events.callbacks
        instance = {k: v for k, v in vars(ip).items() if callable(v)}
        traits = {t: getattr(ip, t) for t in ("display_formatter", "displayhook", "display_pub", "compile",
                                              "input_transformer_manager", "events", "custom_exceptions")}
        hooks = {"sys.excepthook": sys.excepthook, "sys.displayhook": sys.displayhook,
                 "sys.stdout": sys.stdout, "sys.stderr": sys.stderr}
        path_hooks = (list(sys.meta_path), list(sys.path_hooks))
        protected = {}

        state.update(modules=modules, classes=classes, saved_lists=saved_lists, callbacks=callbacks,
                     instance=instance, traits=traits, hooks=hooks, path_hooks=path_hooks,
                     protected=protected)

    def check():
        with warnings.catch_warnings():  # reading deprecated attributes warns; nothing to show a student
            warnings.simplefilter("ignore")
            return check_and_restore()

    def check_and_restore():
        if not state:
            snapshot()
        modules, classes, saved_lists = state["modules"], state["classes"], state["saved_lists"]
        callbacks, instance, traits = state["callbacks"], state["instance"], state["traits"]
        hooks, path_hooks, protected = state["hooks"], state["path_hooks"], state["protected"]
        found = []
        for n, (m, saved) in modules.items():
            if sys.modules.get(n) is not m:
                found.append(f"sys.modules[{n!r}]")
                sys.modules[n] = m
            d = vars(m)
            for k, v in saved.items():
                now = d.get(k, missing)
                if now is not v:
                    if torch_wrapper(now, v):  # torch wrapping its own function (dynamo does, lazily)
                        saved[k] = now
                        continue
                    found.append(f"{n}.{k}")
                    d[k] = v
        for c, saved in classes:
            for k, v in saved.items():
                if vars(c).get(k, missing) is not v:
                    found.append(f"{c.__name__}.{k}")
                    setattr(c, k, v)
            for k in [k for k in vars(c) if k not in saved]:
                found.append(f"{c.__name__}.{k}")
                delattr(c, k)
        if ip.events.callbacks is not callbacks:
            found.append("IPython events")
            ip.events.callbacks = callbacks
        for label, (lst, saved) in saved_lists.items():
            if len(lst) != len(saved) or any(a is not b for a, b in zip(lst, saved)):
                found.append(f"IPython {label}")
                lst[:] = saved
        for k in [k for k, v in vars(ip).items() if callable(v) and instance.get(k, missing) is not v]:
            found.append(f"get_ipython().{k}")
            if k in instance:
                setattr(ip, k, instance[k])
            else:
                delattr(ip, k)
        for t, v in traits.items():
            if getattr(ip, t) is not v:
                found.append(f"get_ipython().{t}")
                setattr(ip, t, v)
        for label, v in hooks.items():
            mod, attr = label.split(".")
            if getattr(sys, attr) is not v:
                found.append(label)
                setattr(sys, attr, v)
        if sys.gettrace() is not None or sys.getprofile() is not None:
            found.append("sys.settrace/setprofile")
            sys.settrace(None)
            sys.setprofile(None)
        if sys.meta_path != path_hooks[0] or sys.path_hooks != path_hooks[1]:
            found.append("import hooks")
            sys.meta_path[:], sys.path_hooks[:] = path_hooks
        for k, v in protected.items():
            if ip.user_ns.get(k, missing) is not v:
                found.append(f"the name {k!r}")
                ip.user_ns[k] = v
        return found

    class Capped(io.StringIO):
        def write(self, text):
            room = output_cap - self.tell()
            return super().write(text[:room]) if room > 0 else len(text)

    def run(nonce, code):
        found = check()
        hooks, protected = state["hooks"], state["protected"]
        try:  # reap the processes the grader ended: as zombies they would still count against the limit
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        ns = ip.user_ns
        before = dict(ns)
        out = Capped()
        sys.stdout = sys.stderr = out
        status = "ok"
        try:
            exec(compile(code, "<instructor cell>", "exec"), ns)
        except BaseException as error:  # an interrupt too: the grader decides what it means
            status = f"{type(error).__name__}: {error}"
        finally:
            sys.stdout, sys.stderr = hooks["sys.stdout"], hooks["sys.stderr"]
        for k, v in ns.items():  # what instructor code bound, tests rely on: kept from now on
            if before.get(k, missing) is not v and not k.startswith("_") and (
                    callable(v) or isinstance(v, types.ModuleType)):
                protected[k] = v
        proof = hmac.new(key.encode(), f"{nonce}|{status}|{found}".encode(), hashlib.sha256).hexdigest()
        return json.dumps({"status": status, "output": out.getvalue(), "tampered": found, "proof": proof})

    setattr(sys, name, run)


__lrgrade_install("__KEY__", "__NAME__", __CAP__, __ORACLES__)
del __lrgrade_install
"""


def guard_code(key: str, name: str, output_cap: int, oracles: Sequence[str] = ()) -> str:
    """:data:`GUARD` for one kernel: its HMAC key, the ``sys`` attribute ``run`` is kept under,
    the characters of output kept per cell, and the modules to import before the snapshot."""
    modules = [m for m in oracles if re.fullmatch(r"[A-Za-z_][\w.]*", m)]
    return (GUARD.replace("__KEY__", key).replace("__NAME__", name).replace("__CAP__", str(int(output_cap)))
            .replace("__ORACLES__", repr(modules)))


def oracle_modules(code: str) -> list[str]:
    """The dotted names under lrlib, numpy, torch, math and scipy that instructor code uses
    (``lrlib.models.transformer_param_count``, ``np.testing``): the guard imports the module
    part of each before any answer runs, so the snapshot holds their real functions.

    >>> oracle_modules("from lrlib.models import f\\nx = np.testing.assert_allclose")
    ['lrlib.models', 'numpy.testing.assert_allclose']
    """
    names = re.findall(r"\b((?:lrlib|numpy|np|torch|math|scipy)(?:\.[A-Za-z_]\w*)+)", code)
    return sorted({"numpy." + n[3:] if n.startswith("np.") else n for n in names})


@dataclass
class Guarded:
    """What :meth:`Kernel.run_guarded` saw: ``status`` (ok, error, timeout, dead, or failed when
    the guard did not answer with a valid proof), the code's output, what the guard found changed
    and put back before running it, and whether the guard's proof checked out."""

    status: str
    output: str
    tampered: list[str]
    proven: bool


class Kernel:
    """A Jupyter kernel in its own :class:`~lrgrade.sandbox.Sandbox` (or, in unsafe mode, as this
    process's user in a fresh folder), plus the client that talks to it."""

    def __init__(self, uid: int, limits: Limits, isolate: bool = True):
        self.uid, self.isolate = uid, isolate
        self._folder = None
        if isolate:
            self.manager = sandboxed_kernel_manager(uid=uid, limits=limits)
            cwd = None
        else:  # unsafe: the student's code runs with the grader's rights
            import tempfile

            from jupyter_client import KernelManager

            self.manager = KernelManager(kernel_name="python3")
            self._folder = tempfile.TemporaryDirectory(prefix="lrgrade-unsafe-")
            cwd = self._folder.name
        try:
            # the kernel's own start-up chatter, times a class, would bury the summary
            self.manager.start_kernel(cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._bound_messages()
            self.client = self.manager.client(context=self.manager.context)  # the context with the caps
            self.client.start_channels()
            self.client.wait_for_ready(timeout=120)
            if isolate:  # before any student code: the kernel's sockets can no longer be replaced
                self.manager.sandbox.lock_sockets()
        except BaseException:
            self.close()
            raise

    def _bound_messages(self) -> None:
        """Cap what the kernel can make this process hold: no message over MAX_MESSAGE bytes (the
        connection is dropped instead) and at most QUEUED waiting per channel."""
        import zmq

        context = self.manager.context
        context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        context.setsockopt(zmq.RCVHWM, QUEUED)

    def install_guard(self, timeout: float, output_cap: int, oracles: Sequence[str] = ()) -> None:
        """Put :data:`GUARD` into the kernel, before any student code runs, with ``oracles``
        (:func:`oracle_modules` of the instructor's cells) imported first."""
        self._key, self._name = secrets.token_hex(32), "_" + secrets.token_hex(12)
        code = guard_code(self._key, self._name, output_cap, oracles)
        status, out = self.run(code, timeout, output_cap=2000)
        first = self.run_guarded("", timeout) if status == "ok" else None  # the snapshot, before any answer
        if first is None or first.status != "ok" or first.tampered:
            raise RuntimeError(f"the grader could not prepare the kernel: {status}: {out} "
                               f"{first.output if first else ''}")

    def run_guarded(self, code: str, timeout: float) -> Guarded:
        """Execute instructor code (a test, a setup cell) through the guard, not ``run_cell``.

        The kernel runs an empty cell and evaluates the guard's ``run`` as a user expression
        (plain ``eval``: no transformer touches it). Returns the kernel status of that request
        and, when the guard answered with a valid proof, what it reported.
        """
        nonce = secrets.token_hex(16)
        expression = f"__import__('sys').{self._name}({nonce!r}, {code!r})"
        status, out, expressions = self._execute("", timeout, 2000, {"r": expression})
        reply = expressions.get("r", {})
        if status != "ok" or reply.get("status") != "ok":
            return Guarded(status if status != "ok" else "failed", out, [], False)
        try:
            answer = json.loads(ast.literal_eval(reply["data"]["text/plain"]))
            signed = f"{nonce}|{answer['status']}|{answer['tampered']}".encode()
            expected = hmac.new(self._key.encode(), signed, hashlib.sha256).hexdigest()
        except (KeyError, ValueError, SyntaxError, TypeError):
            return Guarded("failed", out, [], False)
        if not hmac.compare_digest(expected, str(answer.get("proof", ""))):
            return Guarded("failed", out, [], False)  # a stand-in answered, not the guard
        error = answer["status"] != "ok"
        text = answer["output"] + (f"{answer['status']}\n" if error else "")
        return Guarded("error" if error else "ok", text, list(answer["tampered"]), True)

    def run(self, code: str, timeout: float, output_cap: int) -> tuple[str, str]:
        """Execute ``code``; return (status, text output). Status: ok, error, timeout, dead."""
        status, out, _ = self._execute(code, timeout, output_cap, {})
        return status, out

    def evaluate(self, expression: str, timeout: float, output_cap: int) -> tuple[str, str, str]:
        """Evaluate ``expression`` as a user expression of an empty cell (no transformer touches it).
        Returns (status, output printed meanwhile, the value's ``text/plain``, or "" unless ok)."""
        status, out, expressions = self._execute("", timeout, output_cap, {"r": expression})
        reply = expressions.get("r", {})
        if status == "ok" and reply.get("status") != "ok":
            status = "error"
        return status, out, reply.get("data", {}).get("text/plain", "") if status == "ok" else ""

    def _execute(self, code: str, timeout: float, output_cap: int,
                 user_expressions: dict[str, str]) -> tuple[str, str, dict]:
        """:meth:`run`, plus the reply's evaluated ``user_expressions`` (empty unless it went ok)."""
        chunks: list[str] = []
        size = [0]

        def keep(msg):
            content = msg["content"]
            text = content.get("text") or ""
            if msg["msg_type"] == "error":
                text = f"{content.get('ename')}: {content.get('evalue')}\n"
            elif msg["msg_type"] in ("execute_result", "display_data"):
                text = content.get("data", {}).get("text/plain", "") + "\n"
            if text and size[0] < output_cap:
                chunks.append(text[: output_cap - size[0]])
                size[0] += len(text)

        # Not execute_interactive: it waits out the whole timeout for a kernel that died (sys.exit),
        # costing a minute per such student. This loop also watches the kernel's process.
        msg_id = self.client.execute(code, store_history=False, allow_stdin=False,
                                     user_expressions=user_expressions)
        deadline = time.monotonic() + timeout
        replied = idle = False
        replied_at = math.inf
        while not (replied and idle):
            now = time.monotonic()
            if now > deadline:
                return "timeout", "".join(chunks), {}
            if now > replied_at + IDLE_GRACE_S:
                # the reply came but idle never did: a message over MAX_MESSAGE (a flood of output
                # flushed at once) made ZMQ drop the connection; the cell itself has finished
                break
            try:
                msg = self.client.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                if not self.manager.is_alive():
                    return "dead", "".join(chunks), {}
            except Exception:  # a message the kernel forged (a bad signature): dropped, not obeyed
                continue
            else:
                if msg["parent_header"].get("msg_id") == msg_id:
                    if msg["msg_type"] == "status":
                        idle = msg["content"].get("execution_state") == "idle"
                    else:
                        keep(msg)
            while not replied and time.monotonic() <= deadline:
                # once the kernel is idle its reply is on its way: wait for it rather than for iopub
                wait = max(0.0, min(0.1, deadline - time.monotonic())) if idle else 0
                try:
                    candidate = self.client.get_shell_msg(timeout=wait)
                except queue.Empty:
                    break
                except Exception:  # forged, as above
                    continue
                if candidate["parent_header"].get("msg_id") == msg_id:
                    reply, replied, replied_at = candidate, True, time.monotonic()
        content = reply.get("content", {})
        return str(content.get("status", "error")), "".join(chunks), content.get("user_expressions", {}) or {}

    def kill_strays(self) -> None:
        """End every process the student's code started (the kernel stays), however deep its tree or
        whoever its parent: a fork bomb, a forgotten pool or a busy chain of decoys would otherwise
        hold the sandbox's process and CPU limits for the parts after it."""
        if not self.isolate:
            return
        process = getattr(self.manager.provisioner, "process", None)
        kernel = self.manager.sandbox.kernel_pid()
        if process is None or kernel is None:
            return
        self.manager.sandbox.kill_strays(keep=(process.pid, kernel))

    def interrupt(self) -> bool:
        """Interrupt a busy kernel; True if it is idle again within a few seconds."""
        try:
            self.manager.interrupt_kernel()
            status, _ = self.run("pass", timeout=3, output_cap=0)
            return status == "ok"
        except Exception:
            return False

    def close(self) -> None:
        """Stop the kernel and remove everything of it: every process in its cgroup, the cgroup and
        the sandbox's state folder (or, in unsafe mode, its folder)."""
        client = getattr(self, "client", None)
        try:
            if client is not None:
                client.stop_channels()
        except Exception:  # already gone
            pass
        if self.isolate:  # the kernel and its strays first, so that bwrap reaps them (Sandbox.end)
            self.manager.sandbox.end(getattr(self.manager.provisioner, "process", None)
                                     if self.manager.has_kernel else None)
        try:
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=True)
        except Exception:  # already gone
            pass
        if self._folder is not None:
            self._folder.cleanup()


def own_event_loop(function):
    """Run ``function`` in a fresh ``contextvars`` context and close the event loops it made.

    jupyter_client's blocking calls keep their asyncio loop in a context variable; a thread pool
    that copies its caller's context into every worker thread (Dask's does) would share one loop
    between threads ("This event loop is already running"). A fresh context gives each call its own.
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        context = contextvars.Context()
        try:
            return context.run(function, *args, **kwargs)
        finally:
            for value in context.values():
                if isinstance(value, asyncio.AbstractEventLoop) and not value.is_running():
                    value.close()
    return wrapper
