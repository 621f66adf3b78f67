"""lrlib.finder: the range test records what a bare loop would, and leaves no trace."""

import copy
import math
import random
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lrlib.finder import (  # noqa: E402
    LRFinderResult,
    cyclic_bounds,
    find_lr,
    log_slopes,
    smooth,
    suggest_minimum,
    suggest_steepest,
    suggest_valley,
    sweep_lrs,
)

from .conftest import devices  # noqa: E402

# --- the sweep and the smoothing ------------------------------------------------------------------

def test_sweep_lrs_are_the_formulas():
    lrs = sweep_lrs(1e-6, 1.0, 7)
    np.testing.assert_allclose(lrs, [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], rtol=1e-12)
    steps = np.diff(np.log(sweep_lrs(3e-5, 2.0, 50)))
    np.testing.assert_allclose(steps, math.log(2.0 / 3e-5) / 49, rtol=1e-9)
    np.testing.assert_allclose(sweep_lrs(0.1, 1.0, 10, "linear"), np.linspace(0.1, 1.0, 10), rtol=1e-12)


def test_smooth_is_a_bias_corrected_moving_average():
    rng = np.random.default_rng(0)
    losses = rng.uniform(1, 2, 30)
    a, expected = 0.0, []
    for i, x in enumerate(losses):  # written out, independently of the code under test
        a = 0.9 * a + 0.1 * x
        expected.append(a / (1 - 0.9 ** (i + 1)))
    np.testing.assert_allclose(smooth(losses, 0.1), expected, rtol=1e-12)
    assert smooth(losses, 0.1)[0] == pytest.approx(losses[0])  # no pull towards 0 at the start


# --- what the test records -------------------------------------------------------------------------

def _regression(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randn(n, 1, generator=g)


def test_losses_are_those_of_a_bare_loop_with_the_same_rates():
    x, y = _regression()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    twin = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = find_lr(model, opt, [(x, y)], F.mse_loss, start_lr=1e-4, end_lr=1e-1, num_iters=30,
                     progress=False)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    expected = []
    for lr in sweep_lrs(1e-4, 1e-1, 30):
        twin_opt.param_groups[0]["lr"] = lr
        loss = F.mse_loss(twin(x), y)
        expected.append(loss.item())
        twin_opt.zero_grad()
        loss.backward()
        twin_opt.step()
    assert result.stop_reason is None and len(result.lrs) == 30
    np.testing.assert_allclose(result.losses, expected, rtol=1e-6)
    np.testing.assert_allclose(result.smoothed, smooth(result.losses, 0.05), rtol=1e-12)
    frame = result.to_frame()
    assert list(frame.columns) == ["lr", "loss", "smoothed"] and len(frame) == 30


def test_param_group_ratios_are_kept():
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam([{"params": model[0].parameters(), "lr": 1e-3},
                            {"params": model[1].parameters(), "lr": 1e-4}])
    seen = []
    opt.register_step_pre_hook(lambda o, *_: seen.append([g["lr"] for g in o.param_groups]))
    find_lr(model, opt, [_regression()], F.mse_loss, start_lr=1e-5, end_lr=1e-2, num_iters=12,
            progress=False)
    seen = np.array(seen)
    np.testing.assert_allclose(seen[:, 0], sweep_lrs(1e-5, 1e-2, 12), rtol=1e-12)
    np.testing.assert_allclose(seen[:, 1] / seen[:, 0], 0.1, rtol=1e-12)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-4]


def test_early_stop_on_divergence_and_on_nan():
    x, y = _regression()
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = find_lr(model, opt, [(x, y)], F.mse_loss, start_lr=1e-3, end_lr=1e3, num_iters=100,
                     diverge_threshold=4.0, progress=False)
    assert result.stopped_early and len(result.losses) < 100
    assert "x minimum" in result.stop_reason
    assert result.smoothed[-1] > 4.0 * result.smoothed[:-1].min()
    assert np.all(result.smoothed[:-1] <= 4.0 * np.minimum.accumulate(result.smoothed[:-1]))

    calls = []

    def nan_at_three(out, target):
        calls.append(1)
        loss = F.mse_loss(out, target)
        return loss * float("nan") if len(calls) == 4 else loss

    result = find_lr(model, opt, [(x, y)], nan_at_three, start_lr=1e-4, end_lr=1e-2, num_iters=20,
                     progress=False)
    assert len(result.losses) == 4 and math.isnan(result.losses[-1]) and "nan" in result.stop_reason
    assert np.isfinite(result.suggest("steepest", skip_start=0.0))  # the NaN never reaches a suggestion


def test_batches_are_cycled_and_a_one_shot_iterator_is_replayed():
    data = [_regression(seed) for seed in range(3)]
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tiny = {"start_lr": 1e-12, "end_lr": 2e-12, "num_iters": 9, "progress": False}  # the model stays put
    from_list = find_lr(model, opt, data, F.mse_loss, **tiny)
    from_iterator = find_lr(model, opt, iter(data), F.mse_loss, **tiny)
    np.testing.assert_allclose(from_list.losses, from_iterator.losses, rtol=1e-6)
    np.testing.assert_allclose(from_list.losses[:3], from_list.losses[3:6], rtol=1e-6)
    with pytest.raises(ValueError, match="batches is empty"):
        find_lr(model, opt, [], F.mse_loss, **tiny)
    with pytest.raises(ValueError, match="batches is empty"):
        find_lr(model, opt, iter([]), F.mse_loss, **tiny)


def test_k_accumulated_batches_of_b_equal_one_batch_of_k_times_b():
    x, y = _regression(n=64)
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sweep = {"start_lr": 1e-4, "end_lr": 1.0, "num_iters": 25, "progress": False,
             "diverge_threshold": math.inf}
    small = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    accumulated = find_lr(model, opt, small, F.mse_loss, accumulation_steps=4, **sweep)
    whole = find_lr(model, opt, [(x, y)], F.mse_loss, **sweep)
    np.testing.assert_allclose(accumulated.losses, whole.losses, rtol=1e-5)


def test_progress_bar_can_be_turned_off(capsys):
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    find_lr(model, opt, [_regression()], F.mse_loss, num_iters=5, end_lr=1e-3, progress=False)
    assert capsys.readouterr().err == ""
    find_lr(model, opt, [_regression()], F.mse_loss, num_iters=5, end_lr=1e-3, progress=True)
    assert "LR range test" in capsys.readouterr().err


# --- leaving no trace ------------------------------------------------------------------------------

class Net(torch.nn.Module):
    """Buffers (BatchNorm), randomness (Dropout) and two param groups' worth of layers."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                        torch.nn.Dropout(0.2))
        self.head = torch.nn.Linear(16, 1)

    def forward(self, x):
        return self.head(self.body(x))


def _setup(device="cpu"):
    torch.manual_seed(0)
    model = Net().to(device)
    opt = torch.optim.AdamW([{"params": model.body.parameters(), "lr": 1e-3},
                             {"params": model.head.parameters(), "lr": 3e-3, "weight_decay": 0.0}])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[1e-2, 3e-2], total_steps=50)
    x, y = (t.to(device) for t in _regression(n=32))
    for _ in range(3):  # real optimizer state (Adam's moments) and a scheduler in mid-course
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
        sched.step()
    F.mse_loss(model(x), y).backward()  # and gradients sitting in .grad
    model.body[3].eval()  # a mixed train/eval state
    random.seed(5)
    np.random.seed(5)
    return model, opt, sched, [(x, y)]


def _fingerprint(model, opt, sched):
    state = {
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.detach().cpu().clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "opt": copy.deepcopy(opt.state_dict()),
        "opt_called": getattr(opt, "_opt_called", "absent"),
        "sched": copy.deepcopy(sched.state_dict()),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state()[1].copy(),
        "python_rng": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def _assert_same(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            _assert_same(u, v, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


class Boom(RuntimeError):
    pass


def _loss_that_fails_at(iteration, exc):
    calls = []

    def loss_fn(out, target):
        calls.append(1)
        if len(calls) == iteration + 1:
            raise exc
        return F.mse_loss(out, target)

    return loss_fn


SCENARIOS = {
    "normal": ({"end_lr": 1e-2}, F.mse_loss, None),
    "early stop": ({"end_lr": 1e4, "diverge_threshold": 2.0}, F.mse_loss, None),
    "loss_fn raises": ({"end_lr": 1e-1}, _loss_that_fails_at(5, Boom("mid-run")), Boom),
    "KeyboardInterrupt": ({"end_lr": 1e-1}, _loss_that_fails_at(5, KeyboardInterrupt()), KeyboardInterrupt),
    "on disk": ({"end_lr": 1e-1, "state_dir": "TMP"}, F.mse_loss, None),
    "bf16 autocast": ({"end_lr": 1e-1, "amp": "bf16"}, F.mse_loss, None),
}


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_nothing_changes_bit_for_bit(scenario, device, tmp_path):
    kwargs, loss_fn, raises = SCENARIOS[scenario]
    kwargs = {k: (tmp_path if v == "TMP" else v) for k, v in kwargs.items()}
    model, opt, sched, batches = _setup(device)
    before = _fingerprint(model, opt, sched)
    args = (model, opt, batches, loss_fn)
    options = {"start_lr": 1e-5, "num_iters": 30, "progress": False, **kwargs}
    if raises:
        with pytest.raises(raises):
            find_lr(*args, **options)
    else:
        result = find_lr(*args, **options)
        assert (scenario == "early stop") == result.stopped_early
    _assert_same(before, _fingerprint(model, opt, sched))
    if scenario == "on disk":
        assert list(tmp_path.iterdir()) == []  # the temporary copy is gone


def test_training_after_the_test_is_training_without_it():
    """The finder on a model whose optimizer has a scheduler attached: the next steps are
    bit-identical to a twin's that never saw the finder, with no scheduler warning."""
    runs = []
    for use_finder in (False, True):
        model, opt, sched, batches = _setup()
        if use_finder:
            find_lr(model, opt, batches, F.mse_loss, start_lr=1e-6, end_lr=1.0, num_iters=20, progress=False)
        torch.manual_seed(1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for _ in range(5):
                opt.zero_grad()
                F.mse_loss(model(batches[0][0]), batches[0][1]).backward()
                opt.step()
                sched.step()
        runs.append(([p.detach().clone() for p in model.parameters()], sched.get_last_lr()))
    for a, b in zip(runs[0][0], runs[1][0]):
        assert torch.equal(a, b)
    assert runs[0][1] == runs[1][1]


@pytest.mark.cuda
def test_fp16_with_gradient_scaling_on_cuda():
    model, opt, sched, batches = _setup("cuda")
    before = _fingerprint(model, opt, sched)
    result = find_lr(model, opt, batches, F.mse_loss, start_lr=1e-5, end_lr=1.0, num_iters=30, amp="fp16",
                     progress=False)
    assert np.isfinite(result.losses[:5]).all()
    _assert_same(before, _fingerprint(model, opt, sched))


# --- suggestions on curves with a known answer ----------------------------------------------------------

def _result(lrs, losses, stop_reason=None, mode="exp"):
    losses = np.asarray(losses, float)
    return LRFinderResult(np.asarray(lrs, float), losses, losses.copy(), len(losses), mode, 1.0, stop_reason)


def test_minimum_is_a_tenth_of_the_lowest_point():
    lrs = sweep_lrs(1e-5, 1.0, 51)
    losses = (np.log10(lrs) + 2) ** 2  # minimum at 1e-2
    assert suggest_minimum(lrs, losses) == pytest.approx(1e-3)
    assert _result(lrs, losses).suggest("minimum") == pytest.approx(1e-3)


def test_steepest_is_the_steepest_point_against_log_lr_even_in_a_linear_sweep():
    lrs = sweep_lrs(1e-3, 1.0, 400, mode="linear")
    losses = -np.tanh((np.log10(lrs) + 1.5) / 0.3)  # falls fastest at 10 ** -1.5 in log lr
    found = suggest_steepest(lrs, losses)
    assert found == pytest.approx(10**-1.5, rel=0.02)
    naive = lrs[np.argmin(np.gradient(losses, lrs))]  # against lr itself: the usual bug
    assert not naive == pytest.approx(10**-1.5, rel=0.2)
    np.testing.assert_allclose(log_slopes(lrs, losses), np.gradient(losses, np.log10(lrs)))


def test_an_early_spike_is_skipped():
    lrs = sweep_lrs(1e-6, 1.0, 100)
    losses = 2 - np.tanh((np.log10(lrs) + 2) / 0.5)  # true steepest at 1e-2
    losses[2] += 3.0  # a noisy first batch: its fall looks like the steepest descent
    result = _result(lrs, losses)
    assert result.suggest("steepest", skip_start=0.0) == pytest.approx(lrs[3])
    assert result.suggest("steepest") == pytest.approx(1e-2, rel=0.15)  # default: skip the first 10%


def test_valley_is_halfway_along_the_longest_decrease():
    lrs = sweep_lrs(1e-5, 1.0, 60)
    losses = np.concatenate([np.full(10, 2.0) + 1e-3 * np.arange(10),  # flat, slightly rising
                             np.linspace(2.0, 0.5, 31)[1:],             # indices 10..39 fall
                             np.linspace(0.6, 5.0, 20)])                 # then blow up
    assert suggest_valley(lrs, losses) == pytest.approx(lrs[(9 + 39) // 2])


def test_non_finite_losses_never_reach_a_suggestion():
    lrs = sweep_lrs(1e-5, 1.0, 40)
    losses = 1 - 0.5 * np.tanh((np.log10(lrs) + 3) / 0.5)
    losses[30:] = [np.inf, np.nan] * 5
    result = _result(lrs, losses, stop_reason="loss nan")
    for method in ("minimum", "steepest", "valley"):
        lr = result.suggest(method)
        assert np.isfinite(lr) and 1e-5 <= lr <= lrs[29]
    lrs_used, losses_used = result.usable()
    assert np.isfinite(losses_used).all() and lrs_used.max() < lrs[30]


def test_suggest_says_what_is_wrong():
    result = _result([1e-3, 1e-2, 1e-1], [1.0, np.nan, np.nan], stop_reason="loss nan at iteration 1")
    with pytest.raises(ValueError, match="only 1 usable points.*lower start_lr"):
        result.suggest("minimum", skip_start=0.0)
    with pytest.raises(ValueError, match="method must be one of"):
        result.suggest("fastest")
    with pytest.raises(ValueError, match=r"skip_start must be in \[0, 1\)"):
        result.suggest("minimum", skip_start=1.0)


def test_plot_marks_each_suggestion():
    lrs = sweep_lrs(1e-5, 1.0, 60)
    result = _result(lrs, 1 - np.tanh((np.log10(lrs) + 3) / 0.5) + 0.1 * (np.log10(lrs) + 5) ** 2)
    ax = result.plot()
    labels = [line.get_label() for line in ax.lines]
    assert labels[:2] == ["loss per batch", "smoothed loss"]
    assert sum(label.startswith(("minimum", "steepest", "valley")) for label in labels) == 3
    assert ax.get_xscale() == "log" and ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert any("skip the first 10%" in t.get_text() for t in ax.texts)  # says how much it skipped
    plt.close(ax.figure)


# --- bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    ({"start_lr": 0.0}, "start_lr must be > 0"),
    ({"start_lr": 1.0, "end_lr": 0.5}, "end_lr must be > start_lr=1.0, got 0.5"),
    ({"num_iters": 1}, "num_iters must be >= 2"),
    ({"mode": "log"}, "mode must be one of"),
    ({"smoothing": 0.0}, r"smoothing must be in \(0, 1\], got 0.0"),
    ({"smoothing": 1.5}, r"smoothing must be in \(0, 1\]"),
    ({"diverge_threshold": 1.0}, "diverge_threshold must be > 1, got 1.0"),
    ({"accumulation_steps": 0}, "accumulation_steps must be >= 1"),
    ({"amp": "fp8"}, "amp must be None or one of"),
    ({"amp": "fp16"}, "amp='fp16' needs a CUDA model"),
])
def test_bad_arguments_are_named(kwargs, match):
    model = torch.nn.Linear(5, 1)
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=match):
        find_lr(model, opt, [_regression()], F.mse_loss, progress=False, **kwargs)
    _assert_same(before, model.state_dict())


def test_a_freshly_attached_scheduler_still_warns_when_stepped_before_the_optimizer():
    """PyTorch flags ``optimizer.step()`` calls for its schedulers; the test's own steps must not count."""
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)
    before = _fingerprint(model, opt, sched)
    find_lr(model, opt, [_regression()], F.mse_loss, end_lr=1e-2, num_iters=5, progress=False)
    _assert_same(before, _fingerprint(model, opt, sched))
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()


def test_cyclic_bounds_read_where_the_loss_starts_and_stops_falling():
    lrs = sweep_lrs(0.01, 1.0, 100, mode="linear")
    losses = np.where(lrs < 0.2, 2.0, 2.0 - 1.5 * (lrs - 0.2) / 0.5)  # flat, falls from 0.2 ...
    losses = np.where(lrs > 0.7, 0.5 + 4 * (lrs - 0.7), losses)        # ... to its minimum at 0.7
    base, top = cyclic_bounds(lrs, losses, fall=0.1)
    assert base == pytest.approx(0.25, abs=0.011)  # 10% of the 1.5 drop is reached at lr = 0.25
    assert top == pytest.approx(0.7, abs=0.011)
    with pytest.raises(ValueError, match=r"fall must be in \(0, 1\), got 0.0"):
        cyclic_bounds(lrs, losses, fall=0.0)
