"""Parts that must be the student's own work: an answer that hands the part to ``lrlib``'s own
implementation scores 0 on it, with a note that says why.

A graded test cell declares what its part may not use with one line of its (locked) source::

    # own work: lrlib.update.sgd_step, lrlib.schedules

Each entry is a function, class or module. :func:`find_delegations` reads every answer cell
of the assembled notebook (the student's code only; the instructor's cells may use anything),
parsed as IPython parses it (its ``TransformerManager`` first, so magics are seen, not
skipped), and reports, per test cell, the entries its part's answers use: imported
(``from lrlib.update import sgd_step``, ``import lrlib.schedules``), reached as an attribute
(``lrlib.update.sgd_step``, ``u.sgd_step``) or called by a name the student's code never
defines (after a ``*`` import).

A part's answers are its own answer cells plus every earlier answer cell that binds a name
the *test* reads (so part 2 written inside part 1's cell is part 2's), and then every cell
whose names those read, until nothing more joins.

Some code cannot be read statically: reaching code by a string (``getattr``/``setattr`` on
anything, ``__import__``, ``importlib``, ``eval``/``exec``/``compile``, ``vars``/``globals``,
``__dict__``/``__globals__`` and other dunders, ``operator.attrgetter``, ``inspect``,
``pickle``/``marshal``, ``sys.modules``), reconfiguring how later cells run (``get_ipython``,
IPython, import hooks, ``builtins``), a magic or shell command, or a cell that does not parse.
Such a cell counts as using every entry of its own part and of every later part (it runs
before their tests). The check is static on purpose: it runs in the grader's process, where
the student's kernel cannot reach it. Copying lrlib's source text into an answer cannot be told
apart from writing it.
"""

from __future__ import annotations

from lrgrade.submission import nbgrader_meta
from lrlib._own_work import Uses, own_work_entries, part_uses, test_reads, used_entry, uses_of

__all__ = ["find_delegations", "own_work_entries"]


def find_delegations(nb) -> dict[str, str]:
    """For each graded cell of ``nb`` whose part the answers hand to a forbidden implementation,
    the note saying so: ``{grade_id: "uses lrlib.update.sgd_step"}``.

    ``nb`` is an assembled notebook (the instructor's cells with the student's answers). A
    part's answers are the answer cells since the previous graded cell, every earlier answer
    cell that binds a name its test reads (one no earlier test read: a name an earlier test read
    is that part's answer), and every earlier answer cell whose names those use
    (a helper written in an earlier part counts as this part's own code; a later cell has not
    run when this part is tested).
    """
    cells: list[Uses] = []
    found: dict[str, str] = {}
    since: list[int] = []  # the answer cells of the current part
    claimed: set[str] = set()  # names an earlier test read: earlier parts' answers, not this one's
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code":
            continue
        if meta.get("solution"):
            since.append(len(cells))
            cells.append(uses_of(cell.source))
        elif meta.get("grade"):
            entries, own, since = own_work_entries(cell.source), since, []
            reads = test_reads(cell.source)
            note = _verdict(entries, cells, own, reads - claimed) if entries else ""
            claimed |= reads
            if note:
                found[meta["grade_id"]] = note
    return found


def _verdict(entries: list[str], cells: list[Uses], own: list[int], reads: set[str]) -> str:
    uses = part_uses(cells, own, reads)
    # a cell that reaches code by name or reconfigures the kernel may change how every later cell runs
    dynamic = set(uses.dynamic).union(*(c.dynamic for c in cells))
    if dynamic:
        return (f"reaches code by name or changes how later cells run ({', '.join(sorted(dynamic))}), "
                f"which hides whether it uses {', '.join(entries)}")
    used = [e for e in entries if used_entry(e, uses)]
    return f"uses {', '.join(used)}" if used else ""
