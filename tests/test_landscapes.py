"""lrlib.landscapes: derivatives against autograd, regime boundaries, sharpness against exact Hessians."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch.func import functional_call

from lrlib.landscapes import (
    Diagnosis,
    Himmelblau,
    Quadratic,
    Regime,
    Rosenbrock,
    diagnose_loss_curve,
    gradient_descent,
    lr_regime,
    run_regime,
    sharpness,
)


def random_spd(rng, d, kappa):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eig = np.geomspace(1.0, kappa, d) * rng.uniform(0.5, 2.0)
    return (q * eig) @ q.T


def problems():
    rng = np.random.default_rng(0)
    return [Quadratic([0.5, 3.0, 10.0]), Quadratic(random_spd(rng, 4, 50.0), center=rng.normal(size=4)),
            Rosenbrock(), Rosenbrock(a=0.5, b=10.0), Himmelblau()]


@pytest.mark.parametrize("problem", problems(), ids=repr)
def test_gradient_and_hessian_match_autograd(problem):
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = torch.tensor(rng.uniform(-2, 2, problem.dim), dtype=torch.float64)
        grad = torch.autograd.functional.jacobian(problem.value, x)
        hess = torch.autograd.functional.hessian(problem.value, x)
        torch.testing.assert_close(problem.grad(x), grad, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(problem.hessian(x), hess, rtol=1e-10, atol=1e-10)
        # the NumPy path gives the same numbers
        np.testing.assert_allclose(problem.grad(x.numpy()), grad.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(problem.hessian(x.numpy()), hess.numpy(), rtol=1e-12, atol=1e-12)
        assert problem.value(x.numpy()) == pytest.approx(float(problem.value(x)), rel=1e-12)


@pytest.mark.parametrize("problem", problems(), ids=repr)
def test_batched_inputs(problem):
    xs = np.random.default_rng(2).uniform(-2, 2, (3, 5, problem.dim))
    assert problem.value(xs).shape == (3, 5)
    assert problem.grad(xs).shape == (3, 5, problem.dim)
    assert problem.hessian(xs).shape == (3, 5, problem.dim, problem.dim)
    np.testing.assert_allclose(problem.grad(xs)[1, 2], problem.grad(xs[1, 2]))


def test_minima_are_minima():
    for problem, points in ((Rosenbrock(), [Rosenbrock().minimum]), (Himmelblau(), Himmelblau.minima),
                            (Quadratic([1.0, 2.0], center=[3.0, -1.0]), [[3.0, -1.0]])):
        for p in points:
            assert problem.value(np.asarray(p)) == pytest.approx(0.0, abs=1e-9)
            np.testing.assert_allclose(problem.grad(np.asarray(p)), 0.0, atol=1e-4)


def test_quadratic_properties_against_numpy():
    rng = np.random.default_rng(3)
    a = random_spd(rng, 5, 100.0)
    q = Quadratic(a)
    eig = np.linalg.eigvalsh(a)
    assert q.L == pytest.approx(eig[-1]) and q.mu == pytest.approx(eig[0])
    assert q.condition_number == pytest.approx(eig[-1] / eig[0])
    assert q.max_stable_lr == pytest.approx(2 / eig[-1])
    assert q.best_lr == pytest.approx(2 / (eig[-1] + eig[0]))
    k = q.condition_number
    assert q.contraction(q.best_lr) == pytest.approx((k - 1) / (k + 1))
    grid = np.linspace(1e-4, q.max_stable_lr, 400)
    assert min(grid, key=q.contraction) == pytest.approx(q.best_lr, rel=0.01), "2/(L+mu) is the best rate"


@pytest.mark.parametrize("bad,match", [
    ([1.0, 0.0], "positive definite"), ([[1.0, 2.0], [0.0, 1.0]], "symmetric"),
    ([[1.0, 2.0, 3.0]], "square"), ([], "square"),
])
def test_quadratic_rejects_bad_curvature(bad, match):
    with pytest.raises(ValueError, match=f"curvature must .*{match}"):
        Quadratic(bad)


def test_gradient_descent_on_a_quadratic_is_the_closed_form():
    q = Quadratic([1.0, 10.0], center=[0.5, -0.5])
    run = gradient_descent(q, [-4.5, 1.5], lr=0.15, steps=30)
    assert run.points.shape == (31, 2) and run.losses.shape == (31,)
    t = np.arange(31)[:, None]
    expected = q.center + (1 - 0.15 * np.array([1.0, 10.0])) ** t * (np.array([-4.5, 1.5]) - q.center)
    np.testing.assert_allclose(run.points, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(run.losses, q.value(run.points))
    assert not run.diverged and run.final_loss == run.losses[-1]


def test_gradient_descent_stops_cleanly_on_divergence():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = gradient_descent(Rosenbrock(), [-1.5, 2.0], lr=0.01, steps=1000)
        big = gradient_descent(Quadratic([1.0]), [1.0], lr=3.0, steps=2000)
    assert run.diverged and run.final_loss == math.inf
    assert np.all(np.isnan(run.losses[run.diverged_at:]))
    assert np.all(np.isfinite(run.losses[:run.diverged_at]))
    assert big.diverged and 100 < big.diverged_at < 2000


@pytest.mark.parametrize("seed", range(5))
def test_regime_boundaries_on_random_quadratics(seed):
    rng = np.random.default_rng(seed)
    q = Quadratic(random_spd(rng, 3, rng.uniform(2, 100)))
    top = np.linalg.eigh(q.A)[1][:, -1]
    x0 = top + 0.1 * rng.normal(size=3)
    # just below 2/L converges, just above diverges
    below = gradient_descent(q, x0, 0.99 * 2 / q.L, steps=3000)
    above = gradient_descent(q, x0, 1.01 * 2 / q.L, steps=3000)
    assert below.final_loss < 1e-6 * below.losses[0]
    assert above.diverged or above.final_loss > 1e3 * above.losses[0]
    assert lr_regime(0.99 * 2 / q.L, q.L) is Regime.OSCILLATING
    assert lr_regime(1.01 * 2 / q.L, q.L) is Regime.DIVERGENT
    assert run_regime(below) is Regime.OSCILLATING and run_regime(above) is Regime.DIVERGENT
    # around 1/L, along the steep direction: monotone just below, overshooting just above
    mono = gradient_descent(q, top, 0.99 / q.L, steps=50)
    osc = gradient_descent(q, top, 1.01 / q.L, steps=50)
    assert run_regime(mono) is Regime.MONOTONE and run_regime(osc) is Regime.OSCILLATING
    assert lr_regime(0.99 / q.L, q.L) is Regime.MONOTONE
    assert lr_regime(1.01 / q.L, q.L) is Regime.OSCILLATING
    assert lr_regime(2 / q.L, q.L) is Regime.DIVERGENT and lr_regime(1 / q.L, q.L) is Regime.MONOTONE


@pytest.mark.parametrize("multiple", [0.5, 0.9, 1.5, 1.9])
def test_predicted_steps_exact_in_1d_and_a_bound_in_2d(multiple):
    q1 = Quadratic([4.0])
    lr = multiple / q1.L
    run = gradient_descent(q1, [3.0], lr, steps=500)
    assert run.first_within([0.0], 1e-6) == q1.predicted_steps(lr, [3.0], 1e-6)
    q2 = Quadratic([1.0, 10.0])
    lr = multiple / q2.L
    run = gradient_descent(q2, [-4.5, 1.5], lr, steps=5000)
    measured = run.first_within([0.0, 0.0], 1e-6)
    assert measured is not None and measured <= q2.predicted_steps(lr, [-4.5, 1.5], 1e-6)
    assert q2.predicted_steps(2.1 / q2.L, [1.0, 1.0], 1e-6) == math.inf


def test_diagnose_loss_curve():
    t = np.arange(200)
    assert diagnose_loss_curve(2.3 * np.exp(-t / 30) + 0.05) is Diagnosis.GOOD
    assert diagnose_loss_curve(2.3 - 0.001 * t) is Diagnosis.TOO_SMALL
    assert diagnose_loss_curve(np.r_[2.3 * np.exp(-t[:100] / 10), 0.8 + 0.3 * np.sin(t[:100])]) \
        is Diagnosis.TOO_LARGE
    assert diagnose_loss_curve([2.3, 5.0, np.nan]) is Diagnosis.DIVERGENT
    assert diagnose_loss_curve([2.3, 2.5, 2.9, 3.6, 4.0]) is Diagnosis.DIVERGENT
    noisy_flat = 2.3 + 0.05 * np.random.default_rng(0).standard_normal(300)
    assert diagnose_loss_curve(noisy_flat) is Diagnosis.TOO_SMALL, "noise is not divergence"
    with pytest.raises(ValueError, match="at least 2 values"):
        diagnose_loss_curve([1.0])
    with pytest.raises(ValueError, match=r"slow_drop must be in \(0, 1\)"):
        diagnose_loss_curve([1.0, 0.5], slow_drop=1.5)


class QuadraticModel(torch.nn.Module):
    """A 'network' whose loss is 0.5 x^T A x in its parameter x."""

    def __init__(self, a):
        super().__init__()
        self.a = torch.as_tensor(a)
        self.x = torch.nn.Parameter(torch.ones(len(a), dtype=self.a.dtype))

    def forward(self, _inputs):
        return 0.5 * self.x @ self.a @ self.x


def test_sharpness_of_a_quadratic_is_its_top_eigenvalue():
    a = random_spd(np.random.default_rng(4), 6, 30.0)
    model = QuadraticModel(a)
    top = sharpness(model, lambda out, _: out, (None, None), iters=1000, tol=1e-10)
    assert top == pytest.approx(np.linalg.eigvalsh(a)[-1], rel=1e-6)


def test_sharpness_of_a_small_network_matches_its_full_hessian():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    x, y = torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 3, (20,))
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    flat = torch.cat([p.detach().flatten() for p in net.parameters()])

    def loss_of(theta):
        parts = torch.split(theta, [s.numel() for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes)}
        return torch.nn.functional.cross_entropy(functional_call(net, params, (x,)), y)

    eig = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat))
    top = eig[eig.abs().argmax()].item()
    before = [p.detach().clone() for p in net.parameters()]
    net.eval()
    estimate = sharpness(net, torch.nn.functional.cross_entropy, (x, y), iters=2000, tol=1e-12)
    assert estimate == pytest.approx(top, rel=1e-5)
    assert not net.training and all(p.grad is None for p in net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_sharpness_checks_arguments():
    net = torch.nn.Linear(2, 1)
    batch = (torch.zeros(3, 2), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="iters must be >= 1"):
        sharpness(net, torch.nn.functional.mse_loss, batch, iters=0)
    with pytest.raises(ValueError, match="tol must be > 0"):
        sharpness(net, torch.nn.functional.mse_loss, batch, tol=0)
    net.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter that requires grad"):
        sharpness(net, torch.nn.functional.mse_loss, batch)


def test_value_xy_evaluates_a_grid():
    xs, ys = np.meshgrid(np.linspace(-1, 1, 4), np.linspace(0, 2, 3))
    for problem in (Rosenbrock(), Himmelblau(), Quadratic([1.0, 5.0])):
        grid = problem.value_xy(xs, ys)
        assert grid.shape == (3, 4)
        assert grid[1, 2] == pytest.approx(problem.value(np.array([xs[1, 2], ys[1, 2]])))
    with pytest.raises(ValueError, match="needs a 2-D problem"):
        Quadratic([1.0, 2.0, 3.0]).value_xy(xs, ys)


def test_optimize_with_sgd_is_gradient_descent():
    from lrlib.landscapes import optimize

    for problem, x0, lr in ((Quadratic([1.0, 10.0]), [-4.5, 1.5], 0.15), (Rosenbrock(), [-1.2, 1.0], 1e-3)):
        ours = optimize(problem, lambda p, lr=lr: torch.optim.SGD(p, lr=lr), x0, steps=50)
        ref = gradient_descent(problem, x0, lr, steps=50)
        np.testing.assert_allclose(ours.points, ref.points, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.losses, ref.losses, rtol=1e-12, atol=1e-12)
    blown = optimize(Quadratic([1.0]), lambda p: torch.optim.SGD(p, lr=5.0), [1.0], steps=3000)
    assert blown.diverged and np.isnan(blown.points[-1]).all()


def _measured_rate(problem, lr, momentum, steps=400):
    """The per-step shrink factor of torch's heavy ball, from the distance over the last half of a run."""
    from lrlib.landscapes import optimize

    run = optimize(problem, lambda p: torch.optim.SGD(p, lr=lr, momentum=momentum), [1.0, 1.0], steps)
    dist = np.linalg.norm(run.points - problem.center, axis=1)
    half = steps // 2
    return (dist[-1] / dist[half]) ** (1 / (steps - half)), run


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.97])
def test_momentum_contraction_is_the_rate_torch_sgd_converges_at(momentum, fraction):
    q = Quadratic([1.0, 10.0])
    lr = fraction * q.momentum_stable_lr(momentum)
    rho = q.contraction(lr, momentum)
    steps = int(np.clip(300 / -math.log(rho), 100, 4000))  # ~e^-300 at the end: far from underflow
    measured, _ = _measured_rate(q, lr, momentum, steps=steps)
    # the distance oscillates with complex roots: compare over many steps, to a few percent
    assert measured == pytest.approx(rho, rel=0.03)


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9, 0.99])
def test_momentum_stability_limit_separates_converging_from_diverging_runs(momentum):
    q = Quadratic([1.0, 10.0])
    limit = q.momentum_stable_lr(momentum)
    assert limit == pytest.approx(2 * (1 + momentum) / 10)
    from lrlib.landscapes import optimize

    below = optimize(q, lambda p: torch.optim.SGD(p, lr=0.98 * limit, momentum=momentum), [1.0, 1.0], 3000)
    above = optimize(q, lambda p: torch.optim.SGD(p, lr=1.02 * limit, momentum=momentum), [1.0, 1.0], 3000)
    assert not below.diverged and np.linalg.norm(below.points[-1]) < np.linalg.norm([1.0, 1.0])
    assert above.diverged or np.linalg.norm(above.points[-1]) > 1e3
    assert q.contraction(0.999 * limit, momentum) < 1 < q.contraction(1.001 * limit, momentum)


@pytest.mark.parametrize("kappa", [4.0, 10.0, 100.0])
def test_polyaks_momentum_is_optimal_on_a_grid_and_contracts_like_sqrt_kappa(kappa):
    q = Quadratic([1.0, kappa])
    lr, beta = q.best_momentum
    rho = q.contraction(lr, beta)
    assert rho == pytest.approx((math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1), rel=1e-6)
    # no (lr, beta) on a fine grid does better (a brute-force oracle)
    grid = [q.contraction(a * 2 * (1 + b) / q.L, b) for a in np.linspace(0.01, 0.99, 99)
            for b in np.linspace(0.0, 0.99, 100)]
    assert min(grid) >= rho - 1e-3
    assert rho < q.contraction(q.best_lr)  # beats gradient descent's best fixed rate


def test_momentum_arguments_are_checked():
    q = Quadratic([1.0, 10.0])
    with pytest.raises(ValueError, match="momentum"):
        q.contraction(0.1, momentum=1.0)
    with pytest.raises(ValueError, match="momentum"):
        q.momentum_stable_lr(-0.1)


def test_noisy_descent_without_noise_is_gradient_descent():
    from lrlib.landscapes import noisy_descent
    from lrlib.schedules import constant

    q = Quadratic([1.0, 10.0])
    losses = noisy_descent(q, [-4.5, 1.5], constant(0.15), steps=40, noise=0.0, seeds=3)
    ref = gradient_descent(q, [-4.5, 1.5], 0.15, steps=40)
    for row in losses:
        np.testing.assert_allclose(row, ref.losses, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("schedule", ["constant", "inverse_time", "exponential"])
def test_noisy_descent_mean_error_follows_the_exact_recursion(schedule):
    """E[e_{t+1}^2] = (1 - eta_t lam)^2 E[e_t^2] + eta_t^2 sigma^2 in one dimension (a closed-form oracle)."""
    from lrlib import schedules as S
    from lrlib.landscapes import noisy_descent

    lam, sigma, steps = 2.0, 0.7, 300
    sched = {"constant": S.constant(0.2), "inverse_time": S.inverse_time(0.2, 10),
             "exponential": S.exponential(0.2, 0.98)}[schedule]
    losses = noisy_descent(Quadratic([lam], center=[1.0]), [3.0], sched, steps, noise=sigma, seeds=20_000)
    expected = [4.0]
    for eta in sched(np.arange(steps)):
        expected.append((1 - eta * lam) ** 2 * expected[-1] + eta**2 * sigma**2)
    mean_sq = 2 * losses.mean(0) / lam  # loss = lam e^2 / 2
    np.testing.assert_allclose(mean_sq[::25], np.array(expected)[::25], rtol=0.05)
    if schedule == "constant":  # the floor: eta sigma^2 / (lam (2 - eta lam))
        assert mean_sq[-50:].mean() == pytest.approx(0.2 * sigma**2 / (lam * (2 - 0.2 * lam)), rel=0.05)


def test_noisy_descent_checks_its_arguments():
    from lrlib.landscapes import noisy_descent
    from lrlib.schedules import constant

    with pytest.raises(ValueError, match="noise"):
        noisy_descent(Quadratic([1.0]), [1.0], constant(0.1), 5, noise=-1.0)
    with pytest.raises(ValueError, match="x0"):
        noisy_descent(Quadratic([1.0]), [1.0, 2.0], constant(0.1), 5, noise=1.0)
    with pytest.raises(ValueError, match="seeds"):
        noisy_descent(Quadratic([1.0]), [1.0], constant(0.1), 5, noise=1.0, seeds=0)
