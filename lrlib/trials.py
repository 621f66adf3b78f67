"""Training runs on the digits described by plain data, so many can run in parallel (chapter 5 on).

A :class:`DigitsTrial` holds everything one run needs (model, optimizer, peak rate,
schedule, batch size, steps, seed); :func:`run_trial` turns it into a
:class:`TrialResult` and depends on nothing else, so the same trial gives the
same numbers wherever it runs. :func:`run_trials` runs a list of them in worker
processes (any ``concurrent.futures`` executor, by default a pool of ``workers``
spawned processes), which on a small CPU model is faster than one process using
every core. Chapter 5 (*Warmup*) runs its seed-by-seed comparisons this way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from lrlib import schedules
from lrlib._checks import check_int, check_positive
from lrlib.data import load_digits, minibatches
from lrlib.models import MLP, TransformerClassifier
from lrlib.training import TrainingRun, train

MODELS = ("transformer", "mlp")
OPTIMIZERS = ("adam", "radam", "sgd")
#: The :mod:`lrlib.schedules` factories whose first argument is the rate (``cyclic``: the lower bound).
SCHEDULES = ("constant", "step_decay", "multistep", "exponential", "cosine", "polynomial", "one_cycle",
             "sgdr", "warmup_linear", "warmup_cosine", "wsd", "cyclic")


@dataclass
class DigitsTrial:
    """One training run on the digits, fully described by its fields.

    Args:
        lr: peak learning rate :math:`\\eta` (> 0); for ``"cyclic"``, its lower bound.
        schedule: name of an :mod:`lrlib.schedules` factory whose first argument is the
            rate (one of :data:`SCHEDULES`), e.g. ``"constant"``, ``"warmup_cosine"``, ``"wsd"``.
        schedule_args: the factory's other arguments, e.g.
            ``{"warmup_steps": 20, "total_steps": 200}``.
        steps: optimizer steps (>= 1).
        batch_size: images per step.
        seed: seeds the weights and the order of the batches.
        model: ``"transformer"`` (a :class:`~lrlib.models.TransformerClassifier` over the
            8 rows of each image) or ``"mlp"`` (an :class:`~lrlib.models.MLP` on the 64 pixels).
        norm_first: pre-norm (True) or post-norm (False) transformer blocks.
        n_layers, d_model: the transformer's depth and width.
        hidden: the MLP's hidden widths.
        optimizer: ``"adam"``, ``"radam"`` (``torch.optim.Adam``/``RAdam``, betas (0.9, 0.999))
            or ``"sgd"`` (``torch.optim.SGD`` with ``momentum``).
        momentum: SGD's momentum.
        track_norms: record gradient and update norms for this many first steps.
        device: where to train.
    """

    lr: float
    schedule: str = "constant"
    schedule_args: dict[str, Any] = field(default_factory=dict)
    steps: int = 200
    batch_size: int = 32
    seed: int = 0
    model: str = "transformer"
    norm_first: bool = False
    n_layers: int = 6
    d_model: int = 32
    hidden: tuple[int, ...] = (128,)
    optimizer: str = "adam"
    momentum: float = 0.9
    track_norms: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)
        check_int("steps", self.steps, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        self.build_schedule()  # bad schedule_args fail here, not in a worker process

    def build_schedule(self) -> schedules.Schedule:
        return getattr(schedules, self.schedule)(self.lr, **self.schedule_args)

    def build_model(self) -> torch.nn.Module:
        torch.manual_seed(self.seed)
        if self.model == "mlp":
            return MLP(64, self.hidden, 10)
        return TransformerClassifier(8, 8, 10, d_model=self.d_model, n_layers=self.n_layers,
                                     norm_first=self.norm_first)

    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum)
        make = torch.optim.RAdam if self.optimizer == "radam" else torch.optim.Adam
        return make(model.parameters(), lr=self.lr)


@dataclass
class TrialResult:
    """What one :class:`DigitsTrial` gave: the recorded run, then held-out loss and accuracy
    (NaN and 0.1-ish when it diverged), and the wall-clock seconds it took."""

    trial: DigitsTrial
    run: TrainingRun
    test_loss: float
    test_accuracy: float
    seconds: float


def run_trial(trial: DigitsTrial) -> TrialResult:
    """Train as ``trial`` says and evaluate on the held-out digits."""
    start = time.perf_counter()
    data = load_digits(seed=0, device=trial.device)
    model = trial.build_model().to(trial.device)
    optimizer = trial.build_optimizer(model)
    scheduler = trial.build_schedule().attach(optimizer)
    batches = minibatches(data.x_train, data.y_train, trial.batch_size, steps=trial.steps, seed=trial.seed)
    run = train(model, optimizer, batches, F.cross_entropy, scheduler=scheduler,
                track_norms=trial.track_norms)
    model.eval()
    with torch.no_grad():
        logits = model(data.x_test)
        loss = float(F.cross_entropy(logits, data.y_test))
        accuracy = float((logits.argmax(1) == data.y_test).float().mean())
    return TrialResult(trial, run, loss, accuracy, time.perf_counter() - start)


def _one_thread() -> None:
    torch.set_num_threads(1)


def worker_pool(workers: int = 2) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes with one torch thread each, to reuse across
    :func:`run_trials` calls (starting one costs a second or two of imports).

    Spawned rather than forked: forking a process whose OpenMP threads are running can hang.
    Use it as a context manager, or call ``shutdown()`` when done.
    """
    workers = check_int("workers", workers, minimum=1)
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_one_thread)


def run_trials(trials: Sequence[DigitsTrial], workers: int = 1,
               executor: Executor | None = None) -> list[TrialResult]:
    """Run trials, in order of the list, in this process or in parallel.

    Args:
        trials: the runs.
        workers: 1 runs them here one after another; more starts a pool of that many
            freshly spawned processes with one thread each (use it on a CPU; on a GPU
            keep 1).
        executor: any ``concurrent.futures.Executor`` to use instead (its ``map`` is called).

    Returns:
        One :class:`TrialResult` per trial, in the same order.
    """
    workers = check_int("workers", workers, minimum=1)
    trials = list(trials)
    if executor is not None:
        return list(executor.map(run_trial, trials))
    if workers == 1 or len(trials) < 2:
        return [run_trial(t) for t in trials]
    with worker_pool(workers) as pool:
        return list(pool.map(run_trial, trials))


def results_frame(results: Sequence[TrialResult]) -> pd.DataFrame:
    """One row per result: the trial's fields (``schedule_args`` spread into columns),
    ``test_loss``, ``test_accuracy``, ``final_train_loss`` (mean of the last 10% of steps),
    ``diverged`` and ``seconds``, ready for ``groupby`` over seeds."""
    rows = []
    for r in results:
        row = {k: v for k, v in vars(r.trial).items() if k != "schedule_args"}
        row.update(r.trial.schedule_args)
        row.update(test_loss=r.test_loss, test_accuracy=r.test_accuracy,
                   final_train_loss=r.run.tail_mean(0.1), diverged=r.run.diverged, seconds=r.seconds)
        rows.append(row)
    return pd.DataFrame(rows)


def select(results: Sequence[TrialResult], **fields: Any) -> list[TrialResult]:
    """The results whose trial has every given field (or ``schedule_args`` entry) equal to the value.

    >>> import numpy as np
    >>> trials = [TrialResult(DigitsTrial(lr, steps=1), TrainingRun(np.zeros(1)), 0.0, 1.0, 0.0)
    ...           for lr in (0.1, 0.2)]
    >>> [r.trial.lr for r in select(trials, lr=0.2)]
    [0.2]
    """
    def matches(trial: DigitsTrial) -> bool:
        values = {**vars(trial), **trial.schedule_args}
        for name, value in fields.items():
            if name not in values:
                raise ValueError(f"unknown trial field {name!r}; fields are {sorted(values)}")
            if values[name] != value:
                return False
        return True

    return [r for r in results if matches(r.trial)]
