"""lrlib.param_groups: every parameter once, the right rate and decay, with any optimizer and schedule."""

import numpy as np
import pytest
import torch
from torch import nn

from lrlib import schedules as S
from lrlib.models import TransformerClassifier
from lrlib.param_groups import discriminative_groups, group_lrs, layerwise_lr_groups, model_layers


def _ids(groups):
    return [id(p) for g in groups for p in g["params"]]


@pytest.mark.parametrize("norm_first", [True, False])
def test_layers_of_the_transformer_run_input_to_output(norm_first):
    model = TransformerClassifier(n_layers=3, norm_first=norm_first)
    layers = model_layers(model)
    names = [[n for n, _ in layer] for layer in layers]
    assert names[0][0] == "position" and names[0][1].startswith("embed.")
    assert [layer[0].split(".")[:2] for layer in names[1:4]] == [["blocks", str(i)] for i in range(3)]
    assert names[-1][0].startswith("head.")
    assert len(layers) == 5 + (1 if norm_first else 0)  # embed, 3 blocks, [final norm], head


def test_every_parameter_once_with_the_decayed_rate():
    model = TransformerClassifier(n_layers=4, norm_first=False)
    groups = layerwise_lr_groups(model, 2e-5, 0.9, weight_decay=0.01)  # the seeds' base and decay
    ids = _ids(groups)
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(ids) == len(set(ids))
    n = len(model_layers(model))
    for g in groups:
        i = int(g["name"].split()[1])
        assert g["lr"] == pytest.approx(2e-5 * 0.9 ** (n - 1 - i), rel=1e-12)
    lrs = [g["lr"] for g in groups]
    assert max(lrs) == 2e-5 and min(lrs) == pytest.approx(2e-5 * 0.9 ** (n - 1), rel=1e-12)
    for g in groups:
        for p in g["params"]:
            assert g["weight_decay"] == (0.0 if p.ndim < 2 else 0.01)


def test_groups_work_with_adamw_and_the_ratios_survive_a_schedule():
    torch.manual_seed(0)
    model = TransformerClassifier(n_layers=2)
    opt = torch.optim.AdamW(layerwise_lr_groups(model, 1e-3, 0.5, weight_decay=0.1))
    schedule = S.warmup_cosine(1e-3, 5, 20)
    sched = schedule.attach(opt)
    start = [g["lr"] for g in opt.param_groups]
    initial = [g["initial_lr"] for g in opt.param_groups]
    x, y = torch.randn(8, 8, 8), torch.randint(0, 10, (8,))
    for t in range(12):
        expected = np.array(initial) * schedule(t) / schedule.lr
        np.testing.assert_allclose([g["lr"] for g in opt.param_groups], expected, rtol=1e-12)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()
    assert start[0] == 0.0  # the warmup starts at 0 for every group
    assert len(group_lrs(opt)) == len(opt.param_groups)


def test_frozen_parameters_are_left_out():
    model = TransformerClassifier(n_layers=2)
    for p in model.embed.parameters():
        p.requires_grad_(False)
    ids = set(_ids(layerwise_lr_groups(model, 1e-3, 0.8)))
    assert not ids & {id(p) for p in model.embed.parameters()}
    assert ids == {id(p) for p in model.parameters() if p.requires_grad}


def test_discriminative_groups_split_body_and_head():
    model = TransformerClassifier(n_layers=2)
    groups = discriminative_groups(model, "head", body_lr=1e-4, head_lr=1e-2, weight_decay=0.05)
    head = {id(p) for p in model.head.parameters()}
    for g in groups:
        ids = {id(p) for p in g["params"]}
        assert (ids <= head) == g["name"].startswith("head")
        assert g["lr"] == (1e-2 if g["name"].startswith("head") else 1e-4)
    assert sorted(_ids(groups)) == sorted(id(p) for p in model.parameters())
    torch.optim.SGD(groups, lr=0.1).step()  # a valid torch optimizer


def test_explicit_layers_must_cover_everything_once():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    named = list(model.named_parameters())
    with pytest.raises(ValueError, match=r"missing: \['1.weight', '1.bias'\]"):
        layerwise_lr_groups(model, 1e-3, 0.9, layers=[named[:2]])
    with pytest.raises(ValueError, match="'0.weight' is in more than one layer"):
        layerwise_lr_groups(model, 1e-3, 0.9, layers=[named[:2], named])


@pytest.mark.parametrize("kwargs,match", [
    ({"base_lr": 0.0, "decay": 0.9}, "base_lr must be > 0"),
    ({"base_lr": 1e-3, "decay": 0.0}, r"decay must be in \(0, 1\], got 0.0"),
    ({"base_lr": 1e-3, "decay": 1.5}, r"decay must be in \(0, 1\], got 1.5"),
    ({"base_lr": 1e-3, "decay": 0.9, "weight_decay": -1.0}, "weight_decay must be >= 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layerwise_lr_groups(nn.Linear(2, 2), **kwargs)
    with pytest.raises(ValueError, match="head must name a submodule"):
        discriminative_groups(nn.Linear(2, 2), "head", 1e-3, 1e-2)
