"""Parameter groups with their own rates and weight decay (chapter 7, *Analysing a fine-tuning sweep*).

Fine-tuning rarely uses one rate for the whole network. :func:`layerwise_lr_groups`
gives each layer a rate that shrinks geometrically with depth (layer-wise learning
rate decay), :func:`discriminative_groups` splits a model into a body and a head
with their own rates, and both leave biases and normalisation weights out of weight
decay. The groups are plain ``torch.optim`` param-group dicts, so they work with any
optimizer, with PyTorch's schedulers and with :meth:`lrlib.schedules.Schedule.attach`
(which keeps every group's ratio to the base rate).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lrlib._checks import check_nonnegative, check_positive, check_real

NamedParams = list[tuple[str, nn.Parameter]]


def model_layers(model: nn.Module) -> list[NamedParams]:
    """The model's trainable parameters as layers, from the input side to the output side.

    Each child module in registration order is a layer, except that a
    ``Sequential`` or ``ModuleList`` child (a stack of blocks) contributes one layer
    per element. Parameters held by the model itself (a learned position embedding,
    say) join the first layer. Frozen parameters (``requires_grad=False``) are left out.
    For a model whose children are not registered input to output, pass ``layers``
    to :func:`layerwise_lr_groups` yourself.
    """
    layers: list[NamedParams] = []
    own = [(n, p) for n, p in model.named_parameters(recurse=False) if p.requires_grad]
    for name, child in model.named_children():
        parts = (list(child.named_children()) if isinstance(child, (nn.Sequential, nn.ModuleList))
                 else [("", child)])
        for sub, module in parts:
            prefix = f"{name}.{sub}." if sub else f"{name}."
            params = [(prefix + n, p) for n, p in module.named_parameters() if p.requires_grad]
            if params:
                layers.append(params)
    if own:
        if layers:
            layers[0] = own + layers[0]
        else:
            layers.append(own)
    return layers


def _no_decay(name: str, p: nn.Parameter) -> bool:
    """Biases and the gains of normalisation layers: every parameter with fewer than 2 dimensions."""
    return p.ndim < 2


def _groups(params: NamedParams, lr: float, weight_decay: float, label: str) -> list[dict]:
    decay = [p for n, p in params if not _no_decay(n, p)]
    plain = [p for n, p in params if _no_decay(n, p)]
    out = []
    if decay:
        out.append({"params": decay, "lr": lr, "weight_decay": weight_decay, "name": label})
    if plain:
        out.append({"params": plain, "lr": lr, "weight_decay": 0.0, "name": f"{label} (no decay)"})
    return out


def _check_cover(model: nn.Module, layers: Sequence[NamedParams]) -> None:
    seen: dict[int, str] = {}
    for layer in layers:
        for name, p in layer:
            if id(p) in seen:
                raise ValueError(f"parameter {name!r} is in more than one layer (also as {seen[id(p)]!r})")
            seen[id(p)] = name
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(f"layers must cover every trainable parameter; missing: {missing[:5]}"
                         + (" ..." if len(missing) > 5 else ""))


def layerwise_lr_groups(
    model: nn.Module,
    base_lr: float,
    decay: float,
    *,
    weight_decay: float = 0.0,
    layers: Sequence[NamedParams] | None = None,
) -> list[dict]:
    """Layer-wise rate decay: the top layer gets ``base_lr``, each layer below it ``decay`` times less.

    With :math:`L` layers numbered :math:`0` (input side) to :math:`L - 1` (the head),
    layer :math:`i` trains at :math:`\\eta_i = \\eta\\, \\gamma^{L - 1 - i}`. The layers
    near the input, which hold the most general features of a pretrained model,
    move least. Every trainable parameter lands in exactly one group (the seeds'
    version silently left the embeddings out); parameters with fewer than two
    dimensions (biases, LayerNorm gains) get ``weight_decay=0``.

    Args:
        model: the network.
        base_lr: :math:`\\eta`, the top layer's rate (> 0). The seeds use 2e-5.
        decay: :math:`\\gamma` in (0, 1] (1: every layer the same). The seeds use 0.9.
        weight_decay: for the parameters with two or more dimensions (>= 0).
        layers: the layers, input side first, as lists of ``(name, parameter)``;
            default :func:`model_layers`.

    Returns:
        Param-group dicts with ``params``, ``lr``, ``weight_decay`` and a ``name``.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> groups = layerwise_lr_groups(net, 1e-3, 0.5, weight_decay=0.01)
        >>> [(g["name"], g["lr"], g["weight_decay"]) for g in groups[:2]]
        [('layer 0 (0)', 0.0005, 0.01), ('layer 0 (0) (no decay)', 0.0005, 0.0)]
        >>> [g["lr"] for g in groups[2:]]
        [0.001, 0.001]
    """
    base_lr = check_positive("base_lr", base_lr)
    decay = check_real("decay", decay)
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    layers = model_layers(model) if layers is None else [list(layer) for layer in layers]
    if not layers:
        raise ValueError("model has no trainable parameters")
    _check_cover(model, layers)
    groups = []
    n = len(layers)
    for i, layer in enumerate(layers):
        where = layer[0][0].rsplit(".", 2)[0] if "." in layer[0][0] else layer[0][0]
        groups += _groups(layer, base_lr * decay ** (n - 1 - i), weight_decay, f"layer {i} ({where})")
    return groups


def discriminative_groups(
    model: nn.Module,
    head: nn.Module | str,
    body_lr: float,
    head_lr: float,
    *,
    weight_decay: float = 0.0,
) -> list[dict]:
    """Two rates: one for the pretrained body, one (usually larger) for the new head.

    Args:
        model: the network.
        head: the head module, or its attribute name (e.g. ``"head"``).
        body_lr: rate for every trainable parameter outside the head (> 0).
        head_lr: rate for the head's parameters (> 0).
        weight_decay: for parameters with two or more dimensions; biases and norms get 0.

    Returns:
        Param-group dicts named ``"body"``, ``"head"`` (and their ``(no decay)`` parts).
    """
    body_lr, head_lr = check_positive("body_lr", body_lr), check_positive("head_lr", head_lr)
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    if isinstance(head, str):
        if not hasattr(model, head):
            raise ValueError(f"head must name a submodule of the model, got {head!r}")
        head = getattr(model, head)
    head_ids = {id(p) for p in head.parameters()}
    if not head_ids:
        raise ValueError("head has no parameters")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not head_ids <= {id(p) for _, p in model.named_parameters()}:
        raise ValueError("head must be a submodule of model")
    body = [(n, p) for n, p in named if id(p) not in head_ids]
    top = [(n, p) for n, p in named if id(p) in head_ids]
    return _groups(body, body_lr, weight_decay, "body") + _groups(top, head_lr, weight_decay, "head")


def group_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Each named group's current rate (``name`` or the group's index)."""
    return {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)}
