"""lrlib.trials: a trial is a pure function of its config, wherever it runs."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from lrlib.data import load_digits, minibatches
from lrlib.schedules import warmup_cosine
from lrlib.training import evaluate, train
from lrlib.trials import (
    SCHEDULES,
    DigitsTrial,
    Trial,
    batch_key,
    best_setting,
    results_frame,
    run_trial,
    run_trial_batch,
    run_trials,
    select,
    sweep_batch,
    sweep_trial,
    worker_pool,
)

from .conftest import devices

SMALL = {"steps": 8, "batch_size": 16, "n_layers": 2, "d_model": 16}


def test_same_trial_same_numbers_and_the_schedule_is_followed():
    args = {"warmup_steps": 3, "total_steps": 8}
    trial = DigitsTrial(1e-2, "warmup_cosine", args, **SMALL)
    a, b = run_trial(trial), run_trial(trial)
    np.testing.assert_array_equal(a.run.losses, b.run.losses)
    assert a.test_loss == b.test_loss and 0 <= a.test_accuracy <= 1
    np.testing.assert_allclose(a.run.lrs, warmup_cosine(1e-2, 3, 8)(np.arange(8)), rtol=1e-12)
    other = run_trial(DigitsTrial(1e-2, "warmup_cosine", args, seed=1, **SMALL))
    assert not np.array_equal(a.run.losses, other.run.losses)


def test_a_trial_is_the_loop_it_describes():
    """Oracle: the same training written out with torch alone."""
    from lrlib.data import load_digits, minibatches
    from lrlib.models import TransformerClassifier

    trial = DigitsTrial(3e-3, "constant", steps=6, batch_size=16, n_layers=2, d_model=16, seed=5)
    result = run_trial(trial)
    data = load_digits(seed=0)
    torch.manual_seed(5)
    model = TransformerClassifier(8, 8, 10, d_model=16, n_layers=2, norm_first=False)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for x, y in minibatches(data.x_train, data.y_train, 16, steps=6, seed=5):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(result.run.losses, losses, rtol=1e-6)
    with torch.no_grad():
        model.eval()
        val = torch.nn.functional.cross_entropy(model(data.x_val), data.y_val).item()
        test = torch.nn.functional.cross_entropy(model(data.x_test), data.y_test).item()
    assert result.val_loss == pytest.approx(val, rel=1e-6)
    assert result.test_loss == pytest.approx(test, rel=1e-6) and val != test


#: The arguments, besides the rate, of a 30-step run for every schedule a trial can name.
SCHEDULE_ARGS = {
    "constant": {}, "step_decay": {"step_size": 7, "gamma": 0.5}, "multistep": {"milestones": [5, 20]},
    "exponential": {"gamma": 0.9}, "cosine": {"total_steps": 30, "min_lr": 1e-3},
    "polynomial": {"total_steps": 30, "power": 2.0}, "one_cycle": {"total_steps": 30},
    "sgdr": {"T_0": 8, "T_mult": 2}, "warmup_linear": {"warmup_steps": 5, "total_steps": 30},
    "warmup_cosine": {"warmup_steps": 5, "total_steps": 30}, "wsd": {"warmup_steps": 5, "stable_steps": 10,
                                                                     "decay_steps": 15},
    "cyclic": {"max_lr": 0.1, "step_size_up": 6}, "warmup_constant": {"warmup_steps": 5},
}


def test_every_trial_schedule_has_a_case():
    assert set(SCHEDULE_ARGS) == set(SCHEDULES)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("name", SCHEDULES)
def test_the_optimizer_of_a_trial_uses_the_rate_its_schedule_gives(name, optimizer):
    """The rate in force at step t is s(t), also for cyclic, whose optimizer is built at base_lr."""
    trial = DigitsTrial(0.01, name, SCHEDULE_ARGS[name], steps=30, model="mlp", hidden=(8,),
                        optimizer=optimizer)
    result = run_trial(trial)
    np.testing.assert_allclose(result.run.lrs, trial.build_schedule()(np.arange(30)), rtol=1e-12, atol=0)
    if name == "cyclic":
        assert result.run.lrs.max() == pytest.approx(0.1)  # it reaches max_lr, not base_lr


@pytest.mark.parametrize("optimizer,cls", [("adam", torch.optim.Adam), ("radam", torch.optim.RAdam),
                                           ("sgd", torch.optim.SGD), ("schedulefree_sgd", "SGDScheduleFree"),
                                           ("schedulefree_adamw", "AdamWScheduleFree")])
def test_optimizer_names(optimizer, cls):
    if isinstance(cls, str):
        cls = getattr(pytest.importorskip("schedulefree"), cls)
    trial = DigitsTrial(0.01, optimizer=optimizer, model="mlp", hidden=(8,), momentum=0.5)
    opt = trial.build_optimizer(trial.build_model())
    assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.01
    if optimizer.endswith("sgd"):
        assert opt.param_groups[0]["momentum"] == 0.5


def test_tracking_norms_and_mlp_trials():
    result = run_trial(DigitsTrial(0.05, model="mlp", optimizer="sgd", steps=5, track_norms=3))
    assert result.run.grad_norms.shape == (3,) and np.all(result.run.update_norms > 0)


@pytest.mark.parametrize("common,per_trial", [
    ({"model": "transformer", "norm_first": False, "optimizer": "adam", **SMALL},
     [(3e-3, "warmup_cosine", {"warmup_steps": 3, "total_steps": 8}, 0), (1e-2, "constant", {}, 1),
      (3e-2, "cosine", {"total_steps": 8}, 0)]),
    ({"model": "transformer", "norm_first": True, "optimizer": "radam", **SMALL},
     [(1e-2, "constant", {}, 0), (1e-3, "wsd", {"warmup_steps": 2, "stable_steps": 3, "decay_steps": 3}, 2)]),
    ({"model": "mlp", "optimizer": "sgd", "steps": 40, "batch_size": 16, "hidden": (16,)},
     [(0.01, "cyclic", {"max_lr": 0.3, "step_size_up": 5}, 0), (0.2, "constant", {}, 1),
      (50.0, "constant", {}, 2)]),  # the last one diverges
    ({"model": "mlp", "optimizer": "schedulefree_adamw", "steps": 30, "batch_size": 16, "hidden": (16,)},
     [(3e-3, "warmup_constant", {"warmup_steps": 5}, 0), (1e-2, "constant", {}, 1)]),
    ({"model": "mlp", "optimizer": "schedulefree_sgd", "steps": 30, "batch_size": 16, "hidden": (16,)},
     [(0.1, "warmup_constant", {"warmup_steps": 5}, 0), (0.5, "cosine", {"total_steps": 30}, 1),
      (1e4, "constant", {}, 2)]),  # the last one diverges
], ids=["post-norm adam", "pre-norm radam", "mlp sgd", "mlp schedule-free adamw", "mlp schedule-free sgd"])
def test_a_batch_of_trials_equals_each_trial_run_alone(common, per_trial):
    """Oracle: run_trial, the plain torch loop of each trial."""
    trials = [DigitsTrial(lr, name, args, seed=seed, **common) for lr, name, args, seed in per_trial]
    together = run_trial_batch(trials)
    for trial, batched in zip(trials, together):
        alone = run_trial(trial)
        assert batched.trial == trial
        n = alone.run.diverged_at or trial.steps
        assert batched.run.diverged_at == alone.run.diverged_at
        np.testing.assert_allclose(batched.run.losses[:n], alone.run.losses[:n], rtol=2e-4)
        np.testing.assert_allclose(batched.run.lrs[:n], alone.run.lrs[:n], rtol=1e-12)
        for split in ("val", "test"):
            np.testing.assert_allclose(getattr(batched, f"{split}_loss"), getattr(alone, f"{split}_loss"),
                                       rtol=2e-4)
            diff = abs(getattr(batched, f"{split}_accuracy") - getattr(alone, f"{split}_accuracy"))
            assert diff <= 1 / 359 + 1e-9  # one image at most
    assert together[-1].run.diverged == common["optimizer"].endswith("sgd")
    if common["optimizer"].startswith("schedulefree"):  # evaluated at the average x, not at y
        trial = trials[0]
        model, data = trial.build_model(), load_digits()
        opt = trial.build_optimizer(model)
        sched = trial.build_schedule().attach(opt)
        opt.train()
        train(model, opt, minibatches(data.x_train, data.y_train, 16, steps=30, seed=0),
              torch.nn.functional.cross_entropy, scheduler=sched)
        at_y = evaluate(model, data.x_val, data.y_val).loss
        assert abs(at_y - together[0].val_loss) > 1e-4


def test_run_trials_batches_what_it_can_and_keeps_the_order():
    trials = [DigitsTrial(1e-3, seed=0, **SMALL), DigitsTrial(1e-2, model="mlp", steps=8, hidden=(8,)),
              DigitsTrial(3e-3, seed=1, **SMALL), DigitsTrial(3e-3, seed=1, track_norms=2, **SMALL)]
    assert batch_key(trials[0]) == batch_key(trials[2]) != batch_key(trials[1])
    batched, alone = run_trials(trials), run_trials(trials, batch=False)
    assert [r.trial for r in batched] == trials == [r.trial for r in alone]
    for a, b in zip(batched, alone):
        np.testing.assert_allclose(a.run.losses, b.run.losses, rtol=2e-4)
    assert batched[3].run.grad_norms.shape == (2,) and batched[2].run.grad_norms is None
    with pytest.raises(ValueError, match="trials must share everything but lr"):
        run_trial_batch(trials[:2])
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        run_trials(trials, max_batch=0)
    split = run_trials(trials, max_batch=1)  # every trial its own batch of one
    np.testing.assert_allclose(split[2].run.losses, batched[2].run.losses, rtol=2e-4)


def test_worker_pool_gives_the_results_of_this_process_in_order():
    trials = [DigitsTrial(lr, "cosine", {"total_steps": 8}, **SMALL) for lr in (1e-3, 3e-3, 1e-2)]
    here = run_trials(trials)
    with worker_pool(2) as pool:
        there = run_trials(trials, executor=pool)
    assert [r.trial.lr for r in there] == [1e-3, 3e-3, 1e-2]
    for a, b in zip(here, there):  # one thread there, two here: float32 sums may reassociate
        np.testing.assert_allclose(a.run.losses, b.run.losses, rtol=1e-5)
    with ThreadPoolExecutor(2) as threads:
        assert [r.trial for r in run_trials(trials, executor=threads)] == trials


@pytest.mark.parametrize("device", devices())
def test_trial_runs_on_device(device):
    result = run_trial(DigitsTrial(1e-3, device=device, **SMALL))
    assert np.isfinite(result.run.losses).all()


def test_results_frame_and_select():
    trials = [DigitsTrial(lr, "warmup_cosine", {"warmup_steps": w, "total_steps": 8}, **SMALL)
              for lr in (1e-3, 1e-2) for w in (0, 2)]
    results = run_trials(trials)
    frame = results_frame(results)
    assert len(frame) == 4
    assert {"lr", "warmup_steps", "total_steps", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
            "final_train_loss",
            "diverged", "seconds"} <= set(frame.columns)
    assert frame.warmup_steps.tolist() == [0, 2, 0, 2]
    picked = select(results, lr=1e-2, warmup_steps=2)
    assert [r.trial for r in picked] == [trials[3]]
    with pytest.raises(ValueError, match="unknown trial field 'warmup'"):
        select(results, warmup=2)


@pytest.mark.parametrize("kwargs,match", [
    ({"lr": 0.0}, "lr must be > 0"),
    ({"lr": 1e-3, "model": "cnn"}, "model must be one of"),
    ({"lr": 1e-3, "optimizer": "lamb"}, "optimizer must be one of"),
    ({"lr": 1e-3, "schedule": "inverse_sqrt"}, "schedule must be one of"),
    ({"lr": 1e-3, "schedule": "warmup_cosine", "schedule_args": {"warmup_steps": 9, "total_steps": 8}},
     "warmup_steps must be <= total_steps=8, got 9"),
    ({"lr": 1e-3, "steps": 0}, "steps must be >= 1"),
])
def test_bad_trials_are_rejected_where_they_are_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DigitsTrial(**kwargs)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        run_trials([], workers=0)


def test_best_setting_is_the_lowest_median_per_group():
    """Oracle: a loop over the groups and rates with numpy's median; NaN counts as the worst."""
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = [{"schedule": s, "warm": w, "lr": lr, "seed": seed, "val_loss": rng.random()}
            for s in "abc" for w in (0, 5) for lr in (0.1, 0.2, 0.4) for seed in range(3)]
    frame = pd.DataFrame(rows)
    frame.loc[frame.index[::7], "val_loss"] = np.nan
    picked = best_setting(frame, ["schedule", "warm"])
    for (name, warm), lr in picked.items():
        group = frame[(frame.schedule == name) & (frame.warm == warm)]
        medians = {x: np.median(np.nan_to_num(group[group.lr == x].val_loss.to_numpy(), nan=np.inf))
                   for x in (0.1, 0.2, 0.4)}
        assert lr == min(medians, key=medians.get)
    assert len(picked) == 6
    with pytest.raises(ValueError, match="frame has no column 'loss'"):
        best_setting(frame, "schedule", metric="loss")


def test_sweep_trial_and_batch_are_run_trial_as_run_sweep_wants_them(tmp_path):
    """Oracle: run_trial of the same DigitsTrial; the batch equals the trials one by one."""
    from lrlib.sweep import run_sweep

    extra = {"model": "mlp", "optimizer": "sgd", "steps": 20, "hidden": [16]}
    one = run_sweep(sweep_trial, [0.01, 0.1], seeds=[0, 1], extra=extra)
    alone = run_trial(DigitsTrial(0.1, seed=1, model="mlp", optimizer="sgd", steps=20, hidden=(16,)))
    row = one[(one.lr == 0.1) & (one.seed == 1)].iloc[0]
    assert row.val_loss == alone.val_loss and row.test_accuracy == alone.test_accuracy
    batched = run_sweep(sweep_trial, [0.01, 0.1], seeds=[0, 1], extra=extra, batch_fn=sweep_batch,
                        results=tmp_path / "sweep.jsonl")
    np.testing.assert_allclose(batched.val_loss, one.val_loss, rtol=2e-4)
    assert len((tmp_path / "sweep.jsonl").read_text().splitlines()) == 4


# --- the trial description covers MNIST-1D and the language model --------------------------------------

def test_a_language_model_trial_batched_equals_each_run_alone_and_learns():
    common = dict(data="shakespeare", model="gpt", d_model=16, n_layers=1, context=16, batch_size=8,
                  optimizer="adamw", weight_decay=0.1, betas=(0.9, 0.95), steps=12, eval_every=4)
    trials = [Trial(3e-3, "warmup_cosine", {"warmup_steps": 3, "total_steps": 12}, seed=0, **common),
              Trial(1e-2, "constant", {}, seed=1, **common)]
    together = run_trial_batch(trials)
    for trial, batched in zip(trials, together):
        alone = run_trial(trial)
        np.testing.assert_allclose(batched.run.losses, alone.run.losses, rtol=2e-4)
        np.testing.assert_allclose(batched.val_losses, alone.val_losses, rtol=2e-4)
        assert batched.val_steps.tolist() == [4, 8, 12]
        assert batched.val_loss == pytest.approx(alone.val_loss, rel=2e-4)
    # the first minibatch loss of an untrained byte model is close to log(256)
    assert together[0].run.losses[0] == pytest.approx(np.log(256), rel=0.1)
    assert together[1].run.losses[-1] < together[1].run.losses[0]


def test_an_mnist1d_trial_uses_its_forty_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("LRLIB_CACHE", str(tmp_path))
    from lrlib import data
    from lrlib import trials as module

    small = lambda seed, device: data.load_mnist1d(n=1000, seed=seed, device=device)  # noqa: E731
    monkeypatch.setattr(module, "load_mnist1d", small)
    module._data.cache_clear()
    try:
        trial = Trial(0.1, data="mnist1d", model="mlp", hidden=(16,), optimizer="sgd", steps=20,
                      batch_size=32)
        assert trial.build_model().net[0].in_features == 40
        result = run_trial(trial)
        assert result.run.losses[-1] < result.run.losses[0] and 0.1 < result.val_accuracy <= 1
    finally:
        module._data.cache_clear()


@pytest.mark.parametrize("kwargs,match", [
    ({"data": "cifar"}, "data must be one of"),
    ({"data": "shakespeare", "model": "mlp"}, r"data must be one of \('digits', 'mnist1d'\) for model='mlp'"),
    ({"data": "mnist1d", "model": "transformer"}, "for model='transformer'"),
    ({"data": "digits", "model": "gpt"}, "for model='gpt'"),
    ({"optimizer": "adam", "weight_decay": 0.1}, "weight_decay must be 0 for optimizer='adam'"),
    ({"seed": -1}, "seed must be"),
])
def test_data_and_model_must_fit_together(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Trial(1e-3, **kwargs)


def test_from_dict_names_an_unknown_field_and_round_trips():
    trial = Trial(1e-3, data="shakespeare", model="gpt", betas=(0.9, 0.95), hidden=(8, 8))
    assert Trial.from_dict(trial.to_dict()) == trial
    assert trial.to_dict()["betas"] == [0.9, 0.95]
    with pytest.raises(ValueError, match=r"unknown trial field\(s\) \['learning_rate'\]"):
        Trial.from_dict({"lr": 1e-3, "learning_rate": 1e-3})
