"""Many learning rates at once: K copies of a small MLP trained as one batched model (chapter 7).

On a small model most of a training step is overhead: launching dozens of tiny
kernels, running Python. :class:`BatchedMLP` stacks the weights of K independent
MLPs along a leading dimension and evaluates all of them with batched matrix
multiplies (``torch.baddbmm``); :class:`BatchedSGD` and :class:`BatchedAdam` update
them with one learning rate per copy. Each copy follows exactly the arithmetic of
``torch.optim.SGD`` / ``torch.optim.Adam`` on its own MLP, so a sweep of K rates
(and seeds) is one training run whose results match K separate runs to float
tolerance (the tests check it). :func:`train_batched` runs such a sweep on the digits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrlib._checks import check_int, check_nonnegative, check_real
from lrlib.data import Split, minibatches
from lrlib.models import MLP


class BatchedMLP(nn.Module):
    """K independent MLPs (Linear, ReLU, ..., Linear) held as stacked weights.

    ``weights[l]`` has shape ``(K, d_in, d_out)`` and ``biases[l]`` ``(K, d_out)``;
    input ``(K, batch, d_in)`` gives output ``(K, batch, d_out)``, copy ``k`` seeing
    only ``x[k]``.

    Args:
        models: the K :class:`~lrlib.models.MLP` s to copy (same widths); they are not changed.
    """

    def __init__(self, models: Sequence[MLP]):
        super().__init__()
        if not models:
            raise ValueError("models must not be empty")
        linears = [[m for m in model.net if isinstance(m, nn.Linear)] for model in models]
        shapes = [[lin.weight.shape for lin in layer] for layer in linears]
        if any(s != shapes[0] for s in shapes):
            raise ValueError("every model must have the same layer widths")
        if any(not isinstance(m, (nn.Linear, nn.ReLU)) for model in models for m in model.net):
            raise ValueError("BatchedMLP copies plain MLPs (Linear and ReLU layers only)")
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([layer[i].weight.detach().T for layer in linears]).clone())
            for i in range(len(linears[0])))
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([layer[i].bias.detach() for layer in linears]).clone())
            for i in range(len(linears[0])))

    @property
    def k(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(2)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b.unsqueeze(1), h, w)
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        return h

    def member(self, k: int) -> MLP:
        """Copy ``k`` as an ordinary :class:`~lrlib.models.MLP`."""
        widths = [w.shape[1] for w in self.weights] + [self.weights[-1].shape[2]]
        model = MLP(widths[0], widths[1:-1], widths[-1]).to(self.weights[0].device)
        linears = [m for m in model.net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for lin, w, b in zip(linears, self.weights, self.biases):
                lin.weight.copy_(w[k].T)
                lin.bias.copy_(b[k])
        return model


def _per_copy(lrs: Sequence[float] | torch.Tensor, k: int) -> torch.Tensor:
    lrs = torch.as_tensor(lrs, dtype=torch.float64).flatten()
    if lrs.numel() != k:
        raise ValueError(f"lrs must have one rate per copy ({k}), got {lrs.numel()}")
    if not bool((lrs > 0).all()):
        raise ValueError(f"lrs must all be > 0, got {lrs.tolist()}")
    return lrs


class _Batched(torch.optim.Optimizer):
    """Shared plumbing: every parameter's first dimension is the copy, ``lrs[k]`` its rate."""

    def __init__(self, params, lrs, defaults):
        params = list(params)
        k = params[0].shape[0]
        if any(p.shape[0] != k for p in params):
            raise ValueError("every parameter must have the copies along its first dimension")
        super().__init__(params, defaults)
        self.lrs = _per_copy(lrs, k)

    def _lr(self, p: torch.Tensor) -> torch.Tensor:
        return self.lrs.to(p.device, p.dtype).view(-1, *([1] * (p.ndim - 1)))


class BatchedSGD(_Batched):
    """``torch.optim.SGD(lr, momentum)`` for each copy, with copy ``k`` at rate ``lrs[k]``:
    :math:`b_t = \\mu b_{t-1} + g_t` (:math:`b_1 = g_1`), :math:`\\theta_t = \\theta_{t-1} - \\eta_k b_t`."""

    def __init__(self, params, lrs, momentum: float = 0.0):
        momentum = check_nonnegative("momentum", momentum)
        super().__init__(params, lrs, {"momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if group["momentum"]:
                    state = self.state[p]
                    if "buf" not in state:
                        state["buf"] = d.clone()
                    else:
                        state["buf"].mul_(group["momentum"]).add_(d)
                    d = state["buf"]
                p.sub_(self._lr(p) * d)


class BatchedAdam(_Batched):
    """``torch.optim.Adam`` for each copy, with copy ``k`` at rate ``lrs[k]``:
    :math:`m_t = \\beta_1 m + (1-\\beta_1) g`, :math:`v_t = \\beta_2 v + (1-\\beta_2) g^2`,
    :math:`\\theta_t = \\theta - \\frac{\\eta_k}{1-\\beta_1^t}\\,
    m_t / (\\sqrt{v_t}/\\sqrt{1-\\beta_2^t} + \\epsilon)`."""

    def __init__(self, params, lrs, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        for name, beta in zip(("betas[0]", "betas[1]"), betas):
            beta = check_real(name, beta)
            if not 0 <= beta < 1:
                raise ValueError(f"{name} must be in [0, 1), got {beta}")
        super().__init__(params, lrs, {"betas": tuple(betas), "eps": check_nonnegative("eps", eps)})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                state["m"].lerp_(p.grad, 1 - beta1)
                state["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (state["v"].sqrt() / math.sqrt(1 - beta2**t)).add_(group["eps"])
                p.sub_(self._lr(p) / (1 - beta1**t) * state["m"] / denom)


@dataclass
class BatchedRun:
    """What :func:`train_batched` recorded: ``losses[k, t]`` for copy ``k`` at step ``t``,
    and each copy's held-out loss and accuracy at the end (NaN where it diverged)."""

    lrs: np.ndarray
    seeds: np.ndarray
    losses: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray


def train_batched(data: Split, lrs: Sequence[float], seeds: Sequence[int], *, steps: int = 100,
                  batch_size: int = 64, hidden: Sequence[int] = (128,), optimizer: str = "adam",
                  momentum: float = 0.9) -> BatchedRun:
    """Train one digits MLP per ``(lr, seed)`` pair, all at once.

    Copy ``k`` starts from ``torch.manual_seed(seed_k)`` then ``MLP(64, hidden, 10)`` and
    sees ``minibatches(..., seed=seed_k)``, so it is the run that a loop over the pairs
    would make, one at a time.

    Args:
        data: a :class:`~lrlib.data.Split` (e.g. ``load_digits()``); copies run on its device.
        lrs, seeds: one rate and one seed per copy (same length).
        steps, batch_size, hidden: the training run.
        optimizer: ``"adam"`` (betas 0.9, 0.999) or ``"sgd"`` (with ``momentum``).
    """
    if len(lrs) != len(seeds):
        raise ValueError(f"lrs and seeds must have the same length, got {len(lrs)} and {len(seeds)}")
    steps = check_int("steps", steps, minimum=1)
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    device = data.x_train.device
    members = []
    for seed in seeds:
        torch.manual_seed(int(seed))
        members.append(MLP(64, tuple(hidden), 10))
    model = BatchedMLP(members).to(device)
    opt = (BatchedAdam(model.parameters(), lrs) if optimizer == "adam"
           else BatchedSGD(model.parameters(), lrs, momentum))
    streams = [minibatches(data.x_train, data.y_train, batch_size, steps=steps, seed=int(s)) for s in seeds]
    k = len(seeds)
    losses = torch.empty(k, steps, device=device)
    for t, batch in enumerate(zip(*streams)):
        x = torch.stack([b[0] for b in batch])
        y = torch.stack([b[1] for b in batch])
        per_copy = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="none").view(k, -1).mean(1)
        losses[:, t] = per_copy.detach()
        opt.zero_grad(set_to_none=True)
        per_copy.sum().backward()  # copies share nothing, so each gets its own gradient
        opt.step()
    with torch.no_grad():
        logits = model(data.x_test.expand(k, *data.x_test.shape))
        test_loss = F.cross_entropy(logits.flatten(0, 1), data.y_test.repeat(k), reduction="none").view(k, -1)
        accuracy = (logits.argmax(-1) == data.y_test).float().mean(1)
    return BatchedRun(np.asarray(lrs, float), np.asarray(seeds), losses.cpu().numpy(),
                      test_loss.mean(1).cpu().numpy(), accuracy.cpu().numpy())
