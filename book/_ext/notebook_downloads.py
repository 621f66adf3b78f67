"""Offer every chapter as a Jupyter notebook: the page's download menu gets an ``.ipynb`` entry.

The chapters are MyST Markdown notebooks (jupytext); a reader who wants to run one locally
wants an ``.ipynb``. For each page whose source has a kernelspec, this writes the notebook
(converted with jupytext, without outputs: run it to make them) next to the page's source
copy in ``_sources/``, and tells sphinx-book-theme, which then lists it in the download menu.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat


def _is_notebook(path: Path) -> bool:
    text = path.read_text(encoding="utf-8") if path.suffix == ".md" and path.is_file() else ""
    return text.startswith("---") and "kernelspec:" in text.split("---")[1]


def _add_notebook(app, pagename, templatename, context, doctree):
    if doctree is None or not app.env.doc2path(pagename, base=True):
        return
    source = Path(app.env.doc2path(pagename))
    if not _is_notebook(source):
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(source)
    notebook.metadata.pop("jupytext", None)  # a plain notebook; the .md stays the source of truth
    nbformat.write(notebook, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def setup(app):
    # before sphinx-book-theme builds its header buttons (priority 501)
    app.connect("html-page-context", _add_notebook, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
