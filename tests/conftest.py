"""Shared fixtures: where things are, what the book and the course hold, and how to run a notebook."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA device; none here")
    for item in items:
        if item.get_closest_marker("cuda") is not None and not HAS_CUDA:
            item.add_marker(skip)
    # Tests marked ``exclusive`` load the machine on purpose (CPU hogs beside the grader): they run
    # last, once the background book build is done, so that the load is what the test says it is.
    items[:] = [i for i in items if i.get_closest_marker("exclusive") is None] + \
        [i for i in items if i.get_closest_marker("exclusive") is not None]


def toc_files() -> list[str]:
    """Every file named in _toc.yml (root first), without extension."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc.get("parts", toc.get("chapters", [])))
    return files


def chapters() -> list[Path]:
    """The executable chapters: toc entries that are MyST notebooks (have a kernelspec)."""
    out = []
    for name in toc_files():
        path = ROOT / f"{name}.md"
        text = path.read_text() if path.exists() else ""
        if text.startswith("---") and "kernelspec:" in text.split("---")[1]:
            out.append(path)
    return out


#: Hang guard for the whole book build: several times the chapters' budget (7 x 60 s), not a speed claim.
BUILD_TIMEOUT_S = 2400


@dataclass
class BookBuild:
    """The site as ``make book`` builds it: full mode, Sphinx warnings as errors."""

    html: Path  #: the built site
    executed: Path  #: the executed chapters as notebooks (``jupyter_execute/``), outputs included
    returncode: int
    log: str

    def glued(self, chapter: Path | str) -> dict:
        """What the build glued on ``chapter`` (a path under book/ or a file name there)."""
        import json

        name = Path(chapter).name
        path = self.executed / "book" / Path(name).with_suffix(".glue.json")
        return json.loads(path.read_text()) if path.exists() else {}

    def claims(self, chapter: Path | str) -> list[dict]:
        """The claim records (statement, holds, evidence, full_mode) of ``chapter``, in order."""
        import ast
        import json

        return [json.loads(ast.literal_eval(v["data"]["text/plain"]))
                for k, v in sorted(self.glued(chapter).items()) if k.startswith("claim-")]

    def executed_chapter(self, chapter: Path) -> nbformat.NotebookNode:
        """The notebook the build executed for ``chapter`` (a MyST file under book/)."""
        path = self.executed / chapter.relative_to(ROOT).with_suffix(".ipynb")
        assert path.exists(), f"the build did not execute {chapter.name}:\n{self.log[-3000:]}"
        return nbformat.read(path, as_version=4)


class _BackgroundBuild:
    """The book build, started as soon as the tests are collected so that it runs beside the
    tests that do not need it (the grader's mostly wait on timeouts and kernels); the first test
    that needs the book waits for it."""

    def __init__(self) -> None:
        import subprocess
        import sys
        import tempfile

        self.out = Path(tempfile.mkdtemp(prefix="lrlib-book-"))
        self.log = self.out / "build.log"
        env = {k: v for k, v in os.environ.items() if k != "LRLIB_FAST"}
        env.update(LRLIB_DEVICE="cpu", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        self.started = time.monotonic()
        with open(self.log, "w") as log:  # a file, not a pipe: nobody reads a pipe until the end
            self.process = subprocess.Popen(
                [Path(sys.executable).parent / "jupyter-book", "build", ".", "--path-output",
                 str(self.out), "-W", "-n", "--keep-going"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def result(self) -> BookBuild:
        import subprocess

        left = BUILD_TIMEOUT_S - (time.monotonic() - self.started)
        try:
            code = self.process.wait(timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        build = self.out / "_build"
        log = self.log.read_text(errors="replace")
        return BookBuild(build / "html", build / "jupyter_execute", code, log)

    def remove(self) -> None:
        import shutil

        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.out, ignore_errors=True)


_BUILD: dict[str, _BackgroundBuild] = {}


def wait_for_background_build() -> None:
    """Let a background book build (if one was started) finish first; nothing to wait for otherwise."""
    if "book" in _BUILD:
        _BUILD["book"].result()


def pytest_collection_finish(session):
    if any("book_build" in getattr(item, "fixturenames", ()) for item in session.items):
        _BUILD["book"] = _BackgroundBuild()


def pytest_sessionfinish(session, exitstatus):
    if "book" in _BUILD:
        _BUILD.pop("book").remove()


@pytest.fixture(scope="session")
def book_build() -> BookBuild:
    """The book built once per test session exactly as ``make book`` builds it (full mode, every
    chapter executed once, on the CPU), into a fresh folder so no execution cache can hide a chapter
    that no longer runs. The chapter, book and site tests all read this one build."""
    if "book" not in _BUILD:  # a test run by a route the collection hook did not see
        _BUILD["book"] = _BackgroundBuild()
    return _BUILD["book"].result()


def run_nbgrader(course: Path, *args: str):
    """``nbgrader *args`` in ``course`` with this venv's bin first on PATH (nbgrader runs ``alembic``
    from it to create a gradebook), as the README's activated venv has it; asserts it succeeded."""
    import subprocess
    import sys

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, f"nbgrader {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def assignments() -> list[str]:
    return sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())


def solution_notebook(assignment: str) -> Path:
    return ROOT / "solutions" / assignment / f"{assignment}.ipynb"


def devices():
    return ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def run_notebook(nb: nbformat.NotebookNode, out: Path, *, device: str, cwd: Path,
                 parameters: dict | None = None) -> tuple[nbformat.NotebookNode, float]:
    """Execute ``nb`` under papermill with LRLIB_DEVICE=device; return the executed notebook and seconds."""
    import papermill as pm

    src = out.with_name(out.stem + "_in.ipynb")
    nbformat.write(nb, src)
    old = os.environ.get("LRLIB_DEVICE")
    os.environ["LRLIB_DEVICE"] = device
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(out), parameters=parameters or {}, kernel_name="python3",
                            cwd=str(cwd), progress_bar=False, log_output=False)
    finally:
        if old is None:
            os.environ.pop("LRLIB_DEVICE", None)
        else:
            os.environ["LRLIB_DEVICE"] = old
    return nbformat.read(out, as_version=4), time.perf_counter() - start


def error_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """Every error output and every stderr stream in an executed notebook."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                found.append(f"{output.ename}: {output.evalue}")
            elif output.output_type == "stream" and output.name == "stderr":
                found.append(output.text)
    return found


def stdout_text(nb: nbformat.NotebookNode) -> str:
    return "".join(o.text for c in nb.cells for o in c.get("outputs", [])
                   if o.output_type == "stream" and o.name == "stdout")


class ExerciseCells:
    """An assignment's solution notebook, cut into cells by grade id, to exec test cells in-process."""

    def __init__(self, assignment: str):
        self._base: dict | None = None
        self.nb = nb = nbformat.read(solution_notebook(assignment), as_version=4)
        self.cells = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells}
        # answers and the locked code cells that give data, in notebook order (setup and tests excluded)
        self.answers = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
                        if c.cell_type == "code" and not c.metadata["nbgrader"].get("grade")
                        and c.metadata["nbgrader"]["grade_id"] not in ("setup", "parameters")]
        self.tests = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
                      if c.metadata["nbgrader"].get("grade")]

    def notebook(self, **answers: str) -> nbformat.NotebookNode:
        """The solution notebook with the given answer cells' sources (grade_id -> code) swapped in."""
        nb = copy.deepcopy(self.nb)
        for cell in nb.cells:
            cell.source = answers.get(cell.metadata["nbgrader"]["grade_id"], cell.source)
        return nb

    def namespace_of(self, **answers: str) -> dict:
        """Run the setup and the code cells, with the given answer cells' sources swapped in."""
        ns: dict = {"DEVICE": "cpu"}
        exec(self.cells["setup"], ns)
        for part in self.answers:
            exec(answers.get(part, self.cells[part]), ns)
        return ns

    def namespace(self, **wrong) -> dict:
        """The setup and every other code cell but the tests, run once, with the wrong answers given
        swapped in. Each call gets its own copy of the data (models, tensors, arrays), so a wrong
        answer that changes them in place cannot leak into the next test; the solution's functions
        still call the solution's helpers, so a swapped helper is tested through its own name."""
        if self._base is None:
            self._base = self.namespace_of()
        data = (torch.nn.Module, torch.Tensor, np.ndarray, list, dict)
        ns = {k: copy.deepcopy(v) if isinstance(v, data) and not k.startswith("__") else v
              for k, v in self._base.items()}
        ns.update(wrong)
        return ns

    def visible(self, test_id: str) -> str:
        return self.cells[test_id].split("### BEGIN HIDDEN TESTS")[0]

    def hidden(self, test_id: str) -> str:
        return self.cells[test_id]

    def visible_output_when_failing(self, test_id: str, **wrong) -> str:
        """Run a visible test cell against wrong answers; it must fail. Returns what it printed."""
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), pytest.raises(AssertionError):
            exec(self.visible(test_id), self.namespace(**wrong))
        return buffer.getvalue()
