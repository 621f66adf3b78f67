"""The ``claims-list`` directive: every sentence the chapters check with ``lrlib.book.claim``.

Each chapter calls ``claim(condition, statement, evidence)`` in hidden cells; each call
is glued as ``claim-NNN`` (a JSON string). MyST-NB writes every page's glue data to
``<output folder>/<page>.glue.json`` and lists its keys in the environment. The
directive leaves a placeholder that is filled once every page has been read
(``doctree-resolved``), so the list is complete whatever order pages are read in.
Usage, in a page of the book::

    ```{claims-list}
    ```
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

PREFIX = "claim-"  # lrlib.book.CLAIM_PREFIX; not imported, so the site builds without torch


class claims_placeholder(nodes.General, nodes.Element):
    """Replaced by the table of claims when the page is resolved."""


class ClaimsList(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        if not hasattr(self.env, "lrlib_claims_pages"):
            self.env.lrlib_claims_pages = set()
        self.env.lrlib_claims_pages.add(self.env.docname)
        return [claims_placeholder()]


def always_rewrite(app, env, added, changed, removed) -> list[str]:
    """The claims page depends on every chapter: rebuild it whenever anything is rebuilt."""
    return sorted(getattr(env, "lrlib_claims_pages", set()))


def glue_data(output_folder: str, docname: str) -> dict:
    """What MyST-NB glued on page ``docname``: key -> output (``{"data": {mime: value}}``)."""
    path = Path(output_folder).joinpath(*docname.split("/")).with_suffix(".glue.json")
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _claims_of(output_folder: str, docname: str) -> list[dict]:
    glued = glue_data(output_folder, docname)
    claims = []
    for key in sorted(k for k in glued if k.startswith(PREFIX)):
        text = glued[key]["data"]["text/plain"]  # the repr of the JSON string claim() glued
        claims.append(json.loads(ast.literal_eval(text)))
    return claims


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def claim_id(docname: str, number: int) -> str:
    """The anchor of a chapter's ``number``-th claim on the claims page (1-based)."""
    return f"claim-{docname.split('/')[-1].replace('_', '-')}-{number}"


def _paragraph(*children: nodes.Node) -> nodes.paragraph:
    para = nodes.paragraph()
    para.extend(children)
    return para


def _test_cell(item: dict) -> str:
    """The paired test behind a comparison (n, effect size d_z, p), or a dash for a measurement."""
    if not item.get("test"):
        return "-"
    effect = item.get("effect")
    effect_text = "d_z=inf" if effect is None else f"d_z={effect:.2g}"
    return f"{item['test'].split(',')[0]}; n={item['n']}, {effect_text}, p={item['p_value']:.2g}"


def fill_claims(app, doctree: nodes.document, docname: str) -> None:
    placeholders = list(doctree.findall(claims_placeholder))
    if not placeholders:
        return
    env = app.env
    from myst_nb.sphinx_ import NbMetadataCollector

    folder = env.mystnb_config.output_folder
    glued = NbMetadataCollector.get_doc_data(env)
    pages = [d for d in env.found_docs if any(k.startswith(PREFIX) for k in glued[d].get("glue", []))]
    content = []
    total = failed = fast = 0
    for page in sorted(pages):
        claims = _claims_of(folder, page)
        title = env.titles[page].astext() if page in env.titles else page
        section = nodes.section(ids=[f"claims-{page.replace('/', '-')}"])
        heading = nodes.title()
        ref = nodes.reference("", title, internal=True,
                              refuri=app.builder.get_relative_uri(docname, page))
        heading += ref
        section += heading
        table = nodes.table(classes=["claims-table"])
        group = nodes.tgroup(cols=4)
        table += group
        for width in (5, 45, 25, 25):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        row = nodes.row()
        for label in ("", "What the chapter says", "What the run measured", "Paired test (n, effect, p)"):
            row += nodes.entry("", _paragraph(nodes.Text(label)))
        head += row
        group += head
        body = nodes.tbody()
        for number, item in enumerate(claims, start=1):
            total += 1
            failed += not item["holds"]
            fast += not item["full_mode"]
            mark = "✔" if item["holds"] else "✘"
            if not item["full_mode"]:
                mark += " (FAST run)"
            row = nodes.row(ids=[claim_id(page, number)])
            row += nodes.entry("", _paragraph(nodes.Text(mark)))
            row += nodes.entry("", _paragraph(nodes.Text(item["statement"])))
            row += nodes.entry("", _paragraph(nodes.literal(text=item["evidence"]) if item["evidence"]
                                              else nodes.Text("")))
            row += nodes.entry("", _paragraph(nodes.Text(_test_cell(item))))
            body += row
        group += body
        section += table
        content.append(section)
    summary = (f"{_count(total, 'claim')} in {_count(len(pages), 'page')}: {total - failed} "
               f"{'holds' if total - failed == 1 else 'hold'}, {failed} "
               f"{'does' if failed == 1 else 'do'} not"
               + (f" ({fast} from FAST runs, which record but do not check)" if fast else "") + ".")
    for node in placeholders:
        node.replace_self([_paragraph(nodes.strong(text=summary)), *content])


def setup(app):
    app.add_node(claims_placeholder)
    app.add_directive("claims-list", ClaimsList)
    app.connect("doctree-resolved", fill_claims)
    app.connect("env-get-outdated", always_rewrite)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
