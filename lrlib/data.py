"""Real data that ships offline, in three sizes.

- :func:`load_digits`: scikit-learn's 1,797 8x8 digit images, 10 classes (BSD-3):
  a first model in seconds (chapters 1-7).
- :func:`load_mnist1d`: 60,000 MNIST-1D signals of 40 points, 10 classes (the
  ``mnist1d`` package, Apache-2.0): minibatches far below the training set, budgets
  that matter.
- :func:`load_text`: 1.1 MB of Shakespeare (public domain) and 0.47 MB of Python's
  documentation (PSF licence) as bytes: a tiny language model, two domains to
  pretrain on one and fine-tune on the other.

Nothing is downloaded: the digits come with scikit-learn, MNIST-1D is generated
procedurally by the ``mnist1d`` package's own ``make_dataset`` (its downloader is
never called) and cached, and the two texts ship inside this package
(``lrlib/corpora``, with their licences). Every loader splits into train,
validation and test the same way for the same seed; chapter 5 (*Warmup*) reads
each digit image as a sequence of eight tokens, its pixel rows, which
:class:`lrlib.models.TransformerClassifier` does by itself.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lrlib._checks import check_int, check_real


@dataclass
class Split:
    """Train, validation and test tensors: for the digits ``x_*`` float32 ``(n, 64)`` and ``y_*``
    int64 ``(n,)``; for MNIST-1D ``(n, 40)`` and ``(n,)``; for a text, ``x_*`` and ``y_*`` int64
    ``(n, T)``, windows of bytes and the same windows one byte later (the next-byte targets).

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
    val_fraction, test_fraction = _fractions(val_fraction, test_fraction)
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


#: Where generated data sets are cached (``$LRLIB_CACHE``, else ``~/.cache/lrlib``).
CACHE_ENV_VAR = "LRLIB_CACHE"


def cache_dir() -> Path:
    """The folder for generated data: ``$LRLIB_CACHE`` if set, else ``~/.cache/lrlib``."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "lrlib")


def mnist1d_arrays(n: int = 60_000, generator_seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """``n`` MNIST-1D examples, ``(x, y)``, as the ``mnist1d`` package's ``make_dataset`` makes them.

    MNIST-1D (Greydanus 2020) turns ten hand-made 1-D templates into 40-point signals
    by padding, random scaling, translation, shear and correlated plus i.i.d. noise,
    ``n // 10`` per class; the package then standardises the whole set. Its default
    arguments (``get_dataset_args()``, seed 42) are used with ``num_samples = n``; the
    downloader (``get_dataset``) is never called. The arrays are cached in
    :func:`cache_dir` under a name that holds ``n``, the seed and a hash of the
    arguments, and the global NumPy and ``random`` states, which ``make_dataset``
    reseeds, are put back.

    Args:
        n: examples to generate, a multiple of 10 (>= 100).
        generator_seed: ``make_dataset``'s seed.

    Returns:
        ``x`` float32 ``(n, 40)`` and ``y`` int64 ``(n,)``, in the package's order.
    """
    n = check_int("n", n, minimum=100)
    if n % 10:
        raise ValueError(f"n must be a multiple of 10 (n // 10 signals per class), got {n}")
    generator_seed = check_int("generator_seed", generator_seed, minimum=0)
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:
        raise ImportError("load_mnist1d needs the mnist1d package: pip install mnist1d") from error
    args = get_dataset_args()
    args.num_samples, args.seed = n, generator_seed
    settings = {k: v for k, v in vars(args).items() if k != "url"}
    tag = hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:12]
    path = cache_dir() / f"mnist1d-{n}-{generator_seed}-{tag}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return stored["x"], stored["y"]
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        made = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    x = np.concatenate([made["x"], made["x_test"]]).astype(np.float32)
    y = np.concatenate([made["y"], made["y_test"]]).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(partial, x=x, y=y)
    os.replace(partial, path)  # atomic: an interrupted write never leaves a half file under the name
    return x, y


def load_mnist1d(n: int = 60_000, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
                 device: torch.device | str = "cpu") -> Split:
    """MNIST-1D: ``n`` 40-point signals of ten classes, split stratified into train, val and test.

    Big enough that a minibatch is a small sample of the training set (the default
    48,000 training signals; a batch of 1,024 is 2% of them), and hard enough that a
    small MLP does not saturate (Greydanus 2020 reports 32% test accuracy for logistic
    regression and 68% for an MLP on 4,000 training signals). The signals come from
    :func:`mnist1d_arrays` (generated once, then cached); the split is stratified as
    :func:`load_digits`'s is.

    Args:
        n: examples (a multiple of 10).
        val_fraction, test_fraction: shares held out, each in (0, 1), together below 0.9.
        seed: seed of the split (the signals themselves do not depend on it).
        device: where the tensors go.

    Example:
        >>> d = load_mnist1d(n=1000)
        >>> tuple(d.x_train.shape), len(d.y_val), len(d.y_test)
        ((800, 40), 100, 100)
    """
    val_fraction, test_fraction = _fractions(val_fraction, test_fraction)
    seed = check_int("seed", seed, minimum=0)
    x, y = mnist1d_arrays(n)
    train, val, test = _stratified_order(y, (val_fraction, test_fraction), seed)
    as_x = lambda idx: torch.tensor(x[idx], dtype=torch.float32)  # noqa: E731
    as_y = lambda idx: torch.tensor(y[idx], dtype=torch.int64)  # noqa: E731
    return Split(as_x(train), as_y(train), as_x(val), as_y(val), as_x(test), as_y(test)).to(device)


#: The texts that ship with lrlib (``lrlib/corpora``; licences in its README).
TEXTS = {"shakespeare": "shakespeare.txt", "python_docs": "python_docs.txt"}


def text_bytes(name: str) -> bytes:
    """The raw bytes of one of :data:`TEXTS`: ``"shakespeare"`` (public domain) or
    ``"python_docs"`` (Python 3.11's reference topics, PSF licence).

    >>> text_bytes("shakespeare")[:14]
    b'First Citizen:'
    """
    if name not in TEXTS:
        raise ValueError(f"name must be one of {sorted(TEXTS)}, got {name!r}")
    return (Path(__file__).parent / "corpora" / TEXTS[name]).read_bytes()


def text_span(n_bytes: int, context: int, val_fraction: float, test_fraction: float
              ) -> dict[str, tuple[int, int]]:
    """The byte ranges ``[start, stop)`` of a text's train, val and test parts.

    The text is cut into three contiguous parts, train first, then validation, then
    test, so no window of a held-out part overlaps a training window (a random split
    of overlapping windows would leak most of each held-out window into training).
    """
    n_val = int(round(val_fraction * n_bytes))
    n_test = int(round(test_fraction * n_bytes))
    n_train = n_bytes - n_val - n_test
    if min(n_train, n_val, n_test) < context + 1:
        raise ValueError(f"the text ({n_bytes} bytes) is too short for context={context} and these fractions")
    return {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n_bytes)}


def _windows(data: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows: ``x[i] = data[iT : iT+T]``, ``y[i] = data[iT+1 : iT+T+1]``."""
    count = (len(data) - 1) // context
    x = data[: count * context].reshape(count, context)
    y = data[1 : count * context + 1].reshape(count, context)
    return torch.tensor(x, dtype=torch.int64), torch.tensor(y, dtype=torch.int64)


def load_text(name: str = "shakespeare", context: int = 64, val_fraction: float = 0.05,
              test_fraction: float = 0.05, device: torch.device | str = "cpu") -> Split:
    """A text of :data:`TEXTS` as byte windows for next-byte prediction.

    The vocabulary is the 256 byte values (no tokenizer to fit, and one vocabulary for
    both texts, so a model pretrained on one can be fine-tuned on the other). The text
    is split into contiguous train, validation and test parts (:func:`text_span`), each
    cut into non-overlapping windows of ``context`` bytes; ``y`` is ``x`` shifted by one
    byte. Batches of windows come from :func:`minibatches`, as for images.

    Args:
        name: ``"shakespeare"`` or ``"python_docs"``.
        context: bytes per window, :math:`T` (>= 2).
        val_fraction, test_fraction: shares of the text held out, each in (0, 1), together below 0.9.
        device: where the tensors go.

    Example:
        >>> d = load_text("shakespeare", context=64)
        >>> tuple(d.x_train.shape), bool((d.x_train[0, 1:] == d.y_train[0, :-1]).all())
        ((15685, 64), True)
    """
    context = check_int("context", context, minimum=2)
    val_fraction, test_fraction = _fractions(val_fraction, test_fraction)
    data = np.frombuffer(text_bytes(name), dtype=np.uint8).astype(np.int64)
    parts = text_span(len(data), context, val_fraction, test_fraction)
    tensors = [t for start, stop in parts.values() for t in _windows(data[start:stop], context)]
    return Split(*tensors).to(device)


def _fractions(val_fraction: float, test_fraction: float) -> tuple[float, float]:
    val_fraction = check_real("val_fraction", val_fraction)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    test_fraction = check_real("test_fraction", test_fraction)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if val_fraction + test_fraction >= 0.9:
        raise ValueError("val_fraction + test_fraction must be below 0.9 to leave data to train on, "
                         f"got {val_fraction} + {test_fraction}")
    return val_fraction, test_fraction


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
