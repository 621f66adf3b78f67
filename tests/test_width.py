"""lrlib.width: muP for the MLP, against Microsoft's ``mup`` package (the oracle) and the coordinate check."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrlib.batched import train_batched
from lrlib.data import load_digits, minibatches
from lrlib.models import MLP
from lrlib.training import train
from lrlib.width import (
    ScaledReadout,
    coordinate_updates,
    mup_lr_scales,
    mup_mlp,
    mup_param_groups,
    width_multipliers,
)

mup = pytest.importorskip("mup", reason="the muP oracle: `make venv` installs mup (without its extras)")


def _oracle(width, depth, base_width=32, seed=0, output_mult=1.0):
    """The same MLP parametrised by the mup package: its MuReadout, set_base_shapes' rescaling."""

    def build(w, s):
        torch.manual_seed(s)
        model = MLP(64, (w,) * depth, 10)
        old = model.net[-1]
        readout = mup.MuReadout(w, 10, output_mult=output_mult)
        with torch.no_grad():  # the draws of the default init, as mup_mlp keeps them
            readout.weight.copy_(old.weight)
            readout.bias.copy_(old.bias)
        model.net[-1] = readout
        return model

    model = build(width, seed)
    mup.set_base_shapes(model, build(base_width, seed), delta=build(2 * base_width, seed))
    return model


def _lr_by_name(model, optimizer):
    by_id = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in model.named_parameters()}


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("width", [32, 64, 256])
@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_per_parameter_rates_equal_the_mup_package(depth, width, kind):
    lr = 0.01
    ours = mup_mlp(width, depth=depth)
    theirs = _oracle(width, depth)
    make = mup.MuAdam if kind == "adam" else mup.MuSGD
    expected = _lr_by_name(theirs, make(theirs.parameters(), lr=lr))
    scales = mup_lr_scales(ours, mup_mlp(32, depth=depth), kind)
    assert set(scales) == set(expected)
    for name, want in expected.items():
        assert lr * scales[name] == pytest.approx(want, rel=1e-12), name
    torch_opt = torch.optim.Adam(mup_param_groups(ours, mup_mlp(32, depth=depth), lr, kind))
    assert _lr_by_name(ours, torch_opt) == pytest.approx(expected, rel=1e-12)
    # weight decay: mup scales each group's decay inversely to its rate (lr * wd fixed)
    theirs_wd = make(theirs.parameters(), lr=lr, weight_decay=0.1)
    ours_wd = torch.optim.AdamW(mup_param_groups(ours, mup_mlp(32, depth=depth), lr, kind, weight_decay=0.1))
    decay = {id(p): g["weight_decay"] for g in theirs_wd.param_groups for p in g["params"]}
    mine = {id(p): g["weight_decay"] for g in ours_wd.param_groups for p in g["params"]}
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert mine[id(a)] == pytest.approx(decay[id(b)], rel=1e-12), name


@pytest.mark.parametrize("depth,width,output_mult", [(1, 128, 1.0), (2, 96, 1.0), (2, 256, 4.0)])
def test_initialisation_and_adam_training_equal_the_mup_package(depth, width, output_mult):
    torch.manual_seed(3)
    ours = mup_mlp(width, depth=depth, output_mult=output_mult)
    theirs = _oracle(width, depth, seed=3, output_mult=output_mult)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7, msg=name)
    base = mup_mlp(32, depth=depth)
    opt_ours = torch.optim.Adam(mup_param_groups(ours, base, 3e-3))
    opt_theirs = mup.MuAdam(theirs.parameters(), lr=3e-3)
    data = load_digits()
    for x, y in minibatches(data.x_train, data.y_train, 32, steps=10, seed=0):
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(ours(data.x_val), theirs(data.x_val), rtol=1e-4, atol=1e-5)


def test_at_the_base_width_mup_is_the_standard_model():
    torch.manual_seed(0)
    sp = MLP(64, (32, 32), 10)
    torch.manual_seed(0)
    mu = mup_mlp(32, base_width=32, depth=2)
    x = torch.randn(7, 64)
    torch.testing.assert_close(mu(x), sp(x), rtol=0, atol=0)
    assert set(mup_lr_scales(mu, mup_mlp(32, depth=2), "adam").values()) == {1.0}


def _coordinate_sizes(width, parametrization, steps=3, lr=1e-2, seeds=(0, 1, 2)):
    """Median over seeds of each layer's output change after a few Adam steps (the coordinate check)."""
    data = load_digits()
    sizes = []
    for seed in seeds:
        torch.manual_seed(seed)
        if parametrization == "mup":
            model = mup_mlp(width, depth=2)
            groups = mup_param_groups(model, mup_mlp(32, depth=2), lr)
        else:
            model = MLP(64, (width, width), 10)
            groups = [{"params": list(model.parameters()), "lr": lr}]
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        train(model, torch.optim.Adam(groups),
              minibatches(data.x_train, data.y_train, 64, steps=steps, seed=seed), F.cross_entropy)
        sizes.append(coordinate_updates(model, data.x_val, before))
    return np.median(np.array(sizes), axis=0)


def test_coordinate_check_mup_updates_stay_put_while_sp_ones_grow_with_width():
    widths = [64, 256, 1024]
    mu = np.array([_coordinate_sizes(w, "mup") for w in widths])
    sp = np.array([_coordinate_sizes(w, "sp") for w in widths])
    # muP: every layer's output moves by about the same amount at every width
    assert (mu.max(0) / mu.min(0) < 2).all(), mu
    # SP: the hidden and output layers' moves grow with the width (16x here: by far more than 2x)
    assert (sp[-1, 1:] / sp[0, 1:] > 4).all(), sp


def test_train_batched_mup_equals_separate_torch_runs():
    data = load_digits()
    lrs, seeds = [1e-3, 1e-2], [0, 1]
    run = train_batched(data, lrs, seeds, steps=30, batch_size=32, hidden=(128, 128), parametrization="mup")
    for k, (lr, seed) in enumerate(zip(lrs, seeds)):
        torch.manual_seed(seed)
        model = mup_mlp(128, depth=2)
        single = train(model, torch.optim.Adam(mup_param_groups(model, mup_mlp(32, depth=2), lr)),
                       minibatches(data.x_train, data.y_train, 32, steps=30, seed=seed), F.cross_entropy)
        np.testing.assert_allclose(run.losses[k], single.losses, rtol=1e-4)
        with torch.no_grad():
            val = F.cross_entropy(model(data.x_val), data.y_val).item()
        assert run.val_loss[k] == pytest.approx(val, rel=1e-4)


def test_width_multipliers_and_readout():
    mults = width_multipliers(mup_mlp(128, depth=2), mup_mlp(32, depth=2))
    assert mults["net.0.weight"] == (4.0, 1.0) and mults["net.2.weight"] == (4.0, 4.0)
    assert mults["net.4.weight"] == (1.0, 4.0) and mults["net.4.bias"] == (1.0,)
    layer = ScaledReadout(8, 3, input_scale=0.25)
    x = torch.randn(2, 8)
    torch.testing.assert_close(layer(x), F.linear(x / 4, layer.weight, layer.bias))
    assert "input_scale=0.25" in repr(layer)


def test_readout_effective_weights_shrink_like_one_over_width():
    # muP's readout: effective weights W * input_scale have std ~ 1/fan_in, SP's ~ 1/sqrt(fan_in)
    stds = {}
    for width in (64, 1024):
        torch.manual_seed(0)
        readout = mup_mlp(width).net[-1]
        stds[width] = float((readout.weight * readout.input_scale).detach().std())
    assert stds[64] / stds[1024] == pytest.approx(16, rel=0.1)
    assert math.isclose(mup_mlp(64).net[-1].input_scale, 0.5)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="width"):
        mup_mlp(0)
    with pytest.raises(ValueError, match="output_mult"):
        mup_mlp(64, output_mult=0.0)
    with pytest.raises(ValueError, match="optimizer"):
        mup_lr_scales(mup_mlp(64), mup_mlp(32), "lion")
    with pytest.raises(ValueError, match="base"):
        mup_lr_scales(mup_mlp(64, depth=2), mup_mlp(32, depth=1))
    with pytest.raises(ValueError, match="lr"):
        mup_param_groups(mup_mlp(64), mup_mlp(32), lr=-1.0)
    with pytest.raises(ValueError, match="input_scale"):
        ScaledReadout(4, 2, input_scale=-1.0)
    data = load_digits()
    with pytest.raises(ValueError, match="parametrization"):
        train_batched(data, [1e-3], [0], steps=2, parametrization="ntk")
    with pytest.raises(ValueError, match="hidden"):
        train_batched(data, [1e-3], [0], steps=2, hidden=(32, 64), parametrization="mup")
