"""What the optimizers share: argument checks and the step loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from lrlib._checks import check_nonnegative, check_unit_interval

__all__ = ["StepByStep", "check_betas", "check_lr", "check_nonnegative", "check_unit_interval"]


def check_lr(lr: float) -> float:
    return check_nonnegative("lr", lr)


def check_betas(betas: Sequence[float]) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return (check_unit_interval("betas[0]", betas[0]), check_unit_interval("betas[1]", betas[1]))


class StepByStep(torch.optim.Optimizer):
    """The loop every optimizer here shares; subclasses write only :meth:`update`.

    ``step()`` evaluates the closure, then calls ``update(p, g, group, state)`` for
    every parameter that has a gradient, with ``g`` already negated under
    ``maximize``. :meth:`l2` adds the L2 penalty :math:`\\lambda\\theta` to it.
    """

    def update(self, p: torch.Tensor, g: torch.Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        raise NotImplementedError

    @staticmethod
    def l2(g: torch.Tensor, p: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        return g.add(p, alpha=group["weight_decay"]) if group["weight_decay"] != 0 else g

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    g = -p.grad if group["maximize"] else p.grad
                    self.update(p, g, group, self.state[p])
        return loss
