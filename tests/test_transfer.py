"""lrlib.transfer: the two digit tasks and a fine-tuning trial that is a pure function of its config."""

import math

import pytest
import torch

from lrlib.models import count_parameters
from lrlib.transfer import METHODS, digit_task, finetune_batch, finetune_trial, pretrain


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
