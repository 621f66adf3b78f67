"""Small real data that ships offline.

The 8x8 handwritten digits bundled with scikit-learn (1,797 images, 10 classes)
are the course's default data set: real, tiny, and nothing is downloaded.
First used in chapter 1 (*The update rule*). Chapter 5 (*Warmup*) reads each image
as a sequence of eight tokens, its pixel rows (``x.view(-1, 8, 8)``), which
:class:`lrlib.models.TransformerClassifier` does by itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from lrlib._checks import check_int, check_real


@dataclass
class Split:
    """Train, validation and test tensors: ``x_*`` float32 ``(n, 64)``, ``y_*`` int64 ``(n,)``.

    Train the model on ``train``; choose everything (rate, schedule, length, the
    winner of a sweep) on ``val``; evaluate what was chosen on ``test``, once.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The six tensors in field order."""
        return (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test)

    def to(self, device: torch.device | str) -> Split:
        """The same split on ``device``."""
        return Split(*(t.to(device) for t in self.tensors()))


def _stratified_order(y: np.ndarray, fractions: tuple[float, float], seed: int) -> tuple[np.ndarray, ...]:
    """Indices of train, validation and test: each class shuffled and cut in the same shares."""
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_val = int(round(fractions[0] * len(members)))
        n_test = int(round(fractions[1] * len(members)))
        parts[1].append(members[:n_val])
        parts[2].append(members[n_val:n_val + n_test])
        parts[0].append(members[n_val + n_test:])
    # shuffle across classes too, so a split's rows are not sorted by label
    return tuple(rng.permutation(np.concatenate(p)) for p in parts)


def load_digits(val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0,
                device: torch.device | str = "cpu") -> Split:
    """The digits as standardised tensors, split into train, validation and test.

    The split is stratified: each of the ten classes is shuffled (by ``seed``) and
    cut in the same shares, so every split has the class balance of the whole.
    Pixels are scaled by the training split's per-pixel mean and standard deviation
    (constant pixels get std 1), so validation and test leak nothing into training.

    The course's rule: train on ``train``, select on ``val``, report ``test`` once
    for what was selected.

    Args:
        val_fraction: share of the 1,797 images for validation, in (0, 1).
        test_fraction: share held out for the final test, in (0, 1); the two
            shares together must leave some training images.
        seed: seed of the shuffle (the split depends on it alone).
        device: where the tensors go.

    Example:
        >>> d = load_digits()
        >>> len(d.y_train), len(d.y_val), len(d.y_test)
        (1079, 359, 359)
    """
    val_fraction = check_real("val_fraction", val_fraction)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    test_fraction = check_real("test_fraction", test_fraction)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if val_fraction + test_fraction >= 0.9:
        raise ValueError("val_fraction + test_fraction must be below 0.9 to leave images to train on, "
                         f"got {val_fraction} + {test_fraction}")
    seed = check_int("seed", seed, minimum=0)
    from sklearn.datasets import load_digits as sklearn_digits  # a second to import: only when used

    x, y = sklearn_digits(return_X_y=True)
    train, val, test = _stratified_order(y, (val_fraction, test_fraction), seed)
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0
    x = (x - mean) / std
    as_x = lambda idx: torch.tensor(x[idx], dtype=torch.float32)  # noqa: E731
    as_y = lambda idx: torch.tensor(y[idx], dtype=torch.int64)  # noqa: E731
    return Split(as_x(train), as_y(train), as_x(val), as_y(val), as_x(test), as_y(test)).to(device)


def minibatches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, *, steps: int, seed: int = 0,
    replacement: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``steps`` random ``(x, y)`` minibatches.

    By default each pass over the data is a fresh permutation cut into batches
    (what a shuffling ``DataLoader`` does). With ``replacement=True`` every batch is
    drawn independently and uniformly, the i.i.d. sampling that SGD theory assumes.

    Args:
        x, y: inputs and targets with the same first dimension.
        batch_size: rows per batch, in [1, len(x)].
        steps: how many batches to yield in total (>= 0).
        seed: seed of the shuffling (a private generator; global RNGs are untouched).
        replacement: draw each batch independently instead of passing over the data.
    """
    n = len(x)
    if len(y) != n:
        raise ValueError(f"y must have len(x)={n} rows, got {len(y)}")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if batch_size > n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    steps = check_int("steps", steps, minimum=0)
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    if replacement:
        for _ in range(steps):
            idx = torch.randint(0, n, (batch_size,), generator=gen).to(x.device)
            yield x[idx], y[idx]
        return
    done = 0
    while done < steps:
        order = torch.randperm(n, generator=gen).to(x.device)
        for start in range(0, n - batch_size + 1, batch_size):
            if done == steps:
                return
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]
            done += 1


@dataclass
class Regression:
    """A linear regression problem ``y = x w* + noise`` and the best loss any linear model reaches."""

    x: torch.Tensor
    y: torch.Tensor
    best_loss: float


def noisy_linear_regression(n: int = 4000, dim: int = 20, noise: float = 0.5, seed: int = 0) -> Regression:
    """Generated data for least squares with label noise (chapter 2, minibatch noise).

    ``x`` is standard normal ``(n, dim)``, ``y = x w* + noise * e`` with ``w*`` and ``e``
    standard normal. ``best_loss`` is the exact minimum of the mean loss
    :math:`\\frac{1}{2n}\\|x w - y\\|^2` over ``w`` (by least squares), so an optimizer's
    *excess* loss can be measured exactly. No linear model can fit the noise, so
    SGD's minibatch noise never dies out here.

    Example:
        >>> r = noisy_linear_regression(n=100, dim=3, noise=0.1)
        >>> r.x.shape, r.y.shape, round(r.best_loss, 3) < 0.01
        (torch.Size([100, 3]), torch.Size([100, 1]), True)
    """
    n = check_int("n", n, minimum=1)
    dim = check_int("dim", dim, minimum=1)
    if n < dim:
        raise ValueError(f"n must be >= dim={dim} for a unique least-squares fit, got {n}")
    noise = check_real("noise", noise)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    w = torch.randn(dim, 1, generator=gen, dtype=torch.float64)
    y = x @ w + noise * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    best = torch.linalg.lstsq(x, y).solution
    best_loss = float(0.5 * ((x @ best - y) ** 2).mean())
    return Regression(x.float(), y.float(), best_loss)
