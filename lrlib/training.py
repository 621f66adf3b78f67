"""The course's one training loop (chapter 2 on): it records every step and stops when the loss blows up.

Chapters, trials and sweeps call :func:`train` instead of writing the loop again;
it records the loss at every step, optionally the sharpness
(:func:`lrlib.landscapes.sharpness`) every few steps, calls an ``on_step``
callback (to evaluate, log or stop early), and stops cleanly once the loss is no
longer finite. :func:`evaluate` is the one held-out loss and accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from lrlib._checks import check_int, check_positive
from lrlib.landscapes import sharpness as _sharpness
from lrlib.update import global_norm

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``on_step(t, loss)`` after update ``t`` (its minibatch loss before the update); return True to stop.
OnStep = Callable[[int, float], "bool | None"]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every target: ``logits (..., C)`` against ``targets (...)``.

    One loss for a classifier (``(N, C)`` and ``(N,)``) and a language model (``(N, T, V)``
    and ``(N, T)``, the mean over every position), where ``F.cross_entropy`` wants the
    classes in dimension 1.

    >>> logits = torch.zeros(2, 3, 4)
    >>> round(float(cross_entropy(logits, torch.zeros(2, 3, dtype=torch.long))), 4)  # log 4
    1.3863
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@dataclass(frozen=True)
class Evaluation:
    """Mean cross-entropy ``loss`` and ``accuracy`` of a classifier on one split (floats, or
    arrays with one entry per copy for a batched model)."""

    loss: float | np.ndarray
    accuracy: float | np.ndarray


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, chunk: int = 512) -> Evaluation:
    """A classifier's (or a language model's) mean cross-entropy and accuracy on ``(x, y)``, in eval mode.

    :math:`\\text{loss} = -\\frac1N \\sum_i \\log p_\\theta(y_i \\mid x_i)`,
    :math:`\\text{accuracy} = \\frac1N \\sum_i [\\arg\\max_c f_\\theta(x_i)_c = y_i]`, the
    mean running over every target: one per image, or one per position of each window for
    a language model (``y`` of shape ``(N, T)``, logits ``(N, T, V)``). A batched model
    (:class:`lrlib.batched.BatchedModel`, logits of shape ``(K, N, ..., C)``) gets one loss and
    one accuracy per copy. The examples go through the model ``chunk`` at a time (the
    logits of a language model are large), and the model is put back in the mode it was in.

    >>> model = torch.nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.eye(2)), model.bias.zero_()
    >>> evaluate(model, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])).accuracy
    0.5
    """
    chunk = check_int("chunk", chunk, minimum=1)
    copies = getattr(model, "copies", None)  # a BatchedModel: every copy sees the same examples
    k = copies or 1
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros(k, dtype=torch.float64, device=y.device)
    hits = torch.zeros(k, dtype=torch.float64, device=y.device)
    try:
        for start in range(0, len(x), chunk):
            xs, ys = x[start:start + chunk], y[start:start + chunk]
            logits = model(xs.expand(k, *xs.shape) if copies is not None else xs)
            logits = logits.reshape(k, -1, logits.shape[-1])
            targets = ys.reshape(-1).repeat(k)
            losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, reduction="none")
            loss_sum += losses.view(k, -1).double().sum(1)
            hits += (logits.argmax(-1) == ys.reshape(1, -1)).double().sum(1)
    finally:
        model.train(was_training)
    count = y.numel()
    loss, accuracy = (loss_sum / count).cpu().numpy(), (hits / count).cpu().numpy()
    if copies is not None:
        return Evaluation(loss.astype(float), accuracy.astype(float))
    return Evaluation(float(loss[0]), float(accuracy[0]))


@dataclass
class TrainingRun:
    """What :func:`train` saw: ``losses[t]`` is the minibatch loss *before* update ``t``.

    After divergence the remaining losses are NaN and ``diverged_at`` is the first
    step whose loss was not finite. ``sharpness`` holds ``(step, top Hessian eigenvalue)``
    pairs when it was measured. With ``track_norms=N`` (chapter 5), ``grad_norms[t]``
    is :math:`\\|g_t\\|` and ``update_norms[t]`` is :math:`\\|\\theta_{t+1}-\\theta_t\\| / \\|\\theta_t\\|`
    for the first N steps; ``lrs[t]`` is the first param group's rate used at step ``t``;
    ``skipped`` lists the steps that ``skip_spikes`` skipped.
    """

    losses: np.ndarray
    diverged_at: int | None = None
    sharpness: list[tuple[int, float]] = field(default_factory=list)
    grad_norms: np.ndarray | None = None
    update_norms: np.ndarray | None = None
    lrs: np.ndarray | None = None
    skipped: list[int] = field(default_factory=list)

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
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    track_norms: int = 0,
    on_step: OnStep | None = None,
    clip_norm: float | None = None,
    skip_spikes: float | None = None,
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
        scheduler: stepped once after every optimizer step (chapter 5 on).
        track_norms: record the gradient norm and the relative update size of the
            first this many steps (0: none; each costs a copy of the weights).
        on_step: called as ``on_step(t, loss)`` after update ``t`` (and the scheduler's
            step); a True return stops training there (early stopping, a time budget).
        clip_norm: clip the gradient to this global norm before each step
            (``torch.nn.utils.clip_grad_norm_``): :math:`g \\leftarrow g \\min(1, c/\\|g\\|)`.
            ``grad_norms`` records the norm *before* clipping. None: no clipping.
        skip_spikes: skip the update (the optimizer and its state untouched; the
            scheduler still steps) when the gradient norm exceeds this many times the
            median of the previous 20 steps' norms. None: never skip. The skipped steps
            are in ``TrainingRun.skipped``.

    Returns:
        A :class:`TrainingRun`. Training stops at the first non-finite loss.
    """
    sharpness_every = check_int("sharpness_every", sharpness_every, minimum=0)
    track_norms = check_int("track_norms", track_norms, minimum=0)
    if clip_norm is not None:
        clip_norm = check_positive("clip_norm", clip_norm)
    if skip_spikes is not None and not skip_spikes > 1:
        raise ValueError(f"skip_spikes must be > 1 (a multiple of the recent median norm), got {skip_spikes}")
    recent: list[float] = []  # the last 20 gradient norms, for skip_spikes
    skipped: list[int] = []
    losses: list[float] = []
    lrs: list[float] = []
    grad_norms: list[float] = []
    update_norms: list[float] = []
    measured: list[tuple[int, float]] = []
    params = [p for group in optimizer.param_groups for p in group["params"]]
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
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = None
        if t < track_norms or clip_norm is not None or skip_spikes is not None:
            norm = global_norm(p.grad for p in params if p.grad is not None)
        if t < track_norms:
            before = [p.detach().clone() for p in params]
            grad_norms.append(norm)
        spike = (skip_spikes is not None and len(recent) == 20
                 and norm > skip_spikes * float(np.median(recent)))
        if skip_spikes is not None and not spike:
            recent = (recent + [norm])[-20:]
        if spike:
            skipped.append(t)  # no update: Adam's moments never see this gradient
        else:
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            optimizer.step()
        if t < track_norms:
            step = global_norm(p.detach() - b for p, b in zip(params, before))
            update_norms.append(step / global_norm(before))
        if scheduler is not None:
            scheduler.step()
        if on_step is not None and on_step(t, value):
            break
    n_total = len(losses) + (0 if diverged_at is None else _remaining(batches, len(losses)))
    return TrainingRun(_padded(losses, n_total), diverged_at, measured,
                       grad_norms=np.array(grad_norms) if track_norms else None,
                       update_norms=np.array(update_norms) if track_norms else None,
                       lrs=_padded(lrs, n_total), skipped=skipped)


@dataclass
class ClippingEffect:
    """What :func:`clipping_effect` measured at each sampled step: the step index, the raw
    gradient norm, and the clipped step's size over the raw step's (from the same state)."""

    steps: np.ndarray
    grad_norms: np.ndarray
    ratios: np.ndarray
    clip_norm: float

    @property
    def clipped(self) -> np.ndarray:
        """Where clipping was active (the raw norm above ``clip_norm``)."""
        return self.grad_norms > self.clip_norm


def clipping_effect(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], loss_fn: LossFn,
                    clip_norm: float, every: int = 10) -> ClippingEffect:
    """How much clipping shrinks the optimizer's step, measured from the same state.

    Trains ``model`` in place with the gradient clipped to ``clip_norm``. At every ``every``-th
    step it first takes that step twice on copies of the model and the optimizer (its state
    included), once with the clipped and once with the raw gradient, and records
    :math:`\\lVert\\Delta\\theta_{clipped}\\rVert / \\lVert\\Delta\\theta_{raw}\\rVert`. For plain SGD
    this is :math:`\\min(1, c/\\lVert g\\rVert)`; for Adam it is usually far closer to 1, because
    scaling one gradient moves its running mean and its running square together.

    Args:
        model, optimizer, batches, loss_fn: as :func:`train` (the model is trained in place).
        clip_norm: the global-norm threshold :math:`c` (> 0).
        every: measure at every this many steps (>= 1).

    Returns:
        A :class:`ClippingEffect`, one entry per measured step.
    """
    import copy

    from torch.nn.utils import clip_grad_norm_, parameters_to_vector

    clip_norm = check_positive("clip_norm", clip_norm)
    every = check_int("every", every, minimum=1)
    steps, norms, ratios = [], [], []
    params = [p for g in optimizer.param_groups for p in g["params"]]
    model.train()
    for t, (inputs, targets) in enumerate(batches):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), targets).backward()
        if t % every == 0:
            steps.append(t)
            norms.append(global_norm(p.grad for p in params if p.grad is not None))
            sizes = []
            for clip in (None, clip_norm):
                twin, twin_opt = copy.deepcopy((model, optimizer))  # state and all
                for p, q in zip(model.parameters(), twin.parameters()):  # deepcopy drops .grad
                    q.grad = None if p.grad is None else p.grad.clone()
                before = parameters_to_vector(twin.parameters()).detach()
                if clip is not None:
                    clip_grad_norm_(list(twin.parameters()), clip)
                twin_opt.step()
                sizes.append(float((parameters_to_vector(twin.parameters()).detach() - before).norm()))
            ratios.append(sizes[1] / sizes[0] if sizes[0] > 0 else 1.0)
        clip_grad_norm_(params, clip_norm)
        optimizer.step()
    return ClippingEffect(np.array(steps), np.array(norms), np.array(ratios), clip_norm)


@dataclass
class NoiseScale:
    """The gradient noise scale of McCandlish et al. (2018), ``b_simple = trace_cov / grad_sq``."""

    b_simple: float
    trace_cov: float
    grad_sq: float


def gradient_noise_scale(model: torch.nn.Module, loss_fn: LossFn, x: torch.Tensor,
                         y: torch.Tensor) -> NoiseScale:
    """The simple noise scale :math:`B_{simple} = \\operatorname{tr}(\\Sigma) / \\lVert G\\rVert^2`.

    :math:`G` is the mean of the per-example gradients :math:`g_i` over the ``n`` examples
    and :math:`\\Sigma` their covariance, so
    :math:`\\operatorname{tr}\\Sigma = \\frac{1}{n-1}\\sum_i \\lVert g_i - G\\rVert^2`. A minibatch of
    :math:`B` examples drawn with replacement estimates :math:`G` with
    :math:`E\\lVert G_B\\rVert^2 = \\lVert G\\rVert^2 + \\operatorname{tr}\\Sigma / B`: below
    :math:`B_{simple}` the noise dominates the signal and doubling the batch nearly halves the
    steps needed; far above it, a bigger batch buys little. McCandlish et al. find the
    *critical batch size* near this value, and find it growing as training goes on.

    Per-example gradients come from ``torch.func`` (``vmap`` over ``grad``), so the model must
    treat examples independently (no BatchNorm in training mode).

    Args:
        model: the network, at the weights to measure (not changed).
        loss_fn: ``loss_fn(outputs, targets)``, a mean over the batch.
        x, y: the examples (at least 2), e.g. the whole training split.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> scale = gradient_noise_scale(torch.nn.Linear(3, 2), F.cross_entropy,
        ...                              torch.randn(50, 3), torch.randint(0, 2, (50,)))
        >>> scale.b_simple > 0
        True
    """
    from torch.func import functional_call, grad, vmap  # a second to import: only when used

    if len(x) < 2 or len(x) != len(y):
        raise ValueError(f"x and y must hold the same number (>= 2) of examples, got {len(x)} and {len(y)}")
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}

    def one(p, xi, yi):
        return loss_fn(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_example = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    g = torch.cat([v.reshape(len(x), -1) for v in per_example.values()], dim=1).double()
    mean = g.mean(0)
    trace_cov = float(((g - mean) ** 2).sum(1).sum() / (len(x) - 1))
    grad_sq = float(mean @ mean)
    return NoiseScale(trace_cov / grad_sq, trace_cov, grad_sq)


def _padded(values: list[float], n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[: len(values)] = values
    return out


def _remaining(batches: Iterable, done: int) -> int:
    try:
        return len(batches) - done  # type: ignore[arg-type]
    except TypeError:
        return 1
