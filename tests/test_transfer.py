"""lrlib.transfer: the two digit tasks and a fine-tuning trial that is a pure function of its config."""

import math

import numpy as np
import pytest
import torch

from lrlib import schedules as S
from lrlib.models import count_parameters
from lrlib.transfer import (
    METHODS,
    digit_task,
    finetune_batch,
    finetune_schedule,
    finetune_trial,
    pretrain,
    pretrain_batch,
)

from .conftest import devices


def test_digit_tasks_are_relabelled_subsets():
    pre = digit_task(range(5))
    assert all(set(y.tolist()) == set(range(5)) for y in (pre.y_train, pre.y_val, pre.y_test))
    few = digit_task(range(5, 10), per_class=7, seed=3)
    assert len(few.y_train) == 35 and torch.bincount(few.y_train).tolist() == [7] * 5
    again = digit_task(range(5, 10), per_class=7, seed=3)
    assert torch.equal(few.x_train, again.x_train)
    assert not torch.equal(few.x_train, digit_task(range(5, 10), per_class=7, seed=4).x_train)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("pre") / "pretrained.pt"
    scores = pretrain(path, steps=60)
    assert scores["test_acc"] > 0.5  # it learned 0-4 well beyond chance (0.2)
    return path


@pytest.mark.parametrize("method", METHODS)
def test_each_method_is_deterministic_and_trains_what_it_says(method, weights):
    config = {"lr": 1e-2, "seed": 1, "method": method, "pretrained": str(weights), "steps": 15}
    first, second = finetune_trial(config), finetune_trial(config)
    assert first == second
    assert set(first) == {"val_loss", "val_acc", "test_loss", "test_acc", "train_loss"}
    assert 0 <= first["val_acc"] <= 1 and 0 <= first["test_acc"] <= 1
    assert math.isfinite(first["train_loss"])


def test_methods_train_different_numbers_of_weights(weights, monkeypatch):
    counted = {}
    import lrlib.transfer as transfer

    real = transfer.train

    def spy(model, optimizer, *args, **kwargs):
        counted[method] = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
        return real(model, optimizer, *args, **kwargs)

    monkeypatch.setattr(transfer, "train", spy)
    for method in METHODS:
        finetune_trial({"lr": 1e-2, "seed": 0, "method": method, "pretrained": str(weights), "steps": 2})
    from lrlib.models import TransformerClassifier

    full = count_parameters(TransformerClassifier(n_classes=5, **transfer.ARCH))
    assert counted["full"] == counted["layerwise"] == full
    assert counted["head"] == 32 * 5 + 5
    assert counted["head"] < counted["lora"] < counted["full"]


def test_bad_method(weights):
    with pytest.raises(ValueError, match="method must be one of"):
        finetune_trial({"lr": 1e-2, "seed": 0, "method": "adapter", "pretrained": str(weights)})


@pytest.mark.parametrize("method", METHODS)
def test_a_batch_of_fine_tunings_equals_each_trial_alone(method, weights):
    """Oracle: finetune_trial, the plain torch loop (per-layer rates, frozen body, LoRA included)."""
    configs = [{"lr": lr, "seed": seed, "method": method, "pretrained": str(weights), "steps": 12}
               for lr, seed in ((3e-3, 0), (3e-2, 1), (1e-2, 0))]
    together = finetune_batch(configs)
    for config, batched in zip(configs, together):
        alone = finetune_trial(config)
        assert batched == pytest.approx(alone, rel=5e-4), config


def test_a_batch_needs_configs_that_differ_only_in_rate_and_seed(weights):
    configs = [{"lr": 1e-2, "seed": 0, "method": m, "pretrained": str(weights)} for m in ("full", "head")]
    with pytest.raises(ValueError, match="configs must differ in lr and seed only"):
        finetune_batch(configs)
    assert finetune_batch([]) == []


@pytest.mark.parametrize("extra,expected", [
    ({}, S.warmup_cosine(0.01, 4, 40)),
    ({"warmup": 0.25}, S.warmup_cosine(0.01, 10, 40)),
    ({"schedule": "warmup_linear"}, S.warmup_linear(0.01, 4, 40)),
    ({"schedule": "warmup_linear", "warmup": 0.0}, S.polynomial(0.01, 40)),
    ({"schedule": "constant"}, S.constant(0.01)),
    ({"schedule": "stlr"}, S.slanted_triangular(0.01, 40, 0.1, 32)),
], ids=["default", "warmup 25%", "bert", "linear, no warmup", "constant", "stlr"])
def test_finetune_schedule_names_the_schedules_it_says(extra, expected):
    ours = finetune_schedule({"lr": 0.01, "steps": 40, **extra})
    np.testing.assert_allclose(ours(np.arange(41)), expected(np.arange(41)), rtol=1e-12, atol=1e-15)


def test_finetune_schedule_rejects_bad_names_and_warmups():
    with pytest.raises(ValueError, match="schedule must be one of"):
        finetune_schedule({"lr": 0.01, "schedule": "onecycle"})
    with pytest.raises(ValueError, match=r"warmup must be a fraction in \[0, 1\), got 1.0"):
        finetune_schedule({"lr": 0.01, "warmup": 1.0})


@pytest.mark.parametrize("method,extra", [
    ("full", {"schedule": "stlr"}), ("full", {"schedule": "constant"}),
    ("layerwise", {"decay": 1 / 2.6}), ("lora", {"rank": 16, "alpha": 8.0, "rslora": True}),
], ids=["stlr", "constant", "discriminative 2.6", "rslora r16"])
def test_the_recipes_batch_as_their_trials_run(method, extra, weights):
    """Oracle: finetune_trial (torch.optim.Adam with an attached schedule and param groups)."""
    configs = [{"lr": lr, "seed": seed, "method": method, "pretrained": str(weights), "steps": 12, **extra}
               for lr, seed in ((3e-3, 0), (3e-2, 1))]
    for config, batched in zip(configs, finetune_batch(configs)):
        assert batched == pytest.approx(finetune_trial(config), rel=5e-4), config


def test_rslora_changes_the_run_and_alpha_over_rank_is_what_matters(weights):
    """LoRA's update is scaled by alpha / r: (r=4, alpha=8) and (r=4, rslora, alpha=4) share the
    scale 2 and so the same run; rslora at alpha=8 (scale 4) does not."""
    base = {"lr": 1e-2, "seed": 0, "method": "lora", "pretrained": str(weights), "steps": 10}
    plain = finetune_trial({**base, "alpha": 8.0})
    same_scale = finetune_trial({**base, "alpha": 4.0, "rslora": True})
    assert same_scale == pytest.approx(plain, rel=1e-6)
    assert finetune_trial({**base, "alpha": 8.0, "rslora": True})["val_loss"] != plain["val_loss"]


def test_a_batch_of_pretrainings_equals_each_pretraining_alone(tmp_path):
    lrs, seeds = [3e-3, 1e-2], [0, 1]
    paths = [tmp_path / f"batched{k}.pt" for k in range(2)]
    together = pretrain_batch(lrs, seeds, paths, steps=25)
    for k, (lr, seed) in enumerate(zip(lrs, seeds)):
        alone = pretrain(tmp_path / f"alone{k}.pt", steps=25, lr=lr, seed=seed)
        assert together[k] == pytest.approx(alone, rel=5e-4)
        ours, theirs = torch.load(paths[k]), torch.load(tmp_path / f"alone{k}.pt")
        for name in theirs:
            torch.testing.assert_close(ours[name], theirs[name], rtol=1e-2, atol=1e-3)  # float32 sums
    with pytest.raises(ValueError, match="one entry per copy"):
        pretrain_batch([1e-3], [0, 1], paths)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("method", ["full", "lora"])
def test_fine_tuning_trains_on_the_device_it_is_given(method, device, weights, monkeypatch):
    """The device travels in the config: the model and data are there, and the run matches the CPU's."""
    from lrlib import transfer

    seen = []
    real = transfer.train

    def spy(model, optimizer, batches, *args, **kwargs):
        seen.append({p.device.type for p in model.parameters()})
        return real(model, optimizer, batches, *args, **kwargs)

    monkeypatch.setattr(transfer, "train", spy)
    config = {"lr": 3e-3, "seed": 1, "method": method, "pretrained": str(weights), "steps": 8}
    on_device = finetune_trial({**config, "device": device})
    assert seen == [{device}]
    on_cpu = finetune_trial(config)
    assert on_device["val_loss"] == pytest.approx(on_cpu["val_loss"], rel=1e-3)
    batched = finetune_batch([{**config, "device": device}, {**config, "seed": 2, "device": device}])
    assert batched[0]["val_loss"] == pytest.approx(on_cpu["val_loss"], rel=1e-3)


@pytest.mark.parametrize("device", devices())
def test_pretraining_on_a_device_saves_weights_any_device_can_load(device, tmp_path):
    scores = pretrain(tmp_path / "w.pt", steps=5, device=device)
    state = torch.load(tmp_path / "w.pt", weights_only=True)
    assert {v.device.type for v in state.values()} == {"cpu"} and math.isfinite(scores["val_loss"])
