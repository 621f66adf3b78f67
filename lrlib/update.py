"""The update rule, bare (chapter 1, *The update rule*).

Gradient descent changes every parameter by the same recipe:

.. math::

    \\theta_{t+1} = \\theta_t - \\eta \\, g_t, \\qquad g_t = \\nabla L(\\theta_t),

with :math:`\\theta` the parameters, :math:`\\eta` the learning rate and
:math:`g` the gradient of the loss :math:`L`. This module holds the rule itself
(:func:`sgd_step`), a loop around it (:func:`descend`) and a way to measure how
big one step of a real optimizer is relative to the weights
(:func:`relative_update_sizes`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from lrlib._checks import check_int, check_positive

Array = TypeVar("Array", float, np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class WorkedExample:
    """One update written out by hand: ``theta_new = theta - lr * grad``."""

    theta: float
    grad: float
    lr: float
    theta_new: float


#: The course's first example (from the notes it grew from): a weight of 0.90
#: whose gradient is -0.4, updated with learning rate 0.1, becomes
#: 0.90 - 0.1 * (-0.4) = 0.94. The gradient is negative, so the loss falls as the
#: weight grows, and the step moves the weight up.
WORKED_EXAMPLE = WorkedExample(theta=0.90, grad=-0.4, lr=0.1, theta_new=0.94)


def _shape(x: object) -> tuple[int, ...]:
    return tuple(np.shape(x)) if not isinstance(x, torch.Tensor) else tuple(x.shape)


def sgd_step(theta: Array, grad: Array, lr: float) -> Array:
    """One step of plain gradient descent: :math:`\\theta - \\eta g`.

    Works on Python floats, NumPy arrays and torch tensors; it returns a new
    value and never modifies ``theta`` in place.

    Args:
        theta: current parameter value(s).
        grad: gradient of the loss at ``theta``; same shape and kind as ``theta``.
        lr: the learning rate :math:`\\eta`, a finite number > 0.

    Returns:
        The updated parameter(s), of the same kind as ``theta``.

    Raises:
        ValueError: ``lr`` is not > 0 or not finite; ``grad``'s shape differs from ``theta``'s.
        TypeError: ``theta`` and ``grad`` mix NumPy and torch, or ``lr`` is not a number.

    Example (the worked example, :data:`WORKED_EXAMPLE`):
        >>> round(sgd_step(0.90, -0.4, lr=0.1), 12)
        0.94
        >>> sgd_step(np.array([1.0, -2.0]), np.array([0.5, 0.5]), lr=0.1)
        array([ 0.95, -2.05])
    """
    lr = check_positive("lr", lr)
    if isinstance(theta, torch.Tensor) != isinstance(grad, torch.Tensor):
        raise TypeError(
            "theta and grad must both be torch tensors or both not, got "
            f"{type(theta).__name__} and {type(grad).__name__}"
        )
    if _shape(theta) != _shape(grad):
        raise ValueError(
            f"grad must have the shape of theta {_shape(theta)}, got shape {_shape(grad)}"
        )
    if isinstance(theta, torch.Tensor):
        return theta - lr * grad
    if np.ndim(theta) == 0 and not isinstance(theta, np.ndarray):
        return float(theta) - lr * float(grad)
    return np.asarray(theta, dtype=float) - lr * np.asarray(grad, dtype=float)


def descend(
    grad_fn: Callable[[np.ndarray], np.ndarray], theta0: float | Sequence[float], lr: float, steps: int
) -> np.ndarray:
    """Run :func:`sgd_step` ``steps`` times from ``theta0`` and return every iterate.

    Args:
        grad_fn: maps a parameter vector (NumPy array) to its gradient.
        theta0: the starting point, a number or a vector.
        lr: the learning rate :math:`\\eta` (> 0).
        steps: how many updates to take (>= 0).

    Returns:
        An array of shape ``(steps + 1, *theta0.shape)``: row ``t`` is :math:`\\theta_t`,
        row 0 is ``theta0``. Once an iterate overflows to inf or NaN the remaining rows
        are NaN (the run diverged), without a flood of warnings.

    Example, :math:`L(\\theta) = \\theta^2` so :math:`g = 2\\theta` and
    :math:`\\theta_t = (1 - 2\\eta)^t \\theta_0`:
        >>> descend(lambda th: 2 * th, 1.0, lr=0.25, steps=3)
        array([1.   , 0.5  , 0.25 , 0.125])
    """
    lr = check_positive("lr", lr)
    steps = check_int("steps", steps, minimum=0)
    shape = np.shape(theta0)
    # 1-D internally: NumPy turns 0-d arrays into scalars, whose overflow raises instead of giving inf
    theta = np.atleast_1d(np.asarray(theta0, dtype=float)).copy()
    path = np.full((steps + 1, theta.size), np.nan)
    path[0] = theta.ravel()
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            try:
                grad = np.asarray(grad_fn(theta.reshape(shape) if shape else theta), dtype=float)
                theta = sgd_step(theta, grad.reshape(theta.shape), lr)
            except OverflowError:
                break
            if not np.all(np.isfinite(theta)):
                break
            path[t + 1] = theta.ravel()
    return path.reshape(steps + 1, *shape)


def global_norm(tensors: Iterable[torch.Tensor]) -> float:
    """The Euclidean norm of several tensors taken as one long vector, :math:`\\|\\theta\\|_2`."""
    total = sum(float(t.detach().double().pow(2).sum()) for t in tensors)
    return float(np.sqrt(total))


def relative_update_sizes(
    model: torch.nn.Module,
    make_optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> np.ndarray:
    """How big each optimizer step is relative to the weights.

    Trains a *copy* of ``model`` (the model you pass is left untouched), one
    step per batch, and records for step ``t``

    .. math::

        r_t = \\frac{\\|\\theta_{t+1} - \\theta_t\\|_2}{\\|\\theta_t\\|_2},

    with the norms taken over all parameters at once (:func:`global_norm`).
    For SGD, :math:`r_t = \\eta \\|g_t\\| / \\|\\theta_t\\|`. For Adam's first step,
    every coordinate moves by almost exactly :math:`\\eta` (its update is
    :math:`\\eta\\, g / (|g| + \\epsilon)`), so :math:`r_0 \\approx \\eta \\sqrt{N} / \\|\\theta_0\\|`
    for :math:`N` parameters with a non-zero gradient.

    Args:
        model: the network; it is copied, not modified.
        make_optimizer: builds the optimizer from the copy's parameters, e.g.
            ``lambda params: torch.optim.Adam(params, lr=3e-4)``.
        batches: ``(inputs, targets)`` pairs; one step is taken per pair.
        loss_fn: ``loss_fn(model(inputs), targets)`` gives the scalar loss.

    Returns:
        A float array with one ratio per batch.

    Example:
        >>> net = torch.nn.Linear(3, 1)
        >>> data = [(torch.ones(4, 3), torch.zeros(4, 1))] * 2
        >>> r = relative_update_sizes(net, lambda p: torch.optim.SGD(p, lr=0.1), data,
        ...                           torch.nn.functional.mse_loss)
        >>> r.shape
        (2,)
    """
    if not callable(make_optimizer):
        raise TypeError(f"make_optimizer must be callable, got {type(make_optimizer).__name__}")
    clone = copy.deepcopy(model)
    clone.train()
    params = [p for p in clone.parameters() if p.requires_grad]
    optimizer = make_optimizer(params)
    ratios = []
    for inputs, targets in batches:
        before = [p.detach().clone() for p in params]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(clone(inputs), targets).backward()
        optimizer.step()
        delta = global_norm(p.detach() - b for p, b in zip(params, before))
        ratios.append(delta / global_norm(before))
    if not ratios:
        raise ValueError("batches must hold at least one (inputs, targets) pair, got none")
    return np.asarray(ratios)
