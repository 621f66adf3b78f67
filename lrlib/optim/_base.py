"""Argument checks shared by the optimizers, named and worded as torch.optim's."""

from __future__ import annotations

import math
from collections.abc import Sequence


def check_lr(lr: float) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"Invalid learning rate: lr must be a finite number >= 0, got {lr!r}")
    return float(lr)


def check_nonnegative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"Invalid {name}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_unit_interval(name: str, value: float) -> float:
    """A number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"Invalid {name}: {name} must be in [0, 1), got {value!r}")
    return float(value)


def check_betas(betas: Sequence[float]) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid betas: betas must be a pair (beta1, beta2), got {betas!r}")
    return (check_unit_interval("betas[0]", betas[0]), check_unit_interval("betas[1]", betas[1]))
