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

import pytest

from .conftest import ROOT, toc_files
from .site_check import CHROMIUM, browser, check_page, search, serve

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium: `make test` installs it")]
SHOTS = ROOT / "_build" / "screenshots"


def _site(fast_site):
    html, returncode, log = fast_site
    assert returncode == 0, log[-3000:]
    return html


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


def test_every_page_loads_clean_in_chromium(fast_site):
    html = _site(fast_site)
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


def _broken_copy(html: Path, tmp_path: Path) -> tuple[Path, str]:
    copy = tmp_path / "html"
    shutil.copytree(html, copy)
    return copy, "book/01_update_rule.html"


def test_the_checks_see_a_missing_figure(fast_site, tmp_path):
    site, page_name = _broken_copy(_site(fast_site), tmp_path)
    figure = re.search(r'<img[^>]+src="\.\./(_images/[^"]+)"', (site / page_name).read_text()).group(1)
    (site / figure).unlink()
    with serve(site) as base, browser() as page:
        found, _ = check_page(page, base + page_name)
    assert any(figure in problem and "image did not load" in problem for problem in found), found


def test_the_checks_see_an_error_in_a_cell_output(fast_site, tmp_path):
    site, page_name = _broken_copy(_site(fast_site), tmp_path)
    text = (site / page_name).read_text()
    # what myst-nb writes for a cell that raised, when a build lets errors through
    error = ('<div class="cell_output docutils container"><div class="output traceback highlight-ipythontb '
             'notranslate"><div class="highlight"><pre><span></span>Traceback (most recent call last):\n'
             '  File "x.py", line 1\nZeroDivisionError: division by zero</pre></div></div></div>')
    (site / page_name).write_text(text.replace('<div class="cell_output docutils container">', error, 1))
    with serve(site) as base, browser() as page:
        found, _ = check_page(page, base + page_name)
    assert any("ZeroDivisionError" in problem for problem in found), found
