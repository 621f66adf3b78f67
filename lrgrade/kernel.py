"""The kernel protocol: a (sandboxed) Jupyter kernel, the grader's snapshot in it, and cells run with limits.

:class:`Kernel` starts a kernel inside :mod:`lrgrade.sandbox` (or, in unsafe mode,
as this process's user) and runs one cell at a time, watching the kernel's process so
that a cell that kills it costs seconds, not the whole timeout. :data:`SNAPSHOT` runs
before any student code and keeps what :data:`RESTORE` puts back before every test.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
import subprocess
import time
from pathlib import Path

from lrgrade.sandbox import Limits, sandboxed_kernel_manager

SNAPSHOT = """
import builtins as __b, sys as __s
import lrlib.exercise as __e
__grader_saved = (dict(__b.__dict__), __s.excepthook, __s.displayhook, __e.expect, __e.expect_close)
def __grader_restore(saved=__grader_saved, b=__b, s=__s, e=__e, ns=globals()):
    b.__dict__.clear(); b.__dict__.update(saved[0])
    s.settrace(None); s.setprofile(None); s.excepthook, s.displayhook = saved[1], saved[2]
    e.expect, e.expect_close = saved[3], saved[4]
    ns["expect"], ns["expect_close"] = saved[3], saved[4]
    try:  # reap the processes the grader ended: as zombies they would still count against the limit
        while __import__("os").waitpid(-1, 1)[0] > 0:  # 1 == os.WNOHANG
            pass
    except ChildProcessError:
        pass
del __b, __s, __e
"""
RESTORE = "__grader_restore()"


class Kernel:
    """A sandboxed kernel plus the client that talks to it."""

    def __init__(self, workdir: Path, uid: int, limits: Limits, hide: list[Path], isolate: bool = True):
        self.uid, self.isolate = uid, isolate
        if isolate:
            self.manager = sandboxed_kernel_manager(workdir, uid=uid, limits=limits, hide=hide)
        else:  # unsafe: the student's code runs with the grader's rights
            from jupyter_client import KernelManager

            self.manager = KernelManager(kernel_name="python3")
        # the kernel's own start-up chatter, times a class, would bury the summary
        self.manager.start_kernel(cwd=str(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float, output_cap: int) -> tuple[str, str]:
        """Execute ``code``; return (status, text output). Status: ok, error, timeout, dead."""
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
        msg_id = self.client.execute(code, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + timeout
        replied = idle = False
        while not (replied and idle):
            if time.monotonic() > deadline:
                return "timeout", "".join(chunks)
            try:
                msg = self.client.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                if not self.manager.is_alive():
                    return "dead", "".join(chunks)
            else:
                if msg["parent_header"].get("msg_id") == msg_id:
                    if msg["msg_type"] == "status":
                        idle = msg["content"]["execution_state"] == "idle"
                    else:
                        keep(msg)
            while not replied:
                try:
                    reply = self.client.get_shell_msg(timeout=0)
                except queue.Empty:
                    break
                replied = reply["parent_header"].get("msg_id") == msg_id
        return reply["content"]["status"], "".join(chunks)

    def kill_strays(self) -> None:
        """End every process the student's code started (the kernel stays): a fork bomb or a
        forgotten pool would otherwise hold the sandbox's process limit for the parts after it.
        The kernel is the PID namespace's first process, so every orphan there is its child."""
        if not self.isolate:
            return
        process = getattr(self.manager.provisioner, "process", None)
        if process is None:
            return
        found = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
        for pid in found.stdout.split():
            subprocess.run(["pkill", "-KILL", "-P", pid], check=False)

    def interrupt(self) -> bool:
        """Interrupt a busy kernel; True if it is idle again within a few seconds."""
        try:
            self.manager.interrupt_kernel()
            status, _ = self.run("pass", timeout=3, output_cap=0)
            return status == "ok"
        except Exception:
            return False

    def close(self) -> None:
        if self.isolate:
            # End everything running as the sandbox's uid first: the kernel changed its user, so it
            # would not die with the namespace tool that started it, and would be left an orphan.
            subprocess.run(["pkill", "-KILL", "-u", str(self.uid)], check=False)
            deadline = time.monotonic() + 3
            while self.manager.is_alive() and time.monotonic() < deadline:
                time.sleep(0.02)  # let the namespace tool reap its child and exit by itself
        try:
            self.client.stop_channels()
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=True)
        except Exception:  # already gone
            pass


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
