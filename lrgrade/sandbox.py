"""Run an untrusted command isolated: no network, no view of the course or the grader, resource limits.

A student's notebook is untrusted code. :func:`run_sandboxed` runs a command

- in new network, mount and PID namespaces (``unshare``): no network interface but a
  loopback that is down, no view of the grader's processes;
- with the paths given in ``hide`` covered (an empty, unreadable tmpfs over a folder,
  ``/dev/null`` over a file), so the gradebook, the source notebooks with their hidden
  tests and other students' folders are out of reach even where they are world-readable;
- as an unprivileged user (``setpriv``: its own uid and gid, no supplementary groups,
  no new privileges) in a fresh working folder that it owns;
- under resource limits (``prlimit``): CPU seconds, address space, processes, file size,
  open files; plus a wall-clock timeout and a cap on the output kept;
- with an empty environment but for ``PATH``, ``HOME`` (the working folder) and ``LANG``;
- with this package (the grader) hidden: ``import lrlib`` works in there, ``import lrgrade``
  does not;
- with the running Python reachable even where it is installed under a folder other
  users cannot enter (``/root/.pyenv``): that folder is covered by an empty tmpfs and
  only the Python is put back, so the rest of it stays hidden.

It needs root (or the equivalent capabilities) and the util-linux tools; where they are
missing, :func:`isolation_available` says why, and callers must refuse to grade unless
told to run unsafely.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lrlib._checks import check_int

TOOLS = ("unshare", "setpriv", "prlimit")


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed command (defaults fit grading one small notebook).

    Args:
        cpu_seconds: CPU time before SIGXCPU/SIGKILL (``RLIMIT_CPU``).
        memory_bytes: address space (``RLIMIT_AS``); a memory bomb gets ``MemoryError``.
        processes: processes and threads of the sandbox user (``RLIMIT_NPROC``); a fork
            bomb stops there. Give every concurrent sandbox its own uid, since the limit
            counts per user.
        file_size_bytes: largest file it may write (``RLIMIT_FSIZE``).
        open_files: open file descriptors (``RLIMIT_NOFILE``).
        wall_seconds: wall-clock time before the whole sandbox is killed.
        output_bytes: stdout and stderr kept, each; the rest is dropped.
    """

    cpu_seconds: int = 120
    memory_bytes: int = 4 * 2**30
    processes: int = 128
    file_size_bytes: int = 64 * 2**20
    open_files: int = 256
    wall_seconds: int = 300
    output_bytes: int = 1 * 2**20

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "memory_bytes", "processes", "file_size_bytes", "open_files",
                     "wall_seconds", "output_bytes"):
            check_int(name, getattr(self, name), minimum=1)


def isolation_available() -> tuple[bool, str]:
    """Whether :func:`run_sandboxed` can isolate here, and if not, why."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return False, f"missing tools: {', '.join(missing)} (Debian package util-linux)"
    if os.geteuid() != 0:
        return False, "needs root to create namespaces, mount over paths and switch users"
    probe = subprocess.run(["unshare", "--net", "--mount", "--pid", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        return False, f"unshare failed: {probe.stderr.decode(errors='replace').strip()}"
    return True, "namespaces, mounts and user switching are available"


@dataclass
class SandboxResult:
    """What a sandboxed command did: its exit code (negative: killed by that signal), its
    output (truncated to the limit, ``truncated`` says which), and whether the wall clock ran out."""

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated: tuple[bool, bool]


def _closed_ancestor(path: Path) -> Path | None:
    """The outermost folder above ``path`` that other users cannot enter (e.g. ``/root``), if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not os.stat(parent).st_mode & stat.S_IXOTH:
            return parent
    return None


def closed_folders(paths: Sequence[Path]) -> list[Path]:
    """The folders above ``paths`` (as given and resolved) that other users cannot enter."""
    found = []
    for path in paths:
        for candidate in (Path(os.path.abspath(path)), Path(path).resolve()):
            closed = _closed_ancestor(candidate)
            if closed is not None and closed not in found:
                found.append(closed)
    return found


def _expose_lines(expose: Sequence[Path]) -> list[str]:
    """Shell lines that make each path reachable although a closed folder lies above it: bind it
    to a staging folder, cover the closed folder with an empty world-readable tmpfs (hiding
    everything else in it), recreate the path there and move the staged mount in."""
    lines, covered, staged = [], [], []
    for i, path in enumerate(expose):
        closed = _closed_ancestor(path)
        if closed is None:
            continue
        lines += [f"stage{i}=$(mktemp -d /tmp/.lrlib-stage-XXXXXX)",
                  f'mount --bind {shlex.quote(str(path))} "$stage{i}"']
        staged.append((i, path))
        if closed not in covered:
            covered.append(closed)
    lines += [f"mount -t tmpfs -o size=64k,mode=755 tmpfs {shlex.quote(str(c))}" for c in covered]
    for i, path in staged:
        lines += [f"mkdir -p {shlex.quote(str(path))}", f'mount --move "$stage{i}" {shlex.quote(str(path))}',
                  f'rmdir "$stage{i}"']
    return lines


def _script(argv: Sequence[str], workdir: Path, uid: int, limits: Limits, hide: Sequence[Path],
            expose: Sequence[Path]) -> str:
    lines = ["set -e", "mount --make-rprivate /", *_expose_lines(expose)]
    for path in hide:
        path = Path(path)
        quoted = shlex.quote(str(path))
        # a path under a closed folder that the exposure covered is already gone in here:
        # mounting over it would fail and take the sandbox down with it
        if path.is_dir():
            lines.append(f"if [ -d {quoted} ]; then mount -t tmpfs -o size=4k,mode=000 tmpfs {quoted}; fi")
        elif path.exists():
            lines.append(f"if [ -e {quoted} ]; then mount --bind /dev/null {quoted}; fi")
    prlimit = ["prlimit", f"--cpu={limits.cpu_seconds}", f"--as={limits.memory_bytes}",
               f"--nproc={limits.processes}", f"--fsize={limits.file_size_bytes}",
               f"--nofile={limits.open_files}", "--core=0", "--"]
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
               "--inh-caps=-all", "--"]
    env = ["env", "-i", f"PATH={os.environ.get('PATH', '/usr/bin:/bin')}", f"HOME={workdir}",
           "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"]
    lines.append(f"cd {shlex.quote(str(workdir))}")
    lines.append("exec " + shlex.join([*prlimit, *setpriv, *env, *argv]))
    return "\n".join(lines)


def sandbox_command(argv: Sequence[str], workdir: str | Path, *, uid: int = 61000,
                    limits: Limits | None = None, hide: Sequence[str | Path] = ()) -> list[str]:
    """The command line that runs ``argv`` isolated (see :func:`run_sandboxed`), for callers that
    start the process themselves, e.g. a Jupyter kernel manager. Hands ``workdir`` to ``uid``."""
    ok, why = isolation_available()
    if not ok:
        raise RuntimeError(f"cannot sandbox: {why}")
    uid = check_int("uid", uid, minimum=1000)
    limits = limits or Limits()
    workdir = Path(workdir).resolve()
    if not workdir.is_dir():
        raise ValueError(f"workdir must be an existing folder, got {workdir}")
    for path in [workdir, *workdir.rglob("*")]:
        os.chown(path, uid, uid)
    # the working folder, the Python that runs it (by the path the kernel is started with, which
    # may pass through a symlink, and where it really is) and the course's package, wherever they
    # are; never the grader (this package): student code must neither read nor import it
    import lrlib

    student_package = Path(lrlib.__file__).resolve().parent
    interpreter = Path(os.path.abspath(sys.executable)).parent
    venv = Path(os.path.abspath(sys.prefix))  # as given: its pyvenv.cfg makes Python find the venv
    expose = [workdir, Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), venv, interpreter,
              student_package]
    grader = Path(__file__).resolve().parent
    hide = [Path(p).resolve() for p in hide] + [grader]
    script = _script(argv, workdir, uid, limits, hide, expose)
    return ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
            "/bin/sh", "-c", script]


def run_sandboxed(
    argv: Sequence[str],
    workdir: str | Path,
    *,
    uid: int = 61000,
    limits: Limits | None = None,
    hide: Sequence[str | Path] = (),
    stdin: bytes | None = None,
) -> SandboxResult:
    """Run ``argv`` in ``workdir`` isolated as the module docstring describes.

    Args:
        argv: the command, e.g. ``[sys.executable, "-c", code]``.
        workdir: an existing folder; it is handed to ``uid`` (chowned) and becomes the
            command's working and home folder.
        uid: the unprivileged user (and group) id to run as (>= 1000; not 0).
        limits: :class:`Limits` (default ``Limits()``).
        hide: folders and files the command must not see.
        stdin: bytes to feed the command.

    Raises:
        RuntimeError: isolation is not available here (see :func:`isolation_available`).
    """
    limits = limits or Limits()
    command = sandbox_command(argv, workdir, uid=uid, limits=limits, hide=hide)
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    out, err, timed_out = _communicate_capped(proc, stdin, limits)
    cap = limits.output_bytes
    return SandboxResult(proc.returncode, out[:cap], err[:cap], timed_out, (len(out) > cap, len(err) > cap))


def _communicate_capped(proc: subprocess.Popen, stdin: bytes | None,
                        limits: Limits) -> tuple[bytes, bytes, bool]:
    """Read stdout and stderr while the process runs, keeping at most one byte past the cap of
    each, so that 100 MB of printing costs no memory (the rest is read and dropped). At the wall
    deadline the whole sandbox is killed (its PID namespace dies with its first process)."""
    import selectors
    import time

    deadline = time.monotonic() + limits.wall_seconds
    timed_out = False
    if proc.stdin:
        try:
            if stdin is not None:
                proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
    kept = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    selector = selectors.DefaultSelector()
    for stream in kept:
        selector.register(stream, selectors.EVENT_READ)
    while selector.get_map():
        wait = None if timed_out else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            continue
        for key, _ in selector.select(timeout=wait):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fileobj)
                continue
            buffer = kept[key.fileobj]
            room = limits.output_bytes + 1 - len(buffer)
            if room > 0:
                buffer += chunk[:room]
    proc.wait()
    return bytes(kept[proc.stdout]), bytes(kept[proc.stderr]), timed_out


def sandboxed_kernel_manager(workdir: str | Path, *, uid: int = 61000, limits: Limits | None = None,
                             hide: Sequence[str | Path] = (), kernel_name: str = "python3"):
    """A ``jupyter_client.KernelManager`` whose kernel runs in the sandbox.

    The kernel has no network, so it talks to this process over the ``ipc`` transport:
    Unix sockets in ``workdir``, which both sides can reach. The grader (this process)
    sends cells and reads replies; the student's code never runs here.

    Example (needs root)::

        km = sandboxed_kernel_manager(workdir, hide=["solutions", "gradebook.db"])
        km.start_kernel(cwd=str(workdir))
        client = km.client()
    """
    from jupyter_client import KernelManager

    workdir = Path(workdir).resolve()

    class _Sandboxed(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):  # noqa: D102
            argv = super().format_kernel_cmd(extra_arguments)
            return sandbox_command(argv, workdir, uid=uid, limits=limits, hide=hide)

    manager = _Sandboxed(kernel_name=kernel_name, transport="ipc", ip=str(workdir / "kernel"))
    manager.connection_file = str(workdir / "connection.json")
    return manager
