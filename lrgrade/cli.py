"""The command line: ``python -m lrgrade ASSIGNMENT`` grades a class (what ``make autograde`` runs)."""

from __future__ import annotations

import argparse

from lrgrade.classroom import autograde


def main(argv: list[str] | None = None) -> int:
    """``python -m lrgrade ASSIGNMENT``: grade a class, print the summary (``--help``: options)."""
    parser = argparse.ArgumentParser(prog="python -m lrgrade",
                                     description="Grade submitted/<student>/ASSIGNMENT/ in isolated parallel "
                                                 "workers; record the scores in the nbgrader gradebook.")
    parser.add_argument("assignment")
    parser.add_argument("--course", default=".", help="the course folder (default: here)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: the cores)")
    parser.add_argument("--cell-timeout", type=float, default=60, help="seconds per cell (default 60)")
    parser.add_argument("--notebook-timeout", type=float, default=600,
                        help="seconds per notebook (default 600)")
    parser.add_argument("--dask", metavar="ADDRESS", default=None,
                        help="grade on this Dask scheduler (tcp://host:8786) instead of local processes")
    parser.add_argument("--unsafe", action="store_true",
                        help="run student code WITHOUT isolation where it is impossible (trusted code only)")
    args = parser.parse_args(argv)
    client = executor = None
    if args.dask:
        from distributed import Client  # the optional 'cluster' extra

        client = Client(args.dask)
        executor = client.get_executor()
    try:
        summary = autograde(args.course, args.assignment, workers=args.workers, executor=executor,
                            cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout,
                            allow_unsafe=args.unsafe)
    finally:
        if client is not None:
            client.close()
    if summary.empty:
        print(f"no submissions found in submitted/*/{args.assignment}/")
        return 0
    print(summary.drop(columns=["lost"]).to_string(index=False))
    lost = summary[summary.lost != ""]
    if len(lost):
        print("\nPoints lost, by part and why:")
        for row in lost.itertuples():
            print(f"  {row.student}: {row.lost}")
    for note in summary.attrs.get("notes", []):
        print(f"\nnote: {note}")
    counts = summary.status.value_counts()
    not_graded = counts.get("not graded", 0)
    print(f"\n{len(summary)} submissions: {counts.get('graded', 0)} graded, {counts.get('timed out', 0)} "
          f"graded with a timeout, " + (f"{not_graded} not graded (the grader's own cells failed twice; "
                                        "nothing recorded: grade them again), " if not_graded else "")
          + f"{counts.get('failed', 0)} failed")
    return 0
