"""Loss surfaces with analytic gradients and curvature (chapter 2, *Too big, too small*).

Every surface has ``value(x)``, ``grad(x)`` and ``hessian(x)``, written once for
NumPy arrays and torch tensors alike: ``x`` has shape ``(..., d)`` and the
leading dimensions are batch dimensions (a whole contour grid at once).

For the quadratic :math:`L(x) = \\tfrac12 (x - c)^\\top A (x - c)` gradient descent
multiplies the error along each eigenvector of :math:`A` (eigenvalue
:math:`\\lambda`) by :math:`1 - \\eta\\lambda` per step. With :math:`L` the largest
and :math:`\\mu` the smallest eigenvalue and :math:`\\kappa = L/\\mu`:

==================================  ===========================================
:math:`\\eta \\le 1/L`               monotone: every factor in :math:`[0, 1)`
:math:`1/L < \\eta < 2/L`            oscillating: the steep direction flips sign,
                                    but still shrinks
:math:`\\eta \\ge 2/L`               divergent: :math:`|1 - \\eta L| \\ge 1`
:math:`\\eta^* = 2/(L + \\mu)`        the best fixed rate; its contraction factor
                                    is :math:`(\\kappa - 1)/(\\kappa + 1)`
==================================  ===========================================
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from lrlib._checks import check_int, check_nonnegative, check_positive

Array = np.ndarray | torch.Tensor


def _stack(parts: Sequence[Array], like: Array, axis: int = -1) -> Array:
    return torch.stack(list(parts), dim=axis) if isinstance(like, torch.Tensor) else np.stack(parts, axis)


def _as_float(x: Array | Sequence[float] | float) -> Array:
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.double()
    return np.asarray(x, dtype=float)


def _scalar(out: Array) -> Array | float:
    """A NumPy 0-d result as a Python float; arrays and tensors unchanged."""
    return float(out) if isinstance(out, (np.ndarray, np.generic)) and np.ndim(out) == 0 else out


class Problem(Protocol):
    """What :func:`gradient_descent` needs of a surface."""

    dim: int

    def value(self, x: Array) -> Array: ...

    def grad(self, x: Array) -> Array: ...

    def hessian(self, x: Array) -> Array: ...


class _Surface:
    """Shared by the surfaces: evaluation on a contour grid."""

    def value_xy(self, x: Array, y: Array) -> Array:
        """``value`` at the points ``(x, y)`` of two same-shaped arrays (a 2-D surface only).

        This is the form :func:`lrlib.plotting.plot_descent_2d` takes for contours.
        """
        if getattr(self, "dim", 2) != 2:
            raise ValueError(f"value_xy needs a 2-D problem, this one has dim={self.dim}")
        return self.value(_stack([_as_float(x), _as_float(y)], _as_float(x)))


class Quadratic(_Surface):
    """:math:`L(x) = \\tfrac12 (x - c)^\\top A (x - c)`, minimum 0 at the centre :math:`c`.

    Args:
        curvature: a symmetric positive-definite matrix :math:`A` (d x d), or a 1-D
            array of its eigenvalues, in which case :math:`A` is diagonal.
        center: the minimiser :math:`c` (default: the origin).

    Attributes:
        A: the curvature matrix (NumPy, float64).
        eigenvalues: its eigenvalues, ascending.
        L, mu: largest and smallest eigenvalue.
        condition_number: :math:`\\kappa = L / \\mu`.

    Example:
        >>> q = Quadratic([1.0, 10.0])
        >>> q.L, q.mu, q.condition_number, q.max_stable_lr, q.best_lr
        (10.0, 1.0, 10.0, 0.2, 0.18181818181818182)
        >>> q.value(np.array([1.0, 1.0]))
        5.5
    """

    def __init__(self, curvature: Sequence[float] | np.ndarray, center: Sequence[float] | None = None):
        a = np.asarray(curvature, dtype=float)
        if a.ndim == 1:
            a = np.diag(a)
        if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
            raise ValueError(f"curvature must be a 1-D array of eigenvalues or a square matrix, "
                             f"got shape {np.shape(curvature)}")
        if not np.all(np.isfinite(a)) or not np.allclose(a, a.T, rtol=1e-10, atol=1e-12):
            raise ValueError("curvature must be a finite symmetric matrix")
        eig = np.linalg.eigvalsh(a)
        if eig[0] <= 0:
            raise ValueError(f"curvature must be positive definite (all eigenvalues > 0), "
                             f"got smallest eigenvalue {eig[0]:.3g}")
        self.A = a
        self.eigenvalues = eig
        self.dim = a.shape[0]
        c = np.zeros(self.dim) if center is None else np.asarray(center, dtype=float)
        if c.shape != (self.dim,):
            raise ValueError(f"center must have shape ({self.dim},), got {c.shape}")
        self.center = c

    @property
    def L(self) -> float:  # noqa: N802  (the symbol of the maths)
        return float(self.eigenvalues[-1])

    @property
    def mu(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def condition_number(self) -> float:
        return self.L / self.mu

    @property
    def max_stable_lr(self) -> float:
        """:math:`2/L`: gradient descent converges for every :math:`\\eta` below it."""
        return 2.0 / self.L

    @property
    def best_lr(self) -> float:
        """:math:`2/(L + \\mu)`, the fixed rate with the smallest contraction factor."""
        return 2.0 / (self.L + self.mu)

    def contraction(self, lr: float, momentum: float = 0.0) -> float:
        """The factor by which the error shrinks per step, asymptotically.

        Without momentum it is :math:`\\max_i |1 - \\eta \\lambda_i|`, and the error shrinks at
        least this much every step. With momentum :math:`\\beta` (the heavy ball, as
        ``torch.optim.SGD`` runs it: :math:`b_t = \\beta b_{t-1} + g_t`,
        :math:`x_{t+1} = x_t - \\eta b_t`), each eigen-direction follows a two-term recursion
        :math:`e_{t+1} = (1 + \\beta - \\eta\\lambda) e_t - \\beta e_{t-1}`, whose roots solve
        :math:`r^2 - (1 + \\beta - \\eta\\lambda) r + \\beta = 0`; the factor is the largest
        :math:`|r|` over the eigenvalues (the rate the error shrinks at in the long run, after a
        possible transient).

        Example:
            >>> q = Quadratic([1.0, 100.0])
            >>> round(q.contraction(q.best_lr), 4), round(q.contraction(*q.best_momentum), 4)
            (0.9802, 0.8182)
        """
        lr = check_positive("lr", lr)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if momentum == 0:
            return float(np.max(np.abs(1.0 - lr * self.eigenvalues)))
        trace = 1.0 + momentum - lr * self.eigenvalues.astype(complex)
        disc = np.sqrt(trace ** 2 - 4 * momentum)
        roots = np.concatenate([(trace + disc) / 2, (trace - disc) / 2])
        return float(np.max(np.abs(roots)))

    def momentum_stable_lr(self, momentum: float) -> float:
        """:math:`2(1 + \\beta)/L`: the heavy ball converges for every :math:`\\eta` below it.

        Both roots of :math:`r^2 - (1 + \\beta - \\eta\\lambda) r + \\beta` lie inside the unit
        circle exactly when :math:`0 < \\eta\\lambda < 2(1 + \\beta)` (for :math:`0 \\le \\beta < 1`),
        so momentum 0.9 stretches the stable range 1.9 times beyond gradient descent's.
        """
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        return 2.0 * (1.0 + momentum) / self.L

    @property
    def best_momentum(self) -> tuple[float, float]:
        """Polyak's optimal heavy ball: :math:`\\eta^* = 4/(\\sqrt{L} + \\sqrt{\\mu})^2`,
        :math:`\\beta^* = \\big((\\sqrt\\kappa - 1)/(\\sqrt\\kappa + 1)\\big)^2`.

        Its contraction is :math:`(\\sqrt\\kappa - 1)/(\\sqrt\\kappa + 1)` against gradient
        descent's best :math:`(\\kappa - 1)/(\\kappa + 1)`: steps grow like :math:`\\sqrt\\kappa`,
        not :math:`\\kappa`.
        """
        root_l, root_mu = math.sqrt(self.L), math.sqrt(self.mu)
        beta = ((root_l - root_mu) / (root_l + root_mu)) ** 2
        return 4.0 / (root_l + root_mu) ** 2, beta

    def predicted_steps(self, lr: float, x0: Sequence[float], tol: float) -> float:
        """Steps that guarantee :math:`\\|x_t - c\\| \\le` ``tol``, from the contraction factor.

        The error shrinks by at least :math:`\\rho =` :meth:`contraction` per step, so
        :math:`t = \\lceil \\ln(\\text{tol} / \\|x_0 - c\\|) / \\ln \\rho \\rceil` steps suffice.
        In one dimension this is exact; in more it is an upper bound (directions
        with a smaller factor finish sooner). ``math.inf`` when :math:`\\rho \\ge 1`.
        """
        tol = check_positive("tol", tol)
        rho = self.contraction(lr)
        distance = float(np.linalg.norm(np.asarray(x0, dtype=float) - self.center))
        if distance <= tol:
            return 0
        if rho >= 1:
            return math.inf
        if rho == 0:
            return 1
        return math.ceil(math.log(tol / distance) / math.log(rho) - 1e-9)

    def _tensor_args(self, x: Array) -> tuple[Array, Array]:
        if isinstance(x, torch.Tensor):
            return (torch.as_tensor(self.A, dtype=x.dtype, device=x.device),
                    torch.as_tensor(self.center, dtype=x.dtype, device=x.device))
        return self.A, self.center

    def value(self, x: Array) -> Array:
        x = _as_float(x)
        a, c = self._tensor_args(x)
        z = x - c
        out = 0.5 * (z * (z @ a)).sum(-1)
        return _scalar(out)

    def grad(self, x: Array) -> Array:
        x = _as_float(x)
        a, c = self._tensor_args(x)
        return (x - c) @ a  # A is symmetric

    def hessian(self, x: Array) -> Array:
        x = _as_float(x)
        a, _ = self._tensor_args(x)
        shape = (*x.shape[:-1], self.dim, self.dim)
        return a.expand(shape).clone() if isinstance(x, torch.Tensor) else np.broadcast_to(a, shape).copy()

    def __repr__(self) -> str:
        return f"Quadratic(L={self.L:g}, mu={self.mu:g}, kappa={self.condition_number:g}, dim={self.dim})"


class Rosenbrock(_Surface):
    """Rosenbrock's banana valley :math:`(a - x)^2 + b (y - x^2)^2`, minimum 0 at :math:`(a, a^2)`.

    The valley floor is nearly flat while its walls are steep: at the minimum the
    Hessian's eigenvalues differ by a factor of about 2,500 for the default
    :math:`a = 1, b = 100`.

    Example:
        >>> Rosenbrock().value(np.array([1.0, 1.0]))
        0.0
    """

    dim = 2

    def __init__(self, a: float = 1.0, b: float = 100.0):
        self.a = float(a)
        self.b = check_positive("b", b)
        self.minimum = np.array([self.a, self.a**2])

    def value(self, x: Array) -> Array:
        x = _as_float(x)
        u, v = x[..., 0], x[..., 1]
        out = (self.a - u) ** 2 + self.b * (v - u**2) ** 2
        return _scalar(out)

    def grad(self, x: Array) -> Array:
        x = _as_float(x)
        u, v = x[..., 0], x[..., 1]
        return _stack([-2 * (self.a - u) - 4 * self.b * u * (v - u**2), 2 * self.b * (v - u**2)], x)

    def hessian(self, x: Array) -> Array:
        x = _as_float(x)
        u, v = x[..., 0], x[..., 1]
        huu = 2 - 4 * self.b * (v - u**2) + 8 * self.b * u**2
        huv = -4 * self.b * u
        hvv = 2 * self.b + 0 * u
        return _stack([_stack([huu, huv], x), _stack([huv, hvv], x)], x, axis=-2)

    def __repr__(self) -> str:
        return f"Rosenbrock(a={self.a:g}, b={self.b:g})"


class Himmelblau(_Surface):
    """Himmelblau's function :math:`(x^2 + y - 11)^2 + (x + y^2 - 7)^2`: non-convex, four minima of 0.

    Where gradient descent ends up depends on where it starts and on the
    learning rate: a large step can jump from one basin to another.

    Example:
        >>> Himmelblau().value(np.array([3.0, 2.0]))
        0.0
    """

    dim = 2
    minima = np.array([[3.0, 2.0], [-2.805118, 3.131312], [-3.779310, -3.283186], [3.584428, -1.848126]])

    def value(self, x: Array) -> Array:
        x = _as_float(x)
        u, v = x[..., 0], x[..., 1]
        out = (u**2 + v - 11) ** 2 + (u + v**2 - 7) ** 2
        return _scalar(out)

    def grad(self, x: Array) -> Array:
        x = _as_float(x)
        u, v = x[..., 0], x[..., 1]
        p, q = u**2 + v - 11, u + v**2 - 7
        return _stack([4 * u * p + 2 * q, 2 * p + 4 * v * q], x)

    def hessian(self, x: Array) -> Array:
        x = _as_float(x)
        u, v = x[..., 0], x[..., 1]
        p, q = u**2 + v - 11, u + v**2 - 7
        huu = 4 * p + 8 * u**2 + 2
        huv = 4 * u + 4 * v
        hvv = 2 + 4 * q + 8 * v**2
        return _stack([_stack([huu, huv], x), _stack([huv, hvv], x)], x, axis=-2)

    def __repr__(self) -> str:
        return "Himmelblau()"


@dataclass
class Trajectory:
    """A run of gradient descent: ``points`` ``(steps + 1, d)``, ``losses`` ``(steps + 1,)``.

    After divergence (an iterate or loss that is not finite, or a loss above
    ``1e150``) the remaining rows are NaN and ``diverged_at`` is the first such step.
    """

    points: np.ndarray
    losses: np.ndarray
    lr: float
    diverged_at: int | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    def first_within(self, target: Sequence[float], tol: float) -> int | None:
        """The first step ``t`` with :math:`\\|x_t - \\text{target}\\| \\le` ``tol`` (None if never)."""
        dist = np.linalg.norm(self.points - np.asarray(target, dtype=float), axis=1)
        hits = np.flatnonzero(dist <= tol)
        return int(hits[0]) if hits.size else None

    @property
    def final_loss(self) -> float:
        """The last finite loss, or inf if the run diverged."""
        return math.inf if self.diverged else float(self.losses[-1])


_OVERFLOW = 1e150  # well below float64's 1e308, so squaring an iterate cannot overflow first


def _blown_up(point: np.ndarray, loss: float) -> bool:
    """The run has diverged: an iterate or the loss is not finite, or the loss passed _OVERFLOW."""
    return not (np.all(np.isfinite(point)) and math.isfinite(loss) and abs(loss) < _OVERFLOW)


def gradient_descent(problem: Problem, x0: Sequence[float] | np.ndarray, lr: float, steps: int) -> Trajectory:
    """Plain gradient descent :math:`x_{t+1} = x_t - \\eta \\nabla L(x_t)` on a surface.

    Args:
        problem: anything with ``value`` and ``grad`` (:class:`Quadratic`, :class:`Rosenbrock`, ...).
        x0: the starting point, shape ``(d,)``.
        lr: the learning rate :math:`\\eta` (> 0).
        steps: number of updates (>= 0).

    Returns:
        A :class:`Trajectory` with ``steps + 1`` points and losses. A diverging run stops
        as soon as it leaves the floating-point range (no warnings), its remaining rows NaN.

    Example:
        >>> run = gradient_descent(Quadratic([2.0]), [1.0], lr=0.25, steps=2)
        >>> run.points[:, 0].tolist(), run.losses.tolist()
        ([1.0, 0.5, 0.25], [1.0, 0.25, 0.0625])
    """
    lr = check_positive("lr", lr)
    steps = check_int("steps", steps, minimum=0)
    x = np.array(x0, dtype=float).reshape(-1)
    points = np.full((steps + 1, x.size), np.nan)
    losses = np.full(steps + 1, np.nan)
    diverged_at = None
    with np.errstate(all="ignore"):
        for t in range(steps + 1):
            loss = float(problem.value(x))
            if _blown_up(x, loss):
                diverged_at = t
                break
            points[t], losses[t] = x, loss
            if t < steps:
                x = x - lr * np.asarray(problem.grad(x), dtype=float)
    return Trajectory(points, losses, lr, diverged_at)


def noisy_descent(problem: Quadratic, x0: Sequence[float] | np.ndarray,
                  schedule: Callable[[np.ndarray], np.ndarray], steps: int, noise: float,
                  seeds: int = 100, seed: int = 0) -> np.ndarray:
    """Gradient descent with noisy gradients on a quadratic, many runs at once: stochastic approximation.

    Each run takes :math:`x_{t+1} = x_t - \\eta_t\\,(A(x_t - c) + \\sigma \\xi_t)` with
    :math:`\\xi_t` standard normal: the gradient an unbiased minibatch would give, with noise
    of a fixed size :math:`\\sigma`. In one dimension the mean squared error follows
    :math:`E[e_{t+1}^2] = (1 - \\eta_t\\lambda)^2 E[e_t^2] + \\eta_t^2 \\sigma^2`, so a constant rate
    settles at :math:`E[e^2] = \\eta\\sigma^2 / (\\lambda(2 - \\eta\\lambda))`, and only a rate that
    falls to zero (but not too fast) drives the error to zero: Robbins and Monro's conditions.

    Args:
        problem: a :class:`Quadratic`.
        x0: the common start.
        schedule: the rate at each step, vectorised (a :class:`lrlib.schedules.Schedule`).
        steps: number of updates (>= 1).
        noise: :math:`\\sigma \\ge 0`.
        seeds: number of independent runs (>= 1); ``seed`` seeds their noise.

    Returns:
        The losses, shape ``(seeds, steps + 1)`` (row ``k``: run ``k``; column 0: the start).

    Example:
        >>> from lrlib.schedules import constant
        >>> losses = noisy_descent(Quadratic([1.0]), [1.0], constant(0.5), steps=2, noise=0.0, seeds=3)
        >>> losses[0].tolist()
        [0.5, 0.125, 0.03125]
    """
    steps = check_int("steps", steps, minimum=1)
    seeds = check_int("seeds", seeds, minimum=1)
    noise = check_nonnegative("noise", noise)
    x = np.tile(np.asarray(x0, dtype=float).reshape(1, -1), (seeds, 1))
    if x.shape[1] != problem.dim:
        raise ValueError(f"x0 must have {problem.dim} coordinates, got {x.shape[1]}")
    rates = np.asarray(schedule(np.arange(steps)), dtype=float)
    rng = np.random.default_rng(seed)
    losses = np.empty((seeds, steps + 1))
    losses[:, 0] = problem.value(x)
    for t in range(steps):
        grad = (x - problem.center) @ problem.A + noise * rng.standard_normal(x.shape)
        x = x - rates[t] * grad
        losses[:, t + 1] = problem.value(x)
    return losses


def optimize(problem: Problem, make_optimizer, x0: Sequence[float] | np.ndarray, steps: int) -> Trajectory:
    """Run any ``torch.optim``-style optimizer on a surface, with its analytic gradient.

    Chapter 3 uses it to put SGD, momentum, Adagrad, RMSprop and Adam on the same
    landscape. The iterate is a float64 ``torch.nn.Parameter``; each step sets its
    ``.grad`` to ``problem.grad`` and calls ``optimizer.step()``.

    Args:
        problem: a surface with ``value`` and ``grad`` that accept tensors.
        make_optimizer: builds the optimizer from a list of parameters,
            e.g. ``lambda p: torch.optim.Adam(p, lr=0.1)``.
        x0: the starting point, shape ``(d,)``.
        steps: number of updates (>= 0).

    Returns:
        A :class:`Trajectory` (its ``lr`` is the first param group's), stopped cleanly on divergence.

    Example:
        >>> run = optimize(Quadratic([2.0]), lambda p: torch.optim.SGD(p, lr=0.25), [1.0], 2)
        >>> run.points[:, 0].tolist()
        [1.0, 0.5, 0.25]
    """
    steps = check_int("steps", steps, minimum=0)
    x = torch.nn.Parameter(torch.tensor(np.asarray(x0, dtype=float).reshape(-1), dtype=torch.float64))
    optimizer = make_optimizer([x])
    points = np.full((steps + 1, x.numel()), np.nan)
    losses = np.full(steps + 1, np.nan)
    diverged_at = None
    for t in range(steps + 1):
        with torch.no_grad():
            loss = float(problem.value(x))
            point = x.detach().numpy().copy()
        if _blown_up(point, loss):
            diverged_at = t
            break
        points[t], losses[t] = point, loss
        if t < steps:
            with torch.no_grad():
                x.grad = problem.grad(x.detach()).clone()
            optimizer.step()
    return Trajectory(points, losses, float(optimizer.param_groups[0]["lr"]), diverged_at)


class Regime(str, enum.Enum):
    """How gradient descent behaves at a learning rate (see the module docstring)."""

    MONOTONE = "monotone"
    OSCILLATING = "oscillating"
    DIVERGENT = "divergent"


def lr_regime(lr: float, L: float) -> Regime:  # noqa: N803  (the symbol of the maths)
    """The regime of gradient descent at rate ``lr`` on a quadratic of largest curvature ``L``.

    ``lr <= 1/L``: monotone; ``1/L < lr < 2/L``: oscillating; ``lr >= 2/L``: divergent
    (at exactly 2/L the steep direction flips forever without shrinking).

    >>> [lr_regime(lr, L=10.0).value for lr in (0.05, 0.15, 0.21)]
    ['monotone', 'oscillating', 'divergent']
    """
    lr, L = check_positive("lr", lr), check_positive("L", L)
    x = lr * L
    eps = 1e-12  # so that lr = 2 / L, rounded, still lands on its boundary
    if x <= 1.0 + eps:
        return Regime.MONOTONE
    return Regime.OSCILLATING if x < 2.0 - eps else Regime.DIVERGENT


def run_regime(run: Trajectory) -> Regime:
    """The regime a run *shows*: divergent if it blew up or ended above its start,
    oscillating if two successive steps ever point more than 90 degrees apart
    (it overshot), monotone otherwise.
    """
    finite = run.losses[np.isfinite(run.losses)]
    if run.diverged or finite[-1] > finite[0]:
        return Regime.DIVERGENT
    steps = np.diff(run.points[: len(finite)], axis=0)
    if len(steps) >= 2 and np.any(np.einsum("ij,ij->i", steps[1:], steps[:-1]) < 0):
        return Regime.OSCILLATING
    return Regime.MONOTONE


class Diagnosis(str, enum.Enum):
    """What a training loss curve says about its learning rate."""

    TOO_SMALL = "too small"
    GOOD = "good"
    TOO_LARGE = "too large"
    DIVERGENT = "divergent"


def diagnose_loss_curve(losses: Sequence[float], *, slow_drop: float = 0.5,
                        unstable_rise: float = 0.25, diverge_factor: float = 1.5) -> Diagnosis:
    """Read a training loss curve the way this course teaches (chapter 2's diagnosis table).

    Minibatch losses are noisy, so the curve is first averaged over windows of
    :math:`w = \\max(1, n/20)` steps. With :math:`\\ell_0` the mean of the first
    :math:`w` losses, :math:`\\ell_{min}` the lowest windowed mean and
    :math:`\\ell_{end}` the mean of the last tenth of the curve:

    1. ``divergent``: a loss is NaN or inf, or :math:`\\ell_{end} >` ``diverge_factor`` :math:`\\ell_0`;
    2. ``too large``: the run made progress (:math:`\\ell_0 - \\ell_{min} > 0.1\\,\\ell_0`)
       and then climbed back: :math:`\\ell_{end} - \\ell_{min} >`
       ``unstable_rise`` :math:`\\times (\\ell_0 - \\ell_{min})`;
    3. ``too small``: it removed less than ``slow_drop`` of the initial loss:
       :math:`\\ell_{end} > (1 - \\text{slow\\_drop})\\,\\ell_0`;
    4. ``good`` otherwise.

    The thresholds are rules of thumb for losses that go to 0 (cross-entropy,
    squared error) over runs long enough to show a trend; they are not laws.

    Args:
        losses: the loss after each step or epoch (at least 2 values).
        slow_drop: fraction of the initial loss a good run removes, in (0, 1).
        unstable_rise: how far back up, as a fraction of the drop, counts as unstable, in (0, 1).
        diverge_factor: an end this many times above the start counts as divergence (> 1).

    Example:
        >>> diagnose_loss_curve(np.exp(-np.arange(100) / 10)).value
        'good'
    """
    values = np.asarray(losses, dtype=float)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"losses must be a 1-D sequence of at least 2 values, got shape {values.shape}")
    for name, v in (("slow_drop", slow_drop), ("unstable_rise", unstable_rise)):
        if not 0 < v < 1:
            raise ValueError(f"{name} must be in (0, 1), got {v}")
    if not diverge_factor > 1:
        raise ValueError(f"diverge_factor must be > 1, got {diverge_factor}")
    if not np.all(np.isfinite(values)):
        return Diagnosis.DIVERGENT
    n = len(values)
    w = max(1, n // 20)
    windowed = np.convolve(values, np.ones(w) / w, mode="valid")
    start, lowest = windowed[0], windowed.min()
    end = values[-max(1, n // 10):].mean()
    if end > diverge_factor * start:
        return Diagnosis.DIVERGENT
    drop = start - lowest
    if drop > 0.1 * start and end - lowest > unstable_rise * drop:
        return Diagnosis.TOO_LARGE
    if end > (1 - slow_drop) * start:
        return Diagnosis.TOO_SMALL
    return Diagnosis.GOOD


def sharpness(
    model: torch.nn.Module,
    loss_fn,
    batch: tuple[torch.Tensor, torch.Tensor],
    *,
    iters: int = 50,
    tol: float = 1e-4,
    seed: int = 0,
) -> float:
    """The top eigenvalue of the loss Hessian w.r.t. the model's parameters (the *sharpness*).

    Power iteration on Hessian-vector products :math:`Hv = \\nabla_\\theta (\\nabla_\\theta L \\cdot v)`
    (double backward; the Hessian is never formed):
    :math:`v \\leftarrow Hv / \\|Hv\\|`, :math:`\\lambda \\leftarrow v^\\top H v`, until
    :math:`\\lambda` changes by less than ``tol`` relative. Gradient descent at rate
    :math:`\\eta` is stable along the top direction only while
    :math:`\\lambda < 2/\\eta` (Cohen et al. 2021, the edge of stability).

    Power iteration finds the eigenvalue of largest magnitude; near a minimum the
    Hessian is close to positive semi-definite, so that is the largest one.

    Args:
        model: the network; its parameters, gradients and mode are left as they were.
        loss_fn: ``loss_fn(model(inputs), targets)`` gives the scalar loss.
        batch: ``(inputs, targets)``: the Hessian is that of this batch's loss.
        iters: most power iterations (>= 1).
        tol: relative change at which to stop (> 0).
        seed: seed of the random start vector (a private generator).
    """
    iters = check_int("iters", iters, minimum=1)
    tol = check_positive("tol", tol)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameter that requires grad")
    inputs, targets = batch
    loss = loss_fn(model(inputs), targets)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params]
    norm = torch.sqrt(sum((x * x).sum() for x in v))
    v = [x / norm for x in v]
    eigenvalue = 0.0
    for _ in range(iters):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        new = float(sum((a * b).sum() for a, b in zip(v, hv)))
        norm = torch.sqrt(sum((x * x).sum() for x in hv))
        if norm == 0:
            return 0.0
        v = [x.detach() / norm for x in hv]
        if abs(new - eigenvalue) <= tol * abs(new):
            return new
        eigenvalue = new
    return eigenvalue
