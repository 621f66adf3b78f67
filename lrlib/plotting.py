"""One figure style for the whole book.

Call :func:`use_style` once at the top of a chapter. Colours come from the
Okabe-Ito palette, which stays distinguishable for the common forms of colour
blindness; line styles vary too, so curves differ in grey scale as well.
Plot helpers take ``ax=None`` (a new figure) and return the axes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.ticker import LogLocator

#: Okabe & Ito (2008), "Color Universal Design": black first, then the seven hues.
PALETTE = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
}
#: The cycle used for successive curves (yellow last: it is faint on white).
COLORS = [PALETTE[k] for k in
          ("blue", "orange", "green", "vermillion", "purple", "sky_blue", "black", "yellow")]
LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), "-", "--"]

STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "figure.constrained_layout.use": True,
    "axes.prop_cycle": cycler(color=COLORS) + cycler(linestyle=LINESTYLES),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "legend.framealpha": 0.9,
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
}


def use_style() -> None:
    """Apply the book's figure style to matplotlib's global settings."""
    mpl.rcParams.update(STYLE)


def _axes(ax: Axes | None) -> Axes:
    return plt.subplots()[1] if ax is None else ax


def format_lr(lr: float) -> str:
    """A learning rate as people write it: ``3e-4``, ``0.1``, ``1e-3``.

    >>> format_lr(0.0003), format_lr(0.1), format_lr(1.5)
    ('3e-4', '0.1', '1.5')
    """
    if lr == 0 or 1e-2 <= abs(lr) < 1e3:
        return f"{lr:g}"
    mantissa, exponent = f"{lr:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def log_axis(ax: Axes, which: str = "x", label: str | None = None) -> Axes:
    """Put axis ``which`` ("x" or "y") on a log scale with a tick per decade and minor ticks."""
    if which not in ("x", "y"):
        raise ValueError(f"which must be 'x' or 'y', got {which!r}")
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_locator(LogLocator(base=10))
    axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10) * 0.1))
    if label is not None:
        (ax.set_xlabel if which == "x" else ax.set_ylabel)(label)
    return ax


def plot_descent_1d(
    loss: Callable[[np.ndarray], np.ndarray],
    path: np.ndarray,
    ax: Axes | None = None,
    *,
    label: str | None = None,
    color: str | None = None,
    span: tuple[float, float] | None = None,
) -> Axes:
    """Draw a 1-D loss curve and the iterates of a descent on it, joined by arrows.

    Args:
        loss: the loss :math:`L(\\theta)`, vectorised over a NumPy array.
        path: the iterates :math:`\\theta_0, \\theta_1, \\dots` (from :func:`lrlib.update.descend`);
            NaN rows (after divergence) are ignored.
        ax: axes to draw on; a new figure when None.
        label: legend entry for the iterates.
        color: colour of the iterates (default: next in the palette).
        span: the :math:`\\theta` range of the curve (default: the path's range, padded).
    """
    ax = _axes(ax)
    path = np.asarray(path, dtype=float)
    path = path[np.isfinite(path)]
    lo, hi = span if span is not None else (path.min(), path.max())
    pad = 0.1 * (hi - lo) + 1e-9
    grid = np.linspace(lo - pad, hi + pad, 400)
    ax.plot(grid, loss(grid), color="0.6", linestyle="-", linewidth=1.2, zorder=1)
    color = color or ax._get_lines.get_next_color()
    ax.plot(path, loss(path), "o", color=color, markersize=4, label=label, zorder=3)
    for a, b in zip(path[:-1], path[1:]):
        ax.annotate("", xy=(b, loss(b)), xytext=(a, loss(a)),
                    arrowprops={"arrowstyle": "->", "color": color, "lw": 1.0}, zorder=2)
    ax.set_xlabel(r"parameter $\theta$")
    ax.set_ylabel(r"loss $L(\theta)$")
    return ax


def plot_descent_2d(
    loss: Callable[[np.ndarray, np.ndarray], np.ndarray],
    paths: dict[str, np.ndarray],
    ax: Axes | None = None,
    *,
    xlim: Sequence[float] = (-5, 5),
    ylim: Sequence[float] = (-3, 3),
    levels: int = 12,
    minimum: tuple[float, float] = (0.0, 0.0),
) -> Axes:
    """Contours of a 2-D loss with one or more descent paths on top.

    Args:
        loss: ``loss(X, Y)`` on meshgrid arrays.
        paths: legend label -> iterates of shape ``(T + 1, 2)``.
        ax: axes to draw on; a new figure when None.
        xlim, ylim: the window shown.
        levels: number of contour levels (spaced evenly in the square root of the loss,
            so the rings near the minimum are visible).
        minimum: where to mark the minimum with a star.
    """
    ax = _axes(ax)
    xs, ys = np.linspace(*xlim, 300), np.linspace(*ylim, 300)
    X, Y = np.meshgrid(xs, ys)
    Z = loss(X, Y)
    ax.contour(X, Y, Z, levels=np.linspace(0, np.sqrt(Z.max()), levels)[1:] ** 2,
               colors="0.7", linewidths=0.8)
    for label, path in paths.items():
        path = np.asarray(path, dtype=float)
        path = path[np.all(np.isfinite(path), axis=1)]
        ax.plot(path[:, 0], path[:, 1], marker="o", markersize=3, label=label)
    ax.plot([minimum[0]], [minimum[1]], marker="*", color=PALETTE["black"], markersize=12, linestyle="none",
            label="minimum")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")
    return ax


def plot_seed_spread(
    x: Sequence[float] | np.ndarray,
    values: np.ndarray,
    ax: Axes | None = None,
    *,
    label: str | None = None,
    show_seeds: bool = True,
    **line_kwargs,
) -> Axes:
    """The mean over seeds as a line, each seed as a dot, the min-max range as a band.

    Every comparison over seeds in the book (chapter 5 on) is drawn this way, so
    the spread is always in view next to the mean.

    Args:
        x: the shared x values, length ``n``.
        values: shape ``(n, n_seeds)``; NaN (a diverged run) is left out of the
            mean and drawn nowhere.
        ax: axes to draw on (default: a new figure).
        label: legend entry for the mean line.
        show_seeds: draw each seed's value as a dot (turn off for long curves).
        line_kwargs: passed to ``ax.plot`` for the mean line (default marker ``"o"``).
    """
    ax = _axes(ax)
    x = np.asarray(x, dtype=float)
    values = np.asarray(values, dtype=float).reshape(len(x), -1)
    with warnings.catch_warnings():  # an all-NaN column (every seed diverged) is expected here
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=1)
        low, high = np.nanmin(values, axis=1), np.nanmax(values, axis=1)
    (line,) = ax.plot(x, mean, label=label, **{"marker": "o", **line_kwargs})
    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    if show_seeds:
        ax.plot(np.repeat(x, values.shape[1]), values.ravel(), linestyle="none", marker=".",
                color=line.get_color(), alpha=0.6)
    return ax

