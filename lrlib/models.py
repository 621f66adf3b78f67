"""Tiny models for the course, and how many parameters a transformer has.

Chapter 1 (*The update rule*) counts a transformer's parameters by formula and
checks the count against :class:`TinyTransformer`; it trains :class:`MLP` on the
digits from :mod:`lrlib.data` to measure how big one step is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lrlib._checks import check_int


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """The number of scalar parameters, :math:`\\sum_p \\mathrm{numel}(p)`.

    Works on models built on the ``meta`` device (no memory allocated), so a
    GPT-2-sized stack can be counted on a laptop.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def transformer_param_count(
    d_model: int,
    d_ff: int,
    n_layers: int = 1,
    vocab_size: int = 0,
    *,
    bias: bool = True,
    norms: bool = True,
    tied_embeddings: bool = False,
) -> int:
    """Parameters of a transformer stack, by formula.

    Per layer, the weight matrices give :math:`4d^2` for attention
    (:math:`W_Q, W_K, W_V, W_O`, each :math:`d \\times d`) and :math:`2 d\\, d_{ff}`
    for the MLP (:math:`d \\to d_{ff} \\to d`). Biases add :math:`3d + d` (attention)
    and :math:`d_{ff} + d` (MLP); two LayerNorms add :math:`2d` each with a bias,
    :math:`d` each without. Around the stack, a token embedding adds :math:`V d`
    and an output projection :math:`d V` (plus :math:`V` with a bias), unless it
    is tied to the embedding.

    The often-quoted count :math:`Vd + L(4d^2 + 2 d\\, d_{ff}) + dV` is this formula
    with ``bias=False, norms=False``.

    Args:
        d_model: width :math:`d` (>= 1).
        d_ff: hidden width of the MLP :math:`d_{ff}` (>= 1).
        n_layers: number of layers :math:`L` (>= 0).
        vocab_size: :math:`V`; 0 (default) counts the layers alone.
        bias: count the linear layers' and LayerNorms' biases.
        norms: count the two LayerNorms of each layer.
        tied_embeddings: the output projection reuses the embedding matrix.

    Example (one layer, :math:`d = 16, d_{ff} = 40`: ``4*256 + 2*640 + 9*16 + 40``):
        >>> transformer_param_count(16, 40)
        2488
    """
    d = check_int("d_model", d_model, minimum=1)
    f = check_int("d_ff", d_ff, minimum=1)
    n_layers = check_int("n_layers", n_layers, minimum=0)
    vocab_size = check_int("vocab_size", vocab_size, minimum=0)
    per_layer = 4 * d * d + 2 * d * f
    if bias:
        per_layer += 4 * d + f + d
    if norms:
        per_layer += 2 * (2 * d if bias else d)
    total = n_layers * per_layer + vocab_size * d
    if vocab_size and not tied_embeddings:
        total += d * vocab_size + (vocab_size if bias else 0)
    return total


class MLP(nn.Module):
    """A multilayer perceptron: Linear, ReLU, ..., Linear.

    Args:
        in_features: input width (64 for the 8x8 digits).
        hidden: widths of the hidden layers, e.g. ``(64,)`` or ``(128, 64)``.
        out_features: number of outputs (10 classes for digits).

    Example:
        >>> MLP(64, (32,), 10)(torch.zeros(5, 64)).shape
        torch.Size([5, 10])
    """

    def __init__(self, in_features: int = 64, hidden: Sequence[int] = (64,), out_features: int = 10):
        super().__init__()
        widths = [check_int("in_features", in_features, 1)]
        widths += [check_int("hidden", h, 1) for h in hidden]
        widths.append(check_int("out_features", out_features, 1))
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class TinyTransformer(nn.Module):
    """A small transformer over token sequences: embedding, ``n_layers`` encoder layers, output head.

    Built from ``torch.nn.TransformerEncoderLayer`` so its parameter count is
    exactly :func:`transformer_param_count` plus a learned position embedding of
    ``max_len * d_model``.

    Args:
        vocab_size: :math:`V`, tokens in the vocabulary.
        d_model: width :math:`d`; must be divisible by ``n_heads``.
        n_heads: attention heads.
        d_ff: MLP hidden width :math:`d_{ff}` (default ``4 * d_model``).
        n_layers: encoder layers :math:`L`.
        max_len: longest sequence (for the position embedding).
        norm_first: pre-norm (True, default) or post-norm (False) layers.
        bias: biases in linear layers and LayerNorms.

    Example:
        >>> m = TinyTransformer(vocab_size=20, d_model=16, n_heads=2, n_layers=1, max_len=8)
        >>> m(torch.zeros(3, 8, dtype=torch.long)).shape
        torch.Size([3, 8, 20])
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        n_heads: int = 4,
        d_ff: int | None = None,
        n_layers: int = 2,
        max_len: int = 64,
        *,
        norm_first: bool = True,
        bias: bool = True,
    ):
        super().__init__()
        check_int("vocab_size", vocab_size, 1)
        check_int("d_model", d_model, 1)
        check_int("n_heads", n_heads, 1)
        if d_model % n_heads:
            raise ValueError(f"d_model must be divisible by n_heads={n_heads}, got {d_model}")
        d_ff = 4 * d_model if d_ff is None else check_int("d_ff", d_ff, 1)
        check_int("max_len", max_len, 1)
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, d_ff, dropout=0.0, batch_first=True, norm_first=norm_first, bias=bias
        )
        self.layers = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, vocab_size, bias=bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        h = self.token_embedding(tokens) + self.position_embedding(positions)
        return self.head(self.layers(h))
