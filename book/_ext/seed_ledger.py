"""The ``seed-ledger`` directive: every claim of the seed notes, its verdict and its evidence.

The ledger is data (``book/data/seed_claims.yaml``); this directive turns it into tables,
one per seed file. Evidence is of three kinds, each resolved against the build itself so a
ledger entry cannot point at something that is not there (an unresolved one is a Sphinx
warning, which ``-W`` makes an error):

- ``glue: "<chapter>.md::<key>"``: a number the chapter glued, shown with its value;
- ``claim: "<chapter>.md: <text>"``: the claim check of that chapter whose statement
  contains ``<text>`` (exactly one), linked on the claims page;
- ``section: "<chapter>.md#<anchor>"``: a section of a chapter.

Usage, in a page of the book::

    ```{seed-ledger} data/seed_claims.yaml
    ```
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from claims_page import _claims_of, _count, _paragraph, claim_id, glue_data  # noqa: I001 (a sibling extension)
from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)
VERDICTS = {"holds": "holds", "caveat": "holds with a caveat", "wrong": "wrong",
            "untested": "not tested here"}
SEEDS = ("000", "001", "002", "003", "004")


def load_ledger(path: Path) -> list[dict]:
    """The ledger's entries, checked for shape (a ``ValueError`` names the entry and the field)."""
    import yaml

    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of entries")
    for number, entry in enumerate(entries, start=1):
        missing = {"seed", "where", "claim", "verdict", "why", "evidence"} - set(entry)
        if missing:
            raise ValueError(f"{path}: entry {number} lacks {sorted(missing)}")
        if entry["verdict"] not in VERDICTS:
            raise ValueError(f"{path}: entry {number}: verdict must be one of {sorted(VERDICTS)}, "
                             f"got {entry['verdict']!r}")
        if entry["seed"] not in SEEDS:
            raise ValueError(f"{path}: entry {number}: seed must be one of {SEEDS}, got {entry['seed']!r}")
        if entry["verdict"] != "untested" and not entry["evidence"]:
            raise ValueError(f"{path}: entry {number} ({entry['claim'][:40]}...) is "
                             f"{entry['verdict']!r} without evidence")
        if not str(entry["why"]).strip():
            raise ValueError(f"{path}: entry {number} has an empty 'why'")
    return entries


class ledger_placeholder(nodes.General, nodes.Element):
    """Replaced by the ledger's tables once every chapter has been read."""


class SeedLedger(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        path = Path(self.env.srcdir) / "book" / self.arguments[0]
        self.env.note_dependency(str(path))
        try:
            entries = load_ledger(path)
        except (OSError, ValueError) as err:
            raise self.error(f"seed-ledger: {err}") from err
        if not hasattr(self.env, "lrlib_ledger_pages"):
            self.env.lrlib_ledger_pages = set()
        self.env.lrlib_ledger_pages.add(self.env.docname)
        return [ledger_placeholder(entries=entries)]


def _format(text_plain: str) -> str:
    try:
        value = float(text_plain)
    except ValueError:
        return text_plain.strip("'\"")
    return f"{value:.3g}"


def _evidence(app, fromdoc: str, item: dict, folder: str) -> nodes.Node:
    kind, target = next(iter(item.items()))
    builder = app.builder
    if kind == "glue":
        page, key = target.split("::", 1)
        docname = "book/" + page.removesuffix(".md")
        glued = glue_data(folder, docname)
        if key not in glued:
            LOGGER.warning(f"seed ledger: no glued {key!r} in {page}", location=fromdoc)
            return nodes.Text(f"[missing {target}]")
        value = _format(glued[key]["data"].get("text/plain", ""))
        ref = nodes.reference("", "", internal=True, refuri=builder.get_relative_uri(fromdoc, docname))
        ref += nodes.literal(text=f"{key} = {value}")
        return ref
    if kind == "claim":
        page, text = (part.strip() for part in target.split(":", 1))
        docname = "book/" + page.removesuffix(".md")
        matches = [n for n, c in enumerate(_claims_of(folder, docname), start=1) if text in c["statement"]]
        if len(matches) != 1:
            LOGGER.warning(f"seed ledger: {len(matches)} claims of {page} contain {text!r} (need 1)",
                           location=fromdoc)
            return nodes.Text(f"[unresolved {target}]")
        uri = builder.get_relative_uri(fromdoc, "book/claims") + "#" + claim_id(docname, matches[0])
        ref = nodes.reference("", "", internal=True, refuri=uri)
        ref += nodes.Text(f"claim {page.split('_')[0]}.{matches[0]}")
        return ref
    if kind == "section":
        page, anchor = target.split("#", 1)
        docname = "book/" + page.removesuffix(".md")
        if docname not in app.env.all_docs:
            LOGGER.warning(f"seed ledger: no page {page}", location=fromdoc)
            return nodes.Text(f"[missing {target}]")
        doctree = app.env.get_doctree(docname)
        ids = {i for section in doctree.findall(nodes.section) for i in section["ids"]}
        if anchor not in ids:
            LOGGER.warning(f"seed ledger: no section #{anchor} in {page}", location=fromdoc)
            return nodes.Text(f"[missing {target}]")
        ref = nodes.reference("", "", internal=True,
                              refuri=builder.get_relative_uri(fromdoc, docname) + "#" + anchor)
        ref += nodes.Text(f"§ {page.split('_')[0]} {anchor.replace('-', ' ')}")
        return ref
    LOGGER.warning(f"seed ledger: unknown evidence kind {kind!r}", location=fromdoc)
    return nodes.Text("")


def _table(headers: list[str], widths: list[int], rows: list[list[nodes.Node]]) -> nodes.table:
    table = nodes.table(classes=["seed-ledger"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head, row = nodes.thead(), nodes.row()
    for label in headers:
        row += nodes.entry("", _paragraph(nodes.Text(label)))
    head += row
    group += head
    body = nodes.tbody()
    for cells in rows:
        row = nodes.row()
        for cell in cells:
            row += nodes.entry("", cell if isinstance(cell, nodes.paragraph) else _paragraph(cell))
        body += row
    group += body
    return table


def fill_ledger(app, doctree: nodes.document, docname: str) -> None:
    folder = app.env.mystnb_config.output_folder
    for placeholder in list(doctree.findall(ledger_placeholder)):
        entries = placeholder["entries"]
        verdicts = Counter(e["verdict"] for e in entries)
        summary = _paragraph(nodes.strong(text=(
            f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'} from "
            f"{len({e['seed'] for e in entries})} notes files: "
            + ", ".join(f"{verdicts[v]} {label}" for v, label in VERDICTS.items()) + ".")))
        content: list[nodes.Node] = [summary]
        for seed in SEEDS:
            mine = [e for e in entries if e["seed"] == seed]
            section = nodes.section(ids=[f"seed-{seed}"])
            section += nodes.title(text=f"Notes file {seed} ({_count(len(mine), 'claim')})")
            rows = []
            for e in mine:
                what = _paragraph(nodes.Text(e["claim"] + " "), nodes.emphasis(text=f"({e['where']})"))
                evidence = _paragraph()
                for k, item in enumerate(e["evidence"] or []):
                    if k:
                        evidence += nodes.Text("; ")
                    evidence += _evidence(app, docname, item, folder)
                rows.append([what, nodes.Text(VERDICTS[e["verdict"]]), nodes.Text(e["why"]), evidence])
            section += _table(["What the seed says", "Verdict", "Why", "Evidence"], [30, 10, 40, 20], rows)
            content.append(section)
        placeholder.replace_self(content)


def always_rewrite(app, env, added, changed, removed) -> list[str]:
    """The ledger reads every chapter's glue and claims: rebuild it whenever anything is rebuilt."""
    return sorted(getattr(env, "lrlib_ledger_pages", set()))


def setup(app):
    app.setup_extension("claims_page")
    app.add_node(ledger_placeholder)
    app.add_directive("seed-ledger", SeedLedger)
    app.connect("doctree-resolved", fill_ledger)
    app.connect("env-get-outdated", always_rewrite)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
