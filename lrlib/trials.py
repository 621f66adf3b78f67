"""Training runs described by plain data, so many can run at once: the course's one runner.

A :class:`Trial` holds everything one run needs (data, model, optimizer, peak rate,
schedule, batch size, steps, seed, device); :func:`run_trial` turns it into a
:class:`TrialResult` and depends on nothing else, so the same trial gives the same
numbers wherever it runs. :func:`run_trials` runs a list of them: trials that
differ only in rate, schedule and seed train together as one batched model
(:mod:`lrlib.batched`), which on a small model costs little more than one of them,
and independent groups can go to worker processes (any ``concurrent.futures``
executor, Dask's included). Stored experiments (:mod:`lrlib.experiments`) are lists
of trials run this way; chapters 4 to 8 run their seed-by-seed comparisons with it.

Three kinds of data (:mod:`lrlib.data`): the digits and MNIST-1D for classifiers
(``model="mlp"``, or ``"transformer"`` for the digits' rows), and the two texts for
the byte-level language model (``model="gpt"``, a :class:`~lrlib.models.TinyGPT`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import torch

from lrlib import batched, schedules
from lrlib._checks import check_int, check_nonnegative, check_positive
from lrlib.batched import OPTIMIZERS, optimizer_spec
from lrlib.data import Split, load_digits, load_mnist1d, load_text, minibatches
from lrlib.jobs import run_jobs, worker_pool
from lrlib.models import MLP, TinyGPT, TransformerClassifier
from lrlib.training import TrainingRun, cross_entropy, evaluate, train

#: The data a trial can train on; the first two are images for a classifier, the last two texts.
DATASETS = ("digits", "mnist1d", "shakespeare", "python_docs")
TEXTS = ("shakespeare", "python_docs")
#: ``model`` -> the data it accepts.
MODELS = {"transformer": ("digits",), "mlp": ("digits", "mnist1d"), "gpt": TEXTS}
#: The :mod:`lrlib.schedules` factories whose first argument is the rate (``cyclic``: the lower bound).
SCHEDULES = ("constant", "step_decay", "multistep", "exponential", "cosine", "polynomial", "one_cycle",
             "sgdr", "warmup_constant", "warmup_linear", "warmup_cosine", "wsd", "cyclic")


@dataclass
class Trial:
    """One training run, fully described by its fields (plain data: JSON in, JSON out).

    Args:
        lr: peak learning rate :math:`\\eta` (> 0); for ``"cyclic"``, its lower bound.
        schedule: name of an :mod:`lrlib.schedules` factory whose first argument is the
            rate (one of :data:`SCHEDULES`), e.g. ``"constant"``, ``"warmup_cosine"``, ``"wsd"``.
        schedule_args: the factory's other arguments, e.g.
            ``{"warmup_steps": 20, "total_steps": 200}``.
        steps: optimizer steps (>= 1).
        batch_size: examples (images, or windows of text) per step.
        seed: seeds the weights and the order of the batches.
        data: one of :data:`DATASETS`: ``"digits"`` (:func:`~lrlib.data.load_digits`),
            ``"mnist1d"`` (:func:`~lrlib.data.load_mnist1d`, 60,000 signals), or a text of
            :func:`~lrlib.data.load_text` (``"shakespeare"``, ``"python_docs"``).
        model: ``"transformer"`` (a :class:`~lrlib.models.TransformerClassifier` over the
            8 rows of each digit), ``"mlp"`` (an :class:`~lrlib.models.MLP` on the pixels or
            the signal) or ``"gpt"`` (a :class:`~lrlib.models.TinyGPT` on a text's bytes).
        norm_first: pre-norm (True) or post-norm (False) transformer blocks.
        n_layers, d_model: the transformer's depth and width.
        hidden: the MLP's hidden widths.
        context: bytes per window of text (``"gpt"`` only).
        optimizer: a key of the registry :data:`lrlib.batched.OPTIMIZERS`: ``"sgd"`` (with
            ``momentum``), ``"adam"``, ``"adamw"`` (with ``weight_decay``), ``"radam"``
            (``torch.optim``), or the ``schedulefree`` package's ``"schedulefree_adamw"`` /
            ``"schedulefree_sgd"`` (no warmup of their own: give one with
            ``schedule="warmup_constant"``), evaluated at their averaged weights.
        momentum: SGD's momentum (and schedule-free SGD's interpolation).
        betas: Adam's :math:`(\\beta_1, \\beta_2)`.
        weight_decay: AdamW's decoupled decay :math:`\\lambda` (0 for the others).
        eval_every: also measure the validation loss every this many steps (0: at the end only).
        track_norms: record gradient and update norms for this many first steps.
        device: where to train.
    """

    lr: float
    schedule: str = "constant"
    schedule_args: dict[str, Any] = field(default_factory=dict)
    steps: int = 200
    batch_size: int = 32
    seed: int = 0
    data: str = "digits"
    model: str = "transformer"
    norm_first: bool = False
    n_layers: int = 6
    d_model: int = 32
    hidden: tuple[int, ...] = (128,)
    context: int = 64
    optimizer: str = "adam"
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eval_every: int = 0
    track_norms: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)  # a JSON config gives a list; trials must hash (batch_key)
        self.betas = tuple(self.betas)
        check_positive("lr", self.lr)
        check_int("steps", self.steps, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_int("seed", self.seed, minimum=0)
        check_int("eval_every", self.eval_every, minimum=0)
        check_int("context", self.context, minimum=2)
        check_nonnegative("weight_decay", self.weight_decay)
        if self.data not in DATASETS:
            raise ValueError(f"data must be one of {DATASETS}, got {self.data!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {tuple(MODELS)}, got {self.model!r}")
        if self.data not in MODELS[self.model]:
            raise ValueError(f"data must be one of {MODELS[self.model]} for model={self.model!r}, "
                             f"got {self.data!r}")
        spec = optimizer_spec(self.optimizer)
        spec._check_decay(self.weight_decay)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        self.build_schedule()  # bad schedule_args fail here, not in a worker process
        self.device = str(self.device)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> Trial:
        """The trial a plain dict describes; an unknown key is refused by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown trial field(s) {unknown}; fields are {sorted(known)}")
        return cls(**config)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON-ready values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def build_schedule(self) -> schedules.Schedule:
        return getattr(schedules, self.schedule)(self.lr, **self.schedule_args)

    def build_model(self) -> torch.nn.Module:
        torch.manual_seed(self.seed)
        if self.model == "mlp":
            return MLP(64 if self.data == "digits" else 40, self.hidden, 10)
        if self.model == "gpt":
            return TinyGPT(256, self.context, d_model=self.d_model, n_layers=self.n_layers,
                           norm_first=self.norm_first)
        return TransformerClassifier(8, 8, 10, d_model=self.d_model, n_layers=self.n_layers,
                                     norm_first=self.norm_first)

    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        return OPTIMIZERS[self.optimizer].build(model.parameters(), self.lr, momentum=self.momentum,
                                                betas=self.betas, weight_decay=self.weight_decay)

    def load_data(self) -> Split:
        """The trial's data on its device (loaded once per process and device)."""
        return _data(self.data, self.context, self.device)


#: The name chapters 5 and 6 used before the trial description covered every data set.
DigitsTrial = Trial


@functools.lru_cache(maxsize=8)
def _data(name: str, context: int, device: str) -> Split:
    if name == "digits":
        return load_digits(seed=0, device=device)
    if name == "mnist1d":
        return load_mnist1d(seed=0, device=device)
    return load_text(name, context=context, device=device)


@dataclass
class TrialResult:
    """What one :class:`Trial` gave: the recorded run, the validation loss and accuracy
    (select on these), the test loss and accuracy (report these once, for what was selected;
    NaN and chance-level when the run diverged), the wall-clock seconds it took (for a trial
    trained in a batch, the batch's seconds shared equally among its trials) and, with
    ``eval_every``, the validation loss along the way (``val_steps``: after how many updates)."""

    trial: Trial
    run: TrainingRun
    val_loss: float
    val_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float
    val_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    val_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def diverged(self) -> bool:
        """Whether a minibatch loss turned non-finite."""
        return self.run.diverged


def run_trial(trial: Trial, *, stop_after: int | None = None) -> TrialResult:
    """Train as ``trial`` says and evaluate on its validation and test splits.

    Args:
        trial: the run.
        stop_after: train only this many first steps of it (same schedule, same batches):
            the prefix that the stored experiments' checks rerun. None: all of them.
    """
    start = time.perf_counter()
    data = trial.load_data()
    model = trial.build_model().to(trial.device)
    optimizer = trial.build_optimizer(model)
    scheduler = trial.build_schedule().attach(optimizer)
    steps = _prefix(trial, stop_after)
    batches = minibatches(data.x_train, data.y_train, trial.batch_size, steps=steps, seed=trial.seed)
    curve = _ValCurve(trial.eval_every, lambda: _val_loss(model, optimizer, data))
    _mode(optimizer, "train")
    run = train(model, optimizer, batches, cross_entropy, scheduler=scheduler,
                track_norms=trial.track_norms, on_step=lambda t, loss: curve(t))
    _mode(optimizer, "eval")  # schedule-free: evaluate the averaged weights
    val, test = evaluate(model, data.x_val, data.y_val), evaluate(model, data.x_test, data.y_test)
    val_steps, val_losses = curve.arrays(1)
    return TrialResult(trial, run, val.loss, val.accuracy, test.loss, test.accuracy,
                       time.perf_counter() - start, val_steps, val_losses[:, 0])


def _prefix(trial: Trial, stop_after: int | None) -> int:
    if stop_after is None:
        return trial.steps
    return min(trial.steps, check_int("stop_after", stop_after, minimum=1))


class _ValCurve:
    """Validation losses every ``every`` updates (after update t when (t + 1) % every == 0)."""

    def __init__(self, every: int, measure: Callable[[], Any]):
        self.every, self.measure = every, measure
        self.steps: list[int] = []
        self.values: list[Any] = []

    def __call__(self, t: int) -> None:
        if self.every and (t + 1) % self.every == 0:
            self.steps.append(t + 1)
            self.values.append(self.measure())

    def arrays(self, copies: int) -> tuple[np.ndarray, np.ndarray]:
        steps = np.asarray(self.steps, dtype=int)
        return steps, np.asarray(self.values, dtype=float).reshape(len(self.steps), copies)


def _val_loss(model: torch.nn.Module, optimizer: Any, data: Split) -> Any:
    _mode(optimizer, "eval")
    try:
        return evaluate(model, data.x_val, data.y_val).loss
    finally:
        _mode(optimizer, "train")


def _mode(optimizer: torch.optim.Optimizer, mode: str) -> None:
    """Schedule-free optimizers keep two sets of weights: ``train`` and ``eval`` pick one."""
    switch = getattr(optimizer, mode, None)
    if callable(switch):
        switch()


#: What may differ between trials that train together as one batched model.
PER_COPY = ("lr", "schedule", "schedule_args", "seed", "track_norms")


def batch_key(trial: Trial) -> tuple:
    """Trials with equal keys (same model, optimizer, steps, batch size, device) can train as
    one batched model; they may differ in rate, schedule and seed."""
    return tuple((k, v) for k, v in asdict(trial).items() if k not in PER_COPY)


def run_trial_batch(trials: Sequence[Trial], *, stop_after: int | None = None) -> list[TrialResult]:
    """Train trials that share a :func:`batch_key` as one :class:`~lrlib.batched.BatchedModel`.

    Copy ``k`` starts from the weights ``trials[k].build_model()`` gives, sees the
    minibatches of its own seed and follows its own schedule, so each result equals
    :func:`run_trial` of that trial to float32 reassociation (the tests check it).
    ``stop_after`` trains only that many first steps of each (see :func:`run_trial`).
    """
    trials = list(trials)
    if not trials:
        return []
    if len({batch_key(t) for t in trials}) != 1:
        raise ValueError("trials must share everything but lr, schedule, schedule_args, seed and "
                         "track_norms to train as one batch")
    start = time.perf_counter()
    first = trials[0]
    data = first.load_data()
    model = batched.BatchedModel([t.build_model() for t in trials]).to(first.device)
    steps = _prefix(first, stop_after)
    rates = np.stack([t.build_schedule()(np.arange(steps)) for t in trials])
    optimizer = batched.make_optimizer(first.optimizer, model, rates[:, 0], momentum=first.momentum,
                                       betas=first.betas, weight_decay=first.weight_decay)
    streams = [minibatches(data.x_train, data.y_train, t.batch_size, steps=steps, seed=t.seed)
               for t in trials]
    curve = _ValCurve(first.eval_every, lambda: _val_loss(model, optimizer, data))
    runs = batched.train_copies(model, optimizer, streams, rates,
                                track_norms=max(t.track_norms for t in trials), on_step=curve)
    optimizer.eval()  # schedule-free: evaluate the averaged weights
    val, test = evaluate(model, data.x_val, data.y_val), evaluate(model, data.x_test, data.y_test)
    seconds = (time.perf_counter() - start) / len(trials)
    val_steps, val_losses = curve.arrays(len(trials))
    out = []
    for k, (trial, run) in enumerate(zip(trials, runs)):
        n = trial.track_norms  # the batch tracked the longest any trial asked for
        run.grad_norms = run.grad_norms[:n] if n else None
        run.update_norms = run.update_norms[:n] if n else None
        out.append(TrialResult(trial, run, float(val.loss[k]), float(val.accuracy[k]),
                               float(test.loss[k]), float(test.accuracy[k]), seconds,
                               val_steps, val_losses[:, k]))
    return out


def run_trials(trials: Sequence[Trial], workers: int = 1, executor: Executor | None = None, *,
               batch: bool = True, max_batch: int = 64, stop_after: int | None = None,
               on_result: Callable[[int, TrialResult], Any] | None = None) -> list[TrialResult]:
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
        stop_after: train only this many first steps of each trial (see :func:`run_trial`).
        on_result: called as ``on_result(i, result)`` as soon as trial ``i`` has finished
            (a batch's trials together): stream results to disk so that an interruption loses
            only what was running (:func:`lrlib.experiments.run_experiment` does).

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
        fn = functools.partial(run_trial_batch, stop_after=stop_after)
        inputs: list[Any] = [[trials[i] for i in job] for job in jobs]
    else:
        jobs, inputs = [[i] for i in range(len(trials))], trials
        fn = functools.partial(run_trial, stop_after=stop_after)
    results: list[TrialResult | None] = [None] * len(trials)

    def collect(j: int, done: Any) -> None:
        for i, r in zip(jobs[j], done if batch else [done]):
            results[i] = r
            if on_result is not None:
                on_result(i, r)

    if executor is None and workers > 1 and len(inputs) > 1:
        with worker_pool(workers) as pool:
            run_jobs(fn, inputs, executor=pool, on_result=collect)
    else:
        run_jobs(fn, inputs, executor=executor, on_result=collect)
    return results  # type: ignore[return-value]


def _outcome(result: TrialResult) -> dict[str, Any]:
    return {"val_loss": result.val_loss, "val_accuracy": result.val_accuracy, "test_loss": result.test_loss,
            "test_accuracy": result.test_accuracy, "diverged": result.run.diverged}


def sweep_trial(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`lrlib.sweep.run_sweep`'s trial for the digits: ``DigitsTrial(**config)``, run.

    ``config`` holds ``lr`` and ``seed`` (from the sweep) and any other :class:`Trial`
    field (through ``run_sweep``'s ``extra``). Importable, so it runs in worker processes
    and on Dask workers; returns the validation and test loss and accuracy and whether
    the run diverged, all JSON-serialisable.

    >>> out = sweep_trial({"lr": 0.05, "seed": 0, "model": "mlp", "optimizer": "sgd", "steps": 5})
    >>> sorted(out)
    ['diverged', 'test_accuracy', 'test_loss', 'val_accuracy', 'val_loss']
    """
    return _outcome(run_trial(Trial.from_dict(config)))


def sweep_batch(configs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``run_sweep``'s ``batch_fn`` for :func:`sweep_trial`: the configs' trials trained as batched
    models where they can be (:func:`run_trials`), one result per config, in order."""
    return [_outcome(r) for r in run_trials([Trial.from_dict(c) for c in configs])]


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
    >>> trials = [TrialResult(Trial(lr, steps=1), TrainingRun(np.zeros(1)), 0, 1, 0, 1, 0)
    ...           for lr in (0.1, 0.2)]
    >>> [r.trial.lr for r in select(trials, lr=0.2)]
    [0.2]
    """
    def matches(trial: Trial) -> bool:
        values = {**vars(trial), **trial.schedule_args}
        for name, value in fields.items():
            if name not in values:
                raise ValueError(f"unknown trial field {name!r}; fields are {sorted(values)}")
            if values[name] != value:
                return False
        return True

    return [r for r in results if matches(r.trial)]
