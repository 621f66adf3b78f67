"""The learning-rate range test ("LR finder") that leaves no trace (chapter 6).

:func:`find_lr` trains for ``num_iters`` steps while the learning rate grows from
``start_lr`` to ``end_lr``, records the loss at every step, and then puts the
model, the optimizer and the random number generators back exactly as they
were. :class:`LRFinderResult` holds the curve and suggests a learning rate by
one of three interchangeable rules, :func:`suggest_minimum`,
:func:`suggest_steepest` and :func:`suggest_valley`, which all take
``(lrs, losses)`` and return a learning rate.

It avoids the known failures of other finders: non-finite losses never reach a
suggestion; slopes are taken against :math:`\\log_{10}\\eta`, never against the
step index or :math:`\\eta` itself (which differ in a linear sweep); the first
``skip_start`` of the curve, where the smoothing has not settled and early
spikes live, is left out, and the result says how much; the optimizer's state,
every param group's keys (``lr``, ``initial_lr``, ...) and the bookkeeping of an
attached scheduler are restored, so a scheduler attached before the test keeps
working after it.
"""

from __future__ import annotations

import copy
import math
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes

from lrlib._checks import check_int, check_positive, check_real

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Suggestion = Callable[[np.ndarray, np.ndarray], float]
MODES = ("exp", "linear")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# --- the learning rates of a sweep --------------------------------------------------------------

def sweep_lrs(start_lr: float, end_lr: float, num_iters: int, mode: str = "exp") -> np.ndarray:
    """The learning rates of a range test, one per iteration.

    ``"exp"``: :math:`\\eta_i = \\eta_0 (\\eta_1/\\eta_0)^{i/(n-1)}`, evenly spaced in
    :math:`\\log\\eta` (the usual choice); ``"linear"``:
    :math:`\\eta_i = \\eta_0 + (\\eta_1 - \\eta_0)\\, i/(n-1)` (Smith's original test for
    cyclical bounds). The first is ``start_lr`` and the last ``end_lr``.

    >>> sweep_lrs(1e-3, 1e-1, 3).tolist()
    [0.001, 0.01, 0.1]
    >>> sweep_lrs(0.1, 0.5, 3, mode="linear").tolist()
    [0.1, 0.30000000000000004, 0.5]
    """
    start_lr = check_positive("start_lr", start_lr)
    end_lr = check_positive("end_lr", end_lr)
    if end_lr <= start_lr:
        raise ValueError(f"end_lr must be > start_lr={start_lr}, got {end_lr}")
    num_iters = check_int("num_iters", num_iters, minimum=2)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    frac = np.arange(num_iters) / (num_iters - 1)
    if mode == "exp":
        lrs = start_lr * (end_lr / start_lr) ** frac
    else:
        lrs = start_lr + (end_lr - start_lr) * frac
    lrs[0], lrs[-1] = start_lr, end_lr
    return lrs


def smooth(losses: Iterable[float], smoothing: float = 0.05) -> np.ndarray:
    """Bias-corrected exponential moving average, as Adam corrects its moments.

    With :math:`\\beta = 1 - \\alpha` (``smoothing`` :math:`= \\alpha`, the weight
    of the newest loss), :math:`a_i = \\beta a_{i-1} + \\alpha \\ell_i` from
    :math:`a_{-1} = 0`, and the smoothed value is :math:`a_i / (1 - \\beta^{i+1})`.
    Without the correction the first values would be pulled towards 0. A
    non-finite loss makes every later value non-finite.

    >>> smooth([2.0, 2.0, 2.0], 0.1).round(12).tolist()  # a constant stays constant
    [2.0, 2.0, 2.0]
    >>> smooth([1.0, 3.0], 1.0).tolist()  # smoothing=1 is no smoothing
    [1.0, 3.0]
    """
    alpha = _smoothing(smoothing)
    beta = 1.0 - alpha
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + alpha * float(loss)
        out.append(avg / (1.0 - beta ** (i + 1)))
    return np.array(out, dtype=float)


def _smoothing(value: float) -> float:
    value = check_real("smoothing", value)
    if not 0 < value <= 1:
        raise ValueError(f"smoothing must be in (0, 1], got {value}")
    return value


# --- suggestions: one signature, (lrs, losses) -> lr ---------------------------------------------

def suggest_minimum(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The learning rate at the lowest loss, divided by 10.

    At the minimum the rate is already about to be too large; a tenth of it is
    the classic rule (fastai's ``minimum``, the seeds' "min-loss / 10").
    """
    return float(lrs[int(np.argmin(losses))] / 10.0)


def log_slopes(lrs: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """:math:`d\\ell / d\\log_{10}\\eta` by central differences (one-sided at the ends).

    Always against :math:`\\log_{10}\\eta`: in an exponential sweep that is the step
    index up to a constant, but in a linear sweep the two differ, and a slope
    against :math:`\\eta` itself favours the large rates.
    """
    return np.gradient(np.asarray(losses, float), np.log10(np.asarray(lrs, float)))


def suggest_steepest(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The learning rate where the loss falls fastest against :math:`\\log_{10}\\eta`
    (the most negative :func:`log_slopes`): where the rate is doing the most good."""
    return float(lrs[int(np.argmin(log_slopes(lrs, losses)))])


def suggest_valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """Halfway along the longest decreasing run of the loss.

    Find the longest subsequence :math:`i_1 < \\dots < i_m` with
    :math:`\\ell_{i_1} > \\dots > \\ell_{i_m}` (dynamic programming,
    :math:`O(n^2)`), and return the rate at index :math:`(i_1 + i_m)/2`: well
    inside the valley, away from both its flat start and its steep end. This is
    the idea of fastai's ``valley``.
    """
    losses = np.asarray(losses, float)
    n = len(losses)
    length = np.ones(n, dtype=int)
    first = np.arange(n)
    for j in range(1, n):
        higher = np.flatnonzero(losses[:j] > losses[j])
        if higher.size:
            # among equally long runs, the one starting latest: the valley starts where the fall does
            best = higher[::-1][np.argmax(length[higher][::-1])]
            length[j], first[j] = length[best] + 1, first[best]
    end = int(np.argmax(length))
    return float(lrs[(first[end] + end) // 2])


def cyclic_bounds(lrs: np.ndarray, losses: np.ndarray, fall: float = 0.1) -> tuple[float, float]:
    """Bounds for a cyclical schedule from a range test, after Smith (2017).

    Smith reads two rates off the curve: where the loss starts to fall (the lower
    bound) and where it stops falling (the upper). Made precise: with
    :math:`\\ell_0` the first loss and :math:`\\ell_*` the minimum, the lower bound
    is the first rate at which the loss has made ``fall`` of its total drop,
    :math:`\\ell \\le \\ell_0 - \\text{fall}\\,(\\ell_0 - \\ell_*)`, and the upper bound
    is the rate at the minimum. A linear sweep (``mode="linear"``) is Smith's.

    >>> cyclic_bounds(np.array([1., 2., 3., 4., 5.]), np.array([2.0, 1.9, 1.5, 1.0, 1.8]), fall=0.2)
    (3.0, 4.0)
    """
    fall = check_real("fall", fall)
    if not 0 < fall < 1:
        raise ValueError(f"fall must be in (0, 1), got {fall}")
    losses = np.asarray(losses, float)
    low = int(np.argmin(losses))
    target = losses[0] - fall * (losses[0] - losses[low])
    start = int(np.flatnonzero(losses[: low + 1] <= target)[0])
    return float(lrs[start]), float(lrs[low])


SUGGESTIONS: dict[str, Suggestion] = {
    "minimum": suggest_minimum,
    "steepest": suggest_steepest,
    "valley": suggest_valley,
}


# --- the result ------------------------------------------------------------------------------------

@dataclass
class LRFinderResult:
    """What a range test recorded.

    ``lrs[i]`` is the rate of the first param group at iteration ``i``, ``losses[i]``
    the loss of that iteration's batch (averaged over accumulation steps) *before*
    its update, and ``smoothed`` their bias-corrected moving average. When the test
    stopped early, ``stop_reason`` says why and the last entry is the one that
    triggered the stop.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    num_iters: int
    mode: str = "exp"
    smoothing: float = 0.05
    stop_reason: str | None = None
    seconds: float = 0.0
    suggestions: dict[str, Suggestion] = field(default_factory=lambda: dict(SUGGESTIONS))

    @property
    def stopped_early(self) -> bool:
        return self.stop_reason is not None

    def usable(self, skip_start: float = 0.1, skip_end: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The part of the curve the suggestions look at: finite smoothed losses, without
        the first ``skip_start`` fraction of the iterations run and, after an early stop,
        without the last ``skip_end`` points (where the loss was already blowing up)."""
        skip_start = check_real("skip_start", skip_start)
        if not 0 <= skip_start < 1:
            raise ValueError(f"skip_start must be in [0, 1), got {skip_start}")
        skip_end = check_int("skip_end", skip_end, minimum=0)
        n = len(self.smoothed)
        stop = n - skip_end if self.stopped_early else n
        keep = np.zeros(n, dtype=bool)
        keep[int(math.floor(skip_start * n)) : stop] = True
        keep &= np.isfinite(self.smoothed)
        return self.lrs[keep], self.smoothed[keep]

    def suggest(self, method: str = "valley", skip_start: float = 0.1) -> float:
        """A learning rate by ``method`` (``"minimum"``, ``"steepest"``, ``"valley"``, or any
        name added to ``suggestions``), from :meth:`usable` (the first ``skip_start`` of the
        curve is skipped: 10% by default).

        Raises:
            ValueError: unknown method, or fewer than 3 usable points (the test diverged
                at once: lower ``start_lr``).
        """
        if method not in self.suggestions:
            raise ValueError(f"method must be one of {sorted(self.suggestions)}, got {method!r}")
        lrs, losses = self.usable(skip_start)
        if len(lrs) < 3:
            raise ValueError(f"only {len(lrs)} usable points in the curve (the test stopped at "
                             f"iteration {len(self.losses)} of {self.num_iters}: {self.stop_reason}); "
                             "lower start_lr or skip_start")
        return self.suggestions[method](lrs, losses)

    def to_frame(self) -> pd.DataFrame:
        """One row per iteration: ``lr``, ``loss``, ``smoothed``."""
        return pd.DataFrame({"lr": self.lrs, "loss": self.losses, "smoothed": self.smoothed},
                            index=pd.RangeIndex(len(self.lrs), name="iteration"))

    def plot(self, ax: Axes | None = None, methods: Iterable[str] = ("minimum", "steepest", "valley"),
             skip_start: float = 0.1, raw: bool = True) -> Axes:
        """Loss against learning rate (log axis), the raw losses faintly, and a marker per
        suggestion; returns the axes."""
        import matplotlib.pyplot as plt

        from lrlib.plotting import COLORS

        if ax is None:
            _, ax = plt.subplots()
        if raw:
            ax.plot(self.lrs, self.losses, color="grey", alpha=0.35, linewidth=1, label="loss per batch")
        ax.plot(self.lrs, self.smoothed, color=COLORS[0], linestyle="-", label="smoothed loss")
        markers = ("v", "o", "s", "D", "^")
        for k, method in enumerate(methods):
            lr = self.suggest(method, skip_start)
            y = np.interp(np.log10(lr), np.log10(self.lrs), self.smoothed)
            ax.plot([lr], [y], linestyle="none", marker=markers[k % len(markers)], markersize=9,
                    color=COLORS[1 + k], label=f"{method}: {lr:.2g}")
        ax.set_xscale("log")
        finite = self.smoothed[np.isfinite(self.smoothed)]
        if finite.size:
            low, high = finite.min(), min(finite.max(), finite[0] * 3)
            pad = 0.1 * (high - low) if high > low else 0.1
            ax.set_ylim(low - pad, high + pad)
        ax.set(xlabel="learning rate (log scale)", ylabel="training loss",
               title=f"LR range test ({self.mode}, {len(self.lrs)} of {self.num_iters} iterations)")
        ax.text(0.98, 0.02, f"suggestions skip the first {skip_start:.0%}", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8, color="grey")
        ax.legend()
        return ax


# --- leaving no trace --------------------------------------------------------------------------------

class _Snapshot:
    """Everything find_lr may change, copied off the accelerator (to CPU memory or to disk)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state_dir: Path | None):
        to_cpu = _copy_to_cpu
        self.modes = [m.training for m in model.modules()]
        self.grads = [None if p.grad is None else to_cpu(p.grad) for p in model.parameters()]
        self.opt_attrs = {k: getattr(optimizer, k) for k in ("_opt_called",) if hasattr(optimizer, k)}
        self.groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
                       for g in optimizer.param_groups]
        self.rng = {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "numpy": np.random.get_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self.rng["cuda"] = torch.cuda.get_rng_state_all()
        tensors = {"model": {k: to_cpu(v) for k, v in model.state_dict().items()},
                   "optimizer": _map_tensors(optimizer.state_dict(), to_cpu)}
        self.path = None
        if state_dir is None:
            self.tensors = tensors
        else:
            self.path = Path(tempfile.mkdtemp(prefix="lrfinder-", dir=state_dir)) / "state.pt"
            torch.save(tensors, self.path)
            self.tensors = None

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        tensors = self.tensors if self.path is None else torch.load(self.path, weights_only=False)
        model.load_state_dict(tensors["model"])
        optimizer.load_state_dict(tensors["optimizer"])
        for group, saved in zip(optimizer.param_groups, self.groups):
            group.update(copy.deepcopy(saved))
        for m, mode in zip(model.modules(), self.modes):
            m.training = mode
        for p, g in zip(model.parameters(), self.grads):
            p.grad = None if g is None else g.to(p.device)
        for k, v in self.opt_attrs.items():
            setattr(optimizer, k, v)
        if "_opt_called" not in self.opt_attrs and hasattr(optimizer, "_opt_called"):
            delattr(optimizer, "_opt_called")
        torch.set_rng_state(self.rng["torch"])
        random.setstate(self.rng["python"])
        np.random.set_state(self.rng["numpy"])
        if "cuda" in self.rng:
            torch.cuda.set_rng_state_all(self.rng["cuda"])
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path.parent.rmdir()


def _copy_to_cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True)


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return copy.deepcopy(obj)


def _cycle(batches: Iterable) -> Iterator:
    """Batches for ever: restart a re-iterable (a list, a DataLoader); replay a one-shot iterator."""
    if iter(batches) is not batches:
        while True:
            empty = True
            for batch in batches:
                empty = False
                yield batch
            if empty:
                raise ValueError("batches is empty")
    seen = []
    for batch in batches:
        seen.append(batch)
        yield batch
    if not seen:
        raise ValueError("batches is empty")
    while True:
        yield from seen


# --- the range test ------------------------------------------------------------------------------------

def find_lr(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: LossFn,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iters: int = 100,
    mode: str = "exp",
    smoothing: float = 0.05,
    diverge_threshold: float = 4.0,
    accumulation_steps: int = 1,
    progress: bool = True,
    amp: str | None = None,
    state_dir: str | Path | None = None,
) -> LRFinderResult:
    r"""Run a learning-rate range test, then put everything back.

    Iteration :math:`i` sets the first param group's rate to :math:`\eta_i`
    (:func:`sweep_lrs`) and every other group's to :math:`\eta_i` times its
    original ratio to the first; averages the loss of ``accumulation_steps``
    batches, backpropagates, and takes one optimizer step. The loss is recorded
    *before* the step. It stops early when the loss is NaN or infinite or the
    smoothed loss (:func:`smooth`) exceeds ``diverge_threshold`` times its minimum.

    Afterwards (also when ``loss_fn`` raises or the run is interrupted) the
    model's parameters, buffers, gradients and train/eval modes, the optimizer's
    state and every param group's entries, and the torch (CPU and CUDA), NumPy
    and Python random states are exactly as before. The copies live in CPU memory
    (or in ``state_dir`` on disk), never on the accelerator.

    Args:
        model: any ``torch.nn.Module``.
        optimizer: built on ``model``'s parameters; its state (momentum, Adam's moments)
            is used as it is and restored afterwards.
        batches: ``(inputs, targets)`` pairs, e.g. a ``DataLoader``; cycled when they run out.
        loss_fn: ``loss_fn(model(inputs), targets)``, a scalar.
        start_lr, end_lr: the sweep's first and last rate, ``0 < start_lr < end_lr``.
        num_iters: iterations (>= 2).
        mode: ``"exp"`` (default) or ``"linear"``.
        smoothing: weight of the newest loss in the moving average, in (0, 1].
        diverge_threshold: stop when the smoothed loss exceeds this multiple of its
            minimum (> 1; ``math.inf`` never stops early except on NaN/inf).
        accumulation_steps: batches per optimizer step (>= 1).
        progress: show a tqdm progress bar (``tqdm.auto``: a widget in notebooks).
        amp: ``None``, ``"bf16"`` or ``"fp16"``: autocast the forward pass (fp16 with a
            gradient scaler, CUDA only).
        state_dir: keep the saved state in a temporary file under this folder instead
            of CPU memory (for models too large to copy twice).

    Returns:
        An :class:`LRFinderResult`.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Linear(3, 1)
        >>> x, y = torch.randn(64, 3), torch.randn(64, 1)
        >>> before = model.weight.detach().clone()
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> result = find_lr(model, opt, [(x, y)], torch.nn.functional.mse_loss,
        ...                  start_lr=1e-4, end_lr=10, num_iters=50, progress=False)
        >>> result.stop_reason is not None, torch.equal(model.weight, before), opt.param_groups[0]["lr"]
        (True, True, 0.1)
    """
    from tqdm.auto import tqdm

    lrs = sweep_lrs(start_lr, end_lr, num_iters, mode)
    smoothing = _smoothing(smoothing)
    if isinstance(diverge_threshold, bool) or not isinstance(diverge_threshold, (int, float)):
        raise TypeError(f"diverge_threshold must be a real number, got {diverge_threshold!r}")
    if not diverge_threshold > 1:  # math.inf is allowed: stop on NaN/inf only
        raise ValueError(f"diverge_threshold must be > 1, got {diverge_threshold}")
    accumulation_steps = check_int("accumulation_steps", accumulation_steps, minimum=1)
    if amp is not None and amp not in AMP_DTYPES:
        raise ValueError(f"amp must be None or one of {tuple(AMP_DTYPES)}, got {amp!r}")
    first = next(iter(model.parameters()), None)
    if first is None:
        raise ValueError("model has no parameters")
    device = first.device
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA model, got one on {device}")
    base = [g["lr"] for g in optimizer.param_groups]
    if any(not isinstance(lr, (int, float)) or lr <= 0 for lr in base):
        raise ValueError(f"every param group needs a positive float lr to scale from, got {base}")
    ratios = [lr / base[0] for lr in base]

    snapshot = _Snapshot(model, optimizer, None if state_dir is None else Path(state_dir))
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    autocast = (torch.autocast(device.type, dtype=AMP_DTYPES[amp]) if amp else nullcontext())
    losses: list[float] = []
    smoothed: list[float] = []
    avg, best, stop_reason = 0.0, math.inf, None
    start = time.perf_counter()
    stream = _cycle(batches)
    bar = tqdm(total=num_iters, disable=not progress, desc="LR range test", leave=False)
    try:
        model.train()
        for i, lr in enumerate(lrs):
            for group, ratio in zip(optimizer.param_groups, ratios):
                group["lr"] = float(lr * ratio)
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for _ in range(accumulation_steps):
                inputs, targets = next(stream)
                with autocast:
                    loss = loss_fn(model(inputs), targets) / accumulation_steps
                (scaler.scale(loss) if scaler else loss).backward()
                total += float(loss.detach())
            losses.append(total)
            avg = (1 - smoothing) * avg + smoothing * total
            smoothed.append(avg / (1 - (1 - smoothing) ** (i + 1)))
            bar.update(1)
            if not math.isfinite(total):
                stop_reason = f"loss {total} at iteration {i}"
                break
            best = min(best, smoothed[-1])
            if smoothed[-1] > diverge_threshold * best:
                stop_reason = f"smoothed loss {smoothed[-1]:.4g} > {diverge_threshold} x minimum {best:.4g}"
                break
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
    finally:
        bar.close()
        snapshot.restore(model, optimizer)
    n = len(losses)
    return LRFinderResult(lrs[:n], np.array(losses), np.array(smoothed), num_iters, mode, smoothing,
                          stop_reason, time.perf_counter() - start)
