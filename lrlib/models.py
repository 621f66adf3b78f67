"""Tiny models for the course, and how many parameters a transformer has.

Chapter 1 (*The update rule*) counts a transformer's parameters by formula and
checks the count against :class:`TinyTransformer`; it trains :class:`MLP` on the
digits from :mod:`lrlib.data` to measure how big one step is. Chapter 5 (*Warmup*)
trains :class:`TransformerClassifier`, pre-norm and post-norm, on the digits read
as sequences of pixel rows.
"""

from __future__ import annotations

import math
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

    Each hidden layer is ``Linear -> [BatchNorm1d] -> ReLU -> [Dropout]``; chapter 6
    (*The LR finder*) uses the optional layers to see how they move the range test.

    Args:
        in_features: input width (64 for the 8x8 digits).
        hidden: widths of the hidden layers, e.g. ``(64,)`` or ``(128, 64)``.
        out_features: number of outputs (10 classes for digits).
        batch_norm: a BatchNorm after each hidden Linear (default False).
        dropout: dropout probability after each hidden ReLU, in [0, 1) (default 0: none).

    Example:
        >>> MLP(64, (32,), 10)(torch.zeros(5, 64)).shape
        torch.Size([5, 10])
    """

    def __init__(self, in_features: int = 64, hidden: Sequence[int] = (64,), out_features: int = 10, *,
                 batch_norm: bool = False, dropout: float = 0.0):
        super().__init__()
        widths = [check_int("in_features", in_features, 1)]
        widths += [check_int("hidden", h, 1) for h in hidden]
        widths.append(check_int("out_features", out_features, 1))
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers += [nn.BatchNorm1d(b)] if batch_norm else []
                layers.append(nn.ReLU())
                layers += [nn.Dropout(dropout)] if dropout else []
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


class TransformerBlock(nn.Module):
    """One transformer encoder layer, written out so that every operation is visible.

    Post-norm (the 2017 original, ``norm_first=False``) normalises *after* adding
    each branch to the residual stream; pre-norm (GPT-2 on, ``norm_first=True``)
    normalises the input of each branch and leaves the residual stream untouched:

    .. math::

        \\text{post: } h = \\mathrm{LN}(x + \\mathrm{Attn}(x)),\\ y = \\mathrm{LN}(h + \\mathrm{MLP}(h))
        \\qquad
        \\text{pre: } h = x + \\mathrm{Attn}(\\mathrm{LN}(x)),\\ y = h + \\mathrm{MLP}(\\mathrm{LN}(h))

    It computes what ``torch.nn.TransformerEncoderLayer`` (dropout 0, ReLU) computes
    with the same weights, and has exactly the per-layer count of
    :func:`transformer_param_count`. Unlike the fused PyTorch layer, it runs under
    ``torch.func.vmap``, so many copies train as one batched model. Chapter 5
    (*Warmup*) compares the two norm placements.

    Args:
        d_model: width :math:`d`, divisible by ``n_heads``.
        n_heads: attention heads.
        d_ff: MLP hidden width (default ``4 * d_model``).
        norm_first: pre-norm (True) or post-norm (False).
        bias: biases in the linear layers and LayerNorms.
        causal: position :math:`i` attends to positions :math:`\\le i` only (a language
            model's mask, :class:`TinyGPT`); False lets every token see every other.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, *, norm_first: bool = True,
                 bias: bool = True, causal: bool = False):
        super().__init__()
        check_int("d_model", d_model, 1)
        check_int("n_heads", n_heads, 1)
        if d_model % n_heads:
            raise ValueError(f"d_model must be divisible by n_heads={n_heads}, got {d_model}")
        d_ff = 4 * d_model if d_ff is None else check_int("d_ff", d_ff, 1)
        self.n_heads, self.norm_first, self.causal = n_heads, bool(norm_first), bool(causal)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)  # W_Q, W_K, W_V stacked
        self.proj = nn.Linear(d_model, d_model, bias=bias)  # W_O
        self.ff_in = nn.Linear(d_model, d_ff, bias=bias)
        self.ff_out = nn.Linear(d_ff, d_model, bias=bias)
        self.norm1 = nn.LayerNorm(d_model, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, bias=bias)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape
        head = d // self.n_heads
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, head).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(head)
        if self.causal:  # -inf above the diagonal: exp() below turns it into a weight of 0
            future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        # softmax written out: torch's CPU kernel is slow on rows this short (8 tokens), and a
        # softmax ignores the shift, so the max needs no gradient.
        scores = torch.exp(scores - scores.detach().amax(dim=-1, keepdim=True))
        weights = scores / scores.sum(dim=-1, keepdim=True)
        return self.proj((weights @ v).transpose(1, 2).reshape(batch, length, d))

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff_out(torch.relu(self.ff_in(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.attention(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attention(x))
        return self.norm2(x + self.mlp(x))


class TransformerClassifier(nn.Module):
    """A tiny transformer that classifies a sequence of feature vectors.

    Each of the ``seq_len`` input vectors (for the digits, one 8-pixel row of the
    image) is a token: a linear embedding plus a learned position embedding, then
    ``n_layers`` :class:`TransformerBlock` s, a mean over the tokens and a linear head.
    A pre-norm stack ends with a LayerNorm (as GPT-2 does), because its residual
    stream is never normalised otherwise. The parameter count is
    ``transformer_param_count(d, d_ff, n_layers)`` plus :meth:`extra_parameters`.

    Args:
        in_features: width of one input token (8 for digit rows).
        seq_len: tokens per sequence (8 rows).
        n_classes: outputs (10 digits).
        d_model, n_heads, d_ff, n_layers: the stack's shape.
        norm_first: pre-norm (True, default) or post-norm (False).

    Example:
        >>> m = TransformerClassifier(8, 8, 10, d_model=32, n_heads=4, n_layers=2)
        >>> m(torch.zeros(5, 8, 8)).shape
        torch.Size([5, 10])
        >>> count_parameters(m) == transformer_param_count(32, 128, 2) + m.extra_parameters()
        True
    """

    def __init__(self, in_features: int = 8, seq_len: int = 8, n_classes: int = 10, *, d_model: int = 32,
                 n_heads: int = 4, d_ff: int | None = None, n_layers: int = 2, norm_first: bool = True):
        super().__init__()
        self.in_features = check_int("in_features", in_features, 1)
        self.seq_len = check_int("seq_len", seq_len, 1)
        self.n_classes = check_int("n_classes", n_classes, 1)
        check_int("n_layers", n_layers, 1)
        self.embed = nn.Linear(in_features, d_model)
        self.position = nn.Parameter(torch.randn(seq_len, d_model) * 0.02)
        self.blocks = nn.Sequential(*(TransformerBlock(d_model, n_heads, d_ff, norm_first=norm_first)
                                      for _ in range(n_layers)))
        self.final_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model, n_classes)

    def extra_parameters(self) -> int:
        """Parameters outside the stack: embeddings, final norm (pre-norm only), head."""
        d = self.embed.out_features
        norm = 2 * d if isinstance(self.final_norm, nn.LayerNorm) else 0
        return (self.in_features + 1) * d + self.seq_len * d + norm + (d + 1) * self.n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.reshape(-1, self.seq_len, self.in_features)) + self.position
        return self.head(self.final_norm(self.blocks(h)).mean(dim=1))


class TinyGPT(nn.Module):
    """A tiny GPT-style language model: it predicts each next byte of a text (chapters 5 and 7b).

    Token and learned position embeddings, ``n_layers`` causal :class:`TransformerBlock` s
    (pre-norm, GPT-2's placement, or post-norm, the 2017 original), a final LayerNorm
    when pre-norm, and a linear head over the vocabulary. ``model(tokens)`` with tokens of
    shape ``(batch, T)`` gives logits ``(batch, T, vocab_size)``; the logits at position
    :math:`t` see tokens :math:`0..t` only, so the loss is the usual next-token
    cross-entropy :math:`-\\frac{1}{BT}\\sum_{b,t} \\log p_\\theta(x_{b,t+1} \\mid x_{b,\\le t})`.
    It runs under ``torch.func.vmap``, so K copies train as one
    :class:`lrlib.batched.BatchedModel`.

    Args:
        vocab_size: tokens (256 for bytes).
        context: the longest sequence (the position table's length).
        d_model, n_heads, d_ff, n_layers: the stack's shape.
        norm_first: pre-norm (True, default) or post-norm (False).

    Example:
        >>> m = TinyGPT(vocab_size=16, context=8, d_model=16, n_heads=2, n_layers=1)
        >>> m(torch.zeros(3, 8, dtype=torch.long)).shape
        torch.Size([3, 8, 16])
    """

    def __init__(self, vocab_size: int = 256, context: int = 64, *, d_model: int = 64, n_heads: int = 4,
                 d_ff: int | None = None, n_layers: int = 2, norm_first: bool = True):
        super().__init__()
        check_int("vocab_size", vocab_size, 1)
        self.context = check_int("context", context, 1)
        check_int("n_layers", n_layers, 1)
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Parameter(torch.randn(context, d_model) * 0.02)
        self.blocks = nn.Sequential(*(TransformerBlock(d_model, n_heads, d_ff, norm_first=norm_first,
                                                       causal=True) for _ in range(n_layers)))
        self.final_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[-1]
        if length > self.context:
            raise ValueError(f"tokens must be at most context={self.context} long, got {length}")
        h = self.token_embedding(tokens) + self.position_embedding[:length]
        return self.head(self.final_norm(self.blocks(h)))


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank correction (LoRA, Hu et al. 2022).

    .. math:: y = W x + b + s\\, B A x, \\qquad s = \\frac{\\alpha}{r}
        \\ \\text{(LoRA)} \\quad\\text{or}\\quad s = \\frac{\\alpha}{\\sqrt r}
        \\ \\text{(rank-stabilised LoRA, Kalajdzievski 2023)}

    with :math:`A \\in \\mathbb R^{r \\times d_{in}}` initialised like a Linear layer and
    :math:`B \\in \\mathbb R^{d_{out} \\times r}` initialised to zero, so the wrapped layer
    computes exactly what the original did until :math:`B` is trained. Only
    :math:`r(d_{in} + d_{out})` parameters train. Chapter 7 compares its best learning
    rate with full fine-tuning's.

    Args:
        base: the layer to adapt (its weight and bias are frozen).
        rank: :math:`r` (>= 1).
        alpha: the scale :math:`\\alpha` (> 0).
        rslora: scale the update by :math:`\\alpha/\\sqrt r` instead of :math:`\\alpha / r`
            (peft's ``use_rslora``), so that its size does not shrink as the rank grows.
    """

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float = 8.0, rslora: bool = False):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be an nn.Linear, got {type(base).__name__}")
        self.rank = check_int("rank", rank, 1)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.scale = alpha / (math.sqrt(rank) if rslora else rank)
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # nn.Linear's own initialisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * (x @ self.lora_a.T) @ self.lora_b.T

    def merged_weight(self) -> torch.Tensor:
        """:math:`W + \\frac{\\alpha}{r} B A`: the plain Linear weight this layer now computes."""
        return self.base.weight + self.scale * self.lora_b @ self.lora_a


def add_lora(model: nn.Module, rank: int = 4, alpha: float = 8.0, targets: Sequence[str] = ("qkv", "proj"),
             train: Sequence[str] = ("head",), rslora: bool = False) -> nn.Module:
    """Freeze ``model`` and wrap every ``nn.Linear`` whose attribute name is in ``targets`` in a
    :class:`LoRALinear` (``rank``, ``alpha``, ``rslora``); the submodules named in ``train`` (a
    new task's head) stay trainable.

    Returns the same model, changed in place. Raises ``ValueError`` when no layer matched.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                setattr(module, name, LoRALinear(child, rank, alpha, rslora))
                wrapped += 1
    if not wrapped:
        raise ValueError(f"no nn.Linear named one of {tuple(targets)} in the model")
    for name in train:
        for p in getattr(model, name).parameters():
            p.requires_grad_(True)
    return model
