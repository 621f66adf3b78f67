"""lrlib.update against torch.optim and closed forms."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrlib.update import WORKED_EXAMPLE, descend, global_norm, relative_update_sizes, sgd_step

finite = st.floats(-1e3, 1e3, allow_nan=False)


def test_worked_example_gives_094():
    ex = WORKED_EXAMPLE
    assert sgd_step(ex.theta, ex.grad, ex.lr) == pytest.approx(0.94, abs=1e-15)
    assert ex.theta_new == pytest.approx(ex.theta - ex.lr * ex.grad, abs=1e-15)


def test_worked_example_matches_torch_sgd():
    w = torch.nn.Parameter(torch.tensor([0.90], dtype=torch.float64))
    w.grad = torch.tensor([-0.4], dtype=torch.float64)
    torch.optim.SGD([w], lr=0.1).step()
    assert sgd_step(0.90, -0.4, 0.1) == pytest.approx(w.item(), abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=8), st.floats(1e-6, 10.0))
def test_sgd_step_matches_torch_sgd_on_arrays(pairs, lr):
    theta, grad = (np.array(col) for col in zip(*pairs))
    p = torch.nn.Parameter(torch.tensor(theta, dtype=torch.float64))
    p.grad = torch.tensor(grad, dtype=torch.float64)
    torch.optim.SGD([p], lr=lr).step()
    np.testing.assert_allclose(sgd_step(theta, grad, lr), p.detach().numpy(), rtol=1e-12, atol=1e-9)


def test_sgd_step_on_tensors_keeps_type_and_leaves_input():
    theta = torch.tensor([1.0, 2.0])
    out = sgd_step(theta, torch.tensor([0.5, -1.0]), 0.1)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.tensor([0.95, 2.1]), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(theta, torch.tensor([1.0, 2.0]))


def test_sgd_step_returns_float_for_scalars_and_array_for_arrays():
    assert isinstance(sgd_step(1, 1, 0.5), float)
    theta = np.array([1.0, 2.0])
    out = sgd_step(theta, np.ones(2), 0.5)
    assert isinstance(out, np.ndarray) and out is not theta
    np.testing.assert_array_equal(theta, [1.0, 2.0])


@pytest.mark.parametrize("lr", [0, -0.1, float("nan"), float("inf")])
def test_sgd_step_rejects_bad_lr(lr):
    with pytest.raises(ValueError, match="lr must be"):
        sgd_step(1.0, 1.0, lr)


def test_sgd_step_rejects_non_number_lr_and_mismatches():
    with pytest.raises(TypeError, match="lr must be a real number"):
        sgd_step(1.0, 1.0, "0.1")
    with pytest.raises(ValueError, match=r"grad must have the shape of theta \(2,\)"):
        sgd_step(np.zeros(2), np.zeros(3), 0.1)
    with pytest.raises(TypeError, match="both be torch tensors"):
        sgd_step(torch.zeros(2), np.zeros(2), 0.1)


@pytest.mark.parametrize("lr", [0.05, 0.4, 0.5, 0.9, 0.99])
def test_descend_matches_closed_form_on_a_quadratic(lr):
    # L = a/2 (theta - c)^2  =>  theta_t = c + (1 - lr a)^t (theta_0 - c)
    a, c, theta0, steps = 2.0, 1.1, -1.5, 25
    path = descend(lambda th: a * (th - c), theta0, lr=lr, steps=steps)
    expected = c + (1 - lr * a) ** np.arange(steps + 1) * (theta0 - c)
    np.testing.assert_allclose(path, expected, rtol=1e-10, atol=1e-12)


def test_descend_in_2d_and_edges():
    curv = np.array([1.0, 10.0])
    path = descend(lambda th: curv * th, [-4.5, 1.5], lr=0.15, steps=7)
    assert path.shape == (8, 2)
    np.testing.assert_allclose(path[-1], (1 - 0.15 * curv) ** 7 * np.array([-4.5, 1.5]))
    assert descend(lambda th: th, 3.0, lr=0.1, steps=0).tolist() == [3.0]
    with pytest.raises(ValueError, match="steps must be >= 0"):
        descend(lambda th: th, 3.0, lr=0.1, steps=-1)
    with pytest.raises(TypeError, match="steps must be an int"):
        descend(lambda th: th, 3.0, lr=0.1, steps=2.5)


def test_descend_marks_divergence_with_nan_and_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = descend(lambda th: 2 * th**3, 10.0, lr=1.0, steps=50)
    finite_rows = np.isfinite(path)
    assert finite_rows[0] and not finite_rows[-1]
    first_nan = int(np.argmin(finite_rows))
    assert np.all(~finite_rows[first_nan:]), "once diverged, every later row is NaN"


def test_global_norm_matches_torch():
    ts = [torch.randn(3, 4), torch.randn(5), torch.randn(2, 2, 2)]
    expected = torch.linalg.vector_norm(torch.cat([t.flatten() for t in ts])).item()
    assert global_norm(ts) == pytest.approx(expected, rel=1e-6)


def _toy():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    return net, x, y


def test_relative_update_of_sgd_is_lr_grad_norm_over_weight_norm():
    net, x, y = _toy()
    lr = 0.05
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    expected = lr * global_norm(p.grad for p in net.parameters()) / global_norm(net.parameters())
    net.zero_grad(set_to_none=True)
    r = relative_update_sizes(net, lambda p: torch.optim.SGD(p, lr=lr), [(x, y)],
                              torch.nn.functional.cross_entropy)
    assert r.shape == (1,)
    assert r[0] == pytest.approx(expected, rel=1e-5)


def test_relative_update_of_adams_first_step_is_lr_sqrt_n_over_norm():
    net, x, y = _toy()
    lr = 1e-3
    r = relative_update_sizes(net, lambda p: torch.optim.Adam(p, lr=lr), [(x, y)] * 3,
                              torch.nn.functional.cross_entropy)
    n = sum(p.numel() for p in net.parameters())
    # eps = 1e-8 shrinks each coordinate's step by |g| / (|g| + eps): well under 1e-3 here
    assert r[0] == pytest.approx(lr * np.sqrt(n) / global_norm(net.parameters()), rel=1e-3)
    assert len(r) == 3


def test_relative_update_leaves_the_model_untouched():
    net, x, y = _toy()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    relative_update_sizes(net, lambda p: torch.optim.Adam(p, lr=0.1), [(x, y)] * 2,
                          torch.nn.functional.cross_entropy)
    assert not net.training
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(p.grad is None for p in net.parameters())


def test_relative_update_rejects_empty_batches_and_bad_factory():
    net, _, _ = _toy()
    with pytest.raises(ValueError, match="batches must hold at least one"):
        relative_update_sizes(net, lambda p: torch.optim.SGD(p, lr=0.1), [],
                              torch.nn.functional.cross_entropy)
    with pytest.raises(TypeError, match="make_optimizer must be callable"):
        relative_update_sizes(net, 0.1, [], torch.nn.functional.cross_entropy)
