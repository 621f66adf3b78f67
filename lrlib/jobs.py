"""The one way to run independent jobs: here, one after another, or on any executor.

:func:`lrlib.trials.run_trials` and :func:`lrlib.sweep.run_sweep` both hand their
trainings to :func:`run_jobs`, so a process pool (:func:`worker_pool`), Dask's
``client.get_executor()`` or no executor at all behave the same way for both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from multiprocessing import get_context
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


__all__ = ["run_jobs", "worker_pool"]
