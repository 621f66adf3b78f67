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
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lrlib import schedules
from lrlib._checks import check_int
from lrlib.data import Split, load_digits, minibatches
from lrlib.models import TransformerClassifier, add_lora
from lrlib.param_groups import layerwise_lr_groups
from lrlib.training import train

METHODS = ("full", "head", "layerwise", "lora")
ARCH = {"d_model": 32, "n_heads": 4, "n_layers": 4, "norm_first": True}


def digit_task(classes: range, per_class: int | None = None, seed: int = 0) -> Split:
    """The digits of ``classes`` only, relabelled ``0..len(classes)-1``; with ``per_class``,
    a random subset of that many training images per class (the test set is kept whole)."""
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

    return Split(*pick(data.x_train, data.y_train, per_class), *pick(data.x_test, data.y_test, None))


def pretrain(path: str | Path, steps: int = 400, lr: float = 3e-3, seed: int = 0) -> dict[str, float]:
    """Train the body on digits 0-4 (Adam, warmup then cosine), save its ``state_dict`` to ``path``,
    and return its held-out loss and accuracy on 0-4."""
    data = digit_task(range(5))
    torch.manual_seed(seed)
    model = TransformerClassifier(n_classes=5, **ARCH)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = schedules.warmup_cosine(lr, steps // 10, steps).attach(opt)
    train(model, opt, minibatches(data.x_train, data.y_train, 64, steps=steps, seed=seed), F.cross_entropy,
          scheduler=sched)
    torch.save(model.state_dict(), path)
    return _evaluate(model, data)


@lru_cache(maxsize=4)
def _pretrained(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def _evaluate(model: torch.nn.Module, data: Split) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        logits = model(data.x_test)
    return {"test_loss": float(F.cross_entropy(logits, data.y_test)),
            "test_acc": float((logits.argmax(1) == data.y_test).float().mean())}


def finetune_trial(config: dict[str, Any]) -> dict[str, float]:
    """One fine-tuning run on digits 5-9; a pure function of ``config``.

    Keys: ``lr`` (the peak rate; the top layer's for ``"layerwise"``), ``seed`` (the new head,
    the few-shot subset and the batch order), ``method`` (one of :data:`METHODS`),
    ``pretrained`` (the file :func:`pretrain` wrote), and optionally ``steps`` (150),
    ``per_class`` (20 training images per class), ``decay`` (0.7, for ``"layerwise"``),
    ``rank`` (4, for ``"lora"``). Adam, 10% warmup then cosine.

    Returns the held-out ``test_loss`` and ``test_acc`` on 5-9 and the ``train_loss`` of the
    last 10% of steps (``inf`` if the run diverged).
    """
    method = config["method"]
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    lr, seed = float(config["lr"]), int(config["seed"])
    steps = check_int("steps", config.get("steps", 150), minimum=1)
    data = digit_task(range(5, 10), per_class=config.get("per_class", 20), seed=seed)
    model = TransformerClassifier(n_classes=5, **ARCH)
    model.load_state_dict(_pretrained(str(config["pretrained"])))
    torch.manual_seed(seed)
    model.head.reset_parameters()  # a new task gets a new head
    if method == "head":
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("head."))
    elif method == "lora":
        add_lora(model, rank=config.get("rank", 4), targets=("qkv", "proj", "ff_in", "ff_out"))
    if method == "layerwise":
        groups = layerwise_lr_groups(model, lr, config.get("decay", 0.7))
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]
    opt = torch.optim.Adam(groups, lr=lr)
    sched = schedules.warmup_cosine(lr, max(1, steps // 10), steps).attach(opt)
    run = train(model, opt, minibatches(data.x_train, data.y_train, 32, steps=steps, seed=seed),
                F.cross_entropy, scheduler=sched)
    out = _evaluate(model, data)
    out["train_loss"] = run.tail_mean(0.1)
    if not math.isfinite(out["test_loss"]):
        out["test_loss"] = math.inf
    return out
