"""Every chapter named in _toc.yml, as the book build executed it (full mode, once per test session).

A new chapter is covered by adding it to _toc.yml. How long each chapter takes is
measured by ``make bench`` (benchmarks/notebook_times.py), never asserted here.
"""

import re

import jupytext
import pytest

from .conftest import ROOT, chapters, error_outputs, run_notebook, stdout_text, toc_files

CHAPTERS = chapters()


def test_toc_names_existing_files_and_every_chapter_is_in_it():
    for name in toc_files():
        assert (ROOT / f"{name}.md").exists() or (ROOT / f"{name}.ipynb").exists(), name
    on_disk = {p.relative_to(ROOT).with_suffix("").as_posix() for p in (ROOT / "book").glob("[0-9]*.md")}
    assert on_disk <= set(toc_files()), f"chapters missing from _toc.yml: {on_disk - set(toc_files())}"
    assert CHAPTERS, "no executable chapter found in _toc.yml"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_starts_with_a_parameters_cell(path):
    nb = jupytext.read(path)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", []), "the first code cell must be tagged parameters"
    assert re.search(r'^DEVICE = "auto"', first.source, re.M)
    assert re.search(r"^FAST = False", first.source, re.M)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_glued_name_in_the_prose_is_glued_by_the_code(path):
    nb = jupytext.read(path)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    used = set(re.findall(r"\{glue:?\w*\}`([^`:]+)", prose))
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    glued_literal = set(re.findall(r'glue\(\s*"([^"{]+)"', code))
    glued_patterns = [re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(p))
                      for p in re.findall(r'glue\(\s*f"([^"]+)"', code)]
    missing = {u for u in used - glued_literal if not any(re.fullmatch(p, u) for p in glued_patterns)}
    assert not missing, f"the prose quotes names no code cell glues: {sorted(missing)}"


def _glued_names(nb) -> set[str]:
    return {o.metadata.get("scrapbook", {}).get("name") for c in nb.cells for o in c.get("outputs", [])
            if o.get("metadata")}


def _quoted_names(nb) -> set[str]:
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return set(re.findall(r"\{glue:?\w*\}`([^`:]+)", prose))


def _check_executed(executed, device: str) -> None:
    assert not error_outputs(executed), error_outputs(executed)
    assert f"Running on device: {device}" in stdout_text(executed)


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_ran_in_the_book_build_without_errors(path, book_build):
    """The published build: every cell ran, nothing on stderr. (A number the prose quotes but no
    cell glued is a warning of the build itself, which test_book_build refuses; myst-nb takes the
    glue outputs out of the notebooks it writes, so they cannot be counted here.)"""
    executed = book_build.executed_chapter(path)
    assert all(c.get("execution_count") for c in executed.cells if c.cell_type == "code")
    _check_executed(executed, "cpu")


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_on_cuda(path, tmp_path):
    """The same chapter, full mode, on a GPU (skipped without one; the CPU build is the test above)."""
    nb = jupytext.read(path)
    out, _ = run_notebook(nb, tmp_path / f"{path.stem}.ipynb", device="cuda", cwd=path.parent,
                          parameters={"DEVICE": "cuda"})
    _check_executed(out, "cuda")
    missing = _quoted_names(nb) - _glued_names(out)
    assert not missing, f"quoted in the prose but not glued when the chapter ran: {sorted(missing)}"
