"""Choosing where tensors live, and making runs repeatable.

Every chapter starts with ``device = pick_device(DEVICE)`` where ``DEVICE`` is a
papermill parameter (``"auto"`` by default). Autograding cannot inject
parameters, so the environment variable ``LRLIB_DEVICE`` overrides whatever the
notebook asked for: ``LRLIB_DEVICE=cuda make test`` runs the book on a GPU.
"""

from __future__ import annotations

import os
import random
import re

import numpy as np
import torch

from lrlib._checks import check_int

ENV_VAR = "LRLIB_DEVICE"
_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceUnavailableError(RuntimeError):
    """Raised when the requested device does not exist on this machine."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(preference: str | torch.device | None = "auto") -> torch.device:
    """Resolve a device preference to a :class:`torch.device`.

    ``"auto"`` picks CUDA when ``torch.cuda.is_available()``, else Apple's MPS
    when available, else the CPU. A non-empty environment variable
    ``LRLIB_DEVICE`` takes precedence over ``preference``.

    Args:
        preference: ``"auto"`` (default), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
            ``"mps"``, a ``torch.device``, or ``None`` (same as ``"auto"``).

    Returns:
        The device to put models and tensors on.

    Raises:
        ValueError: ``preference`` (or ``LRLIB_DEVICE``) is not one of the forms above.
        DeviceUnavailableError: CUDA or MPS was asked for and this machine has none,
            or ``cuda:N`` names a GPU index that does not exist.

    Example:
        >>> pick_device("cpu")
        device(type='cpu')
    """
    source = "preference"
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        preference, source = env, f"the environment variable {ENV_VAR}"
    if preference is None:
        preference = "auto"
    text = str(preference).strip().lower()
    if not _PATTERN.match(text):
        raise ValueError(
            f"{source} must be one of 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', "
            f"got {preference!r}"
        )
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"{source} asks for {text!r}, but CUDA is not available on this machine "
                "(torch.cuda.is_available() is False; is this a CPU-only torch build?). "
                "Use 'auto' or 'cpu'."
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceUnavailableError(
                f"{source} asks for {text!r}, but this machine has {count} CUDA device(s): "
                f"the index must be in [0, {count - 1}]"
            )
    if device.type == "mps" and not _mps_available():
        raise DeviceUnavailableError(
            f"{source} asks for 'mps', but MPS is not available on this machine. "
            "Use 'auto' or 'cpu'."
        )
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and all GPUs).

    The same seed then gives the same initial weights, batches and figures on one
    device. (GPU kernels may still differ from CPU ones in the last bits.)

    Args:
        seed: an int in [0, 2**32 - 1].

    Example:
        >>> seed_everything(0); a = torch.rand(2)
        >>> seed_everything(0); bool((a == torch.rand(2)).all())
        True
    """
    seed = check_int("seed", seed, minimum=0)
    if seed > 2**32 - 1:
        raise ValueError(f"seed must be in [0, 2**32 - 1], got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
