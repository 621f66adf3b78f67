"""lrlib.batched: K copies trained as one equal K separate torch runs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrlib.batched import BatchedAdam, BatchedMLP, BatchedSGD, train_batched
from lrlib.data import load_digits, minibatches
from lrlib.models import MLP
from lrlib.training import train

from .conftest import devices


def _members(k, hidden=(16,), device="cpu"):
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(MLP(64, hidden, 10).to(device))
    return out


def test_forward_is_each_members_forward_and_members_round_trip():
    members = _members(3, hidden=(32, 16))
    batched = BatchedMLP(members)
    x = torch.randn(3, 5, 64)
    out = batched(x)
    for k, m in enumerate(members):
        torch.testing.assert_close(out[k], m(x[k]), rtol=1e-6, atol=1e-6)
        for a, b in zip(batched.member(k).parameters(), m.parameters()):
            assert torch.equal(a, b)
    assert batched.k == 3 and out.shape == (3, 5, 10)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("make,make_torch", [
    (lambda p, lrs: BatchedSGD(p, lrs, momentum=0.9), lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9)),
    (lambda p, lrs: BatchedSGD(p, lrs), lambda p, lr: torch.optim.SGD(p, lr=lr)),
    (lambda p, lrs: BatchedAdam(p, lrs), lambda p, lr: torch.optim.Adam(p, lr=lr)),
], ids=["sgd-momentum", "sgd", "adam"])
def test_each_copy_follows_the_torch_optimizer_at_its_own_rate(make, make_torch, device):
    lrs = [1e-3, 1e-2, 5e-2, 0.2]
    members = _members(4, device=device)
    batched = BatchedMLP(members).to(device)
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
        for a, b in zip(batched.member(k).parameters(), m.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # float32 reassociation only


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
        with torch.no_grad():
            logits = model(data.x_test)
        assert run.test_loss[k] == pytest.approx(F.cross_entropy(logits, data.y_test).item(), rel=1e-4)
        assert run.test_accuracy[k] == pytest.approx((logits.argmax(1) == data.y_test).float().mean().item())


def test_bad_input():
    members = _members(2)
    with pytest.raises(ValueError, match="one rate per copy"):
        BatchedAdam(BatchedMLP(members).parameters(), [1e-3])
    with pytest.raises(ValueError, match="lrs must all be > 0"):
        BatchedSGD(BatchedMLP(members).parameters(), [1e-3, 0.0])
    with pytest.raises(ValueError, match="same layer widths"):
        BatchedMLP([MLP(64, (8,), 10), MLP(64, (9,), 10)])
    with pytest.raises(ValueError, match="lrs and seeds must have the same length"):
        train_batched(load_digits(), [1e-3], [0, 1])
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\)"):
        BatchedAdam(BatchedMLP(members).parameters(), [1e-3, 1e-3], betas=(0.9, 1.0))
