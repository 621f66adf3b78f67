"""Helpers for the executable chapters themselves (every chapter).

The prose of a chapter quotes numbers through MyST-NB's ``glue``; this module
makes that safe for NumPy and torch scalars, whose reprs (``np.float64(0.5)``)
MyST-NB cannot format.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

#: Set to 1 (or true/yes) to run every chapter in FAST mode, e.g. for a quick test build of the book.
FAST_ENV_VAR = "LRLIB_FAST"

#: Everything glued in this kernel, name -> value (handy when myst_nb is absent).
GLUED: dict[str, Any] = {}


def fast(flag: bool) -> bool:
    """A chapter's ``FAST`` flag, forced on when the environment variable ``LRLIB_FAST`` says so.

    Papermill sets ``FAST`` through the parameters cell; a book build cannot, so
    ``LRLIB_FAST=1 jupyter-book build .`` shrinks every chapter's loops instead.

    >>> fast(True)
    True
    """
    return bool(flag) or os.environ.get(FAST_ENV_VAR, "").strip().lower() in ("1", "true", "yes")


def as_builtin(value: Any) -> Any:
    """Turn NumPy and torch scalars (and 0-d arrays) into Python ``int``/``float``/``bool``.

    >>> as_builtin(np.float64(0.5)), as_builtin(torch.tensor(3))
    (0.5, 3)
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dim() == 0:
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def glue(name: str, value: Any, display: bool = False) -> None:
    """Glue ``value`` under ``name`` for the prose (``{glue:text}`name:.3f```), hidden by default.

    NumPy/torch scalars are converted to Python numbers first, so format specs
    such as ``:.3f`` work. Without ``myst_nb`` installed the value is only kept in
    :data:`GLUED`. Returns None, so a glue on a cell's last line prints nothing.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    value = as_builtin(value)
    GLUED[name] = value
    try:
        from myst_nb import glue as _myst_glue
    except ImportError:  # a learner without the book extra: nothing to render into
        return
    _myst_glue(name, value, display=display)


__all__ = ["GLUED", "as_builtin", "fast", "glue"]
