"""Drop repeated ``<script>`` entries from every page.

sphinx-thebe (which Jupyter Book always loads) registers its inline configuration script
(``const THEBE_JS_URL = ...``) in a way that reaches the page twice (once with the file
name ``None``, once with ``""``), and a ``const``
declared twice is a JavaScript SyntaxError on every page: the site's browser test
(tests/test_site.py) reports it. Same file, or same inline body, is kept once.
"""

from __future__ import annotations


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for script in context.get("script_files", []):
        # the same inline script arrives once with filename None and once with ""
        attributes = tuple(sorted(getattr(script, "attributes", {}).items()))
        key = (getattr(script, "filename", script) or None, attributes)
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)  # after the themes add theirs
    return {"parallel_read_safe": True, "parallel_write_safe": True}
