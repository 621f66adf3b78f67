"""The whole site builds with Sphinx's warnings as errors, as `make book` does (chapters in FAST mode)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, chapters


@pytest.mark.slow
def test_book_builds_without_warnings(tmp_path):
    env = {**os.environ, "LRLIB_FAST": "1", "LRLIB_DEVICE": "cpu",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [Path(sys.executable).parent / "jupyter-book", "build", ".", "--path-output", str(tmp_path),
         "-W", "-n", "--keep-going"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    log = done.stdout + done.stderr
    warnings = [line for line in log.splitlines() if re.search(r"WARNING|ERROR", line)
                and "Kernel is running over TCP" not in line]
    assert done.returncode == 0 and not warnings, "\n".join(warnings) or log[-3000:]
    html = tmp_path / "_build" / "html"
    for chapter in chapters():
        page = (html / chapter.relative_to(ROOT).with_suffix(".html")).read_text()
        assert "Traceback" not in page and 'class="output traceback' not in page
    page = (html / "book" / "01_update_rule.html").read_text()
    assert re.search(r"moves from\s*(<[^>]+>)*\s*0\.90\s*(<[^>]+>)*\s*to\s*(<[^>]+>)*\s*0\.94", page), \
        "chapter 1 must show the glued 0.94"
    assert page.count("<img") >= 3, "chapter 1 has its figures"
