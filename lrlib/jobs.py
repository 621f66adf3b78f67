"""The one way to run independent jobs: here, one after another, or on any executor.

:func:`lrlib.trials.run_trials` and :func:`lrlib.sweep.run_sweep` both hand their
trainings to :func:`run_jobs`, so a process pool (:func:`worker_pool`), Dask's
``client.get_executor()`` or no executor at all behave the same way for both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import torch

from lrlib._checks import check_int

Job = TypeVar("Job")
Result = TypeVar("Result")


def run_jobs(fn: Callable[[Job], Result], jobs: Sequence[Job], *, executor: Executor | None = None,
             on_result: Callable[[int, Result], Any] | None = None) -> list[Result]:
    """``[fn(job) for job in jobs]``, in this process or on ``executor``.

    Args:
        fn: a pure function of its job (to run in worker processes it must be importable).
        jobs: the inputs.
        executor: any ``concurrent.futures.Executor`` (its ``submit`` is called); None runs
            the jobs here, in order.
        on_result: called as ``on_result(index, result)`` as soon as each job finishes (in
            the order they finish on an executor): stream results to disk so that an
            interrupted run loses only the jobs that were running.

    Returns:
        The results in the order of ``jobs``, whatever order they finished in.

    >>> run_jobs(abs, [-2, 3, -1])
    [2, 3, 1]
    """
    jobs = list(jobs)
    results: list[Any] = [None] * len(jobs)
    if executor is None:
        for i, job in enumerate(jobs):
            results[i] = fn(job)
            if on_result is not None:
                on_result(i, results[i])
        return results
    futures = {executor.submit(fn, job): i for i, job in enumerate(jobs)}
    for future in as_completed(futures):
        i = futures[future]
        results[i] = future.result()
        if on_result is not None:
            on_result(i, results[i])
    return results


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append ``record`` to a JSON-lines file as one line, flushed and synced to disk at once,
    so that a run killed right after keeps it (:func:`read_records` reads the file back)."""
    line = json.dumps(record, default=float, allow_nan=True) + "\n"
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file written by :func:`append_record` ([] if there is none).

    A last line cut off by an interruption (no newline) is removed from the file, so that
    the next record starts on a line of its own and the cut-off job runs again; any other
    line that is not a JSON object is an error that names the file and the line.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        complete = text[:text.rfind("\n") + 1]  # "" when the only line is the cut-off one
        with path.open("r+", encoding="utf-8") as f:
            f.truncate(len(complete.encode("utf-8")))
        text = complete
    records = []
    for i, line in enumerate(text.splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {i + 1} is not a JSON record: {line[:80]!r}")
        records.append(record)
    return records


def _one_thread() -> None:
    torch.set_num_threads(1)


def worker_pool(workers: int = 2) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes with one torch thread each, to reuse across calls
    of :func:`run_jobs` (starting one costs a second or two of imports).

    Spawned rather than forked: forking a process whose OpenMP threads are running can hang.
    Use it as a context manager, or call ``shutdown()`` when done.
    """
    workers = check_int("workers", workers, minimum=1)
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_one_thread)


__all__ = ["append_record", "read_records", "run_jobs", "worker_pool"]
