"""The built site, checked like a reader: served on localhost and loaded in headless Chromium.

Every page of the table of contents loads with no console error or failed request, every
image loads, math is typeset by MathJax (served with the site: the site needs no CDN), no
cell output holds a traceback or an error, every internal link and anchor resolves, and the
site's search finds the warmup chapter. A screenshot of each page is saved under
``_build/screenshots/`` for review. Broken copies of the site show that the checks see a
missing figure and an error output.
"""

import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from .conftest import ROOT, assignments, chapters, toc_files
from .site_check import CHROMIUM, browser, check_page, search, serve

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium: `make test` installs it")]
SHOTS = ROOT / "_build" / "screenshots"


def _site(book_build):
    assert book_build.returncode == 0, book_build.log[-3000:]
    return book_build.html


def _unresolved(html: Path, links: set[str]) -> list[str]:
    """Internal links whose file, or whose #anchor in that file, does not exist."""
    bad = []
    for link in sorted(links):
        url = urlparse(link)
        path = html / unquote(url.path).lstrip("/")
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            bad.append(f"{link}: no such file")
        elif url.fragment and path.suffix == ".html":
            if not re.search(rf'id="{re.escape(unquote(url.fragment))}"', path.read_text(errors="replace")):
                bad.append(f"{link}: no such anchor")
    return bad


def test_every_page_loads_clean_in_chromium(book_build):
    html = _site(book_build)
    problems, links = {}, set()
    with serve(html) as base, browser() as page:
        for name in toc_files():
            found, page_links = check_page(page, base + name + ".html", SHOTS / f"{Path(name).name}.png")
            if found:
                problems[name] = found
            links |= {link.replace(base, "/") for link in page_links}
        titles = search(page, base, "warmup")
    assert not problems, problems
    assert len(links) > 50
    assert _unresolved(html, links) == []
    assert any("Warmup" in title for title in titles), titles
    assert len(list(SHOTS.glob("*.png"))) >= len(toc_files())
    # every chapter offers its notebook, and every exercise page the student version
    notebooks = {urlparse(link).path for link in links if link.endswith(".ipynb")}
    for chapter in chapters():
        offered = f"/_sources/{chapter.relative_to(ROOT).with_suffix('.ipynb').as_posix()}"
        assert offered in notebooks, offered
        nb = nbformat.read(html / offered.lstrip("/"), as_version=4)
        nbformat.validate(nb)
        assert "parameters" in next(c for c in nb.cells if c.cell_type == "code").metadata.get("tags", [])
    for name in assignments():
        assert any(path.endswith(f"/{name}.ipynb") and "_downloads" in path for path in notebooks), name


def _broken_copy(html: Path, tmp_path: Path) -> tuple[Path, str]:
    copy = tmp_path / "html"
    shutil.copytree(html, copy)
    return copy, "book/01_update_rule.html"


def test_the_checks_see_a_missing_figure(book_build, tmp_path):
    site, page_name = _broken_copy(_site(book_build), tmp_path)
    figure = re.search(r'<img[^>]+src="\.\./(_images/[^"]+)"', (site / page_name).read_text()).group(1)
    (site / figure).unlink()
    with serve(site) as base, browser() as page:
        found, _ = check_page(page, base + page_name)
    assert any(figure in problem and "image did not load" in problem for problem in found), found


def test_the_checks_see_a_cell_that_raised(tmp_path):
    """A real book whose page has a raising cell (the course's own build refuses errors,
    so this one lets them through) shows the traceback, and the check reports it."""
    import os
    import subprocess
    import sys

    (tmp_path / "_config.yml").write_text("title: broken\nexecute:\n  allow_errors: true\n"
                                          "only_build_toc_files: true\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    (tmp_path / "page.md").write_text("---\njupytext:\n  text_representation:\n    format_name: myst\n"
                                      "kernelspec:\n  name: python3\n  display_name: Python 3\n---\n"
                                      "# A page\n\n```{code-cell} ipython3\n1 / 0\n```\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([Path(sys.executable).parent / "jupyter-book", "build", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with serve(tmp_path / "_build" / "html") as base, browser() as page:
        found, _ = check_page(page, base + "page.html")
    assert any("ZeroDivisionError" in problem for problem in found), found
