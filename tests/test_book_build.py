"""The whole site builds with Sphinx's warnings as errors, as `make book` builds it (full mode)."""

import re
from pathlib import Path

import pytest

from .conftest import ROOT, chapters


@pytest.mark.slow
def test_book_builds_without_warnings(book_build):
    warnings = [line for line in book_build.log.splitlines() if re.search(r"WARNING|ERROR", line)
                and "Kernel is running over TCP" not in line]
    assert book_build.returncode == 0 and not warnings, "\n".join(warnings) or book_build.log[-3000:]
    for chapter in chapters():
        page = (book_build.html / chapter.relative_to(ROOT).with_suffix(".html")).read_text()
        assert "Traceback" not in page and 'class="output traceback' not in page
    page = (book_build.html / "book" / "01_update_rule.html").read_text()
    assert re.search(r"moves from\s*(<[^>]+>)*\s*0\.90\s*(<[^>]+>)*\s*to\s*(<[^>]+>)*\s*0\.94", page), \
        "chapter 1 must show the glued 0.94"
    assert page.count("<img") >= 3, "chapter 1 has its figures"


def _pages_of(chapter):
    """A chapter's pages: ``07_...`` and its sections ``07b_...`` count together."""
    if chapter.stem.startswith("appendix"):
        return [chapter]
    return [p for p in chapters() if p.stem[:2] == chapter.stem[:2]]


#: Pages that report how the book itself is checked (stored experiments verified): their statements
#: are facts, asserted with lrlib.book.check, and a claim there would count a tautology as evidence.
REFERENCE_PAGES = {"appendix_experiments"}


@pytest.mark.slow
@pytest.mark.parametrize("chapter", chapters(), ids=lambda p: p.stem)
def test_every_chapter_checks_a_dozen_claims_and_all_hold(book_build, chapter):
    """A numbered chapter (its pages together) checks 12 claims or more; an appendix at least 5;
    a reference page none; every claim holds, in full mode."""
    claims = book_build.claims(chapter)
    if chapter.stem in REFERENCE_PAGES:
        assert claims == [], f"{chapter.name} states facts (check), not evidence (claim)"
        return
    together = sum(len(book_build.claims(p)) for p in _pages_of(chapter))
    least = 5 if chapter.stem.startswith("appendix") else 12
    assert together >= least, f"{chapter.name} checks only {together} claims; the book asks for {least}"
    assert all(c["holds"] and c["full_mode"] for c in claims), [c for c in claims if not c["holds"]]


@pytest.mark.slow
def test_the_claims_page_lists_every_claim_with_its_outcome(book_build):
    import html as html_lib

    page = html_lib.unescape((book_build.html / "book" / "claims.html").read_text())
    total = 0
    for chapter in chapters():
        for number, c in enumerate(book_build.claims(chapter), start=1):
            total += 1
            assert c["statement"] in page, c["statement"]
            anchor = f'id="claim-{chapter.stem.replace("_", "-")}-{number}"'
            assert anchor in page, anchor
    pages = [c for c in chapters() if c.stem not in REFERENCE_PAGES]
    assert f"{total} claims in {len(pages)} pages: {total} hold, 0 do not." in page
    assert page.count("✔") >= total and "✘ (FAST run)" not in page


MINI_PAGE = """---
jupytext:
  text_representation: {{extension: .md, format_name: myst}}
kernelspec: {{display_name: Python 3, language: python, name: python3}}
---
# A page with one claim

```{{code-cell}} ipython3
from lrlib.book import claim, fast
FAST = fast(False)
claim({condition}, "One is more than two.", "1 vs 2")
```
"""


@pytest.mark.slow
@pytest.mark.parametrize("fast_mode", [False, True], ids=["full", "fast"])
def test_a_false_claim_fails_a_full_build_and_is_only_recorded_in_a_fast_one(tmp_path, fast_mode):
    """Oracle: jupyter-book's own exit status and the page it writes."""
    import os
    import subprocess
    import sys

    (tmp_path / "_config.yml").write_text(
        "title: mini\nexecute:\n  execute_notebooks: force\n  allow_errors: false\n"
        "sphinx:\n  local_extensions:\n"
        f"    claims_page: {ROOT / 'book' / '_ext'}\n"
        "  config:\n    nb_execution_raise_on_error: true\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: page\nchapters:\n  - file: claims\n")
    (tmp_path / "page.md").write_text(MINI_PAGE.format(condition="1 > 2"))
    (tmp_path / "claims.md").write_text("# Claims\n\n```{claims-list}\n```\n")
    env = {k: v for k, v in os.environ.items() if k != "LRLIB_FAST"}
    if fast_mode:
        env["LRLIB_FAST"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run([Path(sys.executable).parent / "jupyter-book", "build", str(tmp_path), "-W", "-n",
                           "--keep-going"], env=env, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    if not fast_mode:
        assert done.returncode != 0, log[-3000:]
        assert "ClaimFailed" in log and "One is more than two." in log, log[-3000:]
        return
    assert done.returncode == 0, log[-3000:]
    page = (tmp_path / "_build" / "html" / "claims.html").read_text()
    assert "One is more than two." in page and "✘ (FAST run)" in page
    assert "1 claim in 1 page: 0 hold, 1 does not (1 from FAST runs" in page
