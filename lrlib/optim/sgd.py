"""Stochastic gradient descent, with momentum and Nesterov momentum (chapter 3)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from lrlib.optim._base import StepByStep, check_lr, check_nonnegative


class SGD(StepByStep):
    """SGD written out, step for step as ``torch.optim.SGD``.

    With gradient :math:`g_t`, learning rate :math:`\\eta`, momentum :math:`\\mu`,
    dampening :math:`\\tau` and weight decay :math:`\\lambda`:

    .. math::

        g_t &\\leftarrow g_t + \\lambda\\,\\theta_{t-1}  &&\\text{(weight decay, L2)}\\\\
        b_t &= \\begin{cases} g_t & t = 1 \\\\ \\mu\\, b_{t-1} + (1 - \\tau)\\, g_t & t > 1 \\end{cases}
            &&\\text{(momentum buffer)}\\\\
        d_t &= g_t + \\mu\\, b_t \\text{ if nesterov, else } b_t\\\\
        \\theta_t &= \\theta_{t-1} - \\eta\\, d_t

    Without momentum :math:`d_t = g_t`: the update rule of chapter 1.

    Args:
        params: parameters or param groups.
        lr: learning rate :math:`\\eta` (default 1e-3, as torch).
        momentum: :math:`\\mu` (default 0).
        dampening: :math:`\\tau` (default 0).
        weight_decay: :math:`\\lambda`, an L2 penalty added to the gradient (default 0).
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
        maximize: ascend instead of descend.

    Example, steps -> parameter for :math:`L = \\theta^2/2` (so :math:`g = \\theta`), lr 0.1, momentum 0.9:
        >>> p = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = SGD([p], lr=0.1, momentum=0.9)
        >>> for _ in range(3):
        ...     p.grad = p.detach().clone(); opt.step()
        >>> round(p.item(), 4)
        0.486
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False):
        defaults = dict(lr=check_lr(lr), momentum=check_nonnegative("momentum", momentum),
                        dampening=float(dampening),
                        weight_decay=check_nonnegative("weight_decay", weight_decay),
                        nesterov=bool(nesterov), maximize=bool(maximize))
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Invalid nesterov: Nesterov momentum requires momentum > 0 and dampening = 0, "
                             f"got momentum={momentum!r}, dampening={dampening!r}")
        super().__init__(params, defaults)

    def update(self, p, g, group, state):
        g = self.l2(g, p, group)
        mu = group["momentum"]
        if mu != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.clone(g).detach()
            else:
                state["momentum_buffer"].mul_(mu).add_(g, alpha=1 - group["dampening"])
            b = state["momentum_buffer"]
            g = g.add(b, alpha=mu) if group["nesterov"] else b
        p.add_(g, alpha=-group["lr"])
