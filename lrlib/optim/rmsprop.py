"""RMSprop: divide by a running root-mean-square of the gradient (chapter 3)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from lrlib.optim._base import StepByStep, check_lr, check_nonnegative, check_unit_interval


class RMSprop(StepByStep):
    """RMSprop written out, step for step as ``torch.optim.RMSprop``.

    .. math::

        g_t &\\leftarrow g_t + \\lambda\\,\\theta_{t-1}\\\\
        v_t &= \\alpha\\, v_{t-1} + (1 - \\alpha)\\, g_t^2\\\\
        \\bar g_t &= \\alpha\\, \\bar g_{t-1} + (1 - \\alpha)\\, g_t,\\quad
            \\tilde v_t = v_t - \\bar g_t^2 \\quad\\text{(centered only; else } \\tilde v_t = v_t)\\\\
        b_t &= \\mu\\, b_{t-1} + g_t / (\\sqrt{\\tilde v_t} + \\epsilon),\\quad
            \\theta_t = \\theta_{t-1} - \\eta\\, b_t \\quad\\text{(with momentum } \\mu > 0)\\\\
        \\theta_t &= \\theta_{t-1} - \\eta\\, g_t / (\\sqrt{\\tilde v_t} + \\epsilon)
            \\quad\\text{(without)}

    Unlike Adagrad the average forgets: :math:`1/(1-\\alpha)` steps is its memory.

    Args:
        params: parameters or param groups.
        lr: :math:`\\eta` (default 1e-2). alpha: :math:`\\alpha` in [0, 1) (default 0.99).
        eps: :math:`\\epsilon` (default 1e-8). weight_decay: :math:`\\lambda` (default 0).
        momentum: :math:`\\mu` (default 0). centered: subtract the squared mean gradient.
        maximize: ascend instead of descend.

    Example (first step: :math:`v_1 = 0.01 g^2`, so the step is :math:`\\eta g/(0.1|g|) = 10\\eta`):
        >>> p = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = RMSprop([p], lr=0.01); p.grad = torch.tensor([2.0]); opt.step()
        >>> round(p.item(), 4)
        0.9
    """

    def __init__(self, params: Iterable, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 maximize: bool = False):
        defaults = dict(lr=check_lr(lr), alpha=check_unit_interval("alpha", alpha),
                        eps=check_nonnegative("eps", eps),
                        weight_decay=check_nonnegative("weight_decay", weight_decay),
                        momentum=check_nonnegative("momentum", momentum), centered=bool(centered),
                        maximize=bool(maximize))
        super().__init__(params, defaults)

    def update(self, p, g, group, state):
        alpha, mu = group["alpha"], group["momentum"]
        if not state:
            state["step"] = 0
            state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if mu > 0:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["centered"]:
                state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        g = self.l2(g, p, group)
        v = state["square_avg"].mul_(alpha).addcmul_(g, g, value=1 - alpha)
        if group["centered"]:
            g_bar = state["grad_avg"].lerp_(g, 1 - alpha)
            denom = v.addcmul(g_bar, g_bar, value=-1).sqrt_()
        else:
            denom = v.sqrt()
        denom = denom.add_(group["eps"])
        if mu > 0:
            b = state["momentum_buffer"].mul_(mu).addcdiv_(g, denom)
            p.add_(b, alpha=-group["lr"])
        else:
            p.addcdiv_(g, denom, value=-group["lr"])
