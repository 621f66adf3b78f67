"""Pretrain on one task, fine-tune on another: a laptop-sized transfer experiment (chapter 7).

The digits give two related tasks: *pretrain* a small transformer to tell the
digits 0-4 apart, then *fine-tune* it to tell 5-9 apart from a few examples per
class. :func:`pretrain` trains the body once and saves it; :func:`finetune_trial`
is one fine-tuning run, a pure function of its config (a dict, so that
:func:`lrlib.sweep.run_sweep` can stream, resume and distribute it), in one of four
ways: all weights at one rate (``"full"``), the new head only (``"head"``),
layer-wise rate decay (``"layerwise"``, :func:`lrlib.param_groups.layerwise_lr_groups`)
or low-rank adapters (``"lora"``, :func:`lrlib.models.add_lora`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from lrlib import schedules
from lrlib._checks import check_int
from lrlib.batched import BatchedAdam, BatchedModel, train_copies
from lrlib.data import Split, load_digits, minibatches
from lrlib.models import TransformerClassifier, add_lora
from lrlib.param_groups import layerwise_lr_groups
from lrlib.training import TrainingRun, evaluate, train

METHODS = ("full", "head", "layerwise", "lora")
#: The fine-tuning schedules a config can name (``"schedule"``); see :func:`finetune_schedule`.
FINETUNE_SCHEDULES = ("warmup_cosine", "warmup_linear", "constant", "stlr")
ARCH = {"d_model": 32, "n_heads": 4, "n_layers": 4, "norm_first": True}


def digit_task(classes: range, per_class: int | None = None, seed: int = 0) -> Split:
    """The digits of ``classes`` only, relabelled ``0..len(classes)-1``; with ``per_class``,
    a random subset of that many training images per class (validation and test are kept whole)."""
    data = load_digits(seed=0)
    lookup = torch.full((10,), -1, dtype=torch.long)
    lookup[list(classes)] = torch.arange(len(classes))

    def pick(x, y, limit):
        keep = lookup[y] >= 0
        x, y = x[keep], lookup[y[keep]]
        if limit is None:
            return x, y
        gen = torch.Generator().manual_seed(seed)
        chosen = []
        for c in range(len(classes)):
            members = torch.nonzero(y == c).flatten()
            chosen.append(members[torch.randperm(len(members), generator=gen)[:limit]])
        idx = torch.cat(chosen)
        return x[idx], y[idx]

    return Split(*pick(data.x_train, data.y_train, per_class), *pick(data.x_val, data.y_val, None),
                 *pick(data.x_test, data.y_test, None))


def pretrain(path: str | Path, steps: int = 400, lr: float = 3e-3, seed: int = 0,
             device: str | torch.device = "cpu") -> dict[str, float]:
    """Train the body on digits 0-4 (Adam, batch 64, 10% warmup then cosine) on ``device``, save
    its ``state_dict`` to ``path`` (on the CPU), and return its validation and test loss and
    accuracy on 0-4."""
    data = digit_task(range(5)).to(device)
    torch.manual_seed(seed)
    model = TransformerClassifier(n_classes=5, **ARCH).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = schedules.warmup_cosine(lr, steps // 10, steps).attach(opt)
    train(model, opt, minibatches(data.x_train, data.y_train, 64, steps=steps, seed=seed), F.cross_entropy,
          scheduler=sched)
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)
    return _evaluate(model, data)


def pretrain_batch(lrs: Sequence[float], seeds: Sequence[int], paths: Sequence[str | Path],
                   steps: int = 400, device: str | torch.device = "cpu") -> list[dict[str, float]]:
    """:func:`pretrain` for many (rate, seed) pairs at once, as one batched model.

    Copy ``k`` is ``pretrain(paths[k], steps, lrs[k], seeds[k])`` to float32 reassociation
    (the tests check it): same initial weights, batches and schedule; its ``state_dict`` is
    saved to ``paths[k]``. Returns one :func:`pretrain` result per copy, in order.
    """
    if not len(lrs) == len(seeds) == len(paths) > 0:
        raise ValueError(f"lrs, seeds and paths must have one entry per copy (>= 1), got "
                         f"{len(lrs)}, {len(seeds)} and {len(paths)}")
    steps = check_int("steps", steps, minimum=1)
    data = digit_task(range(5)).to(device)
    members = []
    for seed in seeds:
        torch.manual_seed(int(seed))
        members.append(TransformerClassifier(n_classes=5, **ARCH))
    model = BatchedModel(members).to(device)
    rates = np.stack([schedules.warmup_cosine(lr, steps // 10, steps)(np.arange(steps)) for lr in lrs])
    opt = BatchedAdam(list(model.parameters()), rates[:, 0])
    streams = [minibatches(data.x_train, data.y_train, 64, steps=steps, seed=int(s)) for s in seeds]
    train_copies(model, opt, streams, rates)
    val, test = evaluate(model, data.x_val, data.y_val), evaluate(model, data.x_test, data.y_test)
    for k, path in enumerate(paths):
        torch.save(model.member(k, TransformerClassifier(n_classes=5, **ARCH)).state_dict(), path)
    return [{"val_loss": float(val.loss[k]), "val_acc": float(val.accuracy[k]),
             "test_loss": float(test.loss[k]), "test_acc": float(test.accuracy[k])}
            for k in range(len(paths))]


@lru_cache(maxsize=4)
def _pretrained(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def _evaluate(model: torch.nn.Module, data: Split) -> dict[str, float]:
    val, test = evaluate(model, data.x_val, data.y_val), evaluate(model, data.x_test, data.y_test)
    return {"val_loss": val.loss, "val_acc": val.accuracy, "test_loss": test.loss, "test_acc": test.accuracy}


class _Setup(NamedTuple):
    """What one fine-tuning run starts from."""

    lr: float
    seed: int
    steps: int
    data: Split
    model: torch.nn.Module
    groups: list[dict]


def _finetune_setup(config: dict[str, Any]) -> _Setup:
    method = config["method"]
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    lr, seed = float(config["lr"]), int(config["seed"])
    steps = check_int("steps", config.get("steps", 150), minimum=1)
    device = torch.device(config.get("device", "cpu"))
    data = digit_task(range(5, 10), per_class=config.get("per_class", 20), seed=seed).to(device)
    model = TransformerClassifier(n_classes=5, **ARCH)
    model.load_state_dict(_pretrained(str(config["pretrained"])))
    model.to(device)
    torch.manual_seed(seed)
    model.head.reset_parameters()  # a new task gets a new head
    if method == "head":
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("head."))
    elif method == "lora":
        add_lora(model, rank=config.get("rank", 4), alpha=config.get("alpha", 8.0),
                 targets=("qkv", "proj", "ff_in", "ff_out"), rslora=bool(config.get("rslora", False)))
    if method == "layerwise":
        groups = layerwise_lr_groups(model, lr, config.get("decay", 0.7))
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]
    return _Setup(lr, seed, steps, data, model, groups)


def finetune_schedule(config: dict[str, Any]) -> schedules.Schedule:
    """The rate schedule of a fine-tuning config, from its ``lr``, ``steps`` (150) and
    ``schedule``:

    - ``"warmup_cosine"`` (the default): a linear warmup over the fraction ``warmup`` (0.1) of
      the steps (at least one), then cosine to 0;
    - ``"warmup_linear"``: BERT's, the same warmup then linear decay to 0 (``warmup=0``: no
      warmup);
    - ``"constant"``: the rate throughout, as in the notes' SST-5 sweep;
    - ``"stlr"``: ULMFiT's :func:`~lrlib.schedules.slanted_triangular` (10% up, ratio 32).
    """
    lr, steps = float(config["lr"]), check_int("steps", config.get("steps", 150), minimum=1)
    name = config.get("schedule", "warmup_cosine")
    if name not in FINETUNE_SCHEDULES:
        raise ValueError(f"schedule must be one of {FINETUNE_SCHEDULES}, got {name!r}")
    warmup = float(config.get("warmup", 0.1))
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup must be a fraction in [0, 1), got {warmup}")
    if name == "constant":
        return schedules.constant(lr)
    if name == "stlr":
        return schedules.slanted_triangular(lr, steps)
    warmup_steps = int(warmup * steps + 1e-9)  # floor: 10% of 15 steps is 1
    if name == "warmup_linear":
        return schedules.warmup_linear(lr, warmup_steps, steps)
    return schedules.warmup_cosine(lr, max(1, warmup_steps), steps)


def _outcome(held_out: dict[str, float], run: TrainingRun) -> dict[str, float]:
    out = dict(held_out)
    out["train_loss"] = run.tail_mean(0.1)
    for key in ("val_loss", "test_loss"):
        if not math.isfinite(out[key]):
            out[key] = math.inf
    return out


def finetune_trial(config: dict[str, Any]) -> dict[str, float]:
    """One fine-tuning run on digits 5-9; a pure function of ``config``.

    Keys: ``lr`` (the peak rate; the top layer's for ``"layerwise"``), ``seed`` (the new head,
    the few-shot subset and the batch order), ``method`` (one of :data:`METHODS`),
    ``pretrained`` (the file :func:`pretrain` wrote), and optionally ``steps`` (150),
    ``per_class`` (20 training images per class), ``decay`` (0.7, for ``"layerwise"``: each
    layer's rate that of the layer above times ``decay``; ULMFiT's 2.6 is ``decay=1/2.6``),
    ``rank`` (4), ``alpha`` (8) and ``rslora`` (False) for ``"lora"``, ``schedule`` and
    ``warmup`` (:func:`finetune_schedule`; default 10% warmup then cosine), and ``device``
    (``"cpu"``; where the run trains, e.g. ``"cuda"``). Adam, batch 32.

    Returns ``val_loss`` and ``val_acc`` (select on these), ``test_loss`` and ``test_acc``
    (report these once, for what was selected) on 5-9, and the ``train_loss`` of the last 10%
    of steps (losses ``inf`` if the run diverged).
    """
    setup = _finetune_setup(config)
    opt = torch.optim.Adam(setup.groups, lr=setup.lr)
    sched = finetune_schedule(config).attach(opt)
    data = setup.data
    batches = minibatches(data.x_train, data.y_train, 32, steps=setup.steps, seed=setup.seed)
    run = train(setup.model, opt, batches, F.cross_entropy, scheduler=sched)
    return _outcome(_evaluate(setup.model, data), run)


def finetune_batch(configs: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """:func:`finetune_trial` for many configs at once, as one batched model (:mod:`lrlib.batched`).

    The configs may differ in ``lr`` and ``seed`` only; each copy starts, sees its data and
    follows its schedule (and, for ``"layerwise"``, its per-layer rates) as
    :func:`finetune_trial` would, and the results equal it to float32 reassociation (the
    tests check it). Pass it to :func:`lrlib.sweep.run_sweep` as ``batch_fn``.
    """
    configs = list(configs)
    if not configs:
        return []
    fixed = [{k: v for k, v in c.items() if k not in ("lr", "seed")} for c in configs]
    if any(f != fixed[0] for f in fixed):
        raise ValueError("configs must differ in lr and seed only to train as one batch")
    setups = [_finetune_setup(c) for c in configs]
    steps, first = setups[0].steps, setups[0]
    model = BatchedModel([s.model for s in setups]).to(first.data.x_train.device)
    # each parameter's rate relative to the copy's peak: its group's rate over the largest, as attach() does
    top = max(g["lr"] for g in first.groups)
    ratio = {id(p): g["lr"] / top for g in first.groups for p in g["params"]}
    scales = [ratio[id(p)] for p in first.model.parameters() if p.requires_grad]
    rates = np.stack([finetune_schedule(c)(np.arange(steps)) for c in configs])
    opt = BatchedAdam([p for p in model.parameters() if p.requires_grad], rates[:, 0], scales=scales)
    streams = [minibatches(s.data.x_train, s.data.y_train, 32, steps=steps, seed=s.seed) for s in setups]
    runs = train_copies(model, opt, streams, rates)
    # the same validation and test sets for every seed
    val = evaluate(model, first.data.x_val, first.data.y_val)
    test = evaluate(model, first.data.x_test, first.data.y_test)
    return [_outcome({"val_loss": float(val.loss[k]), "val_acc": float(val.accuracy[k]),
                      "test_loss": float(test.loss[k]), "test_acc": float(test.accuracy[k])}, run)
            for k, run in enumerate(runs)]
