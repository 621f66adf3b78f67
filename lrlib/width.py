"""Width and the learning rate: the Maximal Update Parametrisation (muP) for the course's MLP.

Under the standard parametrisation (SP: PyTorch's default initialisation, one rate for every
weight) the best learning rate moves as a model is widened: with Adam each hidden weight moves
by about ``lr`` per step whatever the width, and a unit that sums ``fan_in`` such moves, all
pushed in a correlated direction, changes by about ``lr * fan_in``. The Maximal Update
Parametrisation (Yang et al. 2021, *Tensor Programs V*) rescales initialisation, per-layer rates
and the readout so that every layer's activations move by the same amount per step at any width:
a rate tuned on a narrow model then transfers to a wide one.

With the width multiplier ``m = fan_in / base_fan_in`` of a weight (``1`` for a dimension that does
not grow with width, like the 64 pixels in or the 10 classes out), the rules implemented here are
the ones of the ``mup`` package: the parametrisation of the paper's Table 3, in the equivalent
form the package implements, with a ``1/m`` multiplier on the readout:

============================  ===================  ==================  =====================
weight                        initialisation       Adam rate           SGD rate
============================  ===================  ==================  =====================
input (fixed in, width out)   as SP                ``lr``              ``lr * m_out``
hidden (width in and out)     as SP (var 1/fan_in) ``lr / m_in``       ``lr * m_out / m_in``
readout (width in, fixed out) SP x sqrt(m)         ``lr``              ``lr * m_in``
biases of width-sized layers  SP x sqrt(m_in)      ``lr``              ``lr * m_out``
readout bias                  SP x sqrt(m)         ``lr``              ``lr``
============================  ===================  ==================  =====================

and the readout computes ``W (x * output_mult / m) + b`` (:class:`ScaledReadout`), so its
effective weights have variance ``~ 1/fan_in**2`` rather than SP's ``1/fan_in``. At
``width == base_width`` every factor is 1 and the model *is* the SP model: muP changes nothing at
the width you tuned on, only how the rate carries to other widths.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lrlib._checks import check_int, check_nonnegative, check_positive
from lrlib.models import MLP

OPTIMIZER_KINDS = ("adam", "sgd")


class ScaledReadout(nn.Linear):
    """A readout layer that multiplies its input by ``input_scale`` first: ``W (s x) + b``.

    muP's ``1/m`` readout multiplier (``input_scale = output_mult / m``); with ``input_scale=1``
    it is ``nn.Linear``.

    Example:
        >>> layer = ScaledReadout(4, 2, input_scale=0.5)
        >>> x = torch.ones(1, 4)
        >>> torch.allclose(layer(x), nn.functional.linear(0.5 * x, layer.weight, layer.bias))
        True
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, input_scale: float = 1.0):
        super().__init__(in_features, out_features, bias)
        self.input_scale = check_positive("input_scale", input_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x * self.input_scale)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input_scale={self.input_scale:g}"


def width_multipliers(model: nn.Module, base: nn.Module) -> dict[str, tuple[float, ...]]:
    """Each parameter's growth per dimension: ``shape[d] / base_shape[d]`` (1 where it does not grow).

    ``base`` is the same architecture at the base width. For a ``Linear`` weight of shape
    ``(out, in)`` the pair is ``(m_out, m_in)``; for a bias, ``(m_out,)``.

    Raises:
        ValueError: naming the parameter, when the two models' parameter names or ranks differ.

    Example:
        >>> width_multipliers(MLP(64, (128,), 10), MLP(64, (32,), 10))["net.0.weight"]
        (4.0, 1.0)
    """
    shapes = {name: p.shape for name, p in base.named_parameters()}
    mults = {}
    for name, p in model.named_parameters():
        if name not in shapes or len(shapes[name]) != p.dim():
            raise ValueError(f"base has no parameter {name!r} of rank {p.dim()}; "
                             "base must be the same architecture at the base width")
        mults[name] = tuple(n / b for n, b in zip(p.shape, shapes[name]))
    if len(mults) != len(shapes):
        missing = sorted(set(shapes) - set(mults))
        raise ValueError(f"model has no parameter(s) {missing} that base has")
    return mults


def mup_lr_scales(model: nn.Module, base: nn.Module, optimizer: str = "adam") -> dict[str, float]:
    """The factor muP multiplies the base rate by, for each parameter (the table in the module doc).

    A weight that grows in both dimensions ("hidden") gets ``1/m_in`` under Adam and
    ``m_out/m_in`` under SGD; one that grows in one dimension (input weights, readout weights,
    biases of width-sized layers) keeps the rate under Adam and gets that dimension's ``m`` under
    SGD; one that does not grow keeps the rate.

    Args:
        model: the model to train (e.g. :func:`mup_mlp`).
        base: the same architecture at the base width.
        optimizer: ``"adam"`` (also AdamW, RMSprop, Adagrad: any optimizer that divides by a
            per-coordinate scale) or ``"sgd"`` (with or without momentum).

    Example:
        >>> scales = mup_lr_scales(mup_mlp(128), mup_mlp(32), "adam")
        >>> scales["net.2.weight"], scales["net.0.weight"]
        (0.25, 1.0)
    """
    if optimizer not in OPTIMIZER_KINDS:
        raise ValueError(f"optimizer must be one of {OPTIMIZER_KINDS}, got {optimizer!r}")
    scales = {}
    for name, mult in width_multipliers(model, base).items():
        grown = [m for m in mult if m != 1.0]
        if len(grown) > 2:
            raise ValueError(f"parameter {name!r} grows in {len(grown)} dimensions; "
                             "muP here handles at most 2")
        if len(mult) >= 2 and len(grown) == 2:
            m_out, m_in = mult[0], mult[1]
            scales[name] = 1.0 / m_in if optimizer == "adam" else m_out / m_in
        elif len(grown) == 1:
            scales[name] = 1.0 if optimizer == "adam" else grown[0]
        else:
            scales[name] = 1.0
    return scales


def mup_param_groups(model: nn.Module, base: nn.Module, lr: float, optimizer: str = "adam",
                     weight_decay: float = 0.0) -> list[dict]:
    """Parameter groups for a ``torch.optim`` optimizer: one group per distinct muP rate.

    Each group's weight decay is ``weight_decay`` divided by its rate's factor, as the ``mup``
    package does, so that PyTorch's decoupled decay (``lr * weight_decay`` per step in AdamW)
    is the same at every width.

    Args:
        model, base, optimizer: as :func:`mup_lr_scales`.
        lr: the base rate, the one tuned at the base width.
        weight_decay: the base weight decay (>= 0).

    Example:
        >>> model = mup_mlp(128)
        >>> groups = mup_param_groups(model, mup_mlp(32), lr=1e-2)
        >>> opt = torch.optim.Adam(groups)
        >>> sorted({g["lr"] for g in opt.param_groups})
        [0.0025, 0.01]
    """
    lr = check_positive("lr", lr)
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    scales = mup_lr_scales(model, base, optimizer)
    groups: dict[float, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(scales[name], []).append(p)
    return [{"params": params, "lr": lr * s, "weight_decay": weight_decay / s}
            for s, params in groups.items()]


def mup_mlp(width: int, *, base_width: int = 32, depth: int = 2, in_features: int = 64,
            out_features: int = 10, output_mult: float = 1.0) -> MLP:
    """An :class:`~lrlib.models.MLP` with ``depth`` hidden layers of ``width``, in muP.

    Built from PyTorch's default initialisation (drawn from the global generator, exactly as
    ``MLP(in_features, (width,) * depth, out_features)`` draws it), then rescaled as the module
    doc's table says: the readout becomes a :class:`ScaledReadout` with
    ``input_scale = output_mult / m`` and its weights and bias are multiplied by ``sqrt(m)``; the
    bias of every layer with a width-sized input by ``sqrt(m)``. Train it with
    :func:`mup_param_groups` (or :func:`mup_lr_scales` for the batched optimizers).

    Args:
        width: hidden width (>= 1).
        base_width: the width the rate is tuned at (``m = width / base_width``).
        depth: number of hidden layers (>= 1).
        in_features, out_features: fixed input and output sizes.
        output_mult: a width-independent constant on the readout (a tunable of muP).

    Example:
        >>> model = mup_mlp(64, base_width=32)
        >>> model.net[-1].input_scale
        0.5
    """
    width = check_int("width", width, 1)
    base_width = check_int("base_width", base_width, 1)
    depth = check_int("depth", depth, 1)
    output_mult = check_positive("output_mult", output_mult)
    m = width / base_width
    model = MLP(in_features, (width,) * depth, out_features)
    old = model.net[-1]
    readout = ScaledReadout(width, out_features, input_scale=output_mult / m)
    with torch.no_grad():
        readout.weight.copy_(old.weight * math.sqrt(m))
        readout.bias.copy_(old.bias * math.sqrt(m))
        for layer in _linears(model)[1:-1]:  # width-sized input: bias ~ 1/sqrt(fan_in) -> Theta(1)
            layer.bias.mul_(math.sqrt(m))
    model.net[-1] = readout
    return model


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [mod for mod in model.modules() if isinstance(mod, nn.Linear)]


def coordinate_updates(model: nn.Module, x: torch.Tensor, before: dict[str, torch.Tensor]) -> list[float]:
    """How much each ``Linear``'s output moved, per coordinate: ``RMS(f_now(x) - f_before(x))``.

    The muP "coordinate check": ``before`` is ``{name: tensor}`` of the parameters at an
    earlier step (``{n: p.detach().clone() for n, p in model.named_parameters()}``). Under muP
    the numbers stay the same order as the width grows; under SP the hidden and output ones grow.

    Example:
        >>> model = MLP(4, (8,), 2); x = torch.ones(3, 4)
        >>> before = {n: p.detach().clone() for n, p in model.named_parameters()}
        >>> coordinate_updates(model, x, before)
        [0.0, 0.0]
    """
    outputs = {}
    hooks = [layer.register_forward_hook(_recorder(outputs, i)) for i, layer in enumerate(_linears(model))]
    try:
        with torch.no_grad():
            model(x)
            now = dict(outputs)
            current = {n: p.detach().clone() for n, p in model.named_parameters()}
            for n, p in model.named_parameters():
                p.copy_(before[n])
            model(x)
            for n, p in model.named_parameters():
                p.copy_(current[n])
    finally:
        for hook in hooks:
            hook.remove()
    return [float((now[i] - outputs[i]).pow(2).mean().sqrt()) for i in sorted(now)]


def _recorder(store: dict, index: int):
    def hook(module, inputs, output):
        store[index] = output.detach().clone()
    return hook


__all__ = ["ScaledReadout", "coordinate_updates", "mup_lr_scales", "mup_mlp", "mup_param_groups",
           "width_multipliers"]
