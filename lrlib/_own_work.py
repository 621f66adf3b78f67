"""Reading a cell for the own-work check: what it imports, reaches and defines, and what no reading
can follow. The grader (``lrgrade.delegation``) decides with it; :func:`lrlib.exercise.expect_own_work`
warns a student with the same rules in their own notebook, before grading.
"""

from __future__ import annotations

import ast
import re

DIRECTIVE = re.compile(r"^#\s*own work:\s*(.+?)\s*$", re.MULTILINE)
#: names whose use reaches code by a string or changes how later code runs: a static reading cannot follow
DYNAMIC_NAMES = frozenset({
    "__import__", "eval", "exec", "compile", "getattr", "setattr", "delattr", "vars", "globals",
    "locals", "get_ipython", "breakpoint", "__builtins__", "attrgetter", "methodcaller",
    "__loader__", "__spec__", "get_type_hints", "ForwardRef", "_eval_type"})
#: attributes that reach code by a string, or behind an object's back
DYNAMIC_ATTRIBUTES = frozenset({
    "__dict__", "__globals__", "__getattribute__", "__getattr__", "__setattr__", "__delattr__",
    "__builtins__", "__code__", "__closure__", "__wrapped__", "__subclasses__", "__mro__", "__bases__",
    "__base__", "__self__", "__func__", "__module__", "__import__", "__loader__", "__spec__",
    "__reduce__", "__reduce_ex__", "__class__", "__defaults__", "__kwdefaults__", "attrgetter",
    "methodcaller", "import_module", "_getframe", "settrace", "setprofile", "addaudithook",
    "meta_path", "path_hooks", "get_ipython", "get_type_hints", "ForwardRef", "_eval_type", "_evaluate",
    "system", "popen", "execv", "execve", "execvp", "execl", "execlp", "spawnv", "spawnl", "posix_spawn",
    "load", "loads", "read_pickle", "eval", "query", "resolve", "locate"})
#: underscored attributes an answer may reach (os._exit, a namedtuple's API, common dunders); any other
#: that starts with _ is private: a way around a reading
PLAIN_DUNDERS = frozenset({
    "__init__", "__name__", "__doc__", "__len__", "__call__", "__enter__", "__exit__", "__iter__",
    "__next__", "__repr__", "__str__", "__getitem__", "__setitem__", "__contains__", "__eq__", "__hash__",
    "__add__", "__mul__", "__sub__", "__truediv__", "__neg__", "__lt__", "__le__", "__gt__", "__ge__",
    "__post_init__", "__version__", "_exit", "_asdict", "_replace", "_fields", "_make"})
#: the modules an answer may import in a notebook with own-work parts: any other is a module the
#: check does not read through (pydoc.locate, string.Formatter and timeit all resolve names from text)
ALLOWED_MODULES = frozenset({
    "numpy", "torch", "math", "cmath", "copy", "re", "statistics", "collections", "itertools",
    "functools", "operator", "random", "time", "warnings", "dataclasses", "typing", "scipy", "pandas",
    "sklearn", "matplotlib", "lrlib", "decimal", "fractions", "heapq", "bisect", "json", "csv", "io", "os",
    "pathlib", "textwrap", "datetime", "numbers", "enum", "abc", "contextlib", "tqdm", "sys", "__future__",
    "glob", "socket", "shutil", "tempfile", "threading", "hashlib", "base64", "struct", "array", "uuid",
    "secrets", "signal", "errno", "queue", "platform", "locale", "gzip", "zipfile", "resource"})
#: modules whose import is a way of reaching code by name, by bytes or behind the notebook's back
DYNAMIC_MODULES = frozenset({
    "importlib", "inspect", "pickle", "_pickle", "marshal", "copyreg", "dill", "cloudpickle", "shelve",
    "runpy", "builtins", "types", "ctypes", "gc", "IPython", "ipykernel", "code", "codeop", "imp",
    "pkgutil", "zipimport"})


def own_work_entries(test_source: str) -> list[str]:
    """The entries a test cell's ``# own work:`` line forbids (empty when it has none)."""
    entries: list[str] = []
    for line in DIRECTIVE.findall(test_source):
        entries += [e.strip() for e in line.split(",") if e.strip()]
    return entries


class Uses(ast.NodeVisitor):
    """What one piece of code imports, reaches as attributes, defines and calls by name."""

    def __init__(self) -> None:
        self.imported: set[str] = set()  # dotted paths: "lrlib.update", "lrlib.update.sgd_step"
        self.attributes: set[str] = set()  # every attribute name reached, "sgd_step"
        self.defined: set[str] = set()  # names the code binds itself
        self.loaded: set[str] = set()  # names the code reads
        self.lrlib_names: set[str] = {"lrlib"}  # local names bound to lrlib modules
        self.dynamic: set[str] = set()
        self.exported: set[str] = set()  # names bound at the top level, which later cells see
        self.star: set[str] = set()  # modules imported with *
        self.sys_names: set[str] = {"sys"}  # local names bound to the sys module
        self.attribute_stores: set[str] = set()  # attributes the code sets on objects (np.gn = ...)
        self.globals: set[str] = set()  # names a function declares global (and so binds at the top)
        self.captured: set[str] = set()  # names a match statement's patterns bind

    def _module(self, name: str) -> None:
        top = name.split(".")[0]
        if top in DYNAMIC_MODULES or (top and top not in ALLOWED_MODULES):
            self.dynamic.add(f"import {top}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imported.add(alias.name)
            self._module(alias.name)
            if alias.name == "sys":
                self.sys_names.add(alias.asname or "sys")
            if alias.name.startswith("lrlib"):
                self.lrlib_names.add(alias.asname or alias.name.split(".")[0])
            self.defined.add(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self._module(module)
        if node.level:  # a relative import: nothing a notebook has
            self.dynamic.add("a relative import")
        elif module == "sys" and {a.name for a in node.names} & {"modules", "_getframe", "meta_path"}:
            self.dynamic.add("sys.modules")
        for alias in node.names:
            if alias.name == "sys":
                self.sys_names.add(alias.asname or "sys")
            self.imported.add(f"{module}.{alias.name}" if alias.name != "*" else module)
            if alias.name == "*":
                self.star.add(module)
            if alias.name != "*":
                self.defined.add(alias.asname or alias.name)
                if module.startswith("lrlib"):
                    self.lrlib_names.add(alias.asname or alias.name)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.attributes.add(node.attr)
        if isinstance(node.ctx, ast.Store):
            self.attribute_stores.add(node.attr)
        sys_module = ((isinstance(node.value, ast.Name) and node.value.id in self.sys_names)
                      or (isinstance(node.value, ast.Attribute) and node.value.attr == "sys"))
        if node.attr.startswith("_") and node.attr not in PLAIN_DUNDERS:
            self.dynamic.add(f"the private attribute .{node.attr}")
        if node.attr in DYNAMIC_ATTRIBUTES or (node.attr == "modules" and sys_module):
            self.dynamic.add(f".{node.attr}")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        (self.defined if isinstance(node.ctx, ast.Store) else self.loaded).add(node.id)
        if node.id in DYNAMIC_NAMES:
            self.dynamic.add(node.id)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.defined.add(node.name)
        self.defined.update(a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg))
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.defined.add(node.name)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.globals.update(node.names)  # bound at the top level from inside a function

    def _capture(self, name: str | None, node: ast.AST) -> None:
        """A name a match pattern binds (case helper:, case [*rest], case {**rest})."""
        if name:
            self.defined.add(name)
            self.captured.add(name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self._capture(node.name, node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        self._capture(node.name, node)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self._capture(node.rest, node)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        self.attributes.update(node.kwd_attrs)  # case object(sgd_step=f): an attribute read by its name
        self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.defined.update(a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg))
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


def parse(code: str) -> ast.Module | None:
    """``code`` parsed as IPython runs it (magics become calls), or None when it does not parse."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(code))
    except (SyntaxError, ValueError, IndexError, RecursionError, MemoryError):  # broken, or nested too deep
        return None


def uses_of(code: str) -> Uses:
    uses = Uses()
    tree = parse(code)
    if tree is None:  # what cannot be parsed cannot be read: it may hide anything
        uses.dynamic.add("code that does not parse")
        return uses
    try:
        uses.visit(tree)
    except RecursionError:  # an expression nested past what a reading follows
        uses.dynamic.add("code nested too deeply to read")
        return uses
    if re.search(r"^\s*[%!]", code, re.MULTILINE):
        uses.dynamic.add("a magic or shell command")
    uses.exported = _top_level(tree) | uses.globals | uses.captured
    return uses


def test_reads(test_source: str) -> set[str]:
    """The names a test cell reads that it does not bind itself: what it takes from the answers."""
    tree = parse(test_source)
    if tree is None:
        return set()
    loaded, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return loaded - bound


def used_entry(entry: str, uses: Uses) -> bool:
    last = entry.rsplit(".", 1)[-1]
    if any(entry == module or entry.startswith(module + ".") for module in uses.star):
        return True  # everything of that module is now a name of the notebook's
    if any(path == entry or path.startswith(entry + ".") for path in uses.imported):
        return True
    if any(path.startswith("lrlib") and path.rsplit(".", 1)[-1] == last for path in uses.imported):
        return True  # from lrlib.update import sgd_step, or from a re-exporting module
    if last in uses.attributes:
        return True
    return last in uses.loaded - uses.defined  # a name only a * import can have brought


def part_uses(cells: list[Uses], own: list[int], reads: set[str] = frozenset()) -> Uses:
    """What a part's answers use, together with every other answer cell they rely on: a cell that
    binds a name the test reads joins it, then a cell that defines a name, or sets an attribute,
    the part reads, and so on until nothing more joins."""
    members = set(own) | {i for i, c in enumerate(cells) if c.exported & reads}
    while True:  # a cell joins when it binds a name, or sets an attribute (np.gn = ...), the part reads
        read = set().union(*(cells[i].loaded for i in members)) if members else set()
        reached = set().union(*(cells[i].attributes for i in members)) if members else set()
        joining = {i for i, c in enumerate(cells)
                   if i not in members and (c.exported & read or c.attribute_stores & reached)}
        if not joining:
            break
        members |= joining
    total = Uses()
    for i in members:
        for name in ("imported", "attributes", "defined", "loaded", "lrlib_names", "dynamic", "star"):
            getattr(total, name).update(getattr(cells[i], name))
    return total
