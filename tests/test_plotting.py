"""lrlib.plotting: the book's style and its plot helpers."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lrlib import plotting  # noqa: E402
from lrlib.plotting import plot_seed_spread  # noqa: E402
from lrlib.update import descend  # noqa: E402

OKABE_ITO = {"#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"}


def teardown_function():
    plt.close("all")


def test_style_uses_the_okabe_ito_palette():
    plotting.use_style()
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()
    assert set(cycle["color"]) == OKABE_ITO
    assert len(set(map(str, cycle["linestyle"]))) >= 5, "curves differ by line style too"
    assert matplotlib.rcParams["axes.grid"]


@pytest.mark.parametrize("lr,text", [(3e-4, "3e-4"), (1e-3, "1e-3"), (0.1, "0.1"), (0.05, "0.05"),
                                     (1.05, "1.05"), (2e-5, "2e-5"), (0, "0")])
def test_format_lr(lr, text):
    assert plotting.format_lr(lr) == text


def test_log_axis():
    _, ax = plt.subplots()
    assert plotting.log_axis(ax, "y", "loss") is ax
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "loss"
    with pytest.raises(ValueError, match="which must be 'x' or 'y'"):
        plotting.log_axis(ax, "z")


def test_descent_1d_draws_curve_points_and_arrows_and_skips_nan():
    finite = descend(lambda th: 2 * th, 1.0, lr=1.2, steps=4)  # 5 iterates
    path = np.append(finite, [np.nan, np.nan])  # a run that diverged: NaN after it
    ax = plotting.plot_descent_1d(lambda th: th**2, path, label="run")
    assert ax.get_xlabel() and ax.get_ylabel()
    assert len(ax.lines) == 2 and len(ax.texts) == 4  # curve + points, 4 arrows between 5 points
    points = ax.lines[1].get_xdata()
    np.testing.assert_array_equal(points, finite)  # the NaN rows were dropped, the rest kept in order
    lo, hi = ax.lines[0].get_xdata()[[0, -1]]
    assert np.isfinite([lo, hi]).all() and lo < finite.min() and hi > finite.max()
    ax2 = plotting.plot_descent_1d(lambda th: th**2, path)
    assert np.all(np.isfinite(ax2.lines[1].get_xdata()))


def test_descent_2d_uses_given_axes():
    fig, ax = plt.subplots()
    path = descend(lambda th: th, [1.0, 1.0], lr=0.5, steps=4)
    out = plotting.plot_descent_2d(lambda x, y: x**2 + y**2, {"run": path}, ax=ax, minimum=(0, 0))
    assert out is ax
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["run", "minimum"]
    assert ax.get_xlabel() and ax.get_ylabel()


def test_seed_spread_draws_mean_band_and_seeds_and_skips_nan():
    values = np.array([[1.0, 2.0, 3.0], [2.0, np.nan, 4.0], [np.nan, np.nan, np.nan]])
    ax = plot_seed_spread([1, 2, 3], values, label="runs")
    mean_line, dots = ax.lines
    np.testing.assert_allclose(mean_line.get_ydata(), [2.0, 3.0, np.nan])
    assert mean_line.get_label() == "runs" and mean_line.get_marker() == "o"
    assert len(dots.get_xdata()) == 9 and dots.get_linestyle() == "None"
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == 1.0 and np.nanmax(band[:, 1]) == 4.0
    plt.close(ax.figure)
    ax = plot_seed_spread([0, 1], np.ones((2, 4)), show_seeds=False, marker=None)
    assert len(ax.lines) == 1 and ax.lines[0].get_marker() in (None, "None", "")
    plt.close(ax.figure)
