"""Parts that must be the student's own work: an answer that hands the part to ``lrlib``'s own
implementation scores 0 on it, with a note that says why.

A graded test cell declares what its part may not use with one line of its (locked) source::

    # own work: lrlib.update.sgd_step, lrlib.schedules

Each entry is a function, class or module. :func:`find_delegations` reads every answer cell
of the assembled notebook (the student's code only; the instructor's cells may use anything)
and reports, per test cell, the entries its part's answers use: imported (``from lrlib.update
import sgd_step``, ``import lrlib.schedules``), reached as an attribute
(``lrlib.update.sgd_step``, ``u.sgd_step``) or called by a name the student's code never
defines (after a ``*`` import). An earlier answer cell that defines a name the part uses
counts as the part's own code, so a helper written in an earlier part cannot smuggle the call
in. Code that reaches modules by string
(``__import__``, ``importlib``, ``eval``, ``exec``, ``sys.modules``, ``__dict__``, or
``getattr`` on an ``lrlib`` module) cannot be read statically, so it counts as using every
entry of every part. The check is static on purpose: it runs in the grader's process,
where the student's kernel cannot reach it.
"""

from __future__ import annotations

import ast
import re

from lrgrade.submission import nbgrader_meta

DIRECTIVE = re.compile(r"^#\s*own work:\s*(.+?)\s*$", re.MULTILINE)
#: ways to reach a module by a string, which a static reading cannot follow
DYNAMIC = ("__import__", "importlib", "eval", "exec", "__dict__", "__getattribute__")


def own_work_entries(test_source: str) -> list[str]:
    """The entries a test cell's ``# own work:`` line forbids (empty when it has none)."""
    entries: list[str] = []
    for line in DIRECTIVE.findall(test_source):
        entries += [e.strip() for e in line.split(",") if e.strip()]
    return entries


class _Uses(ast.NodeVisitor):
    """What one piece of code imports, reaches as attributes, defines and calls by name."""

    def __init__(self) -> None:
        self.imported: set[str] = set()  # dotted paths: "lrlib.update", "lrlib.update.sgd_step"
        self.attributes: set[str] = set()  # every attribute name reached, "sgd_step"
        self.defined: set[str] = set()  # names the code binds itself
        self.loaded: set[str] = set()  # names the code reads
        self.lrlib_names: set[str] = {"lrlib"}  # local names bound to lrlib modules
        self.dynamic: set[str] = set()
        self.exported: set[str] = set()  # names bound at the top level, which later cells see

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imported.add(alias.name)
            if alias.name.split(".")[0] == "importlib":
                self.dynamic.add("importlib")
            if alias.name.startswith("lrlib"):
                self.lrlib_names.add(alias.asname or alias.name.split(".")[0])
            self.defined.add(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if module.split(".")[0] == "importlib":
            self.dynamic.add("importlib")
        for alias in node.names:
            self.imported.add(f"{module}.{alias.name}" if alias.name != "*" else module)
            if alias.name != "*":
                self.defined.add(alias.asname or alias.name)
                if module.startswith("lrlib"):
                    self.lrlib_names.add(alias.asname or alias.name)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.attributes.add(node.attr)
        if node.attr in DYNAMIC or (node.attr == "modules" and isinstance(node.value, ast.Name)
                                    and node.value.id == "sys"):
            self.dynamic.add(f".{node.attr}")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        (self.defined if isinstance(node.ctx, ast.Store) else self.loaded).add(node.id)
        if node.id in DYNAMIC:
            self.dynamic.add(node.id)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.defined.add(node.name)
        self.defined.update(a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg))
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.defined.add(node.name)
        self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.defined.update(a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (isinstance(node.func, ast.Name) and node.func.id == "getattr" and node.args
                and isinstance(node.args[0], (ast.Name, ast.Attribute))):
            base = node.args[0]
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in self.lrlib_names:
                self.dynamic.add("getattr on lrlib")
        self.generic_visit(node)


def _top_level(tree: ast.Module) -> set[str]:
    """The names a cell binds at its top level, which later cells can use."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        else:  # assignments, loops, with-blocks: every name stored outside a function
            names.update(n.id for n in ast.walk(node)
                         if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    return names


def _uses(code: str) -> _Uses:
    uses = _Uses()
    try:
        tree = ast.parse(code)
    except SyntaxError:  # IPython magics or broken code: what cannot be parsed cannot be read
        return uses
    uses.visit(tree)
    uses.exported = _top_level(tree)
    return uses


def _used_entry(entry: str, uses: _Uses) -> bool:
    last = entry.rsplit(".", 1)[-1]
    if any(path == entry or path.startswith(entry + ".") for path in uses.imported):
        return True
    if any(path.startswith("lrlib") and path.rsplit(".", 1)[-1] == last for path in uses.imported):
        return True  # from lrlib.update import sgd_step, or from a re-exporting module
    if last in uses.attributes:
        return True
    return last in uses.loaded - uses.defined  # a name only a * import can have brought


def _part_uses(cells: list[_Uses], own: list[int]) -> _Uses:
    """What a part's answers use, together with every other answer cell they rely on: a cell
    that defines a name the part reads joins it, and so on until nothing more joins."""
    members = set(own)
    while True:
        read = set().union(*(cells[i].loaded for i in members)) if members else set()
        joining = {i for i, c in enumerate(cells) if i not in members and c.exported & read}
        if not joining:
            break
        members |= joining
    total = _Uses()
    for i in members:
        for name in ("imported", "attributes", "defined", "loaded", "lrlib_names", "dynamic"):
            getattr(total, name).update(getattr(cells[i], name))
    return total


def find_delegations(nb) -> dict[str, str]:
    """For each graded cell of ``nb`` whose part the answers hand to a forbidden implementation,
    the note saying so: ``{grade_id: "uses lrlib.update.sgd_step"}``.

    ``nb`` is an assembled notebook (the instructor's cells with the student's answers). A
    part's answers are the answer cells since the previous graded cell, joined by every other
    answer cell before it whose names they use (a helper written in an earlier part counts as
    this part's own code; a later cell has not run when this part is tested).
    """
    cells: list[_Uses] = []
    found: dict[str, str] = {}
    since: list[int] = []  # the answer cells of the current part
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code":
            continue
        if meta.get("solution"):
            since.append(len(cells))
            cells.append(_uses(cell.source))
        elif meta.get("grade"):
            entries, own, since = own_work_entries(cell.source), since, []
            note = _verdict(entries, cells, own) if entries else ""
            if note:
                found[meta["grade_id"]] = note
    return found


def _verdict(entries: list[str], cells: list[_Uses], own: list[int]) -> str:
    uses = _part_uses(cells, own)
    if uses.dynamic:
        return (f"reaches code by name ({', '.join(sorted(uses.dynamic))}), "
                f"which hides whether it uses {', '.join(entries)}")
    used = [e for e in entries if _used_entry(e, uses)]
    return f"uses {', '.join(used)}" if used else ""
