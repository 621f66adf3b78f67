"""Looking at the built site the way a reader does: a local server and headless Chromium.

Used by tests/test_site.py. Every check returns a list of problems (empty when the page is
fine), so a test can show all that is wrong with a page at once, and so a deliberately broken
copy of the site can be shown to produce the problem it should.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

#: Debian's package; Playwright drives it instead of downloading its own browser.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` on a free localhost port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per request would bury the test output
        pass


@contextlib.contextmanager
def browser():
    """A headless Chromium page (Playwright), with console errors and failed requests recorded."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            page.problems = []
            page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
            page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: page.problems.append(f"failed to load {r.url}"))
            page.on("response",
                    lambda r: r.status >= 400 and page.problems.append(f"HTTP {r.status}: {r.url}"))
            yield page
        finally:
            chromium.close()


IMAGES = "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
#: images a screen reader would announce as a file name, or not at all
NO_ALT = """Array.from(document.querySelectorAll('article img'))
  .map(i => [i.getAttribute('src'), i.alt || ''])
  .filter(([src, alt]) => !alt.trim() || /\\.(png|svg|jpe?g|gif)$/i.test(alt)).map(([src]) => src)"""
#: cell-output figures without a caption under them
NO_CAPTION = """Array.from(document.querySelectorAll('article .cell_output img'))
  .filter(i => !i.closest('figure') || !i.closest('figure').querySelector('figcaption'))
  .map(i => i.getAttribute('src'))"""
MATH = """() => {
  const raw = document.querySelectorAll('.math').length;
  const typeset = document.querySelectorAll('mjx-container').length;
  const failed = document.querySelectorAll('mjx-merror').length;
  return [raw, typeset, failed];
}"""
ERRORS = """Array.from(document.querySelectorAll('.cell_output, .output')).map(e => e.innerText)
  .filter(t => /Traceback \\(most recent call last\\)|^\\w+Error: /m.test(t))
  .concat(Array.from(document.querySelectorAll('.output.traceback, .output.error')).map(e => e.innerText))"""
LINKS = """Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))"""


def check_page(page, url: str, screenshot: Path | None = None) -> tuple[list[str], list[str]]:
    """Load ``url`` and return (problems, internal links) for it.

    Problems: console errors, failed requests, images that did not load or have no
    alt text, figures without a caption, math left untypeset (or with MathJax errors),
    cell outputs holding a traceback or an error.
    """
    page.problems = []
    page.goto(url, wait_until="networkidle")
    with contextlib.suppress(Exception):  # pages without math never define MathJax
        page.wait_for_function("() => !window.MathJax || (MathJax.startup && MathJax.startup.promise)",
                               timeout=5000)
        page.evaluate("() => window.MathJax && MathJax.startup.promise")
    problems = list(page.problems)
    problems += [f"image did not load: {src}" for src in page.evaluate(IMAGES)]
    problems += [f"image without alt text: {src}" for src in page.evaluate(NO_ALT)]
    problems += [f"figure without a caption: {src}" for src in page.evaluate(NO_CAPTION)]
    raw, typeset, failed = page.evaluate(MATH)
    if raw and not typeset:
        problems.append(f"{raw} math elements, none typeset by MathJax")
    if failed:
        problems.append(f"{failed} MathJax errors")
    problems += [f"error in a cell output: {text[:200]!r}" for text in page.evaluate(ERRORS)]
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    base = urlparse(url)
    links = []
    for href in page.evaluate(LINKS):
        target = urlparse(urljoin(url, href))
        if target.scheme in ("http", "https") and target.netloc == base.netloc:
            links.append(target._replace(fragment="").geturl())
    return problems, links


def search(page, base_url: str, query: str) -> list[str]:
    """The result titles Sphinx's own search page lists for ``query``."""
    page.goto(urljoin(base_url, f"search.html?q={query}"), wait_until="networkidle")
    page.wait_for_selector("#search-results li, #search-results p", timeout=15000)
    return page.eval_on_selector_all("#search-results li a", "els => els.map(e => e.innerText)")
