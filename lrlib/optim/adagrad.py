"""Adagrad: a per-parameter learning rate that only ever shrinks (chapter 3)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from lrlib.optim._base import StepByStep, check_lr, check_nonnegative


class Adagrad(StepByStep):
    """Adagrad written out, step for step as ``torch.optim.Adagrad``.

    .. math::

        g_t &\\leftarrow g_t + \\lambda\\,\\theta_{t-1}\\\\
        \\tilde\\eta_t &= \\eta / (1 + (t - 1)\\,\\delta)  &&\\text{(lr decay } \\delta)\\\\
        s_t &= s_{t-1} + g_t^2  &&(s_0 = \\text{initial\\_accumulator\\_value})\\\\
        \\theta_t &= \\theta_{t-1} - \\tilde\\eta_t\\, g_t / (\\sqrt{s_t} + \\epsilon)

    Each coordinate's step is divided by the root of the sum of all its past squared
    gradients, so coordinates with large gradients slow down for good.

    Args:
        params: parameters or param groups.
        lr: :math:`\\eta` (default 1e-2). lr_decay: :math:`\\delta` (default 0).
        weight_decay: :math:`\\lambda` (default 0). initial_accumulator_value: :math:`s_0` (default 0).
        eps: :math:`\\epsilon` (default 1e-10). maximize: ascend instead of descend.

    Example: the first step moves every coordinate by almost exactly lr:
        >>> p = torch.nn.Parameter(torch.tensor([1.0, -3.0]))
        >>> opt = Adagrad([p], lr=0.1); p.grad = torch.tensor([0.5, -20.0]); opt.step()
        >>> [round(v, 4) for v in p.tolist()]
        [0.9, -2.9]
    """

    def __init__(self, params: Iterable, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, *, maximize: bool = False):
        defaults = dict(lr=check_lr(lr), lr_decay=check_nonnegative("lr_decay", lr_decay),
                        weight_decay=check_nonnegative("weight_decay", weight_decay),
                        initial_accumulator_value=check_nonnegative(
                            "initial_accumulator_value", initial_accumulator_value),
                        eps=check_nonnegative("eps", eps), maximize=bool(maximize))
        super().__init__(params, defaults)
        for group in self.param_groups:  # torch creates the state eagerly too
            for p in group["params"]:
                self.state[p]["step"] = 0
                self.state[p]["sum"] = torch.full_like(
                    p, group["initial_accumulator_value"], memory_format=torch.preserve_format)

    def update(self, p, g, group, state):
        state["step"] += 1
        g = self.l2(g, p, group)
        lr_t = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"].addcmul_(g, g, value=1)
        std = state["sum"].sqrt().add_(group["eps"])
        p.addcdiv_(g, std, value=-lr_t)
