"""lrlib.batched: K copies trained as one equal K separate torch runs (torch.optim is the oracle)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrlib import schedules as S
from lrlib.batched import (
    BatchedAdam,
    BatchedAdamW,
    BatchedModel,
    BatchedRAdam,
    BatchedScheduleFree,
    BatchedSGD,
    train_batched,
    train_copies,
)
from lrlib.data import load_digits, minibatches
from lrlib.models import MLP, TransformerClassifier
from lrlib.training import train

from .conftest import devices


def _members(k, hidden=(16,), device="cpu"):
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(MLP(64, hidden, 10).to(device))
    return out


@pytest.mark.parametrize("make", [
    lambda: MLP(64, (32, 16), 10),
    lambda: TransformerClassifier(8, 8, 10, d_model=16, n_layers=2, norm_first=False),
    lambda: TransformerClassifier(8, 8, 10, d_model=16, n_layers=2),
], ids=["mlp", "post-norm transformer", "pre-norm transformer"])
def test_forward_is_each_members_forward_and_members_round_trip(make):
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(make())
    batched = BatchedModel(members)
    x = torch.randn(3, 5, 64)
    out = batched(x)
    for k, m in enumerate(members):
        torch.testing.assert_close(out[k], m(x[k]), rtol=1e-5, atol=1e-5)
        for a, b in zip(batched.member(k, make()).parameters(), m.parameters()):
            assert torch.equal(a, b)
    assert batched.copies == 3 and out.shape == (3, 5, 10)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("make,make_torch", [
    (lambda p, lrs: BatchedSGD(p, lrs, momentum=0.9), lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9)),
    (lambda p, lrs: BatchedSGD(p, lrs), lambda p, lr: torch.optim.SGD(p, lr=lr)),
    (lambda p, lrs: BatchedAdam(p, lrs), lambda p, lr: torch.optim.Adam(p, lr=lr)),
    (lambda p, lrs: BatchedRAdam(p, lrs), lambda p, lr: torch.optim.RAdam(p, lr=lr)),
    (lambda p, lrs: BatchedAdamW(p, lrs, betas=(0.9, 0.95), weight_decay=0.1),
     lambda p, lr: torch.optim.AdamW(p, lr=lr, betas=(0.9, 0.95), weight_decay=0.1)),
], ids=["sgd-momentum", "sgd", "adam", "radam", "adamw"])
def test_each_copy_follows_the_torch_optimizer_at_its_own_rate(make, make_torch, device):
    lrs = [1e-3, 1e-2, 5e-2, 0.2]
    members = _members(4, device=device)
    batched = BatchedModel(members).to(device)
    opt = make(batched.parameters(), lrs)
    singles = [(m, make_torch(m.parameters(), lr)) for m, lr in zip(members, lrs)]
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        x = torch.randn(4, 8, 64, generator=gen).to(device)
        y = torch.randint(0, 10, (4, 8), generator=gen).to(device)
        opt.zero_grad()
        losses = F.cross_entropy(batched(x).flatten(0, 1), y.flatten(), reduction="none").view(4, -1)
        losses.mean(1).sum().backward()
        opt.step()
        for k, (m, o) in enumerate(singles):
            o.zero_grad()
            F.cross_entropy(m(x[k]), y[k]).backward()
            o.step()
    for k, (m, _) in enumerate(singles):
        for a, b in zip(batched.member(k, MLP(64, (16,), 10).to(device)).parameters(), m.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # float32 reassociation only


@pytest.mark.parametrize("adaptive", [False, True], ids=["sgd", "adamw"])
@pytest.mark.parametrize("shape", [
    lambda lr: S.constant(lr), lambda lr: S.warmup_constant(lr, 10), lambda lr: S.warmup_cosine(lr, 5, 40),
], ids=["constant", "warmup", "warmup-cosine"])
def test_schedule_free_follows_the_schedulefree_package(adaptive, shape):
    """Each copy's training point y and averaged point x equal the package's optimizer driven by
    the same per-step rates through an attached schedule (its weights, the largest rate so far
    squared, count a warmup's small steps for less and a decay's as much as the peak's)."""
    schedulefree = pytest.importorskip("schedulefree")
    lrs, steps = [0.3, 0.05, 1e-3] if not adaptive else [1e-2, 3e-3, 1e-4], 40
    members = _members(3)
    batched = BatchedModel(members)
    opt = BatchedScheduleFree(batched.parameters(), lrs, adaptive=adaptive, momentum=0.9)
    make = schedulefree.AdamWScheduleFree if adaptive else schedulefree.SGDScheduleFree
    singles = []
    for m, lr in zip(members, lrs):
        o = make(m.parameters(), lr=lr, warmup_steps=0)
        singles.append((m, o, shape(lr).attach(o)))
        o.train()
    rates = np.stack([shape(lr)(np.arange(steps)) for lr in lrs])
    gen = torch.Generator().manual_seed(0)
    for t in range(steps):
        x = torch.randn(3, 8, 64, generator=gen)
        y = torch.randint(0, 10, (3, 8), generator=gen)
        opt.zero_grad()
        opt.set_lrs(rates[:, t])
        losses = F.cross_entropy(batched(x).flatten(0, 1), y.flatten(), reduction="none").view(3, -1)
        losses.mean(1).sum().backward()
        opt.step()
        for k, (m, o, sched) in enumerate(singles):
            o.zero_grad()
            F.cross_entropy(m(x[k]), y[k]).backward()
            o.step()
            sched.step()
    for mode in ("train", "eval"):  # y while training, then the average x
        getattr(opt, mode)()
        for k, (m, o, _) in enumerate(singles):
            getattr(o, mode)()
            for a, b in zip(batched.member(k, MLP(64, (16,), 10)).parameters(), m.parameters()):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    opt.eval()
    x_weights = [p.detach().clone() for p in batched.stacked]
    assert not all(torch.equal(a, b.detach()) for a, b in zip(x_weights, BatchedModel(_members(3)).stacked))
    opt.train()
    with pytest.raises(RuntimeError, match="call train"):
        opt.eval()
        opt.step()


def test_train_batched_equals_a_loop_of_separate_runs():
    data = load_digits()
    lrs, seeds = [1e-3, 3e-3, 1e-2, 3e-3], [0, 0, 1, 2]
    run = train_batched(data, lrs, seeds, steps=40, batch_size=32, hidden=(32,))
    for k, (lr, seed) in enumerate(zip(lrs, seeds)):
        torch.manual_seed(seed)
        model = MLP(64, (32,), 10)
        single = train(model, torch.optim.Adam(model.parameters(), lr=lr),
                       minibatches(data.x_train, data.y_train, 32, steps=40, seed=seed), F.cross_entropy)
        np.testing.assert_allclose(run.losses[k], single.losses, rtol=1e-4)
        for split in ("val", "test"):
            x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
            with torch.no_grad():
                logits = model(x)
            loss, acc = getattr(run, f"{split}_loss")[k], getattr(run, f"{split}_accuracy")[k]
            assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-4)
            assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_a_diverging_copy_stops_where_train_stops_and_the_others_go_on():
    data = load_digits()
    members = _members(2)
    model = BatchedModel(members)
    opt = BatchedSGD(model.parameters(), [0.1, 1e4])
    streams = [list(minibatches(data.x_train, data.y_train, 32, steps=30, seed=0)) for _ in range(2)]
    runs = train_copies(model, opt, streams, np.array([[0.1] * 30, [1e4] * 30]))
    single = _members(2)[1]
    alone = train(single, torch.optim.SGD(single.parameters(), lr=1e4), streams[1], F.cross_entropy)
    assert alone.diverged and runs[1].diverged_at == alone.diverged_at
    n = alone.diverged_at
    np.testing.assert_allclose(runs[1].losses[:n], alone.losses[:n], rtol=1e-4)
    assert np.isnan(runs[1].losses[n:]).all() and np.isnan(runs[1].lrs[n:]).all()
    for a, b in zip(model.member(1, MLP(64, (16,), 10)).parameters(), single.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # frozen where train() stopped
    assert not runs[0].diverged and np.isfinite(runs[0].losses).all()


def test_track_norms_per_copy_equal_the_single_runs():
    data = load_digits()
    members = _members(2)
    model = BatchedModel(members)
    streams = [list(minibatches(data.x_train, data.y_train, 16, steps=5, seed=s)) for s in (0, 1)]
    runs = train_copies(model, BatchedAdam(model.parameters(), [1e-3, 1e-2]), streams,
                        np.array([[1e-3] * 5, [1e-2] * 5]), track_norms=3)
    for k, (m, lr) in enumerate(zip(_members(2), (1e-3, 1e-2))):
        single = train(m, torch.optim.Adam(m.parameters(), lr=lr), streams[k], F.cross_entropy, track_norms=3)
        np.testing.assert_allclose(runs[k].grad_norms, single.grad_norms, rtol=1e-4)
        np.testing.assert_allclose(runs[k].update_norms, single.update_norms, rtol=1e-3)


def test_bad_input():
    members = _members(2)
    with pytest.raises(ValueError, match="one rate per copy"):
        BatchedAdam(BatchedModel(members).parameters(), [1e-3])
    with pytest.raises(ValueError, match="lrs must all be >= 0"):
        BatchedSGD(BatchedModel(members).parameters(), [1e-3, -1.0])
    with pytest.raises(ValueError, match="models must share one architecture"):
        BatchedModel([MLP(64, (8,), 10), MLP(64, (9,), 10)])
    with pytest.raises(ValueError, match="models must not hold BatchNorm"):
        BatchedModel([MLP(64, (8,), 10, batch_norm=True)] * 2)
    with pytest.raises(ValueError, match="lrs and seeds must have the same length"):
        train_batched(load_digits(), [1e-3], [0, 1])
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\)"):
        BatchedAdam(BatchedModel(members).parameters(), [1e-3, 1e-3], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\) for schedule-free SGD, got 1.0"):
        BatchedScheduleFree(BatchedModel(members).parameters(), [0.1, 0.1], adaptive=False, momentum=1.0)
    with pytest.raises(ValueError, match=r"rates must have shape \(copies=2, steps\)"):
        model = BatchedModel(members)
        train_copies(model, BatchedSGD(model.parameters(), [0.1, 0.1]), [[], []], np.zeros(5))


def test_the_registry_builds_each_optimizer_and_its_batched_twin_from_one_entry():
    """One registry: each name gives the torch (or schedulefree) optimizer and its batched twin."""
    from lrlib.batched import OPTIMIZERS, optimizer_spec

    model = MLP(8, (4,), 3)
    twin = BatchedModel([MLP(8, (4,), 3), MLP(8, (4,), 3)])
    for name, spec in OPTIMIZERS.items():
        if name.startswith("schedulefree"):
            pytest.importorskip("schedulefree")
        single = spec.build(model.parameters(), 0.01, weight_decay=0.1 if spec.decays else 0.0)
        assert single.param_groups[0]["lr"] == 0.01
        batched = spec.build_batched(twin.parameters(), [0.01, 0.02])
        assert batched.lrs.tolist() == [0.01, 0.02]
    assert OPTIMIZERS["adamw"].build(model.parameters(), 0.1, weight_decay=0.3).param_groups[0][
        "weight_decay"] == 0.3
    with pytest.raises(ValueError, match="weight_decay must be 0 for optimizer='adam'"):
        OPTIMIZERS["adam"].build(model.parameters(), 0.1, weight_decay=0.1)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        optimizer_spec("lamb")
