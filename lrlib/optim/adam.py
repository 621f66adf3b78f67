"""Adam and AdamW (chapter 3): momentum, a per-parameter scale, and where weight decay goes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from lrlib.optim._base import StepByStep, check_betas, check_lr, check_nonnegative


class Adam(StepByStep):
    """Adam written out, step for step as ``torch.optim.Adam`` (Kingma & Ba, 2015).

    .. math::

        g_t &\\leftarrow g_t + \\lambda\\,\\theta_{t-1}
            &&\\text{(L2; AdamW decays } \\theta \\text{ instead)}\\\\
        m_t &= \\beta_1 m_{t-1} + (1 - \\beta_1)\\, g_t  &&\\text{(first moment)}\\\\
        v_t &= \\beta_2 v_{t-1} + (1 - \\beta_2)\\, g_t^2  &&\\text{(second moment)}\\\\
        \\hat v_t &= \\max(\\hat v_{t-1}, v_t) \\text{ if amsgrad, else } v_t\\\\
        \\theta_t &= \\theta_{t-1} - \\frac{\\eta}{1 - \\beta_1^t}\\,
            \\frac{m_t}{\\sqrt{\\hat v_t} / \\sqrt{1 - \\beta_2^t} + \\epsilon}

    The factors :math:`1 - \\beta^t` undo the zero start of :math:`m` and :math:`v`
    (*bias correction*). Because :math:`|m_t| \\lesssim \\sqrt{v_t}`, each coordinate
    moves by at most about :math:`\\eta` per step, whatever the scale of the loss.

    Args:
        params: parameters or param groups.
        lr: :math:`\\eta` (default 1e-3). betas: :math:`(\\beta_1, \\beta_2)`, each in [0, 1)
            (default (0.9, 0.999)). eps: :math:`\\epsilon` (default 1e-8).
        weight_decay: :math:`\\lambda`, an L2 penalty added to the gradient (default 0).
        amsgrad: keep the running maximum of :math:`v` (Reddi et al., 2018).
        maximize: ascend instead of descend.
        decoupled_weight_decay: decay the weights directly, as :class:`AdamW`.

    Example: the first step moves each coordinate by lr, whatever its gradient:
        >>> p = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
        >>> opt = Adam([p], lr=0.1); p.grad = torch.tensor([1e-3, 1e3]); opt.step()
        >>> [round(v, 4) for v in p.tolist()]
        [0.9, 0.9]
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 maximize: bool = False, decoupled_weight_decay: bool = False):
        defaults = dict(lr=check_lr(lr), betas=check_betas(betas), eps=check_nonnegative("eps", eps),
                        weight_decay=check_nonnegative("weight_decay", weight_decay),
                        amsgrad=bool(amsgrad), maximize=bool(maximize),
                        decoupled_weight_decay=bool(decoupled_weight_decay))
        super().__init__(params, defaults)

    def update(self, p, g, group, state):
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = state["step"]
        if not group["decoupled_weight_decay"]:
            g = self.l2(g, p, group)
        elif wd != 0:
            p.mul_(1 - lr * wd)
        m = state["exp_avg"].lerp_(g, 1 - beta1)
        v = state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        step_size = lr / (1 - beta1**t)
        denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(eps)
        p.addcdiv_(m, denom, value=-step_size)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``.

    The only change from :class:`Adam`: instead of adding :math:`\\lambda\\theta` to the
    gradient (where Adam's scaling would shrink it), every step first multiplies the
    weights by :math:`1 - \\eta\\lambda`. The decay per step is therefore
    :math:`\\eta\\lambda`: change the learning rate and you change the decay too.

    Args:
        as :class:`Adam`, but ``weight_decay`` defaults to 1e-2.

    Example (zero gradient: only the decay acts, 1 - 0.1 * 0.5 = 0.95):
        >>> p = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = AdamW([p], lr=0.1, weight_decay=0.5); p.grad = torch.zeros(1); opt.step()
        >>> round(p.item(), 4)
        0.95
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True)
