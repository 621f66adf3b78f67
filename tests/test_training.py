"""lrlib.training: the loop records what torch does and stops cleanly on divergence."""

import numpy as np
import pytest
import torch

from lrlib.training import TrainingRun, train


def _setup(lr, steps=20):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    return net, torch.optim.SGD(net.parameters(), lr=lr), [(x, y)] * steps


def test_losses_match_a_hand_written_loop():
    net, opt, batches = _setup(0.1)
    twin = [p.detach().clone() for p in net.parameters()]
    run = train(net, opt, batches, torch.nn.functional.mse_loss)
    ref = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    with torch.no_grad():
        for p, q in zip(ref.parameters(), twin):
            p.copy_(q)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    expected = []
    for x, y in batches:
        loss = torch.nn.functional.mse_loss(ref(x), y)
        expected.append(loss.item())
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
    np.testing.assert_allclose(run.losses, expected, rtol=1e-6)
    assert not run.diverged and run.tail_mean(0.5) == pytest.approx(np.mean(expected[10:]))


def test_divergence_stops_and_pads_with_nan():
    net, opt, batches = _setup(1e4, steps=200)
    run = train(net, opt, batches, torch.nn.functional.mse_loss)
    assert run.diverged and len(run.losses) == 200
    assert np.all(np.isnan(run.losses[run.diverged_at:]))
    assert run.tail_mean() == float("inf")


def test_sharpness_is_recorded_every_k_steps():
    net, opt, batches = _setup(0.01, steps=10)
    run = train(net, opt, batches, torch.nn.functional.mse_loss, sharpness_every=4)
    assert [t for t, _ in run.sharpness] == [0, 4, 8]
    assert all(v > 0 for _, v in run.sharpness)


def test_smoothed_is_a_running_mean():
    run = TrainingRun(np.array([1.0, 3.0, 5.0, np.nan]), diverged_at=3)
    np.testing.assert_allclose(run.smoothed(2)[:3], [1.0, 2.0, 4.0])
    assert np.isnan(run.smoothed(2)[3])
    with pytest.raises(ValueError, match="window must be >= 1"):
        run.smoothed(0)
