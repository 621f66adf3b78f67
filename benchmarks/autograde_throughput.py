"""Grading throughput: plain ``nbgrader autograde`` (one notebook at a time, unisolated) against
``lrgrade`` (isolated, parallel workers) on N copies of one assignment's solution.

Run as root with ``.venv/bin/python benchmarks/autograde_throughput.py [--n 50] [--workers 2]``.
Builds two throw-away courses with the same N submissions (the release with the
solution's answers filled in), grades one with each, checks that both give every
student full marks (and that the guard took nothing for tampering), and prints
seconds per submission; then times lrgrade's per-student feedback on its own.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from lrgrade import autograde

ROOT = Path(__file__).resolve().parents[1]


def make_course(where: Path, name: str, n: int) -> Path:
    course = where / "course"
    for folder in ("solutions", "exercises"):
        shutil.copytree(ROOT / folder / name, course / folder / name)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    source = nbformat.read(course / "solutions" / name / f"{name}.ipynb", as_version=4)
    release = nbformat.read(course / "exercises" / name / f"{name}.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells}
    filled = copy.deepcopy(release)
    for cell in filled.cells:
        if cell.metadata["nbgrader"].get("solution"):
            cell.source = answers[cell.metadata["nbgrader"]["grade_id"]]
    for i in range(n):
        folder = course / "submitted" / f"student{i:03d}" / name
        folder.mkdir(parents=True)
        nbformat.write(filled, folder / f"{name}.ipynb")
    return course


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="ch01_update_rule")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    name, n = args.assignment, args.n
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory() as plain_dir, tempfile.TemporaryDirectory() as ours_dir:
        plain = make_course(Path(plain_dir), name, n)
        nbgrader = [str(bin_dir / "nbgrader")]
        subprocess.run(nbgrader + ["generate_assignment", name, "--force", "--log-level=ERROR"], cwd=plain,
                       env=env, check=True)
        start = time.perf_counter()
        subprocess.run(nbgrader + ["autograde", name, "--create", "--log-level=ERROR"], cwd=plain, env=env,
                       check=True)
        plain_seconds = time.perf_counter() - start

        ours = make_course(Path(ours_dir), name, n)
        start = time.perf_counter()
        summary = autograde(ours, name, workers=args.workers, progress=False, feedback=False)
        ours_seconds = time.perf_counter() - start
        assert (summary.score == summary.max_score).all(), summary
        assert (summary.notes == "").all(), summary  # nothing taken for tampering

        start = time.perf_counter()  # the feedback step that `make autograde` adds, timed on its own
        from lrgrade.classroom import write_feedback

        failed = write_feedback(ours, name, list(summary.student))
        feedback_seconds = time.perf_counter() - start
        assert not failed, failed
    print(f"{n} submissions of {name} on {os.cpu_count()} cores:\n")
    print("| grader | total (s) | per submission (s) |")
    print("|---|---|---|")
    for label, seconds in (("nbgrader autograde (sequential, no isolation)", plain_seconds),
                           (f"lrgrade ({args.workers} workers, isolated, guarded)", ours_seconds),
                           ("lrgrade feedback, per student (after grading)", feedback_seconds)):
        print(f"| {label} | {seconds:.1f} | {seconds / n:.2f} |")
    print(f"\ngrading throughput, lrgrade / nbgrader: {plain_seconds / ours_seconds:.2f}x")


if __name__ == "__main__":
    main()
