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


def test_scheduler_is_stepped_after_every_update_and_the_rates_recorded():
    from lrlib.schedules import warmup_cosine

    net, opt, batches = _setup(0.1, steps=12)
    schedule = warmup_cosine(0.1, 4, 12)
    run = train(net, opt, batches, torch.nn.functional.mse_loss, scheduler=schedule.attach(opt))
    np.testing.assert_allclose(run.lrs, schedule(np.arange(12)), rtol=1e-12)
    assert opt.param_groups[0]["lr"] == pytest.approx(schedule(12))


def test_tracked_norms_are_the_gradient_and_the_relative_step():
    net, opt, batches = _setup(0.05, steps=6)
    twin = [p.detach().clone() for p in net.parameters()]
    run = train(net, opt, batches, torch.nn.functional.mse_loss, track_norms=3)
    assert run.grad_norms.shape == run.update_norms.shape == (3,)
    # SGD without momentum: the step is exactly lr * gradient, so the two must agree
    norm0 = torch.cat([p.flatten() for p in twin]).double().norm().item()
    assert run.update_norms[0] == pytest.approx(0.05 * run.grad_norms[0] / norm0, rel=1e-5)
    x, y = batches[0]
    ref = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    with torch.no_grad():
        for p, q in zip(ref.parameters(), twin):
            p.copy_(q)
    torch.nn.functional.mse_loss(ref(x), y).backward()
    by_hand = torch.cat([p.grad.flatten() for p in ref.parameters()]).double().norm().item()
    assert run.grad_norms[0] == pytest.approx(by_hand, rel=1e-6)
    assert train(*_setup(0.05, steps=2), torch.nn.functional.mse_loss).grad_norms is None


def test_track_norms_rejects_negative():
    with pytest.raises(ValueError, match="track_norms must be >= 0"):
        train(*_setup(0.1, 2), torch.nn.functional.mse_loss, track_norms=-1)


def _twin_nets(seed=0):
    nets = []
    for _ in range(2):
        torch.manual_seed(seed)
        nets.append(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)))
    return nets


def test_clip_norm_is_torchs_clip_grad_norm_before_the_step():
    ours, ref = _twin_nets()
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 3, generator=gen) * 5, torch.randn(16, 1, generator=gen)) for _ in range(15)]
    run = train(ours, torch.optim.Adam(ours.parameters(), lr=0.05), batches, torch.nn.functional.mse_loss,
                clip_norm=0.3, track_norms=15)
    opt = torch.optim.Adam(ref.parameters(), lr=0.05)
    norms = []
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.mse_loss(ref(x), y).backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(ref.parameters()), 0.3)))
        opt.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
    np.testing.assert_allclose(run.grad_norms, norms, rtol=1e-5)  # recorded before clipping
    assert max(norms) > 0.3  # the test exercised clipping


def test_skip_spikes_skips_a_corrupted_batch_as_if_it_were_not_there():
    ours, ref = _twin_nets()
    gen = torch.Generator().manual_seed(2)
    batches = [(torch.randn(16, 3, generator=gen), torch.randn(16, 1, generator=gen)) for _ in range(40)]
    bad = (batches[30][0], batches[30][1] * 1e4)  # a batch with wild targets: a huge gradient
    run = train(ours, torch.optim.Adam(ours.parameters(), lr=0.01), batches[:30] + [bad] + batches[30:],
                torch.nn.functional.mse_loss, skip_spikes=10.0)
    assert run.skipped == [30]
    train(ref, torch.optim.Adam(ref.parameters(), lr=0.01), batches, torch.nn.functional.mse_loss)
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)  # Adam's moments never saw the bad gradient


def test_clip_and_skip_arguments_are_checked():
    net, opt, batches = _setup(0.1, steps=2)
    with pytest.raises(ValueError, match="clip_norm"):
        train(net, opt, batches, torch.nn.functional.mse_loss, clip_norm=0.0)
    with pytest.raises(ValueError, match="skip_spikes"):
        train(net, opt, batches, torch.nn.functional.mse_loss, skip_spikes=0.5)


def _per_example_grads(model, loss_fn, x, y):
    rows = []
    for xi, yi in zip(x, y):
        model.zero_grad()
        loss_fn(model(xi[None]), yi[None]).backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.parameters()]).double())
    return torch.stack(rows)


def test_noise_scale_equals_a_per_example_autograd_loop():
    from lrlib.training import gradient_noise_scale

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    g = _per_example_grads(model, torch.nn.functional.cross_entropy, x, y)
    mean = g.mean(0)
    expected_trace = float(((g - mean) ** 2).sum() / 39)
    scale = gradient_noise_scale(model, torch.nn.functional.cross_entropy, x, y)
    assert scale.trace_cov == pytest.approx(expected_trace, rel=1e-6)
    assert scale.grad_sq == pytest.approx(float(mean @ mean), rel=1e-6)
    assert scale.b_simple == pytest.approx(expected_trace / float(mean @ mean), rel=1e-6)


def test_noise_scale_predicts_the_minibatch_gradients_size():
    """E||G_B||^2 = ||G||^2 + tr(Sigma_pop)/B for B examples drawn with replacement (Monte Carlo)."""
    from lrlib.training import gradient_noise_scale

    torch.manual_seed(1)
    model = torch.nn.Linear(4, 1)
    x = torch.randn(200, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + torch.randn(200, 1)
    scale = gradient_noise_scale(model, torch.nn.functional.mse_loss, x, y)
    g = _per_example_grads(model, torch.nn.functional.mse_loss, x, y)
    trace_pop = scale.trace_cov * 199 / 200  # sampling with replacement: the population covariance
    # B = 1 exactly: the mean of ||g_i||^2 over the examples. The per-example gradients are float32, from
    # two code paths (torch.func here, a loop in the test): equal to float32's 1e-7, not to 1e-9; a wrong
    # population factor (199/200) would be off by 5e-3.
    assert float((g.double() ** 2).sum(1).mean()) == pytest.approx(scale.grad_sq + trace_pop, rel=1e-6)
    gen = torch.Generator().manual_seed(0)
    for batch in (8, 64):
        idx = torch.randint(0, 200, (40_000, batch), generator=gen)
        sq = (g[idx].mean(1) ** 2).sum(1).mean()
        assert float(sq) == pytest.approx(scale.grad_sq + trace_pop / batch, rel=0.05)


def test_noise_scale_checks_its_examples():
    from lrlib.training import gradient_noise_scale

    with pytest.raises(ValueError, match="examples"):
        gradient_noise_scale(torch.nn.Linear(2, 1), torch.nn.functional.mse_loss,
                             torch.randn(1, 2), torch.randn(1, 1))


def test_clipping_effect_is_c_over_the_norm_for_sgd_and_matches_a_same_state_step_for_adam():
    import copy

    from lrlib.training import clipping_effect

    gen = torch.Generator().manual_seed(3)
    batches = [(torch.randn(16, 3, generator=gen) * 4, torch.randn(16, 1, generator=gen)) for _ in range(12)]
    sgd_net, ref = _twin_nets()
    effect = clipping_effect(sgd_net, torch.optim.SGD(sgd_net.parameters(), lr=0.01), batches,
                             torch.nn.functional.mse_loss, clip_norm=0.5, every=3)
    ref_run = train(ref, torch.optim.SGD(ref.parameters(), lr=0.01), batches, torch.nn.functional.mse_loss,
                    clip_norm=0.5, track_norms=12)
    np.testing.assert_allclose(effect.ratios, np.minimum(1, 0.5 / ref_run.grad_norms[::3]), rtol=1e-4)
    np.testing.assert_allclose(effect.grad_norms, ref_run.grad_norms[::3], rtol=1e-5)
    assert effect.steps.tolist() == [0, 3, 6, 9] and effect.clipped.any()
    for a, b in zip(sgd_net.parameters(), ref.parameters()):  # it trained the clipped run
        torch.testing.assert_close(a, b)

    adam_net, _ = _twin_nets()
    opt = torch.optim.Adam(adam_net.parameters(), lr=0.05)
    state = copy.deepcopy((adam_net, opt))
    effect = clipping_effect(adam_net, opt, batches[:1], torch.nn.functional.mse_loss, clip_norm=0.5)
    twin, twin_opt = state  # by hand: the first step with and without clipping
    twin_opt.zero_grad()
    torch.nn.functional.mse_loss(twin(batches[0][0]), batches[0][1]).backward()
    raw, clipped = copy.deepcopy((twin, twin_opt)), copy.deepcopy((twin, twin_opt))
    for net, _ in (raw, clipped):
        for p, q in zip(twin.parameters(), net.parameters()):
            q.grad = p.grad.clone()
    start = torch.cat([p.detach().flatten() for p in twin.parameters()])
    torch.nn.utils.clip_grad_norm_(list(clipped[0].parameters()), 0.5)
    sizes = []
    for net, o in (raw, clipped):
        o.step()
        sizes.append(float((torch.cat([p.detach().flatten() for p in net.parameters()]) - start).norm()))
    assert effect.ratios[0] == pytest.approx(sizes[1] / sizes[0], rel=1e-5)
    with pytest.raises(ValueError, match="clip_norm"):
        clipping_effect(adam_net, opt, batches, torch.nn.functional.mse_loss, clip_norm=-1.0)
