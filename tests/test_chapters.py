"""Every chapter named in _toc.yml executes under papermill with FAST=True: no error, within budget.

A new chapter is covered by adding it to _toc.yml.
"""

import re

import jupytext
import pytest

from .conftest import ROOT, chapters, devices, error_outputs, run_notebook, stdout_text, toc_files

FAST_BUDGET_S = 20  # DESIGN.md: a chapter runs in under 20 s with FAST = True
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


@pytest.mark.slow
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_fast_without_errors(path, device, tmp_path):
    nb = jupytext.read(path)
    out, seconds = run_notebook(nb, tmp_path / f"{path.stem}.ipynb", device=device, cwd=path.parent,
                                parameters={"FAST": True, "DEVICE": device})
    assert not error_outputs(out), error_outputs(out)
    assert f"Running on device: {device}" in stdout_text(out)
    glued = {o.metadata.get("scrapbook", {}).get("name") for c in out.cells for o in c.get("outputs", [])
             if o.get("metadata")}
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for name in set(re.findall(r"\{glue:?\w*\}`([^`:]+)", prose)):
        assert name in glued, f"{name} is quoted in the prose but was not glued when the chapter ran"
    assert seconds < FAST_BUDGET_S, f"{path.name} took {seconds:.1f} s with FAST=True"
