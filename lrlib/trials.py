"""Training runs on the digits described by plain data, so many can run at once (chapter 5 on).

A :class:`DigitsTrial` holds everything one run needs (model, optimizer, peak rate,
schedule, batch size, steps, seed); :func:`run_trial` turns it into a
:class:`TrialResult` and depends on nothing else, so the same trial gives the
same numbers wherever it runs. :func:`run_trials` runs a list of them: trials
that differ only in rate, schedule and seed train together as one batched model
(:mod:`lrlib.batched`), which on a small model costs little more than one of
them, and independent groups can go to worker processes (any
``concurrent.futures`` executor). Chapters 5 and 6 run their seed-by-seed
comparisons this way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from lrlib import batched, schedules
from lrlib._checks import check_int, check_positive
from lrlib.data import load_digits, minibatches
from lrlib.jobs import run_jobs, worker_pool
from lrlib.models import MLP, TransformerClassifier
from lrlib.training import TrainingRun, evaluate, train

MODELS = ("transformer", "mlp")
OPTIMIZERS = ("adam", "radam", "sgd", "schedulefree_adamw", "schedulefree_sgd")
#: The :mod:`lrlib.schedules` factories whose first argument is the rate (``cyclic``: the lower bound).
SCHEDULES = ("constant", "step_decay", "multistep", "exponential", "cosine", "polynomial", "one_cycle",
             "sgdr", "warmup_constant", "warmup_linear", "warmup_cosine", "wsd", "cyclic")


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
        optimizer: ``"adam"``, ``"radam"`` (``torch.optim.Adam``/``RAdam``, betas (0.9, 0.999)),
            ``"sgd"`` (``torch.optim.SGD`` with ``momentum``), or the ``schedulefree``
            package's ``"schedulefree_adamw"`` / ``"schedulefree_sgd"`` (with ``momentum``; no
            weight decay, no warmup of its own: give one with ``schedule="warmup_constant"``),
            evaluated at their averaged weights.
        momentum: SGD's momentum (and schedule-free SGD's interpolation).
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
        self.hidden = tuple(self.hidden)  # a JSON config gives a list; trials must hash (batch_key)
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
        if self.optimizer.startswith("schedulefree_"):
            try:
                import schedulefree
            except ImportError as error:  # an optional dependency: say how to get it
                raise ImportError(f"optimizer={self.optimizer!r} needs the schedulefree package: "
                                  "pip install schedulefree") from error
            if self.optimizer == "schedulefree_sgd":
                return schedulefree.SGDScheduleFree(model.parameters(), lr=self.lr, momentum=self.momentum)
            return schedulefree.AdamWScheduleFree(model.parameters(), lr=self.lr)
        if self.optimizer == "sgd":
            return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum)
        make = torch.optim.RAdam if self.optimizer == "radam" else torch.optim.Adam
        return make(model.parameters(), lr=self.lr)


@dataclass
class TrialResult:
    """What one :class:`DigitsTrial` gave: the recorded run, the validation loss and accuracy
    (select on these), the test loss and accuracy (report these once, for what was selected;
    NaN and 0.1-ish when the run diverged), and the wall-clock seconds it took (for a trial
    trained in a batch, the batch's seconds shared equally among its trials)."""

    trial: DigitsTrial
    run: TrainingRun
    val_loss: float
    val_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float


def run_trial(trial: DigitsTrial) -> TrialResult:
    """Train as ``trial`` says and evaluate on the validation and test digits."""
    start = time.perf_counter()
    data = load_digits(seed=0, device=trial.device)
    model = trial.build_model().to(trial.device)
    optimizer = trial.build_optimizer(model)
    scheduler = trial.build_schedule().attach(optimizer)
    batches = minibatches(data.x_train, data.y_train, trial.batch_size, steps=trial.steps, seed=trial.seed)
    _mode(optimizer, "train")
    run = train(model, optimizer, batches, F.cross_entropy, scheduler=scheduler,
                track_norms=trial.track_norms)
    _mode(optimizer, "eval")  # schedule-free: evaluate the averaged weights
    val, test = evaluate(model, data.x_val, data.y_val), evaluate(model, data.x_test, data.y_test)
    return TrialResult(trial, run, val.loss, val.accuracy, test.loss, test.accuracy,
                       time.perf_counter() - start)


def _mode(optimizer: torch.optim.Optimizer, mode: str) -> None:
    """Schedule-free optimizers keep two sets of weights: ``train`` and ``eval`` pick one."""
    switch = getattr(optimizer, mode, None)
    if callable(switch):
        switch()


#: What may differ between trials that train together as one batched model.
PER_COPY = ("lr", "schedule", "schedule_args", "seed", "track_norms")


def batch_key(trial: DigitsTrial) -> tuple:
    """Trials with equal keys (same model, optimizer, steps, batch size, device) can train as
    one batched model; they may differ in rate, schedule and seed."""
    return tuple((k, v) for k, v in asdict(trial).items() if k not in PER_COPY)


def run_trial_batch(trials: Sequence[DigitsTrial]) -> list[TrialResult]:
    """Train trials that share a :func:`batch_key` as one :class:`~lrlib.batched.BatchedModel`.

    Copy ``k`` starts from the weights ``trials[k].build_model()`` gives, sees the
    minibatches of its own seed and follows its own schedule, so each result equals
    :func:`run_trial` of that trial to float32 reassociation (the tests check it).
    """
    trials = list(trials)
    if not trials:
        return []
    if len({batch_key(t) for t in trials}) != 1:
        raise ValueError("trials must share everything but lr, schedule, schedule_args, seed and "
                         "track_norms to train as one batch")
    start = time.perf_counter()
    first = trials[0]
    data = load_digits(seed=0, device=first.device)
    models = [t.build_model() for t in trials]
    model = batched.BatchedModel(models).to(first.device)
    steps = np.arange(first.steps)
    rates = np.stack([t.build_schedule()(steps) for t in trials])
    optimizer = batched.make_optimizer(first.optimizer, model, rates[:, 0], momentum=first.momentum)
    streams = [minibatches(data.x_train, data.y_train, t.batch_size, steps=t.steps, seed=t.seed)
               for t in trials]
    runs = batched.train_copies(model, optimizer, streams, rates,
                                track_norms=max(t.track_norms for t in trials))
    optimizer.eval()  # schedule-free: evaluate the averaged weights
    val, test = evaluate(model, data.x_val, data.y_val), evaluate(model, data.x_test, data.y_test)
    seconds = (time.perf_counter() - start) / len(trials)
    out = []
    for k, (trial, run) in enumerate(zip(trials, runs)):
        n = trial.track_norms  # the batch tracked the longest any trial asked for
        run.grad_norms = run.grad_norms[:n] if n else None
        run.update_norms = run.update_norms[:n] if n else None
        out.append(TrialResult(trial, run, float(val.loss[k]), float(val.accuracy[k]),
                               float(test.loss[k]), float(test.accuracy[k]), seconds))
    return out


def run_trials(trials: Sequence[DigitsTrial], workers: int = 1, executor: Executor | None = None, *,
               batch: bool = True, max_batch: int = 64) -> list[TrialResult]:
    """Run trials, in this process or in parallel; results in the order of the list.

    Args:
        trials: the runs.
        workers: 1 runs them here; more starts a pool of that many freshly spawned processes
            with one thread each (:func:`lrlib.jobs.worker_pool`; on a GPU keep 1).
        executor: any ``concurrent.futures.Executor`` to use instead (its ``submit`` is called).
        batch: train trials that share a :func:`batch_key` together, up to ``max_batch`` at a
            time, as one batched model (:func:`run_trial_batch`); False runs each trial alone
            (:func:`run_trial`), bit for bit the loop it describes.
        max_batch: the most copies in one batched model (memory grows with it).

    Returns:
        One :class:`TrialResult` per trial, in the same order.
    """
    workers = check_int("workers", workers, minimum=1)
    max_batch = check_int("max_batch", max_batch, minimum=1)
    trials = list(trials)
    if batch:
        groups: dict[tuple, list[int]] = {}
        for i, trial in enumerate(trials):
            groups.setdefault(batch_key(trial), []).append(i)
        jobs = [idx[i:i + max_batch] for idx in groups.values() for i in range(0, len(idx), max_batch)]
        fn, inputs = run_trial_batch, [[trials[i] for i in job] for job in jobs]
    else:
        jobs, fn, inputs = [[i] for i in range(len(trials))], run_trial, trials
    if executor is None and workers > 1 and len(inputs) > 1:
        with worker_pool(workers) as pool:
            done = run_jobs(fn, inputs, executor=pool)
    else:
        done = run_jobs(fn, inputs, executor=executor)
    results: list[TrialResult | None] = [None] * len(trials)
    for job, result in zip(jobs, done):
        for i, r in zip(job, result if batch else [result]):
            results[i] = r
    return results  # type: ignore[return-value]


def _outcome(result: TrialResult) -> dict[str, Any]:
    return {"val_loss": result.val_loss, "val_accuracy": result.val_accuracy, "test_loss": result.test_loss,
            "test_accuracy": result.test_accuracy, "diverged": result.run.diverged}


def sweep_trial(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`lrlib.sweep.run_sweep`'s trial for the digits: ``DigitsTrial(**config)``, run.

    ``config`` holds ``lr`` and ``seed`` (from the sweep) and any other :class:`DigitsTrial`
    field (through ``run_sweep``'s ``extra``). Importable, so it runs in worker processes
    and on Dask workers; returns the validation and test loss and accuracy and whether
    the run diverged, all JSON-serialisable.

    >>> out = sweep_trial({"lr": 0.05, "seed": 0, "model": "mlp", "optimizer": "sgd", "steps": 5})
    >>> sorted(out)
    ['diverged', 'test_accuracy', 'test_loss', 'val_accuracy', 'val_loss']
    """
    return _outcome(run_trial(DigitsTrial(**config)))


def sweep_batch(configs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``run_sweep``'s ``batch_fn`` for :func:`sweep_trial`: the configs' trials trained as batched
    models where they can be (:func:`run_trials`), one result per config, in order."""
    return [_outcome(r) for r in run_trials([DigitsTrial(**c) for c in configs])]


def results_frame(results: Sequence[TrialResult]) -> pd.DataFrame:
    """One row per result: the trial's fields (``schedule_args`` spread into columns),
    ``val_loss``, ``val_accuracy``, ``test_loss``, ``test_accuracy``, ``final_train_loss`` (mean
    of the last 10% of steps), ``diverged`` and ``seconds``, ready for ``groupby`` over seeds."""
    rows = []
    for r in results:
        row = {k: v for k, v in vars(r.trial).items() if k != "schedule_args"}
        row.update(r.trial.schedule_args)
        row.update(val_loss=r.val_loss, val_accuracy=r.val_accuracy,
                   test_loss=r.test_loss, test_accuracy=r.test_accuracy,
                   final_train_loss=r.run.tail_mean(0.1), diverged=r.run.diverged, seconds=r.seconds)
        rows.append(row)
    return pd.DataFrame(rows)


def best_setting(frame: pd.DataFrame, by: str | Sequence[str], over: str = "lr",
                 metric: str = "val_loss") -> pd.Series:
    """Tune ``over`` within each group of ``by``: the value whose median ``metric`` over the
    group's seeds is lowest (a diverged run, NaN, counts as the worst).

    The median over seeds, not the best seed: one lucky seed must not pick the rate. Select
    on validation (``val_loss``, the default), then judge the picks on fresh seeds: the seeds
    that picked a setting flatter it.

    Args:
        frame: one row per run, e.g. :func:`results_frame`.
        by: the column(s) that name what is tuned separately (e.g. ``"schedule"``).
        over: the column tuned (default ``"lr"``).
        metric: lower is better.

    Returns:
        The chosen value of ``over``, indexed by ``by``.

    Example:
        >>> runs = pd.DataFrame({"schedule": ["a"] * 4 + ["b"] * 4, "lr": [1, 1, 2, 2] * 2,
        ...                      "val_loss": [0.5, 0.7, 0.4, 0.9, 0.3, 0.3, float("nan"), 0.1]})
        >>> best_setting(runs, "schedule").to_dict()
        {'a': 1, 'b': 1}
    """
    for column in [*([by] if isinstance(by, str) else by), over, metric]:
        if column not in frame.columns:
            raise ValueError(f"frame has no column {column!r}; columns are {list(frame.columns)}")
    scored = frame.assign(**{metric: frame[metric].fillna(np.inf)})
    medians = scored.groupby([*([by] if isinstance(by, str) else by), over])[metric].median()
    return medians.groupby(level=list(range(medians.index.nlevels - 1))).idxmin().map(lambda key: key[-1])


def select(results: Sequence[TrialResult], **fields: Any) -> list[TrialResult]:
    """The results whose trial has every given field (or ``schedule_args`` entry) equal to the value.

    >>> import numpy as np
    >>> trials = [TrialResult(DigitsTrial(lr, steps=1), TrainingRun(np.zeros(1)), 0, 1, 0, 1, 0)
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
