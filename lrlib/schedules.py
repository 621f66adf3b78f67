"""Learning-rate schedules as pure functions of the step (chapter 4, *Schedules*).

A :class:`Schedule` ``s`` maps a step count ``t`` to a learning rate: ``s(t)`` is
the rate in force after ``t`` calls of ``scheduler.step()``, exactly as
``torch.optim.lr_scheduler`` counts (``s(0)`` is the rate of the first optimizer
step). It works on an int or, vectorised, on a NumPy array of ints::

    >>> s = cosine(0.1, total_steps=100)
    >>> s(0), s(50), round(s(100), 12)
    (0.1, 0.05, 0.0)
    >>> s(np.arange(3)).round(6).tolist()
    [0.1, 0.099975, 0.099901]

``s.attach(optimizer)`` turns it into a real ``LRScheduler``; ``s.plot(T)``
draws it. The factories below, one per schedule, read like the formulas in
their docstrings; :func:`warmup` and :func:`sequential` compose them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes

from lrlib._checks import check_int, check_positive, check_real

Curve = Callable[[np.ndarray], np.ndarray]


class Schedule:
    """A learning-rate schedule: a pure, vectorised function of the step count.

    Build one with a factory (:func:`cosine`, :func:`one_cycle`, ...) rather than directly.

    Args:
        name: the factory's name (for ``repr``).
        curve: maps an int64 array of steps to float64 learning rates.
        params: the factory's arguments (for ``repr``).
        lr: the reference rate that :meth:`attach` scales each param group by.
        last_step: the largest ``t`` the schedule is defined for (None: all ``t >= 0``).
    """

    def __init__(self, name: str, curve: Curve, params: dict[str, Any], lr: float,
                 last_step: int | None = None):
        self.name, self.curve, self.params, self.lr, self.last_step = name, curve, params, lr, last_step

    def __call__(self, t: int | np.ndarray) -> float | np.ndarray:
        steps = np.asarray(t)
        if steps.dtype.kind not in "iu":
            raise TypeError(f"t must be an int or an array of ints, got {steps.dtype} ({t!r})")
        if steps.size and steps.min() < 0:
            raise ValueError(f"t must be >= 0, got {steps.min()}")
        if self.last_step is not None and steps.size and steps.max() > self.last_step:
            raise ValueError(f"{self.name} is defined for t <= {self.last_step}, got t = {steps.max()}")
        flat = np.atleast_1d(steps.astype(np.int64)).ravel()  # curves may index: never 0-d
        values = np.asarray(self.curve(flat), dtype=float).reshape(steps.shape)
        return float(values) if values.ndim == 0 else values

    def attach(self, optimizer: torch.optim.Optimizer, last_epoch: int = -1) -> ScheduleLR:
        """A ``torch.optim.lr_scheduler.LRScheduler`` that puts ``s(t)`` into ``optimizer``.

        The optimizer's rate after ``t`` calls of ``scheduler.step()`` is ``s(t)``
        itself, whatever ``lr`` the optimizer was built with (for :func:`cyclic`,
        built with ``base_lr`` as torch's ``CyclicLR`` users do, the rate still runs
        from ``base_lr`` to ``max_lr``).

        With several param groups, the group whose rate is largest when attached
        follows ``s(t)`` and every other group keeps its ratio to it:
        :math:`\\eta_i(t) = s(t)\\, \\eta_i / \\max_j \\eta_j`. Layer-wise decay
        (:func:`lrlib.param_groups.layerwise_lr_groups`) thus puts the top layer on
        the schedule and each lower layer at its fixed fraction of it.

        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
        >>> sched = cyclic(0.01, 0.1, step_size_up=2).attach(opt)
        >>> rates = []
        >>> for _ in range(3):
        ...     rates.append(round(opt.param_groups[0]["lr"], 3))
        ...     opt.step(); sched.step()
        >>> rates
        [0.01, 0.055, 0.1]
        """
        return ScheduleLR(optimizer, self, last_epoch=last_epoch)

    def plot(self, total_steps: int, ax: Axes | None = None, **line_kwargs: Any) -> Axes:
        """Draw ``s(t)`` for ``t`` in ``[0, total_steps)``; returns the axes."""
        import matplotlib.pyplot as plt

        total_steps = check_int("total_steps", total_steps, minimum=1)
        ax = plt.subplots()[1] if ax is None else ax
        t = np.arange(total_steps)
        ax.plot(t, self(t), **line_kwargs)
        ax.set_xlabel("step $t$ (calls of scheduler.step())")
        ax.set_ylabel(r"learning rate $\eta_t$")
        ax.set_title(self.name)
        return ax

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"


class ScheduleLR(torch.optim.lr_scheduler.LRScheduler):
    """An ``LRScheduler`` driven by a :class:`Schedule` (see :meth:`Schedule.attach`).

    The closed form is evaluated at every step, so nothing accumulates rounding
    errors, and the state is just torch's own (``last_epoch``, ``base_lrs``):
    ``state_dict()`` / ``load_state_dict()`` resume exactly.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule, last_epoch: int = -1):
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be an lrlib Schedule, got {type(schedule).__name__}")
        self.schedule = schedule
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        # base_lrs are the groups' rates when attached; the largest one is the reference
        reference = max(self.base_lrs)
        if not reference > 0:
            raise ValueError(f"optimizer: at least one param group needs a rate > 0 to follow a schedule, "
                             f"got {self.base_lrs}")
        rate = float(self.schedule(int(self.last_epoch)))
        return [rate * base / reference for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        # The schedule is configuration, rebuilt by the caller: keep only torch's counters.
        return {k: v for k, v in super().state_dict().items() if k != "schedule"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the counters and put the saved rates back into the optimizer.

        torch's schedulers leave the optimizer's rates as they are, so loading the
        optimizer's state *before* building the scheduler (which resets the rates to
        ``s(0)``) silently restarts the schedule for one step. This scheduler
        restores the rates itself, so the order does not matter.
        """
        super().load_state_dict(state_dict)
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


# --- argument checks ---------------------------------------------------------------------------

def _lr(name: str, value: float) -> float:
    return check_positive(name, value)


def _steps(name: str, value: int, minimum: int = 1) -> int:
    return check_int(name, value, minimum=minimum)


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _fraction(name: str, value: float, low: float = 0.0, high: float = 1.0) -> float:
    value = check_real(name, value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _floor(name: str, value: float, lr: float) -> float:
    """A lowest rate (min_lr, end_lr): a real number in [0, lr]."""
    value = check_real(name, value)
    if not 0 <= value <= lr:
        raise ValueError(f"{name} must be in [0, lr={lr}], got {value}")
    return value


# --- factories ---------------------------------------------------------------------------------

def constant(lr: float) -> Schedule:
    """:math:`\\eta_t = \\eta`. (torch: no scheduler; Keras: a float learning rate.)

    >>> constant(3e-4)(1000)
    0.0003
    """
    lr = _lr("lr", lr)
    return Schedule("constant", lambda t: np.full(t.shape, lr), {"lr": lr}, lr)


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """Multiply by :math:`\\gamma` every :math:`s` = ``step_size`` steps.

    :math:`\\eta_t = \\eta\\, \\gamma^{\\lfloor t / s \\rfloor}`.

    torch ``StepLR(step_size, gamma)``; Keras ``ExponentialDecay(staircase=True)``.

    >>> s = step_decay(0.1, step_size=10)
    >>> [round(s(t), 6) for t in (0, 9, 10, 25)]
    [0.1, 0.1, 0.01, 0.001]
    """
    lr, step_size = _lr("lr", lr), _steps("step_size", step_size)
    gamma = check_positive("gamma", gamma)
    return Schedule("step_decay", lambda t: lr * gamma ** (t // step_size),
                    {"lr": lr, "step_size": step_size, "gamma": gamma}, lr)


def multistep(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """:math:`\\eta_t = \\eta\\, \\gamma^{k(t)}`, :math:`k(t)` the number of milestones :math:`\\le t`.

    torch ``MultiStepLR(milestones, gamma)``; Keras ``PiecewiseConstantDecay``.

    >>> s = multistep(0.1, milestones=[30, 80])
    >>> [round(s(t), 6) for t in (29, 30, 79, 80)]
    [0.1, 0.01, 0.01, 0.001]
    """
    lr, gamma = _lr("lr", lr), check_positive("gamma", gamma)
    marks = [_steps("milestones", m) for m in milestones]
    if not marks or any(b <= a for a, b in zip(marks, marks[1:])):
        raise ValueError(f"milestones must be a non-empty, strictly increasing list of ints >= 1, "
                         f"got {list(milestones)!r}")
    edges = np.array(marks)
    return Schedule("multistep", lambda t: lr * gamma ** np.searchsorted(edges, t, side="right"),
                    {"lr": lr, "milestones": marks, "gamma": gamma}, lr)


def exponential(lr: float, gamma: float) -> Schedule:
    """:math:`\\eta_t = \\eta\\, \\gamma^t`. torch ``ExponentialLR``; Keras ``ExponentialDecay``.

    >>> round(exponential(0.1, gamma=0.5)(3), 6)
    0.0125
    """
    lr, gamma = _lr("lr", lr), check_positive("gamma", gamma)
    return Schedule("exponential", lambda t: lr * gamma ** t.astype(float), {"lr": lr, "gamma": gamma}, lr)


def inverse_time(lr: float, decay_steps: int, power: float = 1.0) -> Schedule:
    """:math:`\\eta_t = \\eta\\, (1 + t / T_d)^{-p}`: the classical stochastic-approximation decay.

    With ``power`` :math:`p = 1` it is Robbins and Monro's :math:`\\eta_t \\propto 1/t`
    (Keras ``InverseTimeDecay`` with ``decay_rate=1``): :math:`\\sum_t \\eta_t = \\infty` and
    :math:`\\sum_t \\eta_t^2 < \\infty`. With :math:`1/2 < p \\le 1` both conditions hold; with
    :math:`p \\le 1/2` the squares no longer sum. torch: ``LambdaLR`` with this factor.

    Args:
        lr: the rate at step 0.
        decay_steps: :math:`T_d`, the step at which the rate has fallen by :math:`2^p`.
        power: :math:`p > 0`.

    >>> s = inverse_time(0.1, decay_steps=10)
    >>> s(0), s(10), round(s(90), 6)
    (0.1, 0.05, 0.01)
    """
    lr, t_d = _lr("lr", lr), _steps("decay_steps", decay_steps)
    power = check_positive("power", power)
    return Schedule("inverse_time", lambda t: lr * (1.0 + t / t_d) ** -power,
                    {"lr": lr, "decay_steps": t_d, "power": power}, lr)


def cosine(lr: float, total_steps: int, min_lr: float = 0.0) -> Schedule:
    """Half a cosine from :math:`\\eta` down to :math:`\\eta_{min}` over :math:`T` steps, then flat.

    :math:`\\eta_t = \\eta_{min} + (\\eta - \\eta_{min})\\,\\tfrac12\\,(1 + \\cos(\\pi\\, t / T))`
    for :math:`t \\le T`, :math:`\\eta_{min}` after.

    torch ``CosineAnnealingLR(T_max=T, eta_min)`` for :math:`t \\le T` (torch's rate
    rises again after :math:`T`; this one stays at ``min_lr``); Keras ``CosineDecay``.

    >>> s = cosine(1.0, total_steps=4, min_lr=0.2)
    >>> [round(s(t), 4) for t in (0, 2, 4, 9)]
    [1.0, 0.6, 0.2, 0.2]
    """
    lr, T = _lr("lr", lr), _steps("total_steps", total_steps)
    min_lr = _floor("min_lr", min_lr, lr)

    def curve(t: np.ndarray) -> np.ndarray:
        progress = np.minimum(t, T) / T
        return min_lr + (lr - min_lr) * (1 + np.cos(np.pi * progress)) / 2

    return Schedule("cosine", curve, {"lr": lr, "total_steps": T, "min_lr": min_lr}, lr)


def polynomial(lr: float, total_steps: int, power: float = 1.0, end_lr: float = 0.0) -> Schedule:
    """:math:`\\eta_t = \\eta_{end} + (\\eta - \\eta_{end})(1 - \\min(t, T)/T)^p`.

    torch ``PolynomialLR(total_iters=T, power=p)`` when ``end_lr = 0``; Keras
    ``PolynomialDecay``; transformers ``get_polynomial_decay_schedule_with_warmup`` after warmup.

    >>> [polynomial(1.0, 4, power=2.0)(t) for t in (0, 2, 4, 6)]
    [1.0, 0.25, 0.0, 0.0]
    """
    lr, T = _lr("lr", lr), _steps("total_steps", total_steps)
    power = check_positive("power", power)
    end_lr = _floor("end_lr", end_lr, lr)
    return Schedule("polynomial", lambda t: end_lr + (lr - end_lr) * (1 - np.minimum(t, T) / T) ** power,
                    {"lr": lr, "total_steps": T, "power": power, "end_lr": end_lr}, lr)


def cyclic(base_lr: float, max_lr: float, step_size_up: int, step_size_down: int | None = None,
           mode: str = "triangular", gamma: float = 1.0) -> Schedule:
    """Triangular cycles between ``base_lr`` and ``max_lr`` (Smith, 2017).

    With cycle length :math:`C = u + d` (up and down steps), cycle number
    :math:`c = \\lfloor 1 + t/C \\rfloor` and position :math:`x = 1 + t/C - c`:
    the height :math:`h` rises linearly to 1 over the first :math:`u/C` of the cycle
    and falls back to 0; :math:`\\eta_t = \\eta_{base} + (\\eta_{max} - \\eta_{base})\\, h\\, a`,
    with amplitude :math:`a = 1` (``"triangular"``), :math:`2^{1-c}` (``"triangular2"``)
    or :math:`\\gamma^t` (``"exp_range"``).

    torch ``CyclicLR(cycle_momentum=False)``; Keras: none built in.

    >>> s = cyclic(0.1, 1.0, step_size_up=2)
    >>> [round(s(t), 2) for t in range(6)]
    [0.1, 0.55, 1.0, 0.55, 0.1, 0.55]
    """
    base_lr, max_lr = _lr("base_lr", base_lr), _lr("max_lr", max_lr)
    if max_lr < base_lr:
        raise ValueError(f"max_lr must be >= base_lr={base_lr}, got {max_lr}")
    up = _steps("step_size_up", step_size_up)
    down = up if step_size_down is None else _steps("step_size_down", step_size_down)
    mode = _choice("mode", mode, ("triangular", "triangular2", "exp_range"))
    gamma = check_positive("gamma", gamma)
    total = float(up + down)
    ratio = up / total

    def curve(t: np.ndarray) -> np.ndarray:
        cycle = np.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        height = np.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        if mode == "triangular":
            amplitude = 1.0
        elif mode == "triangular2":
            amplitude = 1 / (2.0 ** (cycle - 1))
        else:
            amplitude = gamma ** t.astype(float)
        return base_lr + (max_lr - base_lr) * height * amplitude

    return Schedule("cyclic", curve, {"base_lr": base_lr, "max_lr": max_lr, "step_size_up": up,
                                      "step_size_down": down, "mode": mode, "gamma": gamma}, max_lr)


def one_cycle(max_lr: float, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
              final_div_factor: float = 1e4, anneal: str = "cos", three_phase: bool = False) -> Schedule:
    """The 1cycle policy (Smith & Topin, 2019): up to ``max_lr``, then far below the start.

    Starts at :math:`\\eta_0 = \\eta_{max}/\\text{div\\_factor}`, anneals up to
    :math:`\\eta_{max}` over the first ``pct_start`` of the steps, then down to
    :math:`\\eta_0/\\text{final\\_div\\_factor}`; with ``three_phase`` it first comes back
    down to :math:`\\eta_0` symmetrically, then anneals to the minimum. Each phase
    anneals by cosine, :math:`b + (a - b)(1 + \\cos \\pi p)/2`, or linearly.
    Defined for :math:`0 \\le t \\le T` (torch raises past ``total_steps``).

    torch ``OneCycleLR(cycle_momentum=False)``; fastai ``fit_one_cycle``.

    >>> s = one_cycle(1.0, total_steps=100)
    >>> round(s(0), 4), round(s(29), 4), s(99) < 1e-5
    (0.04, 1.0, True)
    """
    max_lr, T = _lr("max_lr", max_lr), _steps("total_steps", total_steps)
    pct_start = _fraction("pct_start", pct_start)
    div_factor = check_positive("div_factor", div_factor)
    final_div_factor = check_positive("final_div_factor", final_div_factor)
    anneal = _choice("anneal", anneal, ("cos", "linear"))
    initial = max_lr / div_factor
    minimum = initial / final_div_factor
    up_end = float(pct_start * T) - 1
    if three_phase:
        phases = [(up_end, initial, max_lr), (float(2 * pct_start * T) - 2, max_lr, initial),
                  (T - 1, initial, minimum)]
    else:
        phases = [(up_end, initial, max_lr), (T - 1, max_lr, minimum)]
    ends = [0.0] + [end for end, _, _ in phases]
    if any(b <= a for a, b in zip(ends, ends[1:])):
        raise ValueError(f"pct_start={pct_start} with total_steps={T} leaves a phase with no steps: "
                         "every phase needs at least one step")

    def anneal_between(start: float, end: float, pct: np.ndarray) -> np.ndarray:
        if anneal == "cos":
            return end + (start - end) / 2.0 * (np.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def curve(t: np.ndarray) -> np.ndarray:
        out = np.empty(t.shape)
        start_step = 0.0
        done = np.zeros(t.shape, dtype=bool)
        for i, (end_step, a, b) in enumerate(phases):
            here = ~done & ((t <= end_step) | (i == len(phases) - 1))
            out[here] = anneal_between(a, b, (t[here] - start_step) / (end_step - start_step))
            done |= here
            start_step = end_step
        return out

    return Schedule("one_cycle", curve, {"max_lr": max_lr, "total_steps": T, "pct_start": pct_start,
                                         "div_factor": div_factor, "final_div_factor": final_div_factor,
                                         "anneal": anneal, "three_phase": three_phase}, max_lr,
                    last_step=T)


def sgdr(lr: float, T_0: int, T_mult: int = 1, min_lr: float = 0.0) -> Schedule:  # noqa: N803
    """Cosine annealing with warm restarts (Loshchilov & Hutter, 2017).

    Cycle :math:`i` lasts :math:`T_i = T_0\\, T_{mult}^i` steps; within it, at position
    :math:`T_{cur}`,
    :math:`\\eta_t = \\eta_{min} + (\\eta - \\eta_{min})\\,\\tfrac12(1 + \\cos(\\pi T_{cur}/T_i))`,
    and at the end of a cycle the rate jumps back to :math:`\\eta`.

    torch ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)``; Keras ``CosineDecayRestarts``.

    >>> s = sgdr(1.0, T_0=2, T_mult=2)
    >>> [round(s(t), 3) for t in range(7)]
    [1.0, 0.5, 1.0, 0.854, 0.5, 0.146, 1.0]
    """
    lr, T_0, T_mult = _lr("lr", lr), _steps("T_0", T_0), _steps("T_mult", T_mult)
    min_lr = _floor("min_lr", min_lr, lr)

    def curve(t: np.ndarray) -> np.ndarray:
        if T_mult == 1:
            t_cur, t_i = t % T_0, np.full(t.shape, T_0)
        else:
            starts = [0]  # integer cycle starts, up to past the largest t asked for
            while starts[-1] <= (t.max() if t.size else 0):
                starts.append(starts[-1] + T_0 * T_mult ** (len(starts) - 1))
            cycle = np.searchsorted(np.array(starts), t, side="right") - 1
            t_cur = t - np.array(starts)[cycle]
            t_i = T_0 * np.power(T_mult, cycle).astype(float)
        return min_lr + (lr - min_lr) * (1 + np.cos(np.pi * t_cur / t_i)) / 2

    return Schedule("sgdr", curve, {"lr": lr, "T_0": T_0, "T_mult": T_mult, "min_lr": min_lr}, lr)


def _warmup_factor(t: np.ndarray, warmup_steps: int) -> np.ndarray:
    return t / max(1, warmup_steps)


def slanted_triangular(lr: float, total_steps: int, cut_frac: float = 0.1, ratio: float = 32.0) -> Schedule:
    """ULMFiT's slanted triangular rate (Howard & Ruder, 2018, eq. 3): a short linear climb, a long
    linear descent.

    With :math:`c = \\lfloor T \\cdot \\text{cut\\_frac} \\rfloor`,
    :math:`p = t/c` for :math:`t < c` and :math:`p = 1 - (t - c)/(c\\,(1/\\text{cut\\_frac} - 1))`
    after, :math:`\\eta_t = \\eta\\,(1 + p\\,(\\text{ratio} - 1))/\\text{ratio}`: from
    :math:`\\eta/\\text{ratio}` up to :math:`\\eta` at step :math:`c` (at least 1), back down
    to :math:`\\eta/\\text{ratio}` by :math:`T`, and held there (when :math:`T \\cdot
    \\text{cut\\_frac}` is not whole the descent ends a step or so early). The paper uses
    ``cut_frac=0.1``, ``ratio=32``.

    >>> s = slanted_triangular(32.0, total_steps=20, cut_frac=0.1, ratio=32)
    >>> [round(s(t), 2) for t in (0, 1, 2, 11, 20)]
    [1.0, 16.5, 32.0, 16.5, 1.0]
    """
    lr, T = _lr("lr", lr), _steps("total_steps", total_steps)
    cut_frac = _fraction("cut_frac", cut_frac)
    if not 0 < cut_frac < 1:
        raise ValueError(f"cut_frac must be in (0, 1), got {cut_frac}")
    if not ratio >= 1:
        raise ValueError(f"ratio must be >= 1, got {ratio}")
    cut = max(1, math.floor(T * cut_frac))

    def curve(t: np.ndarray) -> np.ndarray:
        p = np.where(t < cut, t / cut, 1 - (t - cut) / (cut * (1 / cut_frac - 1)))
        return lr * (1 + np.maximum(p, 0.0) * (ratio - 1)) / ratio

    return Schedule("slanted_triangular", curve,
                    {"lr": lr, "total_steps": T, "cut_frac": cut_frac, "ratio": ratio}, lr)


def warmup_constant(lr: float, warmup_steps: int) -> Schedule:
    """Linear warmup from 0 to :math:`\\eta` over :math:`W` steps, then :math:`\\eta` for good.

    :math:`\\eta_t = \\eta \\min(1, t/W)`: transformers
    ``get_constant_schedule_with_warmup``; torch ``LinearLR(start_factor, 1, W)`` from a
    tiny start. What a schedule-free optimizer is given: a warmup, and no decay.

    >>> s = warmup_constant(1.0, warmup_steps=4)
    >>> [s(t) for t in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    lr, W = _lr("lr", lr), _steps("warmup_steps", warmup_steps, 0)

    def curve(t: np.ndarray) -> np.ndarray:
        return lr * np.minimum(1.0, _warmup_factor(t, W)) if W else np.full_like(t, lr, dtype=float)

    return Schedule("warmup_constant", curve, {"lr": lr, "warmup_steps": W}, lr)


def warmup_linear(lr: float, warmup_steps: int, total_steps: int) -> Schedule:
    """Linear warmup from 0 to :math:`\\eta` over :math:`W` steps, then linear decay to 0 at :math:`T`.

    :math:`\\eta_t = \\eta\\, t/W` for :math:`t < W`, then
    :math:`\\eta \\max(0, (T - t)/(T - W))`. transformers
    ``get_linear_schedule_with_warmup``; torch ``SequentialLR(LinearLR, LinearLR)``.

    >>> s = warmup_linear(1.0, warmup_steps=2, total_steps=6)
    >>> [s(t) for t in range(8)]
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    lr, W, T = _lr("lr", lr), _steps("warmup_steps", warmup_steps, 0), _steps("total_steps", total_steps)
    if W > T:
        raise ValueError(f"warmup_steps must be <= total_steps={T}, got {W}")

    def curve(t: np.ndarray) -> np.ndarray:
        decay = np.maximum(0.0, (T - t) / max(1, T - W))
        return lr * np.where(t < W, _warmup_factor(t, W), decay)

    return Schedule("warmup_linear", curve, {"lr": lr, "warmup_steps": W, "total_steps": T}, lr)


def warmup_cosine(lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> Schedule:
    """Linear warmup over :math:`W` steps, then a half cosine down to :math:`\\eta_{min}` at :math:`T`.

    With :math:`p = (t - W)/(T - W)` and :math:`r = \\eta_{min}/\\eta`, after warmup
    :math:`\\eta_t = \\eta \\max(0, r + (1 - r)\\tfrac12(1 + \\cos \\pi p))`. Exactly
    transformers' ``get_cosine_schedule_with_warmup`` (``min_lr = 0``) and
    ``get_cosine_with_min_lr_schedule_with_warmup(min_lr=...)``, including past :math:`T`,
    where the cosine rises again, as theirs does; Keras ``CosineDecay(warmup_steps=...)``.

    >>> s = warmup_cosine(1.0, warmup_steps=2, total_steps=6)
    >>> [round(s(t), 3) for t in range(7)]
    [0.0, 0.5, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    lr, W, T = _lr("lr", lr), _steps("warmup_steps", warmup_steps, 0), _steps("total_steps", total_steps)
    if W > T:
        raise ValueError(f"warmup_steps must be <= total_steps={T}, got {W}")
    min_lr = _floor("min_lr", min_lr, lr)
    rate = min_lr / lr

    def curve(t: np.ndarray) -> np.ndarray:
        progress = (t - W) / max(1, T - W)
        factor = 0.5 * (1.0 + np.cos(math.pi * 0.5 * 2.0 * progress))
        return lr * np.where(t < W, _warmup_factor(t, W), np.maximum(0, factor * (1 - rate) + rate))

    return Schedule("warmup_cosine", curve,
                    {"lr": lr, "warmup_steps": W, "total_steps": T, "min_lr": min_lr}, lr)


def inverse_sqrt(d_model: int, warmup_steps: int, scale: float = 1.0) -> Schedule:
    """The Transformer paper's schedule (Vaswani et al., 2017):
    :math:`\\eta = s\\, d^{-1/2} \\min(n^{-1/2},\\, n\\, W^{-3/2})` at update number :math:`n = t + 1`.

    It rises linearly for :math:`W` steps, peaks at :math:`s/\\sqrt{d W}`, then decays
    as :math:`1/\\sqrt{n}`. The paper counts updates from 1, so :math:`n = t + 1`. torch:
    ``LambdaLR`` with this formula (optimizer lr 1); transformers'
    ``get_inverse_sqrt_schedule`` is a different formula with no :math:`d`.

    >>> s = inverse_sqrt(d_model=512, warmup_steps=4000)
    >>> round(s(3999) * 1e3, 4), s(0) < s(3999) > s(20000)
    (0.6988, True)
    """
    d = _steps("d_model", d_model)
    W = _steps("warmup_steps", warmup_steps)
    scale = check_positive("scale", scale)

    def curve(t: np.ndarray) -> np.ndarray:
        n = t + 1.0
        return scale * d**-0.5 * np.minimum(n**-0.5, n * W**-1.5)

    # its reference rate is 1.0 (the paper writes the schedule as a LambdaLR factor on lr 1.0)
    return Schedule("inverse_sqrt", curve, {"d_model": d, "warmup_steps": W, "scale": scale}, 1.0)


def wsd(lr: float, warmup_steps: int, stable_steps: int, decay_steps: int, min_lr: float = 0.0,
        decay: str = "linear", warmup_shape: str = "linear") -> Schedule:
    """Warmup-stable-decay: warm up for :math:`W` steps, hold for :math:`S`, decay for :math:`D`.

    With :math:`r = \\eta_{min}/\\eta` and progress :math:`p` within a phase, each shaped
    phase is :math:`\\eta\\,(r + (1 - r) f(p))`: warmup :math:`f = p`
    (``"linear"``), :math:`\\tfrac12(1 - \\cos \\pi p)` (``"cosine"``) or
    :math:`1 - \\sqrt{1 - p}` (``"1-sqrt"``); decay :math:`f = 1 - p`,
    :math:`\\tfrac12(1 + \\cos \\pi p)` or :math:`1 - \\sqrt{p}`. After the decay the
    rate stays at :math:`\\eta_{min}`. Exactly transformers' ``get_wsd_schedule``
    (``min_lr_ratio = r``). The stable phase is what lets a run be extended:
    resume from any stable checkpoint and decay later.

    >>> s = wsd(1.0, warmup_steps=2, stable_steps=2, decay_steps=2)
    >>> [s(t) for t in range(8)]
    [0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
    """
    lr = _lr("lr", lr)
    W = _steps("warmup_steps", warmup_steps, 0)
    S = _steps("stable_steps", stable_steps, 0)
    D = _steps("decay_steps", decay_steps, 0)
    min_lr = _floor("min_lr", min_lr, lr)
    shapes = ("linear", "cosine", "1-sqrt")
    decay = _choice("decay", decay, shapes)
    warmup_shape = _choice("warmup_shape", warmup_shape, shapes)
    r = min_lr / lr

    def curve(t: np.ndarray) -> np.ndarray:
        p_up = t / max(1, W)
        up = {"linear": lambda p: p, "cosine": lambda p: 0.5 * (1.0 - np.cos(math.pi * p)),
              "1-sqrt": lambda p: 1.0 - np.sqrt(np.clip(1.0 - p, 0, None))}[warmup_shape](p_up)
        p_down = (t - W - S) / max(1, D)
        down = {"linear": lambda p: 1.0 - p,
                "cosine": lambda p: 0.5 * (1.0 + np.cos(math.pi * 0.5 * 2.0 * p)),
                "1-sqrt": lambda p: 1.0 - np.sqrt(np.clip(p, 0, None))}[decay](p_down)
        factor = np.select([t < W, t < W + S, t < W + S + D],
                           [np.maximum(0.0, up * (1.0 - r) + r), 1.0, np.maximum(0.0, down * (1.0 - r) + r)],
                           default=r)
        return lr * factor

    return Schedule("wsd", curve, {"lr": lr, "warmup_steps": W, "stable_steps": S, "decay_steps": D,
                                   "min_lr": min_lr, "decay": decay, "warmup_shape": warmup_shape}, lr)


# --- combinators -------------------------------------------------------------------------------

def warmup(schedule: Schedule, warmup_steps: int, start_factor: float = 0.0) -> Schedule:
    """Put a linear warmup in front of a schedule.

    For :math:`t < W`, :math:`\\eta_t = s(0)\\,(f + (1 - f)\\, t/W)` with start factor
    :math:`f`; then :math:`\\eta_t = s(t - W)`: the schedule starts afresh after the
    warmup, as with torch's ``SequentialLR([LinearLR(start_factor=f, total_iters=W), ...],
    milestones=[W])`` (torch needs :math:`f > 0`).

    >>> s = warmup(constant(1.0), warmup_steps=4, start_factor=0.2)
    >>> [round(s(t), 2) for t in range(6)]
    [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be an lrlib Schedule, got {type(schedule).__name__}")
    W = _steps("warmup_steps", warmup_steps)
    f = _fraction("start_factor", start_factor)
    peak = schedule(0)

    def curve(t: np.ndarray) -> np.ndarray:
        out = peak * (f + (1 - f) * np.minimum(t, W) / W)
        after = t >= W
        if after.any():
            out[after] = schedule(t[after] - W)
        return out

    last = None if schedule.last_step is None else schedule.last_step + W
    return Schedule("warmup", curve, {"schedule": schedule, "warmup_steps": W, "start_factor": f},
                    schedule.lr, last_step=last)


def sequential(schedules: Sequence[Schedule], milestones: Sequence[int]) -> Schedule:
    """Run schedules one after another: the :math:`k`-th takes over at milestone :math:`k`
    and starts from its own step 0, as torch's ``SequentialLR`` does.

    >>> s = sequential([constant(1.0), exponential(1.0, gamma=0.5)], milestones=[2])
    >>> [s(t) for t in range(5)]
    [1.0, 1.0, 1.0, 0.5, 0.25]
    """
    parts = list(schedules)
    if not parts or not all(isinstance(p, Schedule) for p in parts):
        raise TypeError("schedules must be a non-empty list of lrlib Schedules")
    marks = [_steps("milestones", m) for m in milestones]
    if len(marks) != len(parts) - 1 or any(b <= a for a, b in zip(marks, marks[1:])):
        raise ValueError(f"milestones must be {len(parts) - 1} strictly increasing ints >= 1 "
                         f"(one fewer than schedules), got {list(milestones)!r}")
    starts = np.array([0] + marks)

    def curve(t: np.ndarray) -> np.ndarray:
        which = np.searchsorted(starts, t, side="right") - 1
        out = np.empty(t.shape)
        for k, part in enumerate(parts):
            here = which == k
            if here.any():
                out[here] = part(t[here] - starts[k])
        return out

    last = parts[-1].last_step
    return Schedule("sequential", curve, {"schedules": parts, "milestones": marks}, parts[0].lr,
                    last_step=None if last is None else last + marks[-1])


__all__ = ["Schedule", "ScheduleLR", "constant", "step_decay", "multistep", "exponential", "inverse_time",
           "cosine", "polynomial", "cyclic", "one_cycle", "sgdr", "slanted_triangular", "warmup_constant",
           "warmup_linear", "warmup_cosine", "inverse_sqrt", "wsd", "warmup", "sequential"]
