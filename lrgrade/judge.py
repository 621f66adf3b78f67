"""The judge: a process that runs the instructor's cells and the tests of one notebook, and never
a line of student code.

Starting a Python that has torch, numpy and lrlib imported costs seconds of CPU; a class pays
it once per grading worker, not once per notebook: :class:`JudgeServer` imports them once and
forks a fresh judge for each notebook (:meth:`JudgeServer.spawn`). The fork happens before any
thread exists in the server, so the child starts from a clean, single-threaded copy.

A judge (:class:`Judge`) runs cells in a namespace of its own (its ``__main__``), with its
output captured. Where a cell needs a value of the student's notebook it calls ``input()``
(see :mod:`lrlib._grading`); the request travels to the grading worker, which asks the
student's kernel and sends back plain data. Isolated, the server and its judges run in a
:class:`~lrgrade.sandbox.Sandbox` of their own (an unprivileged user, no network, no view of
the course, a cgroup): a judge only ever runs the instructor's code, but it reads data a
student's kernel produced.

Wire format, one JSON object per line over a Unix socket: the worker sends ``{"run": code}``;
the judge answers ``{"input": prompt}`` (the worker replies ``{"reply": text}``) any number of
times, then ``{"status": "ok"|"error", "output": text}``.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
import types

#: what a judge imports before it forks: what the instructor's cells and tests use
PRELOAD = ("numpy", "torch", "pandas", "scipy.stats", "sklearn.datasets", "lrlib", "lrlib.exercise",
           "lrlib._grading", "lrlib.data", "lrlib.models", "lrlib.batched", "lrlib.trials", "lrlib.update",
           "lrlib.finder", "lrlib.schedules", "lrlib.sweep")


def warm_up() -> None:
    """What torch and sklearn load on first use (an optimizer's first step, the digits' files),
    done once before forking, on one thread, so that no judge pays for it."""
    import torch

    weight = torch.nn.Parameter(torch.zeros(2))
    for optimizer in (torch.optim.SGD([weight], lr=0.1, momentum=0.9), torch.optim.Adam([weight]),
                      torch.optim.AdamW([weight]), torch.optim.RAdam([weight])):
        weight.grad = torch.ones(2)
        optimizer.step()
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)
    optimizer.step()
    scheduler.step()
    try:
        from sklearn.datasets import load_digits

        load_digits()
    except Exception:  # not installed: the cells that need it say so
        pass
MAX_LINE = 512 * 2**20


def _send(sock: socket.socket, message: dict) -> None:
    # UTF-8 as is: escaping would make one character of a student's answer 12 bytes
    sock.sendall(json.dumps(message, ensure_ascii=False).encode("utf-8", "replace") + b"\n")


class _Lines:
    """Reads newline-terminated JSON messages from a socket."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buffer = sock, bytearray()

    def read(self, timeout: float | None = None) -> dict | None:
        """The next message; None at end of file; TimeoutError when ``timeout`` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                raise TimeoutError from None
            except OSError:
                return None
            finally:
                self.sock.settimeout(None)
            if not chunk:
                return None
            self.buffer += chunk
            if len(self.buffer) > MAX_LINE:
                return None
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        return json.loads(line)


# --- inside the judge -------------------------------------------------------------------------------

def _serve_notebook(sock: socket.socket, output_cap: int) -> None:
    """The judge's loop: run each cell it is sent in its own ``__main__`` and say how it went."""
    import torch

    torch.set_num_threads(1)
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    namespace = vars(main)
    namespace["__builtins__"] = builtins
    lines = _Lines(sock)

    def ask(prompt: object = "") -> str:
        _send(sock, {"input": str(prompt)})
        try:
            message = lines.read()
        except ValueError:  # an answer that is not JSON: the test that asked fails, the judge goes on
            return json.dumps({"grader": "the notebook's answer could not be read"})
        if message is None:
            os._exit(0)
        return str(message.get("reply", ""))

    builtins.input = ask
    import lrlib._grading

    lrlib._grading._IN_JUDGE = True  # in_notebook() now runs its function in the student's kernel
    while True:
        message = lines.read()
        if message is None:
            os._exit(0)
        out = _Capped(output_cap)
        sys.stdout = sys.stderr = out
        status = "ok"
        try:
            exec(compile(message["run"], "<cell>", "exec"), namespace)
        except BaseException as error:  # an assertion, or anything the cell raised
            status = "error"
            print(f"{type(error).__name__}: {error}", file=out)
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        _send(sock, {"status": status, "output": out.getvalue()})


class _Capped(io.StringIO):
    def __init__(self, cap: int):
        super().__init__()
        self.cap = cap

    def write(self, text: str) -> int:
        room = self.cap - self.tell()
        return super().write(text[:room]) if room > 0 else len(text)


def _server_main(control_fd: int) -> None:
    """``python -m lrgrade.judge FD``: import the heavy modules, then fork a judge per request."""
    import importlib

    os.environ.update(LRLIB_DEVICE="cpu", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # an optional module: the cells that need it import it themselves
            pass
    import torch

    torch.set_num_threads(1)  # no thread pool exists when it forks
    warm_up()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked judges are reaped by the kernel
    control = socket.socket(fileno=control_fd)
    _send(control, {"ready": True})
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 1 << 16, 1)
        except OSError:
            return
        if not data:
            return
        request = json.loads(data)
        pid = os.fork()
        if pid == 0:
            control.close()
            sock = socket.socket(fileno=fds[0])
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _serve_notebook(sock, int(request["output_cap"]))
            except BaseException:
                traceback.print_exc()
            os._exit(0)
        os.close(fds[0])
        _send(control, {"pid": pid})


# --- in the grading worker ----------------------------------------------------------------------------

class JudgeServer:
    """A process that imported what judges need, and forks one per notebook (one per grading worker).

    Isolated, it runs in its own :class:`~lrgrade.sandbox.Sandbox` (so do the judges it forks);
    in unsafe mode, as this process's user."""

    _lock = threading.Lock()
    _instances: dict[bool, JudgeServer] = {}  # one per isolation setting: switching costs no restart

    def __init__(self, isolate: bool = True):
        import atexit
        import fcntl
        import subprocess

        from lrgrade.sandbox import Limits, Sandbox

        self.isolate = isolate
        self.control, theirs = socket.socketpair()
        fd = fcntl.fcntl(theirs.fileno(), fcntl.F_DUPFD, 10)  # clear of the sandbox's own fd 3
        theirs.close()
        argv = [sys.executable, "-c", f"from lrgrade.judge import _server_main; _server_main({fd})"]
        self.box = Sandbox(uid=JUDGE_UID_BASE + os.getpid() % 1000, limits=Limits(memory_bytes=8 * 2**30),
                           expose_grader=True) if isolate else None
        command = self.box.command(argv) if self.box else argv
        self.process = subprocess.Popen(command, pass_fds=[fd], stdin=subprocess.DEVNULL)
        os.close(fd)
        atexit.register(self.close)
        self.lines = _Lines(self.control)
        if (self.lines.read(timeout=300) or {}).get("ready") is not True:
            self.close()
            raise RuntimeError("the judge server did not start")

    @classmethod
    def shared(cls, isolate: bool = True) -> JudgeServer:
        """This process's server for ``isolate``, started on first use (and again if it died)."""
        with cls._lock:
            server = cls._instances.get(isolate)
            if server is None or server.process.poll() is not None:
                if server is not None:
                    server.close()
                server = cls._instances[isolate] = cls(isolate)
            return server

    def spawn(self, output_cap: int) -> Judge:
        """A fresh judge, forked from the server."""
        ours, theirs = socket.socketpair()
        with self._lock:
            request = json.dumps({"output_cap": output_cap}).encode()
            socket.send_fds(self.control, [request], [theirs.fileno()])
            answer = self.lines.read(timeout=60)
        theirs.close()
        if not answer or "pid" not in answer:
            raise RuntimeError("the judge server did not fork a judge")
        return Judge(ours, int(answer["pid"]), self.box)

    def close(self) -> None:
        """Stop the server and every judge it forked."""
        self.control.close()
        if self.box is not None:
            self.box.end(self.process)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


JUDGE_UID_BASE = 60000  # judges run as 60000-60999, never a student's uid


class Judge:
    """One notebook's judge: runs trusted cells, answering their requests for the notebook's values."""

    def __init__(self, sock: socket.socket, pid: int, box=None):
        self.sock, self.lines, self.pid, self.box = sock, _Lines(sock), pid, box

    def run_judged(self, code: str, timeout: float, output_cap: int, on_input) -> tuple[str, str]:
        """Run ``code``; return (status, output): ok, error, timeout (the judge's own time, not the
        time ``on_input`` took), or dead. ``on_input(prompt) -> (answer, printed)``."""
        try:
            _send(self.sock, {"run": code})
        except OSError:
            return "dead", ""
        left, printed = timeout, []
        while True:
            started = time.monotonic()
            try:
                message = self.lines.read(timeout=max(left, 0.0))
            except TimeoutError:
                self.close()
                self.kill()
                return "timeout", "".join(printed)
            except ValueError:  # not JSON: the judge is broken
                self.close()
                return "dead", "".join(printed)
            left -= time.monotonic() - started
            if message is None:
                return "dead", "".join(printed)
            if "input" in message:
                answer, out = on_input(message["input"])
                printed.append(out)
                try:
                    _send(self.sock, {"reply": answer})
                except OSError:
                    return "dead", "".join(printed)
                continue
            output = "".join(printed) + str(message.get("output", ""))
            return ("ok" if message.get("status") == "ok" else "error"), output[:output_cap]

    def close(self) -> None:
        """End this judge: closing its socket makes it exit (its loop reads end of file); one that is
        busy (a cell past its time) is killed with the rest of the server's sandbox but the server."""
        self.sock.close()

    def kill(self) -> None:
        """Kill this judge (one past its time would otherwise go on computing). Its pid is the one
        the server saw, in the sandbox's PID namespace: the host's is found through the cgroup."""
        if self.box is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            return
        for host_pid in self.box.cgroup.pids() if self.box.cgroup else []:
            try:
                status = open(f"/proc/{host_pid}/status").read()
                inner = int(status.split("NSpid:")[1].split("\n")[0].split()[-1])
            except (OSError, IndexError, ValueError):
                continue
            if inner == self.pid:
                os.kill(host_pid, signal.SIGKILL)


if __name__ == "__main__":
    _server_main(int(sys.argv[1]))
