"""Run untrusted code isolated: bubblewrap namespaces, a cgroup for the whole sandbox, an unprivileged user.

A student's notebook is untrusted code. :class:`Sandbox` runs a command (a Jupyter kernel,
or any program through :func:`run_sandboxed`) inside Debian's ``bwrap`` (bubblewrap):

- **its own filesystem**, built from an allowlist: ``/usr`` and ``/etc`` read-only, the
  Python that runs it, its virtual environment and the course's package (``lrlib``),
  read-only, and nothing else of the host. The course folder, the gradebook, the sources
  with their hidden tests, the grader (this package) and every other submission are not
  hidden: they are simply not there. ``/tmp``, ``/dev/shm`` and the working folder are
  fresh tmpfs of bounded size, private to this sandbox and gone when it ends;
- **its own namespaces**: PID (it sees only its own processes), network (no interface but
  a loopback that is down), IPC, UTS, mount; ``--new-session`` (no terminal to inject
  into), ``--die-with-parent`` (it dies with the grader);
- **an unprivileged user** (``setpriv``: its own uid and gid, no supplementary groups, no
  capabilities, no new privileges) with a clean environment;
- **a cgroup for the whole sandbox** (cgroup v1 ``memory``, ``pids``, ``cpu``, ``freezer``):
  memory (tmpfs included), processes and CPU are bounded for the submission as a whole, and
  :meth:`Sandbox.close` freezes and kills every process in it, however deep its tree;
- **per-process limits** on top (``prlimit``): CPU seconds, address space (a memory bomb
  gets ``MemoryError`` instead of the whole sandbox being killed), file size, open files.

The grader, as root, never walks, chowns or follows anything the sandbox could have
written: each sandbox gets a fresh private state folder (root-only on the host) holding
the kernel's connection file and a socket folder; the socket folder is handed to the
sandbox user while the kernel starts, before any student code runs, and taken back
(:meth:`Sandbox.lock_sockets`) as soon as the kernel is ready.

It needs root, ``bwrap``, util-linux and writable cgroup v1 controllers; where any is
missing, :func:`isolation_available` says which and how to fix it, and callers must refuse
to grade unless told to run unsafely.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lrlib._checks import check_int

TOOLS = {"bwrap": "bubblewrap", "setpriv": "util-linux", "prlimit": "util-linux"}
CONTROLLERS = ("memory", "pids", "cpu", "freezer")
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: where the sandbox's working folder (its cwd and HOME) is, inside the sandbox
HOME = "/home/student"


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandbox (defaults fit grading one notebook).

    Args:
        cpu_seconds: CPU time of each process before SIGXCPU/SIGKILL (``RLIMIT_CPU``).
        memory_bytes: memory of the whole sandbox, tmpfs files included (the cgroup's
            ``memory.limit_in_bytes``); also each process's address space (``RLIMIT_AS``),
            so that one large allocation raises ``MemoryError`` instead of killing the kernel.
        processes: processes and threads of the whole sandbox (the cgroup's ``pids.max``).
        cpus: CPU cores the whole sandbox may use at once (a CFS quota): a busy neighbour
            cannot take more than its share of the machine.
        disk_bytes: size of each private tmpfs (the working folder, ``/tmp``, ``/dev/shm``).
        file_size_bytes: largest file a process may write (``RLIMIT_FSIZE``).
        open_files: open file descriptors per process (``RLIMIT_NOFILE``).
        wall_seconds: wall-clock time before :func:`run_sandboxed` kills the whole sandbox.
        output_bytes: stdout and stderr that :func:`run_sandboxed` keeps, each.
    """

    cpu_seconds: int = 600
    memory_bytes: int = 4 * 2**30
    processes: int = 256
    cpus: float = 1.0
    disk_bytes: int = 256 * 2**20
    file_size_bytes: int = 64 * 2**20
    open_files: int = 256
    wall_seconds: int = 300
    output_bytes: int = 1 * 2**20

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "memory_bytes", "processes", "disk_bytes", "file_size_bytes",
                     "open_files", "wall_seconds", "output_bytes"):
            check_int(name, getattr(self, name), minimum=1)
        if not (isinstance(self.cpus, (int, float)) and 0.01 <= self.cpus <= 1024):
            raise ValueError(f"cpus must be a number of cores in [0.01, 1024], got {self.cpus!r}")


def _own_cgroup(controller: str) -> Path | None:
    """The folder of this process's cgroup in a v1 controller's hierarchy (None: not mounted)."""
    mount = CGROUP_ROOT / controller
    if not (mount / "cgroup.procs").exists():
        return None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            own = mount / path.lstrip("/")
            return own if own.is_dir() else mount
    return mount


def cgroups_available() -> tuple[bool, str]:
    """Whether the cgroup v1 controllers the sandbox needs are mounted and writable here."""
    missing = []
    for controller in CONTROLLERS:
        own = _own_cgroup(controller)
        if own is None:
            missing.append(f"{controller} (not mounted)")
            continue
        probe = own / f"lrgrade-probe-{secrets.token_hex(4)}"
        try:
            probe.mkdir()
            probe.rmdir()
        except OSError as error:
            missing.append(f"{controller} ({error.strerror})")
    if missing:
        return False, (f"the cgroup v1 controllers {', '.join(missing)} are not usable under {CGROUP_ROOT}: "
                       "grading needs memory, pids, cpu and freezer to bound and kill a submission "
                       "as a whole (run as root on a host or a --privileged container with cgroup v1)")
    return True, "cgroup v1 memory, pids, cpu and freezer are writable"


def isolation_available() -> tuple[bool, str]:
    """Whether a :class:`Sandbox` can be made here, and if not, what is missing and the fix."""
    missing = [f"{tool} (Debian package {package})" for tool, package in TOOLS.items()
               if shutil.which(tool) is None]
    if missing:
        packages = " ".join(sorted({TOOLS[m.split()[0]] for m in missing}))
        return False, f"missing tools: {', '.join(missing)}; install them: apt-get install {packages}"
    if os.geteuid() != 0:
        return False, ("needs root to create namespaces and cgroups and to switch users "
                       "(run make autograde as root)")
    ok, why = cgroups_available()
    if not ok:
        return False, why
    probe = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                            "--unshare-uts", "--as-pid-1", "--", "true"], capture_output=True)
    if probe.returncode != 0:
        return False, f"bwrap cannot create namespaces here: {probe.stderr.decode(errors='replace').strip()}"
    return True, "bubblewrap namespaces, cgroups and user switching are available"


class Cgroup:
    """One cgroup in each v1 controller for one sandbox: limits for the whole, killed as a whole."""

    def __init__(self, name: str, limits: Limits):
        self.folders: dict[str, Path] = {}
        try:
            for controller in CONTROLLERS:
                own = _own_cgroup(controller)
                if own is None:
                    raise RuntimeError(f"cgroup controller {controller} is not mounted")
                folder = own / name
                folder.mkdir()
                self.folders[controller] = folder
            memory = self.folders["memory"]
            (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            if (memory / "memory.memsw.limit_in_bytes").exists():  # no escape into swap
                try:
                    (memory / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))
                except OSError:
                    pass
            (self.folders["pids"] / "pids.max").write_text(str(limits.processes))
            period = 100_000
            (self.folders["cpu"] / "cpu.cfs_period_us").write_text(str(period))
            (self.folders["cpu"] / "cpu.cfs_quota_us").write_text(str(max(1000, int(limits.cpus * period))))
        except BaseException:
            self.destroy()
            raise

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process must be written into to join every controller."""
        return [str(folder / "cgroup.procs") for folder in self.folders.values()]

    def pids(self) -> list[int]:
        """The processes in the sandbox (read from the pids controller, which every process joins)."""
        try:
            text = (self.folders["pids"] / "cgroup.procs").read_text()
        except (KeyError, OSError):
            return []
        return [int(p) for p in text.split()]

    def memory_peak(self) -> int:
        """The most memory the sandbox used at once, in bytes (0 if unknown)."""
        try:
            return int((self.folders["memory"] / "memory.max_usage_in_bytes").read_text())
        except (KeyError, OSError, ValueError):
            return 0

    def kill(self, keep: Sequence[int] = ()) -> int:
        """SIGKILL every process in the sandbox except ``keep``, frozen first so that none can fork
        away while it is being killed. Returns how many were killed."""
        freezer = self.folders.get("freezer")
        killed = 0
        for _ in range(20):
            victims = [p for p in self.pids() if p not in keep]
            if not victims:
                break
            if freezer is not None:
                (freezer / "freezer.state").write_text("FROZEN")
            for pid in [p for p in self.pids() if p not in keep]:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            if freezer is not None:
                (freezer / "freezer.state").write_text("THAWED")  # the kill is delivered on thawing
            deadline = time.monotonic() + 2
            while any(p not in keep for p in self.pids()) and time.monotonic() < deadline:
                time.sleep(0.01)
        return killed

    def destroy(self) -> None:
        """Kill everything in it and remove it."""
        if self.folders:
            self.kill()
        for folder in self.folders.values():
            for _ in range(100):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # a process still exiting
                    time.sleep(0.02)
        self.folders = {}


def _exposed_paths() -> list[Path]:
    """What the sandboxed Python needs from the host, read-only: the interpreter's installation,
    the virtual environment (as given, which may pass through a symlink, and where it really is)
    and the course's package. Never the grader (this package): student code must neither read
    nor import it."""
    import lrlib

    paths = [Path(sys.base_prefix).resolve(), Path(os.path.abspath(sys.prefix)), Path(sys.prefix).resolve(),
             Path(os.path.abspath(sys.executable)).parent, Path(lrlib.__file__).resolve().parent]
    out: list[Path] = []
    for path in paths:
        if path != Path("/") and path not in out:
            out.append(path)
    return out


def unreadable_exposed() -> list[Path]:
    """The folders the sandbox shows its user (see :func:`_exposed_paths`) that other users cannot
    read or enter: bind-mounted, they keep their permissions, so the kernel cannot use them."""
    return [p for p in _exposed_paths() if p.is_dir() and (os.stat(p).st_mode & 0o005) != 0o005]


def _grader_cover(paths: Sequence[Path]) -> list[str]:
    """bwrap arguments that cover the grader with an empty folder where an exposed path holds it
    (an installation that put ``lrgrade`` into the same site-packages as ``lrlib``)."""
    grader = Path(__file__).resolve().parent
    return ["--tmpfs", str(grader)] if any(grader.is_relative_to(p) for p in paths) else []


def _bind_args(paths: Sequence[Path]) -> list[str]:
    """bwrap arguments that bind each path read-only at the same place, creating the folders above
    it as plain, enterable folders (so a closed /root above the Python does not block it, and the
    rest of /root stays out of sight)."""
    args, made = [], {"/", "/usr", "/etc", "/tmp", "/dev", "/proc", "/home"}
    exposed: list[Path] = []
    for path in sorted(paths, key=lambda p: len(p.parts)):
        if any(path.is_relative_to(e) for e in exposed):
            continue  # already in sight through a folder (or a link to one) bound above it
        exposed.append(path)
        for parent in reversed(path.parents):
            if str(parent) not in made:
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        else:
            args += ["--ro-bind", str(path), str(path)]
        made.add(str(path))
    return args


class Sandbox:
    """One submission's isolated place: a cgroup, a private state folder, and the command that
    starts a program inside bubblewrap as an unprivileged user.

    Example (needs root)::

        with Sandbox(uid=61000) as box:
            subprocess.run(box.command([sys.executable, "-c", "print(1)"]))
    """

    def __init__(self, uid: int = 61000, limits: Limits | None = None, expose_grader: bool = False):
        ok, why = isolation_available()
        if not ok:
            raise RuntimeError(f"cannot sandbox: {why}")
        self.uid = check_int("uid", uid, minimum=1000)
        self.limits = limits or Limits()
        # root-only on the host: the sandbox sees only what is bound from here, nobody else anything
        self.state = Path(tempfile.mkdtemp(prefix="lrgrade-sandbox-"))
        self.cgroup: Cgroup | None = None
        try:
            self.cgroup = Cgroup(f"lrgrade-{uid}-{secrets.token_hex(6)}", self.limits)
        except BaseException:
            shutil.rmtree(self.state, ignore_errors=True)
            raise
        self.sockets = self.state / "sockets"
        self.info = self.state / "info.json"
        self.expose_grader = expose_grader  # the judge's sandbox imports lrgrade; a student's never
        self.binds: list[tuple[Path, Path]] = []  # (host path, path inside), read-only
        self.writable: list[Path] = []  # host folders bound writable (the kernel's socket folder)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def socket_folder(self) -> Path:
        """A fresh folder for the kernel's Unix sockets, which only this sandbox's user may write
        into until :meth:`lock_sockets`. Made by root in the root-only state folder, so nothing
        the sandbox wrote can be on its path."""
        self.sockets.mkdir(mode=0o700)
        fd = os.open(self.sockets, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, self.uid, self.uid)
        finally:
            os.close(fd)
        self.writable.append(self.sockets)
        return self.sockets

    def lock_sockets(self) -> None:
        """Take the socket folder back (owner root, not writable by the sandbox): the sockets the
        kernel bound stay, and no student code can later replace one with a link elsewhere."""
        fd = os.open(self.sockets, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, 0, 0)
            os.fchmod(fd, 0o711)
        finally:
            os.close(fd)

    def bind(self, host: str | Path, inside: str | Path | None = None) -> None:
        """Show a host file (or folder) read-only in the sandbox (a root-made file in the state folder)."""
        self.binds.append((Path(host), Path(inside or host)))

    def environment(self) -> dict[str, str]:
        threads = str(max(1, int(self.limits.cpus)))
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": HOME, "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "MPLBACKEND": "Agg",
                "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "LRLIB_DEVICE": "cpu"}

    def command(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` in this sandbox: a root shell that joins the cgroup
        and execs bwrap, which execs setpriv, prlimit and then ``argv`` (as the namespace's PID 1)."""
        limits = self.limits
        size = str(limits.disk_bytes)
        bwrap = ["bwrap", "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
        for name in ("bin", "lib", "lib64", "sbin"):
            host = Path("/") / name
            if host.is_symlink():
                bwrap += ["--symlink", os.readlink(host), f"/{name}"]
            elif host.is_dir():
                bwrap += ["--ro-bind", str(host), f"/{name}"]
        bwrap += ["--proc", "/proc", "--dev", "/dev",
                  "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
                  "--perms", "1777", "--size", size, "--tmpfs", "/dev/shm",
                  "--perms", "0755", "--dir", "/home",
                  "--perms", "0777", "--size", size, "--tmpfs", HOME]
        exposed = _exposed_paths() + ([Path(__file__).resolve().parent] if self.expose_grader else [])
        bwrap += _bind_args(exposed) + ([] if self.expose_grader else _grader_cover(exposed))
        for folder in self.writable:
            bwrap += [arg for parent in reversed(folder.parents) if str(parent) != "/"
                      for arg in ("--perms", "0755", "--dir", str(parent))]
            bwrap += ["--bind", str(folder), str(folder)]
        for host, inside in self.binds:
            bwrap += ["--ro-bind", str(host), str(inside)]
        bwrap += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                  "--as-pid-1", "--die-with-parent", "--new-session", "--chdir", HOME, "--clearenv"]
        for key, value in self.environment().items():
            bwrap += ["--setenv", key, value]
        bwrap += ["--info-fd", "3", "--"]
        setpriv = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                   "--no-new-privs", "--inh-caps=-all", "--"]
        prlimit = ["prlimit", f"--cpu={limits.cpu_seconds}", f"--as={limits.memory_bytes}",
                   f"--fsize={limits.file_size_bytes}", f"--nofile={limits.open_files}", "--core=0", "--"]
        join = " && ".join(f"echo $$ > {shlex.quote(f)}" for f in self.cgroup.procs_files())
        script = (f"{join} && exec {shlex.join([*bwrap, *setpriv, *prlimit, *argv])} "
                  f"3> {shlex.quote(str(self.info))}")
        return ["/bin/sh", "-c", script]

    def kernel_pid(self) -> int | None:
        """The host PID of the program bwrap started (PID 1 inside), from bwrap's own report."""
        try:
            return int(json.loads(self.info.read_text())["child-pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def kill_strays(self, keep: Sequence[int]) -> int:
        """Kill every process in the sandbox but ``keep`` (bwrap and the kernel), however it was
        started and wherever it sits in the process tree. Returns how many were killed."""
        return self.cgroup.kill(keep) if self.cgroup else 0

    def end(self, bwrap: subprocess.Popen | None) -> None:
        """Stop what runs in the sandbox the way that leaves nothing behind: kill everything in it
        but ``bwrap`` (the process :meth:`command` started), so that bwrap reaps its child and exits,
        and wait for it; then :meth:`close`. (Killing bwrap first would orphan the sandbox's first
        process to the host's init, which may never reap it.)"""
        if bwrap is not None and bwrap.poll() is None and self.cgroup is not None:
            self.cgroup.kill(keep=(bwrap.pid,))
            try:
                bwrap.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.close()

    def close(self) -> None:
        """Kill everything in the sandbox and remove its cgroup and state folder. The socket
        folder holds only what the kernel made before it was locked; rmtree unlinks, never follows."""
        if self.cgroup is not None:
            self.cgroup.destroy()
            self.cgroup = None
        shutil.rmtree(self.state, ignore_errors=True)


@dataclass
class SandboxResult:
    """What a sandboxed command did: its exit code (negative: killed by that signal), its
    output (truncated to the limit, ``truncated`` says which), whether the wall clock ran out,
    and the most memory the whole sandbox used."""

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated: tuple[bool, bool]
    memory_peak: int = 0


def run_sandboxed(argv: Sequence[str], *, uid: int = 61000, limits: Limits | None = None,
                  stdin: bytes | None = None, files: dict[str, bytes] | None = None) -> SandboxResult:
    """Run ``argv`` in a fresh :class:`Sandbox` and return what it did; nothing of it outlives the call.

    Args:
        argv: the command, e.g. ``[sys.executable, "-c", code]``.
        uid: the unprivileged user (and group) id to run as (>= 1000; not 0).
        limits: :class:`Limits` (default ``Limits()``).
        stdin: bytes to feed the command.
        files: files to show read-only in its working folder, by name.

    Raises:
        RuntimeError: isolation is not available here (see :func:`isolation_available`).
    """
    limits = limits or Limits()
    with Sandbox(uid, limits) as box:
        for name, content in (files or {}).items():
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"files: a name without '/', got {name!r}")
            path = box.state / f"file-{len(box.binds)}"
            path.write_bytes(content)
            path.chmod(0o644)
            box.bind(path, f"{HOME}/{name}")
        proc = subprocess.Popen(box.command(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        out, err, timed_out = _communicate_capped(proc, stdin, limits, box)
        peak = box.cgroup.memory_peak() if box.cgroup else 0
        box.end(proc)
    cap = limits.output_bytes
    return SandboxResult(proc.returncode, out[:cap], err[:cap], timed_out, (len(out) > cap, len(err) > cap),
                         peak)


def _communicate_capped(proc: subprocess.Popen, stdin: bytes | None, limits: Limits,
                        box: Sandbox) -> tuple[bytes, bytes, bool]:
    """Read stdout and stderr while the process runs, keeping at most one byte past the cap of
    each, so that 100 MB of printing costs no memory (the rest is read and dropped). At the wall
    deadline the whole sandbox is killed through its cgroup."""
    import selectors

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
            box.kill_strays(keep=(proc.pid,))  # bwrap then reaps its child and exits
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


def sandboxed_kernel_manager(uid: int = 61000, limits: Limits | None = None, kernel_name: str = "python3"):
    """A ``jupyter_client.KernelManager`` whose kernel runs in a fresh :class:`Sandbox` (``manager.sandbox``).

    The kernel has no network, so it talks to this process over the ``ipc`` transport: Unix
    sockets in the sandbox's socket folder, the only host folder it can write, and only until
    the kernel is ready (call ``manager.sandbox.lock_sockets()`` then). The grader sends cells
    and reads replies; the student's code never runs here. Close the sandbox after shutting
    the kernel down (``manager.sandbox.close()``).

    Example (needs root)::

        km = sandboxed_kernel_manager(uid=61000)
        km.start_kernel()
        client = km.client(); client.start_channels(); client.wait_for_ready(60)
        km.sandbox.lock_sockets()
    """
    from jupyter_client import KernelManager

    box = Sandbox(uid, limits)
    sockets = box.socket_folder()
    connection = box.state / "connection.json"

    class _Sandboxed(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):  # noqa: D102
            argv = super().format_kernel_cmd(extra_arguments)
            os.chmod(self.connection_file, 0o644)  # the sandbox user reads it; no one else can reach it
            box.bind(self.connection_file)
            return box.command(argv)

    manager = _Sandboxed(kernel_name=kernel_name, transport="ipc", ip=str(sockets / "kernel"))
    manager.connection_file = str(connection)
    manager.sandbox = box
    return manager
