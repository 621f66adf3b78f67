"""lrgrade.sandbox: what an untrusted command can and cannot do (the ground autograding stands on)."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import lrgrade.sandbox
from lrgrade.sandbox import Limits, isolation_available, run_sandboxed

AVAILABLE, WHY = isolation_available()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"no isolation here: {WHY}")
UID = 61017  # a uid no other test uses, so the process limit counts only this sandbox


def run(code, tmp_path=None, **kwargs):
    return run_sandboxed([sys.executable, "-c", textwrap.dedent(code)], uid=UID, **kwargs)


def left_behind():
    """Processes of the sandbox user and cgroups of the grader that are still there."""
    procs = subprocess.run(["pgrep", "-u", str(UID)], capture_output=True, text=True).stdout.split()
    groups = [p.name for p in Path("/sys/fs/cgroup/pids").rglob(f"lrgrade-{UID}-*")]
    return procs + groups


def test_runs_as_an_unprivileged_user_in_its_own_folder_with_a_clean_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_SECRET", "do-not-leak")
    result = run("""
        import os
        print(os.getuid(), os.getgid(), os.getgroups(), os.getcwd() == os.environ["HOME"])
        print("GRADER_SECRET" in os.environ)
        print(len([p for p in os.listdir("/proc") if p.isdigit()]))
    """, tmp_path)
    uid, gid, groups, home, leaked, processes = result.stdout.decode().split(maxsplit=5)
    assert result.returncode == 0, result.stderr
    assert (uid, gid, groups, home, leaked) == (str(UID), str(UID), "[]", "True", "False")
    assert int(processes) <= 3  # its own PID namespace: the grader's processes are invisible


def test_no_network_not_even_the_graders_loopback(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    threading.Thread(target=lambda: server.accept(), daemon=True).start()
    result = run(f"""
        import socket
        for address in [("127.0.0.1", {port}), ("1.1.1.1", 53)]:
            try:
                socket.create_connection(address, timeout=2)
                print("connected", address)
            except OSError as error:
                print("refused", address, error.errno)
    """, tmp_path)
    server.close()
    assert result.returncode == 0, result.stderr
    assert "connected" not in result.stdout.decode() and result.stdout.decode().count("refused") == 2


@pytest.fixture
def course():
    """A course folder other users could enter and read, as a real one often is."""
    root = Path(tempfile.mkdtemp(prefix="course-"))
    (root / "source").mkdir()
    (root / "source" / "hidden_tests.py").write_text("assert answer == 42\n")
    (root / "gradebook.db").write_text("scores")
    for path in (root, root / "source"):
        path.chmod(0o755)
    for path in (root / "source" / "hidden_tests.py", root / "gradebook.db"):
        path.chmod(0o644)
    yield root
    shutil.rmtree(root)


PEEK = """
    for path in ["{course}/source/hidden_tests.py", "{course}/gradebook.db"]:
        try:
            print(repr(open(path).read()))
        except OSError as error:
            print("denied", error.errno)
    try:
        open("{course}/other.txt", "w").write("x")
        print("wrote")
    except OSError as error:
        print("denied", error.errno)
"""


def test_the_course_is_not_there_and_the_host_cannot_be_written(course, tmp_path):
    """The sandbox's filesystem is an allowlist: the course, its sources and gradebook do not exist
    in there, whatever their permissions; run directly, the same code reads them."""
    direct = subprocess.run([sys.executable, "-c", textwrap.dedent(PEEK.format(course=course))],
                            capture_output=True, text=True).stdout
    assert "assert answer" in direct and "scores" in direct  # without the sandbox, readable
    (course / "other.txt").unlink()
    out = run(PEEK.format(course=course)).stdout.decode()
    assert "assert answer" not in out and "scores" not in out and "wrote" not in out, out
    assert out.count("denied 2") == 3  # ENOENT: not hidden, absent
    assert (course / "gradebook.db").read_text() == "scores" and not (course / "other.txt").exists()


def test_tmp_and_shm_are_private_bounded_and_gone_afterwards():
    """/tmp and /dev/shm are the sandbox's own tmpfs: a file there is not on the host, a large one
    stops at the size limit, and nothing of it is left when the sandbox ends."""
    result = run("""
        import os
        for folder in ("/tmp", "/dev/shm", os.environ["HOME"]):
            try:
                with open(f"{folder}/big.bin", "wb") as f:
                    for _ in range(64):
                        f.write(b"x" * 2**20)
                print("wrote", folder)
            except OSError as error:
                print("full", folder, error.errno)
    """, limits=Limits(disk_bytes=8 * 2**20))
    assert result.stdout.decode().split("\n")[:3] == ["full /tmp 28", "full /dev/shm 28",
                                                      "full /home/student 28"], result
    assert not Path("/tmp/big.bin").exists() and not Path("/dev/shm/big.bin").exists()
    assert left_behind() == []


def test_memory_is_bounded_for_the_whole_sandbox_not_per_process():
    """Three processes of 300 MB each stay within a 512 MiB sandbox only by dying: the cgroup counts
    them together (RLIMIT_AS alone, per process, would let all three live)."""
    result = run("""
        import os, time
        pids = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                hog = bytearray(300 * 2**20)
                hog[::4096] = b"x" * len(hog[::4096])
                time.sleep(3)
                os._exit(0)
            pids.append(pid)
        print(sum(os.waitpid(p, 0)[1] != 0 for p in pids))
    """, limits=Limits(memory_bytes=512 * 2**20, wall_seconds=60))
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 1  # at least one was killed
    assert result.memory_peak <= 512 * 2**20 + 2**20


def test_a_deep_chain_of_busy_decoys_dies_with_the_sandbox():
    """Processes that put decoys between themselves and the first process all go, however deep."""
    result = run("""
        import os, time
        def chain(depth):
            if os.fork() == 0:
                if depth:
                    chain(depth - 1)
                while True:
                    pass
        chain(6)
        time.sleep(1)
        print("leaving")
    """, limits=Limits(wall_seconds=30))
    assert result.stdout.decode().strip() == "leaving", result.stderr
    time.sleep(0.2)
    assert left_behind() == []


def test_without_cgroups_isolation_is_refused_with_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(lrgrade.sandbox, "CGROUP_ROOT", tmp_path)
    ok, why = isolation_available()
    assert not ok and "cgroup v1 controllers memory (not mounted)" in why and "freezer" in why


def test_a_memory_bomb_gets_memory_error(tmp_path):
    result = run("""
        try:
            hog = bytearray(8 * 2**30)
            print("allocated")
        except MemoryError:
            print("MemoryError")
    """, tmp_path, limits=Limits(memory_bytes=2**30))
    assert result.stdout.decode().strip() == "MemoryError", result.stderr


def test_a_fork_bomb_stops_at_the_process_limit_and_leaves_nothing_behind(tmp_path):
    result = run("""
        import os, time
        started = 0
        for _ in range(500):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            started += 1
        print(started)
    """, tmp_path, limits=Limits(processes=25, wall_seconds=60))
    assert result.returncode == 0, result.stderr
    assert 0 < int(result.stdout) < 25
    time.sleep(0.2)
    assert left_behind() == [], "processes or cgroups of the sandbox survived"


def test_cpu_and_wall_clock_limits(tmp_path):
    # the CPU limit ends the spin, not the 30 s wall clock; the wall clock ends the sleep
    spin = run("while True: pass", tmp_path, limits=Limits(cpu_seconds=1, wall_seconds=30))
    assert spin.returncode != 0 and not spin.timed_out
    sleep = run("import time; time.sleep(60)", tmp_path, limits=Limits(wall_seconds=1))
    assert sleep.timed_out


def test_file_size_and_output_are_capped(tmp_path):
    result = run("""
        try:
            open("big.bin", "wb").write(b"x" * 10 * 2**20)
            print("wrote")
        except OSError as error:
            print("denied", error.errno)
        import sys
        for _ in range(100):
            sys.stdout.write("y" * 2**20)  # 100 MB of output
    """, tmp_path, limits=Limits(file_size_bytes=2**20, output_bytes=2**16))
    assert result.stdout.startswith(b"denied 27") and result.truncated[0]
    assert len(result.stdout) == 2**16


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="uid must be >= 1000"):
        run_sandboxed(["true"], uid=0)
    with pytest.raises(ValueError, match="files: a name without '/'"):
        run_sandboxed(["true"], files={"../x": b""})
    with pytest.raises(ValueError, match=r"cpus must be a number of cores in \[0.01, 1024\], got 0"):
        Limits(cpus=0)
    with pytest.raises(ValueError, match="cpu_seconds must be >= 1"):
        Limits(cpu_seconds=0)
    assert os.geteuid() == 0


def test_a_jupyter_kernel_runs_in_the_sandbox_and_talks_over_ipc(tmp_path):
    from lrgrade.sandbox import sandboxed_kernel_manager

    manager = sandboxed_kernel_manager(uid=UID + 1)
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        manager.sandbox.lock_sockets()  # the kernel keeps talking over the sockets it bound
        seen = []

        def collect(msg):
            if msg["msg_type"] in ("stream", "error"):
                seen.append(msg["content"].get("text") or msg["content"]["ename"])

        code = "import os, socket\nprint(os.getuid())\nsocket.create_connection(('1.1.1.1', 53), timeout=2)"
        reply = client.execute_interactive(code, timeout=30, output_hook=collect)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        manager.sandbox.close()
    assert reply["content"]["status"] == "error"
    assert seen[0].strip() == str(UID + 1) and seen[-1] == "OSError"  # ran as the user, no network


def test_the_kernel_can_import_lrlib_but_not_the_grader(tmp_path):
    """The grader's source is hidden in the sandbox: student code can neither import nor read it."""
    import lrgrade

    grader = Path(lrgrade.__file__).resolve().parent
    result = run(f"""
        import lrlib
        print("lrlib", lrlib.__name__)
        try:
            import lrgrade
            print("imported the grader")
        except Exception as error:
            print("no grader:", type(error).__name__)
        try:
            open({str(grader / "notebook.py")!r}).read()
            print("read the grader")
        except OSError as error:
            print("unreadable:", type(error).__name__)
    """, tmp_path)
    out = result.stdout.decode()
    assert "lrlib lrlib" in out and "no grader:" in out and "unreadable:" in out, out + result.stderr.decode()
    assert "imported the grader" not in out and "read the grader" not in out
