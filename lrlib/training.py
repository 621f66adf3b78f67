"""A small, honest training loop (chapter 2 on): it records every step and stops when the loss blows up.

Chapters call :func:`train` instead of writing the loop again; it records the
loss at every step, optionally the sharpness (:func:`lrlib.landscapes.sharpness`)
every few steps, and stops cleanly once the loss is no longer finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from lrlib._checks import check_int
from lrlib.landscapes import sharpness as _sharpness

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainingRun:
    """What :func:`train` saw: ``losses[t]`` is the minibatch loss *before* update ``t``.

    After divergence the remaining losses are NaN and ``diverged_at`` is the first
    step whose loss was not finite. ``sharpness`` holds ``(step, top Hessian eigenvalue)``
    pairs when it was measured.
    """

    losses: np.ndarray
    diverged_at: int | None = None
    sharpness: list[tuple[int, float]] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    def smoothed(self, window: int = 20) -> np.ndarray:
        """Running mean over ``window`` steps (NaN where the run had diverged)."""
        window = check_int("window", window, minimum=1)
        out = np.full_like(self.losses, np.nan)
        finite = np.flatnonzero(np.isfinite(self.losses))
        if finite.size:
            values = self.losses[: finite[-1] + 1]
            csum = np.cumsum(np.insert(values, 0, 0.0))
            idx = np.arange(1, len(values) + 1)
            lo = np.maximum(0, idx - window)
            out[: len(values)] = (csum[idx] - csum[lo]) / (idx - lo)
        return out

    def tail_mean(self, fraction: float = 0.1) -> float:
        """Mean loss over the last ``fraction`` of the steps (inf if the run diverged)."""
        if self.diverged:
            return math.inf
        n = max(1, int(round(fraction * len(self.losses))))
        return float(np.mean(self.losses[-n:]))


def train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: LossFn,
    *,
    sharpness_every: int = 0,
    sharpness_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    sharpness_iters: int = 20,
) -> TrainingRun:
    """Train ``model`` in place, one optimizer step per batch, and record the losses.

    Args:
        model: the network (trained in place).
        optimizer: built on ``model``'s parameters.
        batches: ``(inputs, targets)`` pairs; a list of one full batch repeated is
            full-batch gradient descent.
        loss_fn: ``loss_fn(model(inputs), targets)``.
        sharpness_every: measure the sharpness every this many steps (0: never).
        sharpness_batch: the batch whose Hessian is measured (default: the current one).
        sharpness_iters: power iterations per measurement.

    Returns:
        A :class:`TrainingRun`. Training stops at the first non-finite loss.
    """
    sharpness_every = check_int("sharpness_every", sharpness_every, minimum=0)
    losses: list[float] = []
    measured: list[tuple[int, float]] = []
    diverged_at = None
    model.train()
    for t, (inputs, targets) in enumerate(batches):
        if sharpness_every and t % sharpness_every == 0:
            batch = sharpness_batch if sharpness_batch is not None else (inputs, targets)
            measured.append((t, _sharpness(model, loss_fn, batch, iters=sharpness_iters, tol=1e-3)))
        loss = loss_fn(model(inputs), targets)
        value = float(loss.detach())
        if not math.isfinite(value):
            diverged_at = t
            break
        losses.append(value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    n_total = len(losses) + (0 if diverged_at is None else _remaining(batches, len(losses)))
    out = np.full(n_total, np.nan)
    out[: len(losses)] = losses
    return TrainingRun(out, diverged_at, measured)


def _remaining(batches: Iterable, done: int) -> int:
    try:
        return len(batches) - done  # type: ignore[arg-type]
    except TypeError:
        return 1
