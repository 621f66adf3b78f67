"""Many runs at once: K copies of a small model trained as one batched model (chapters 5-7).

On a small model most of a training step is overhead: launching dozens of tiny
kernels, running Python. :class:`BatchedModel` stacks the parameters of K
independent copies of *any* module along a new leading dimension
(``torch.func.stack_module_state``) and evaluates all of them in one call
(``torch.func.vmap`` over ``torch.func.functional_call``), so an MLP or a
transformer of the course trains K rates, seeds or schedules at the cost of a
few. :class:`BatchedSGD`, :class:`BatchedAdam` and :class:`BatchedRAdam` update
the stacked weights with one learning rate per copy (and per step, for a
schedule), each copy following exactly the arithmetic of ``torch.optim.SGD`` /
``Adam`` / ``RAdam`` on its own model. :func:`train_copies` is the loop;
:func:`lrlib.trials.run_trials` batches compatible trials through it, and
:func:`train_batched` runs a sweep of digits MLPs. The results equal K separate
runs to float32 reassociation (the tests check it against ``torch.optim``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrlib._checks import check_int, check_nonnegative, check_real
from lrlib.data import Split, minibatches
from lrlib.models import MLP
from lrlib.training import TrainingRun, evaluate
from lrlib.width import mup_lr_scales, mup_mlp

Batch = tuple[torch.Tensor, torch.Tensor]


class BatchedModel(nn.Module):
    """K independent copies of one architecture, run as one model.

    Each parameter of the copies is stacked into one ``(K, ...)`` tensor; the input
    ``(K, batch, ...)`` gives the output ``(K, batch, ...)``, copy ``k`` seeing only
    ``x[k]`` through its own weights. :func:`lrlib.training.evaluate` feeds every
    copy the same images.

    Args:
        models: the K modules to copy (same architecture; they are not changed). Modules
            with buffers that training updates (BatchNorm) are refused.

    Example:
        >>> _ = torch.manual_seed(0); copies = [MLP(4, (8,), 3) for _ in range(2)]
        >>> batched = BatchedModel(copies)
        >>> x = torch.randn(2, 5, 4)
        >>> torch.allclose(batched(x)[1], copies[1](x[1]), atol=1e-6)
        True
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("models must not be empty")
        names = [[n for n, _ in m.named_parameters()] for m in models]
        shapes = [[p.shape for p in m.parameters()] for m in models]
        if any(n != names[0] for n in names) or any(s != shapes[0] for s in shapes):
            raise ValueError("models must share one architecture (the same parameter names and shapes)")
        if any(isinstance(mod, nn.modules.batchnorm._BatchNorm) for mod in models[0].modules()):
            raise ValueError("models must not hold BatchNorm layers: their running statistics "
                             "are updated in place, which vmap cannot batch")
        from torch.func import stack_module_state  # torch.func costs a second to import: only when used

        params, buffers = stack_module_state(list(models))
        self.names = list(params)
        trainable = dict(models[0].named_parameters())
        self.stacked = nn.ParameterList(nn.Parameter(params[n].detach().clone(), trainable[n].requires_grad)
                                        for n in self.names)
        for name, value in buffers.items():
            self.register_buffer("buffer_" + name.replace(".", "_"), value.clone())
        self._buffer_names = list(buffers)
        self._template = [copy.deepcopy(models[0]).to("meta")]  # a list: not a submodule

    @property
    def copies(self) -> int:
        """K, the number of copies."""
        return self.stacked[0].shape[0]

    def _buffers_dict(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, "buffer_" + n.replace(".", "_")) for n in self._buffer_names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call, vmap

        template = self._template[0].train(self.training)

        def one(params, buffers, inputs):
            return functional_call(template, (params, buffers), (inputs,))

        params = dict(zip(self.names, self.stacked))
        return vmap(one, randomness="different")(params, self._buffers_dict(), x)

    def member(self, k: int, model: nn.Module) -> nn.Module:
        """Copy ``k``'s weights into ``model`` (an instance of the copied architecture); returns it."""
        state = {n: p[k].detach() for n, p in zip(self.names, self.stacked)}
        state.update({n: b[k] for n, b in self._buffers_dict().items()})
        model.load_state_dict(state)
        return model


def _per_copy(lrs: Sequence[float] | torch.Tensor | np.ndarray, k: int) -> torch.Tensor:
    if isinstance(lrs, torch.Tensor):
        lrs = lrs.detach().to("cpu", torch.float64).flatten()
    else:
        lrs = torch.as_tensor(np.asarray(lrs, dtype=float), dtype=torch.float64).flatten()
    if lrs.numel() != k:
        raise ValueError(f"lrs must have one rate per copy ({k}), got {lrs.numel()}")
    if not bool((lrs >= 0).all()):
        raise ValueError(f"lrs must all be >= 0, got {lrs.tolist()}")
    return lrs


class _Batched(torch.optim.Optimizer):
    """Shared plumbing: every parameter's first dimension is the copy, ``lrs[k]`` its rate,
    times the parameter's entry in ``scales`` (default 1; e.g. layer-wise decay factors)."""

    def __init__(self, params, lrs, defaults, scales=None):
        params = list(params)
        k = params[0].shape[0]
        if any(p.shape[0] != k for p in params):
            raise ValueError("every parameter must have the copies along its first dimension")
        super().__init__(params, defaults)
        self.lrs = _per_copy(lrs, k)
        scales = [1.0] * len(params) if scales is None else [float(x) for x in scales]
        if len(scales) != len(params) or min(scales) < 0:
            raise ValueError(f"scales must be one factor >= 0 per parameter ({len(params)}), got {scales}")
        # a parameter's rate is lrs[k] times its scale: layer-wise decay, as param groups give it
        self._scales = {id(p): x for p, x in zip(params, scales)}

    @property
    def lrs(self) -> torch.Tensor:
        """The rates of the next step, one per copy (float64, on the CPU)."""
        return self._lrs

    @lrs.setter
    def lrs(self, lrs: Sequence[float] | np.ndarray | torch.Tensor) -> None:
        self._lrs = _per_copy(lrs, self._lrs.numel() if hasattr(self, "_lrs") else len(lrs))
        self._cast: dict[tuple, torch.Tensor] = {}  # the rates per device, dtype and scale, made once

    def set_lrs(self, lrs: Sequence[float] | np.ndarray | torch.Tensor) -> None:
        """The rates of the next step, one per copy (>= 0): a schedule calls it every step."""
        self.lrs = lrs

    def set_active(self, active: torch.Tensor) -> None:
        """Which copies still train (a bool per copy); :func:`train_copies` stops a copy whose
        loss is not finite by zeroing its rate and gradient, which freezes SGD and Adam, and
        tells the optimizer here, for state that moves even at rate 0."""
        self._active = torch.as_tensor(active, dtype=torch.bool, device="cpu").flatten()

    def train(self) -> None:
        """Ready the parameters for training steps (only schedule-free optimizers swap weights)."""

    def eval(self) -> None:
        """Put the weights to evaluate in the parameters (only schedule-free ones differ)."""

    def _lr(self, p: torch.Tensor) -> torch.Tensor:
        scale = self._scales[id(p)]
        key = (p.device, p.dtype, scale)
        if key not in self._cast:
            self._cast[key] = (self._lrs * scale).to(p.device, p.dtype)
        return self._cast[key].view(-1, *([1] * (p.ndim - 1)))


class BatchedSGD(_Batched):
    """``torch.optim.SGD(lr, momentum)`` for each copy, with copy ``k`` at rate ``lrs[k]``:
    :math:`b_t = \\mu b_{t-1} + g_t` (:math:`b_1 = g_1`), :math:`\\theta_t = \\theta_{t-1} - \\eta_k b_t`."""

    def __init__(self, params, lrs, momentum: float = 0.0, scales=None):
        momentum = check_nonnegative("momentum", momentum)
        super().__init__(params, lrs, {"momentum": momentum}, scales)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if group["momentum"]:
                    state = self.state[p]
                    if "buf" not in state:
                        state["buf"] = d.clone()
                    else:
                        state["buf"].mul_(group["momentum"]).add_(d)
                    d = state["buf"]
                p.sub_(self._lr(p) * d)


def _check_betas(betas: tuple[float, float]) -> tuple[float, float]:
    for name, beta in zip(("betas[0]", "betas[1]"), betas):
        beta = check_real(name, beta)
        if not 0 <= beta < 1:
            raise ValueError(f"{name} must be in [0, 1), got {beta}")
    return tuple(betas)


class BatchedAdam(_Batched):
    """``torch.optim.Adam`` for each copy, with copy ``k`` at rate ``lrs[k]``:
    :math:`m_t = \\beta_1 m + (1-\\beta_1) g`, :math:`v_t = \\beta_2 v + (1-\\beta_2) g^2`,
    :math:`\\theta_t = \\theta - \\frac{\\eta_k}{1-\\beta_1^t}\\,
    m_t / (\\sqrt{v_t}/\\sqrt{1-\\beta_2^t} + \\epsilon)`."""

    def __init__(self, params, lrs, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 scales=None):
        super().__init__(params, lrs, {"betas": _check_betas(betas), "eps": check_nonnegative("eps", eps)},
                         scales)

    def _moments(self, p: torch.Tensor, beta1: float, beta2: float) -> tuple[int, torch.Tensor, torch.Tensor]:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["m"] = torch.zeros_like(p)
            state["v"] = torch.zeros_like(p)
        state["step"] += 1
        state["m"].lerp_(p.grad, 1 - beta1)
        state["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        return state["step"], state["m"], state["v"]

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                t, m, v = self._moments(p, beta1, beta2)
                denom = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(group["eps"])
                p.sub_(self._lr(p) / (1 - beta1**t) * m / denom)


class BatchedAdamW(BatchedAdam):
    """``torch.optim.AdamW`` for each copy (Loshchilov and Hutter, 2019): the weights first
    shrink by the rate times the decay, :math:`\\theta \\leftarrow (1 - \\eta_k \\lambda)\\,\\theta`,
    then take :class:`BatchedAdam`'s step. The decay is multiplied by the rate, as torch
    couples them; the paper's schedule multiplier is the rate's schedule here.
    """

    def __init__(self, params, lrs, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, scales=None):
        super().__init__(params, lrs, betas, eps, scales)
        self.weight_decay = check_nonnegative("weight_decay", weight_decay)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        if self.weight_decay:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.mul_(1 - self._lr(p) * self.weight_decay)
        super().step(closure)


class BatchedRAdam(BatchedAdam):
    """``torch.optim.RAdam`` for each copy (Liu et al., 2020): Adam's step times the rectifier
    :math:`r_t = \\sqrt{(\\rho_t-4)(\\rho_t-2)\\rho_\\infty / ((\\rho_\\infty-4)(\\rho_\\infty-2)\\rho_t)}`
    once :math:`\\rho_t = \\rho_\\infty - 2t\\beta_2^t/(1-\\beta_2^t) > 5`
    (:math:`\\rho_\\infty = 2/(1-\\beta_2) - 1`), and plain momentum SGD
    :math:`\\theta - \\eta_k\\, m_t/(1-\\beta_1^t)` before that."""

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            rho_inf = 2 / (1 - beta2) - 1
            for p in group["params"]:
                if p.grad is None:
                    continue
                t, m, v = self._moments(p, beta1, beta2)
                m_hat = m / (1 - beta1**t)
                rho = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
                if rho > 5:
                    rect = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
                    adaptive = math.sqrt(1 - beta2**t) / v.sqrt().add_(group["eps"])
                    p.sub_(self._lr(p) * m_hat * rect * adaptive)
                else:
                    p.sub_(self._lr(p) * m_hat)


class BatchedScheduleFree(_Batched):
    """Schedule-free SGD or AdamW (Defazio et al., 2024) for each copy, at rate ``lrs[k]``.

    The ``schedulefree`` package's ``SGDScheduleFree`` / ``AdamWScheduleFree`` (no weight
    decay, ``r = 0``, ``weight_lr_power = 2``), written in the form of its reference
    implementation. Three sequences per copy: the gradient is taken at :math:`y`, a
    base step moves :math:`z`, and :math:`x` is the running average that training
    returns:

    .. math::

        z_{t+1} = z_t - \\eta_t\\, d_t, \\qquad
        x_{t+1} = (1 - c_{t+1})\\, x_t + c_{t+1}\\, z_{t+1}, \\qquad
        y_{t+1} = \\beta\\, x_{t+1} + (1 - \\beta)\\, z_{t+1},

    with :math:`d_t = g_t` (SGD, :math:`\\beta` = ``momentum``) or
    :math:`d_t = g_t / (\\sqrt{v_t / (1-\\beta_2^t)} + \\epsilon)` (AdamW,
    :math:`\\beta = \\beta_1`), and averaging weights
    :math:`c_{t+1} = w_{t+1} / \\sum_{i \\le t+1} w_i`,
    :math:`w_i = (\\max_{j \\le i} \\eta_j)^2`: a uniform average of the iterates
    once the rate stops rising (a warmup's small steps count for less). No decay
    schedule is needed; ``lrs`` may still change per step (a warmup).

    The parameters hold :math:`y` while training; call :meth:`eval` before evaluating
    (they then hold :math:`x`) and :meth:`train` before training again, as with the
    package's optimizers.

    Args:
        params, lrs, scales: as for :class:`BatchedSGD`.
        adaptive: False for schedule-free SGD, True for schedule-free AdamW.
        momentum: :math:`\\beta` of SGD (in ``[0, 1)``).
        betas, eps: AdamW's (``betas[0]`` is :math:`\\beta`).
    """

    def __init__(self, params, lrs, *, adaptive: bool, momentum: float = 0.9,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, scales=None):
        beta1, beta2 = _check_betas(betas)
        momentum = check_real("momentum", momentum)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1) for schedule-free SGD, got {momentum}")
        super().__init__(params, lrs, {"beta": beta1 if adaptive else momentum, "beta2": beta2,
                                       "eps": check_nonnegative("eps", eps)}, scales)
        self.adaptive = bool(adaptive)
        k = self._lrs.numel()
        self._lr_max = torch.zeros(k, dtype=torch.float64)
        self._weight_sum = torch.zeros(k, dtype=torch.float64)
        self._steps = 0
        self._training = True

    @torch.no_grad()
    def _swap(self, to: str) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    p.copy_(self.state[p][to])

    def eval(self) -> None:
        """Put the averaged weights :math:`x` in the parameters (to evaluate or save)."""
        if self._training:
            self._swap("x")
            self._training = False

    def train(self) -> None:
        """Put the gradient point :math:`y` back in the parameters (to go on training)."""
        if not self._training:
            self._swap("y")
            self._training = True

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        if not self._training:
            raise RuntimeError("call train() before step(): the parameters hold the averaged "
                               "weights x after eval()")
        self._steps += 1
        active = getattr(self, "_active", torch.ones_like(self._lrs, dtype=torch.bool))
        # a stopped copy's average must not drift towards z: it neither weighs nor averages
        self._lr_max = torch.where(active, torch.maximum(self._lr_max, self._lrs), self._lr_max)
        weight = torch.where(active, self._lr_max**2, 0.0)
        self._weight_sum += weight
        # the package's ZeroDivisionError case: no weight yet (a warmup's rate 0) averages nothing
        ckp1 = torch.where(self._weight_sum > 0, weight / self._weight_sum.clamp_min(1e-300), 0.0)
        for group in self.param_groups:
            beta, beta2 = group["beta"], group["beta2"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(z=p.detach().clone(), x=p.detach().clone(), y=p.detach().clone())
                    if self.adaptive:
                        state["v"] = torch.zeros_like(p)
                d = p.grad
                if self.adaptive:
                    state["v"].mul_(beta2).addcmul_(d, d, value=1 - beta2)
                    bias2 = 1 - beta2**self._steps
                    d = d / (state["v"].div(bias2).sqrt_().add_(group["eps"]))
                state["z"].sub_(self._lr(p) * d)
                c = ckp1.to(p.device, p.dtype).view(-1, *([1] * (p.ndim - 1)))
                state["x"].mul_(1 - c).add_(c * state["z"])
                state["y"].copy_(state["x"] * beta + state["z"] * (1 - beta))
                p.copy_(state["y"])


@dataclass(frozen=True)
class OptimizerSpec:
    """One entry of :data:`OPTIMIZERS`: how to build the optimizer for one model (``torch.optim``
    or the ``schedulefree`` package) and its batched twin, from the same settings."""

    name: str
    single: Callable[..., torch.optim.Optimizer]
    batched: Callable[..., _Batched]
    decays: bool = False  # takes a weight decay

    def build(self, params, lr: float, *, momentum: float = 0.9, betas: tuple[float, float] = (0.9, 0.999),
              weight_decay: float = 0.0) -> torch.optim.Optimizer:
        """The optimizer over ``params`` (one model)."""
        self._check_decay(weight_decay)
        return self.single(list(params), lr, momentum=momentum, betas=tuple(betas), weight_decay=weight_decay)

    def build_batched(self, params, lrs, *, momentum: float = 0.9, betas: tuple[float, float] = (0.9, 0.999),
                      weight_decay: float = 0.0, scales=None) -> _Batched:
        """The batched twin over stacked ``params``, copy ``k`` at rate ``lrs[k]``."""
        self._check_decay(weight_decay)
        return self.batched(list(params), lrs, momentum=momentum, betas=tuple(betas),
                            weight_decay=weight_decay, scales=scales)

    def _check_decay(self, weight_decay: float) -> None:
        if weight_decay and not self.decays:
            raise ValueError(f"weight_decay must be 0 for optimizer={self.name!r} (decoupled decay: "
                             f"use 'adamw'), got {weight_decay}")


def _schedulefree(kind: str) -> Any:
    try:
        import schedulefree
    except ImportError as error:  # an optional dependency: say how to get it
        raise ImportError(f"optimizer='schedulefree_{kind}' needs the schedulefree package: "
                          "pip install schedulefree") from error
    return schedulefree.SGDScheduleFree if kind == "sgd" else schedulefree.AdamWScheduleFree


def _sgd(p, lr, momentum, betas, weight_decay):
    return torch.optim.SGD(p, lr, momentum=momentum)


def _adam(p, lr, momentum, betas, weight_decay):
    return torch.optim.Adam(p, lr, betas=betas)


def _adamw(p, lr, momentum, betas, weight_decay):
    return torch.optim.AdamW(p, lr, betas=betas, weight_decay=weight_decay)


def _radam(p, lr, momentum, betas, weight_decay):
    return torch.optim.RAdam(p, lr, betas=betas)


def _sf_sgd(p, lr, momentum, betas, weight_decay):
    return _schedulefree("sgd")(p, lr=lr, momentum=momentum)


def _sf_adamw(p, lr, momentum, betas, weight_decay):
    return _schedulefree("adamw")(p, lr=lr, betas=betas)


def _b_sgd(p, lrs, momentum, betas, weight_decay, scales):
    return BatchedSGD(p, lrs, momentum, scales=scales)


def _b_adam(p, lrs, momentum, betas, weight_decay, scales):
    return BatchedAdam(p, lrs, betas, scales=scales)


def _b_adamw(p, lrs, momentum, betas, weight_decay, scales):
    return BatchedAdamW(p, lrs, betas, weight_decay=weight_decay, scales=scales)


def _b_radam(p, lrs, momentum, betas, weight_decay, scales):
    return BatchedRAdam(p, lrs, betas, scales=scales)


def _b_sf_sgd(p, lrs, momentum, betas, weight_decay, scales):
    return BatchedScheduleFree(p, lrs, adaptive=False, momentum=momentum, scales=scales)


def _b_sf_adamw(p, lrs, momentum, betas, weight_decay, scales):
    return BatchedScheduleFree(p, lrs, adaptive=True, betas=betas, scales=scales)


#: The one optimizer registry: name -> :class:`OptimizerSpec` (trials, sweeps and the batched engine use it).
OPTIMIZERS: dict[str, OptimizerSpec] = {spec.name: spec for spec in (
    OptimizerSpec("sgd", _sgd, _b_sgd),
    OptimizerSpec("adam", _adam, _b_adam),
    OptimizerSpec("adamw", _adamw, _b_adamw, decays=True),
    OptimizerSpec("radam", _radam, _b_radam),
    OptimizerSpec("schedulefree_sgd", _sf_sgd, _b_sf_sgd),
    OptimizerSpec("schedulefree_adamw", _sf_adamw, _b_sf_adamw),
)}


def optimizer_spec(name: str) -> OptimizerSpec:
    """The registry's entry for ``name``, or a ``ValueError`` that lists the names."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name]


def train_copies(model: BatchedModel, optimizer: _Batched, streams: Sequence[Iterable[Batch]],
                 rates: np.ndarray, *, track_norms: int = 0,
                 on_step: Callable[[int], None] | None = None) -> list[TrainingRun]:
    """Train every copy of ``model`` on its own minibatches at its own rate per step.

    The batched twin of :func:`lrlib.training.train`, and it records the same things per
    copy: ``losses[t]`` before update ``t``, ``lrs[t]``, and with ``track_norms=N`` the
    gradient norm and the relative update size of the first N steps. A copy whose loss is
    not finite stops there (its rate set to 0 and its gradient to zero), as :func:`train`
    stops, so its weights stay those that gave the non-finite loss; the others go on.

    Args:
        model: K copies.
        optimizer: a :class:`BatchedSGD`, :class:`BatchedAdam` or :class:`BatchedRAdam` on it.
        streams: K iterables of ``(inputs, targets)``, one per copy, each ``steps`` long.
        rates: ``(K, steps)`` rates: ``rates[k, t]`` is copy ``k``'s rate at step ``t``.
        track_norms: record norms for this many first steps (0: none).
        on_step: called as ``on_step(t)`` after update ``t`` (e.g. to evaluate every few steps).
    """
    k = model.copies
    rates = np.asarray(rates, dtype=float)
    if rates.ndim != 2 or rates.shape[0] != k:
        raise ValueError(f"rates must have shape (copies={k}, steps), got {rates.shape}")
    if len(streams) != k:
        raise ValueError(f"streams must have one stream per copy ({k}), got {len(streams)}")
    track_norms = check_int("track_norms", track_norms, minimum=0)
    steps = rates.shape[1]
    device = model.stacked[0].device
    step_rates = torch.as_tensor(rates, dtype=torch.float64)  # one tensor, sliced per step
    losses = torch.full((k, steps), float("nan"), device=device)
    grad_norms = np.full((k, min(track_norms, steps)), np.nan)
    update_norms = np.full_like(grad_norms, np.nan)
    alive = torch.ones(k, dtype=torch.bool, device=device)
    everyone = True  # no copy has stopped: skip the masking, the common case
    diverged_at: list[int | None] = [None] * k
    params = [p for p in model.stacked if p.requires_grad]  # frozen copies' weights stay as they are
    model.train()
    optimizer.train()
    for t, batch in enumerate(zip(*streams)):
        if t == steps:
            break
        x = torch.stack([b[0] for b in batch])
        y = torch.stack([b[1] for b in batch])
        logits = model(x)  # (K, B, C), or (K, B, T, V) for a language model
        per_copy = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                   reduction="none").view(k, -1).mean(1)
        finite = torch.isfinite(per_copy.detach())
        if everyone and bool(finite.all()):
            losses[:, t] = per_copy.detach()
            optimizer.zero_grad(set_to_none=True)
            per_copy.sum().backward()  # copies share nothing: each gets its own gradient
            optimizer.set_lrs(step_rates[:, t])
        else:
            everyone = False
            for j in torch.nonzero(alive & ~finite).flatten().tolist():
                diverged_at[j] = t
            alive &= finite
            losses[:, t] = torch.where(alive, per_copy.detach(), torch.nan)
            if not bool(alive.any()):
                break
            optimizer.zero_grad(set_to_none=True)
            torch.where(alive, per_copy, 0.0).sum().backward()
            with torch.no_grad():
                for p in params:  # a stopped copy gets no update, as train() stops
                    p.grad.mul_(alive.view(-1, *([1] * (p.ndim - 1)))).nan_to_num_(0.0)
            optimizer.set_lrs(step_rates[:, t] * alive.cpu())
            optimizer.set_active(alive)
        if t < track_norms:
            before = [p.detach().clone() for p in params]
            grad_norms[:, t] = _norms(p.grad for p in params)
        optimizer.step()
        if t < track_norms:
            update_norms[:, t] = _norms(p.detach() - b for p, b in zip(params, before)) / _norms(before)
        if on_step is not None:
            on_step(t)
    losses = losses.cpu().numpy().astype(float)
    runs = []
    for j in range(k):
        stop = steps if diverged_at[j] is None else diverged_at[j]
        lrs = np.full(steps, np.nan)
        lrs[:stop] = rates[j, :stop]
        runs.append(TrainingRun(losses[j], diverged_at[j], [],
                                grad_norms=grad_norms[j] if track_norms else None,
                                update_norms=update_norms[j] if track_norms else None, lrs=lrs))
    return runs


def _norms(tensors: Iterable[torch.Tensor]) -> np.ndarray:
    """Per-copy global norms of stacked tensors: :math:`\\sqrt{\\sum_p \\|p_k\\|^2}` for each k."""
    squares = sum(t.detach().double().pow(2).flatten(1).sum(1) for t in tensors)
    return squares.sqrt().cpu().numpy()


@dataclass
class BatchedRun:
    """What :func:`train_batched` recorded: ``losses[k, t]`` for copy ``k`` at step ``t``,
    and each copy's validation and test loss and accuracy at the end (NaN where it diverged)."""

    lrs: np.ndarray
    seeds: np.ndarray
    losses: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray


def train_batched(data: Split, lrs: Sequence[float], seeds: Sequence[int], *, steps: int = 100,
                  batch_size: int = 64, hidden: Sequence[int] = (128,), optimizer: str = "adam",
                  momentum: float = 0.9, parametrization: str = "sp", base_width: int = 32) -> BatchedRun:
    """Train one digits MLP per ``(lr, seed)`` pair, all at once, at constant rates.

    Copy ``k`` starts from ``torch.manual_seed(seed_k)`` then ``MLP(64, hidden, 10)`` and
    sees ``minibatches(..., seed=seed_k)``, so it is the run that a loop over the pairs
    would make, one at a time.

    Args:
        data: a :class:`~lrlib.data.Split` (e.g. ``load_digits()``); copies run on its device.
        lrs, seeds: one rate and one seed per copy (same length).
        steps, batch_size, hidden: the training run.
        optimizer: ``"adam"`` (betas 0.9, 0.999), ``"radam"``, ``"sgd"`` (with ``momentum``),
            ``"schedulefree_adamw"`` or ``"schedulefree_sgd"`` (:class:`BatchedScheduleFree`;
            evaluated at its averaged weights).
        parametrization: ``"sp"`` (PyTorch's defaults, one rate for every weight) or ``"mup"``
            (:func:`lrlib.width.mup_mlp` with its per-layer rates, ``base_width`` the width
            where both are the same model; the hidden layers must share one width).
    """
    if len(lrs) != len(seeds):
        raise ValueError(f"lrs and seeds must have the same length, got {len(lrs)} and {len(seeds)}")
    steps = check_int("steps", steps, minimum=1)
    optimizer_spec(optimizer)
    if parametrization not in ("sp", "mup"):
        raise ValueError(f"parametrization must be 'sp' or 'mup', got {parametrization!r}")
    if parametrization == "mup" and len(set(hidden)) != 1:
        raise ValueError(f"hidden must be one width repeated for 'mup', got {tuple(hidden)}")
    device = data.x_train.device
    members = []
    for seed in seeds:
        torch.manual_seed(int(seed))
        members.append(_digits_mlp(hidden, parametrization, base_width))
    scales = None
    if parametrization == "mup":
        base = _digits_mlp((base_width,) * len(hidden), "mup", base_width)
        by_name = mup_lr_scales(members[0], base, "sgd" if optimizer.endswith("sgd") else "adam")
        scales = [by_name[n] for n, _ in members[0].named_parameters()]
    model = BatchedModel(members).to(device)
    opt = make_optimizer(optimizer, model, lrs, momentum=momentum, scales=scales)
    streams = [minibatches(data.x_train, data.y_train, batch_size, steps=steps, seed=int(s)) for s in seeds]
    rates = np.repeat(np.asarray(lrs, dtype=float)[:, None], steps, axis=1)
    runs = train_copies(model, opt, streams, rates)
    opt.eval()  # schedule-free: evaluate the averaged weights
    val, test = evaluate(model, data.x_val, data.y_val), evaluate(model, data.x_test, data.y_test)
    return BatchedRun(np.asarray(lrs, float), np.asarray(seeds), np.stack([r.losses for r in runs]),
                      val.loss, val.accuracy, test.loss, test.accuracy)


def _digits_mlp(hidden: Sequence[int], parametrization: str, base_width: int) -> nn.Module:
    if parametrization == "sp":
        return MLP(64, tuple(hidden), 10)
    return mup_mlp(hidden[0], base_width=base_width, depth=len(hidden))


def make_optimizer(name: str, model: BatchedModel, lrs: Sequence[float] | np.ndarray, *,
                   momentum: float = 0.9, betas: tuple[float, float] = (0.9, 0.999),
                   weight_decay: float = 0.0,
                   scales: Sequence[float] | None = None) -> _Batched:
    """The batched optimizer called ``name`` (a key of :data:`OPTIMIZERS`) over ``model``'s trainable
    parameters, ``scales`` one factor per such parameter (or None)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return optimizer_spec(name).build_batched(params, lrs, momentum=momentum, betas=betas,
                                              weight_decay=weight_decay, scales=scales)


__all__ = ["OPTIMIZERS", "BatchedAdam", "BatchedAdamW", "BatchedModel", "BatchedRAdam", "BatchedRun",
           "BatchedSGD", "BatchedScheduleFree", "OptimizerSpec", "make_optimizer", "optimizer_spec",
           "train_batched", "train_copies"]
