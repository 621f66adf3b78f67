"""Learning-rate sweeps: read a real sweep's log, judge it statistically, run one that survives interruption
(chapter 7, *Analysing a fine-tuning sweep*).

- :func:`parse_log` reads the log format of the seeds' SST-5 sweep into a :class:`SweepLog`.
- :func:`accuracy_interval` (Wilson), :func:`compare_accuracies` (two proportions) and
  :func:`pick_lr` say what a table of accuracies does and does not show.
- :func:`run_sweep` runs trials through any ``concurrent.futures`` executor, streams each
  result to a JSON-lines file as it ends, and skips finished trials on a rerun.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lrlib._checks import check_int, check_real
from lrlib.jobs import append_record, read_records, run_jobs

# --- parsing the seeds' log -----------------------------------------------------------------------

#: Progress-bar debris that terminal logs leave behind: block elements, box drawing, carriage returns.
_DEBRIS = re.compile("[\u2500-\u259f\r]+")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_HEADER = re.compile(r"^#####\s+(\S+)\s*$")
_EPOCH = re.compile(rf"^epoch\s+(\d+)\s*:\s*train loss\s*::\s*({_NUMBER})\s*,\s*train acc\s*::\s*({_NUMBER})"
                    rf"\s*,\s*dev acc\s*::\s*({_NUMBER})\s*$")
_FINAL = re.compile(rf"^(dev|test) acc\s*::\s*({_NUMBER})\s*$")
_LOOKS_LIKE_RECORD = re.compile(r"^(epoch\s+\d|dev acc|test acc|#####\s+[-+.\d])")


class LogParseError(ValueError):
    """A line that starts like a record of the sweep log but cannot be read; says which and where."""

    def __init__(self, number: int, line: str, why: str):
        super().__init__(f"line {number}: {why}: {line!r}")
        self.number, self.line = number, line


@dataclass
class SweepLog:
    """A parsed sweep: ``epochs`` has one row per lr and epoch (``lr, epoch, train_loss, train_acc,
    dev_acc``), ``final`` one row per lr (``lr, dev_acc, test_acc``; NaN where a run was cut off
    before its final lines), both sorted by lr; ``skipped`` lists ``(line number, text)`` of the
    lines that were not records."""

    epochs: pd.DataFrame
    final: pd.DataFrame
    skipped: list[tuple[int, str]]


def parse_log(text: str) -> SweepLog:
    """Read a learning-rate sweep log in the format of the seeds' SST-5 fine-tuning runs.

    Each run starts with ``##### <lr>``, then ``epoch N: train loss :: X, train acc :: Y,
    dev acc :: Z`` per epoch, then ``dev acc :: A`` and ``test acc :: B`` for the checkpoint
    with the best dev accuracy. Real logs are messy, and this reads them as they are:

    - progress-bar debris (``█▌``), carriage returns, CRLF line ends, blank lines and
      trailing spaces are ignored; ``1e-05`` and ``0.00001`` are the same rate;
    - a run cut off before its final lines is kept, its final accuracies NaN;
    - lines that are clearly not records (a shell command, prose) are skipped, and so
      is a header repeated for a run that was restarted before it logged anything (the
      later run is the one kept); one warning lists them;
    - a line that starts like a record but cannot be read raises :class:`LogParseError`
      quoting the line and its number.

    Example:
        >>> log = parse_log("##### 1e-05\\nepoch 0: train loss :: 1.9, train acc :: 0.29, dev acc :: 0.27\\n"
        ...                 "dev acc :: 0.27\\ntest acc :: 0.26\\n")
        >>> log.final.to_dict("records")
        [{'lr': 1e-05, 'dev_acc': 0.27, 'test_acc': 0.26}]
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    runs: dict[float, dict[str, Any]] = {}
    order: list[float] = []
    current: float | None = None
    skipped: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _DEBRIS.sub("", raw).strip()
        if not line:
            continue
        if not _LOOKS_LIKE_RECORD.match(line):
            skipped.append((number, raw.rstrip()))
            continue
        if line.startswith("#####"):
            current = _parse_header(number, raw, line)
            if current in runs and not runs[current]["epochs"] and runs[current]["dev"] is None:
                skipped.append((runs[current]["line"], f"##### {current:g} (restarted, nothing logged)"))
            elif current in runs:
                warnings.warn(f"line {number}: a second run for lr={current:g}; the later one is kept",
                              stacklevel=2)
            if current in order:
                order.remove(current)
            order.append(current)
            runs[current] = {"epochs": [], "dev": None, "test": None, "line": number}
            continue
        if current is None:
            raise LogParseError(number, raw, "a record before any '##### <lr>' header")
        run = runs[current]
        if line.startswith("epoch"):
            match = _EPOCH.match(line)
            if not match:
                raise LogParseError(number, raw, "cannot read this epoch record")
            epoch = int(match.group(1))
            run["epochs"].append((current, epoch, *(float(match.group(k)) for k in (2, 3, 4))))
        else:
            match = _FINAL.match(line)
            if not match:
                raise LogParseError(number, raw, "cannot read this final accuracy")
            run[match.group(1)] = float(match.group(2))
    skipped.sort()
    if skipped:
        listed = ", ".join(str(n) for n, _ in skipped[:8]) + (" ..." if len(skipped) > 8 else "")
        warnings.warn(f"skipped {len(skipped)} line(s) that are not records (lines {listed})", stacklevel=2)
    epochs = pd.DataFrame([row for lr in order for row in runs[lr]["epochs"]],
                          columns=["lr", "epoch", "train_loss", "train_acc", "dev_acc"])
    final = pd.DataFrame([{"lr": lr, "dev_acc": _nan(runs[lr]["dev"]), "test_acc": _nan(runs[lr]["test"])}
                          for lr in order], columns=["lr", "dev_acc", "test_acc"])
    return SweepLog(epochs.sort_values(["lr", "epoch"], ignore_index=True),
                    final.sort_values("lr", ignore_index=True), skipped)


def _parse_header(number: int, raw: str, line: str) -> float:
    match = _HEADER.match(line)
    try:
        lr = float(match.group(1)) if match else math.nan
    except ValueError:
        lr = math.nan
    if not (lr > 0 and math.isfinite(lr)):
        raise LogParseError(number, raw, "a run header needs one positive learning rate")
    return lr


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


# --- how sure can we be? ------------------------------------------------------------------------------

def _z(level: float) -> float:
    from statistics import NormalDist

    level = check_real("level", level)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def accuracy_interval(acc: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for an accuracy ``acc`` measured on ``n`` examples.

    With :math:`\\hat p` = ``acc`` and :math:`z` the normal quantile of ``level``:

    .. math::

        \\frac{\\hat p + \\frac{z^2}{2n} \\pm z \\sqrt{\\frac{\\hat p(1-\\hat p)}{n} + \\frac{z^2}{4n^2}}}
             {1 + \\frac{z^2}{n}}

    Unlike :math:`\\hat p \\pm z\\sqrt{\\hat p(1-\\hat p)/n}`, it stays inside [0, 1] and
    keeps its coverage near 0 and 1.

    Args:
        acc: observed accuracy in [0, 1].
        n: number of examples (>= 1).
        level: confidence level in (0, 1).

    Example (SST-5's 1,101 dev sentences):
        >>> [round(x, 3) for x in accuracy_interval(0.41, 1101)]
        [0.381, 0.439]
    """
    acc = check_real("acc", acc)
    if not 0 <= acc <= 1:
        raise ValueError(f"acc must be in [0, 1], got {acc}")
    n = check_int("n", n, minimum=1)
    z = _z(level)
    centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Comparison:
    """Two accuracies on independent samples: the difference ``a - b``, its ``level`` interval,
    and the two-sided p-value of the pooled two-proportion z-test."""

    a: float
    b: float
    difference: float
    interval: tuple[float, float]
    z: float
    p_value: float


def compare_accuracies(acc_a: float, acc_b: float, n_a: int, n_b: int | None = None,
                       level: float = 0.95) -> Comparison:
    """Is accuracy ``a`` really different from ``b``? A two-proportion z-test.

    :math:`z = (\\hat p_a - \\hat p_b) / \\sqrt{\\bar p (1 - \\bar p)(1/n_a + 1/n_b)}` with the
    pooled :math:`\\bar p`, and a Wald interval for the difference. It treats the two
    samples as independent; two models scored on the *same* test set are paired, and
    then this test is conservative (McNemar's test on the per-example outcomes is exact,
    but a log of accuracies does not have them).

    Example:
        >>> c = compare_accuracies(0.409, 0.393, 2210)
        >>> round(c.difference, 3), round(c.p_value, 2)
        (0.016, 0.28)
    """
    n_b = n_a if n_b is None else n_b
    for name, value in (("acc_a", acc_a), ("acc_b", acc_b)):
        value = check_real(name, value)
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    n_a, n_b = check_int("n_a", n_a, minimum=1), check_int("n_b", n_b, minimum=1)
    z_level = _z(level)
    diff = acc_a - acc_b
    pooled = (acc_a * n_a + acc_b * n_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    se = math.sqrt(acc_a * (1 - acc_a) / n_a + acc_b * (1 - acc_b) / n_b)
    z = diff / se_pooled if se_pooled > 0 else 0.0
    from statistics import NormalDist

    p = 2 * (1 - NormalDist().cdf(abs(z)))
    return Comparison(acc_a, acc_b, diff, (diff - z_level * se, diff + z_level * se), z, p)


@dataclass
class Pick:
    """The learning rate a sweep picks, the runner-up, and how sure the pick is."""

    lr: float
    accuracy: float
    runner_up: float
    runner_up_accuracy: float
    comparison: Comparison
    table: pd.DataFrame

    def __str__(self) -> str:
        c = self.comparison
        verdict = "distinguishable" if c.p_value < 0.05 else "not distinguishable"
        return (f"lr={self.lr:g} ({self.accuracy:.3f}) beats lr={self.runner_up:g} "
                f"({self.runner_up_accuracy:.3f}) by {c.difference:+.3f} "
                f"(95% CI {c.interval[0]:+.3f} to {c.interval[1]:+.3f}, p = {c.p_value:.2f}): {verdict}")


def pick_lr(final: pd.DataFrame, n: int, column: str = "dev_acc", level: float = 0.95) -> Pick:
    """Pick the rate with the best ``column`` and say how sure that is.

    Returns the winner, the runner-up and their :func:`compare_accuracies`, with a table of
    every rate's accuracy and Wilson interval (``low``, ``high``) on ``n`` examples.
    """
    if column not in final.columns or "lr" not in final.columns:
        raise ValueError(f"final must have columns 'lr' and {column!r}, got {list(final.columns)}")
    table = final[["lr", column]].dropna().sort_values(column, ascending=False, ignore_index=True)
    if len(table) < 2:
        raise ValueError(f"need at least two rates with a {column}, got {len(table)}")
    bounds = [accuracy_interval(a, n, level) for a in table[column]]
    table = table.assign(low=[b[0] for b in bounds], high=[b[1] for b in bounds])
    best, second = table.iloc[0], table.iloc[1]
    return Pick(float(best.lr), float(best[column]), float(second.lr), float(second[column]),
                compare_accuracies(best[column], second[column], n, level=level), table)


# --- running a sweep that survives interruption ---------------------------------------------------------

def trial_key(config: dict[str, Any]) -> str:
    """A stable identity for a trial's configuration (JSON with sorted keys)."""
    return json.dumps(config, sort_keys=True, default=str)


def run_sweep(
    train_fn: Callable[[dict[str, Any]], dict[str, Any]],
    lrs: Sequence[float],
    seeds: Sequence[int] = (0,),
    *,
    executor: Executor | None = None,
    results: str | Path | None = None,
    extra: dict[str, Any] | None = None,
    batch_fn: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
    max_batch: int = 64,
) -> pd.DataFrame:
    """Run ``train_fn`` for every (lr, seed) pair and gather what it returns.

    A trial is ``train_fn(config)`` with ``config = {"lr": lr, "seed": seed, **extra}``; it must be a
    pure function of its config (and, to run in worker processes, importable). With
    ``results``, each finished trial is appended to that JSON-lines file at once (one
    line, flushed and synced), and a rerun reads the file and runs only the trials not in
    it: an interrupted sweep loses at most the trials that were running.

    Args:
        train_fn: config -> dict of results (JSON-serialisable values).
        lrs: learning rates (> 0).
        seeds: seeds per rate.
        executor: any ``concurrent.futures.Executor`` (a process pool, Dask's
            ``client.get_executor()``, ...); None runs the trials here, in order.
        results: the JSON-lines file to stream to and resume from.
        extra: fixed entries added to every config.
        batch_fn: configs -> one result per config, training them together (e.g.
            :func:`lrlib.transfer.finetune_batch`, one batched model); given, it replaces
            the one-by-one calls of ``train_fn``, in chunks of at most ``max_batch`` trials,
            each chunk streamed to ``results`` when it finishes.
        max_batch: the most trials in one ``batch_fn`` call.

    Returns:
        One row per trial (config then results), sorted by lr and seed.
    """
    lrs = [check_real("lrs", lr) for lr in lrs]
    if not lrs or min(lrs) <= 0:
        raise ValueError(f"lrs must be a non-empty list of positive rates, got {lrs}")
    seeds = [check_int("seeds", s, minimum=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    configs = [{"lr": lr, "seed": s, **(extra or {})} for lr in lrs for s in seeds]
    path = None if results is None else Path(results)
    done = _read_results(path) if path is not None else {}
    todo = [c for c in configs if trial_key(c) not in done]

    if batch_fn is None:
        def record(i: int, result: dict[str, Any]) -> None:
            done[trial_key(todo[i])] = _record(path, todo[i], result)

        run_jobs(train_fn, todo, executor=executor, on_result=record)
    else:
        max_batch = check_int("max_batch", max_batch, minimum=1)
        chunks = [todo[i:i + max_batch] for i in range(0, len(todo), max_batch)]

        def record_chunk(i: int, chunk_results: list[dict[str, Any]]) -> None:
            for config, result in zip(chunks[i], chunk_results):
                done[trial_key(config)] = _record(path, config, result)

        run_jobs(batch_fn, chunks, executor=executor, on_result=record_chunk)
    rows = [{**c, **done[trial_key(c)]["result"]} for c in configs]
    return pd.DataFrame(rows).sort_values(["lr", "seed"], ignore_index=True)


def _record(path: Path | None, config: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise TypeError(f"train_fn must return a dict, got {type(result).__name__}")
    entry = {"key": trial_key(config), "config": config, "result": result}
    if path is not None:
        append_record(path, entry)
    return entry


def _read_results(path: Path) -> dict[str, dict[str, Any]]:
    return {entry["key"]: entry for entry in read_records(path)}


def summarize(frame: pd.DataFrame, metric: str, by: str | Iterable[str] = "lr") -> pd.DataFrame:
    """Mean, standard deviation, min, max and count of ``metric`` over seeds, per ``by``."""
    return frame.groupby(by)[metric].agg(["mean", "std", "min", "max", "count"])


def vertex_lr(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The best rate between the grid points: the vertex of a parabola in ``log(lr)``.

    A grid of rates a factor ``r`` apart locates the best one only to within ``r``. Through the
    grid's lowest loss and its two neighbours, fit ``loss = a u**2 + b u + c`` with
    ``u = log(lr)``; the vertex ``u* = -b / (2a)`` is the estimate (clipped to the three points).
    At either end of the grid, or where the three points are not convex, the grid's best rate is
    returned as it is: the optimum is not bracketed. A non-finite loss (a diverged run) counts as
    the worst.

    Args:
        lrs: increasing rates (> 0), at least 3.
        losses: the loss at each rate (e.g. the median over seeds of the validation loss).

    Example:
        >>> lrs = [1e-3, 1e-2, 1e-1, 1.0]
        >>> round(vertex_lr(lrs, [(math.log10(x) + 1.5) ** 2 for x in lrs]), 5)  # vertex 10**-1.5
        0.03162
    """
    lrs = [check_real("lrs", x) for x in lrs]
    if len(lrs) < 3 or len(lrs) != len(losses):
        raise ValueError("lrs and losses must have the same length, at least 3; "
                         f"got {len(lrs)} and {len(losses)}")
    if min(lrs) <= 0 or any(b <= a for a, b in zip(lrs, lrs[1:])):
        raise ValueError(f"lrs must be positive and increasing, got {lrs}")
    y = [float(v) if math.isfinite(float(v)) else math.inf for v in losses]
    i = min(range(len(y)), key=y.__getitem__)
    if i in (0, len(y) - 1) or not math.isfinite(y[i - 1] + y[i + 1]):
        return lrs[i]
    u = [math.log(x) for x in lrs[i - 1:i + 2]]
    (u0, u1, u2), (y0, y1, y2) = u, y[i - 1:i + 2]
    # divided differences: the parabola's curvature a and its slope at u1
    d01, d12 = (y1 - y0) / (u1 - u0), (y2 - y1) / (u2 - u1)
    a = (d12 - d01) / (u2 - u0)
    if a <= 0:
        return lrs[i]
    slope_u1 = d01 + a * (u1 - u0)
    vertex = u1 - slope_u1 / (2 * a)
    return math.exp(min(max(vertex, u0), u2))


__all__ = ["SweepLog", "LogParseError", "parse_log", "accuracy_interval", "Comparison", "compare_accuracies",
           "Pick", "pick_lr", "run_sweep", "trial_key", "summarize", "vertex_lr"]
