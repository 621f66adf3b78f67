"""The whole site builds with Sphinx's warnings as errors, as `make book` builds it (full mode)."""

import re

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
