"""How long every chapter (full and FAST mode) and every exercise solution takes to execute.

Run with ``make bench`` or ``.venv/bin/python benchmarks/notebook_times.py [--only NAME ...]
[--modes full fast solution] [--cells N] [--device cpu]``.

Each notebook runs once under papermill in a fresh kernel (kernel start included),
as the tests and the book build run it. The budgets are the design's: a chapter
executes in under 60 s in full mode and 20 s with ``FAST = True``, a solution in
under 30 s, on a 2-core CPU. The tests never assert them (machines differ by 2x
or more); this table is where they are checked, and the README quotes it with
the machine it was measured on. ``--cells N`` also lists the N slowest cells of
each notebook (papermill's per-cell durations), which is where to look when a
chapter goes over.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import jupytext
import nbformat
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import assignments, chapters, run_notebook, solution_notebook  # noqa: E402

BUDGET_S = {"full": 60.0, "fast": 20.0, "solution": 30.0}


def _slowest_cells(nb: nbformat.NotebookNode, n: int) -> list[tuple[float, str]]:
    timed = []
    for cell in nb.cells:
        seconds = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if cell.cell_type == "code" and seconds:
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            timed.append((float(seconds), first[:70]))
    return sorted(timed, reverse=True)[:n]


def _jobs(modes: list[str], only: list[str]) -> list[tuple[str, str, Path]]:
    jobs = []
    for mode in modes:
        if mode == "solution":
            jobs += [(name, mode, solution_notebook(name)) for name in assignments()]
        else:
            jobs += [(path.stem, mode, path) for path in chapters()]
    return [job for job in jobs if not only or any(o in job[0] for o in only)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=list(BUDGET_S), default=list(BUDGET_S))
    parser.add_argument("--only", nargs="*", default=[], help="names containing any of these")
    parser.add_argument("--cells", type=int, default=0, help="list the N slowest cells of each")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or '?'}; "
          f"Python {platform.python_version()}, torch {torch.__version__}, device {args.device}\n")
    rows, details = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, mode, path in _jobs(args.modes, args.only):
            if mode == "solution":
                nb, params = nbformat.read(path, as_version=4), {}
            else:
                nb, params = jupytext.read(path), {"FAST": mode == "fast", "DEVICE": args.device}
            out = Path(tmp) / f"{name}_{mode}.ipynb"
            try:
                done, seconds = run_notebook(nb, out, device=args.device, cwd=path.parent,
                                             parameters=params)
            except Exception as error:  # report it and go on: one failure should not hide the rest
                rows.append((name, mode, float("nan"), BUDGET_S[mode], f"error: {type(error).__name__}"))
                continue
            verdict = "ok" if seconds <= BUDGET_S[mode] else "OVER"
            rows.append((name, mode, seconds, BUDGET_S[mode], verdict))
            print(f"  {name} ({mode}): {seconds:.1f} s", file=sys.stderr, flush=True)
            if args.cells:
                details.append((f"{name} ({mode})", _slowest_cells(done, args.cells)))
    print("| notebook | mode | seconds | budget (s) | |")
    print("|---|---|---:|---:|---|")
    for name, mode, seconds, budget, verdict in rows:
        print(f"| {name} | {mode} | {seconds:.1f} | {budget:.0f} | {verdict} |")
    for mode in args.modes:
        total = sum(r[2] for r in rows if r[1] == mode)
        print(f"\n{mode}: {total:.1f} s in all", end="")
    print()
    for title, cells in details:
        print(f"\n{title}, slowest cells:")
        for seconds, first in cells:
            print(f"  {seconds:6.1f} s  {first}")


if __name__ == "__main__":
    main()
