"""lrlib.schedules against torch.optim.lr_scheduler and transformers, for random arguments and every t."""

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as tls

from lrlib import schedules as S

transformers_optimization = pytest.importorskip("transformers.optimization")

RTOL, ATOL = 1e-9, 1e-15  # torch's recursive forms round differently from our closed forms
HYP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
lrs = st.floats(1e-5, 1.0)
gammas = st.floats(0.5, 0.999)


def torch_lrs(make_scheduler, lr: float, steps: int) -> np.ndarray:
    """The lr torch's scheduler puts in force after 0, 1, ..., steps - 1 calls of step()."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


def check(schedule, make_scheduler, lr, steps):
    expected = torch_lrs(make_scheduler, lr, steps)
    np.testing.assert_allclose(schedule(np.arange(steps)), expected, rtol=RTOL, atol=ATOL * lr)
    assert schedule(steps - 1) == pytest.approx(expected[-1], rel=RTOL, abs=ATOL * lr)


@HYP
@given(lrs, st.integers(1, 20), gammas)
def test_step_decay_is_steplr(lr, step_size, gamma):
    check(S.step_decay(lr, step_size, gamma), lambda o: tls.StepLR(o, step_size, gamma), lr, 5 * step_size)


@HYP
@given(lrs, st.lists(st.integers(1, 60), min_size=1, max_size=4, unique=True), gammas)
def test_multistep_is_multisteplr(lr, marks, gamma):
    marks = sorted(marks)
    check(S.multistep(lr, marks, gamma), lambda o: tls.MultiStepLR(o, marks, gamma), lr, 3 * marks[-1])


@HYP
@given(lrs, gammas)
def test_exponential_is_exponentiallr(lr, gamma):
    check(S.exponential(lr, gamma), lambda o: tls.ExponentialLR(o, gamma), lr, 200)


@HYP
@given(lrs, st.integers(1, 100), st.floats(0.1, 2.0))
def test_inverse_time_is_lambdalr_with_keras_inverse_time_decay(lr, decay_steps, power):
    # Keras' InverseTimeDecay (decay_rate 1, not staircase): lr / (1 + t / decay_steps), to the power p
    check(S.inverse_time(lr, decay_steps, power),
          lambda o: tls.LambdaLR(o, lambda t: 1.0 / (1.0 + 1.0 * t / decay_steps) ** power), lr, 300)


def test_inverse_time_meets_robbins_monro_only_for_powers_above_one_half():
    """Over each doubling of t, sum eta_t^q grows by 2^(1 - q p) times the previous doubling's share:
    the series converges iff that ratio is < 1 (q p > 1). Closed form vs the schedule's own sums."""
    t = np.arange(1_000_000)
    for power in (1.0, 0.75, 0.5, 0.25):
        rates = S.inverse_time(0.1, 10, power)(t)
        for q in (1, 2):
            shares = [(rates[n:2 * n] ** q).sum() for n in (125_000, 250_000)]
            assert shares[1] / shares[0] == pytest.approx(2 ** (1 - q * power), rel=0.01), (power, q)
    # so: the rates never sum (ratio >= 1 for p <= 1) and their squares do only for p > 1/2


@HYP
@given(lrs, st.integers(1, 200), st.floats(0.0, 1.0))
def test_cosine_is_cosineannealinglr_up_to_total_steps(lr, T, min_frac):
    min_lr = lr * min_frac
    check(S.cosine(lr, T, min_lr), lambda o: tls.CosineAnnealingLR(o, T_max=T, eta_min=min_lr), lr, T + 1)
    assert S.cosine(lr, T, min_lr)(3 * T) == pytest.approx(min_lr)  # and stays at the floor after


@HYP
@given(lrs, st.integers(1, 100), st.floats(0.5, 3.0))
def test_polynomial_is_polynomiallr(lr, T, power):
    check(S.polynomial(lr, T, power), lambda o: tls.PolynomialLR(o, total_iters=T, power=power), lr, 3 * T)


@HYP
@given(lrs, st.floats(1.0, 10.0), st.integers(1, 30), st.one_of(st.none(), st.integers(1, 30)),
       st.sampled_from(["triangular", "triangular2", "exp_range"]), st.floats(0.9, 1.0))
def test_cyclic_is_cycliclr(base, ratio, up, down, mode, gamma):
    top = base * ratio
    sched = S.cyclic(base, top, up, down, mode=mode, gamma=gamma)
    cycle = up + (up if down is None else down)
    check(sched, lambda o: tls.CyclicLR(o, base, top, up, down, mode=mode, gamma=gamma,
                                        cycle_momentum=False), base, 3 * cycle)


@HYP
@given(lrs, st.integers(20, 300), st.floats(0.1, 0.45), st.floats(2.0, 50.0), st.floats(10.0, 1e5),
       st.sampled_from(["cos", "linear"]), st.booleans())
def test_one_cycle_is_onecyclelr(max_lr, T, pct, div, final_div, anneal, three):
    sched = S.one_cycle(max_lr, T, pct, div, final_div, anneal, three)
    check(sched, lambda o: tls.OneCycleLR(o, max_lr, total_steps=T, pct_start=pct, div_factor=div,
                                          final_div_factor=final_div, anneal_strategy=anneal,
                                          three_phase=three, cycle_momentum=False), max_lr / div, T)
    with pytest.raises(ValueError, match=f"defined for t <= {T}"):
        sched(T + 1)


@HYP
@given(lrs, st.integers(1, 20), st.integers(1, 3), st.floats(0.0, 0.5))
def test_sgdr_is_cosineannealingwarmrestarts(lr, T_0, T_mult, min_frac):  # noqa: N803
    horizon = T_0 * sum(T_mult**i for i in range(3))  # three cycles
    check(S.sgdr(lr, T_0, T_mult, lr * min_frac),
          lambda o: tls.CosineAnnealingWarmRestarts(o, T_0, T_mult, eta_min=lr * min_frac), lr, horizon + 1)


@HYP
@given(lrs, st.integers(10, 400), st.floats(0.05, 0.5), st.floats(1.0, 64.0))
def test_slanted_triangular_is_ulmfits_equation_3(lr, T, cut_frac, ratio):
    """Oracle: Howard & Ruder's eq. 3 written out step by step (the cut at least one step, and
    the rate held at its floor where T * cut_frac is not whole and p would go negative)."""
    cut = max(1, math.floor(T * cut_frac))
    expected = []
    for t in range(T + 1):
        p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
        expected.append(lr * (1 + max(p, 0.0) * (ratio - 1)) / ratio)
    ours = S.slanted_triangular(lr, T, cut_frac, ratio)(np.arange(T + 1))
    np.testing.assert_allclose(ours, expected, rtol=1e-12)
    assert ours[0] == pytest.approx(lr / ratio) and ours[cut] == pytest.approx(lr)
    assert ours.min() >= lr / ratio * (1 - 1e-12)
    if ratio > 1:
        assert ours.argmax() == cut


@HYP
@given(lrs, st.integers(0, 50))
def test_warmup_constant_is_transformers(lr, W):
    expected = torch_lrs(lambda o: transformers_optimization.get_constant_schedule_with_warmup(o, W),
                         lr, 3 * W + 5)
    np.testing.assert_allclose(S.warmup_constant(lr, W)(np.arange(3 * W + 5)), expected, rtol=1e-12, atol=0)


@HYP
@given(lrs, st.integers(0, 50), st.integers(1, 200))
def test_warmup_linear_is_transformers(lr, W, extra):
    T = W + extra
    expected = torch_lrs(lambda o: transformers_optimization.get_linear_schedule_with_warmup(o, W, T),
                                lr, 3 * T)
    np.testing.assert_allclose(S.warmup_linear(lr, W, T)(np.arange(3 * T)), expected, rtol=1e-12, atol=0)


@HYP
@given(lrs, st.integers(0, 50), st.integers(1, 200), st.floats(0.0, 0.5))
def test_warmup_cosine_is_transformers(lr, W, extra, min_frac):
    T = W + extra
    tf = transformers_optimization
    if min_frac == 0:
        make = lambda o: tf.get_cosine_schedule_with_warmup(o, W, T)  # noqa: E731
    else:
        make = lambda o: tf.get_cosine_with_min_lr_schedule_with_warmup(o, W, T, min_lr=lr * min_frac)  # noqa: E731
    np.testing.assert_allclose(S.warmup_cosine(lr, W, T, lr * min_frac)(np.arange(3 * T)),
                               torch_lrs(make, lr, 3 * T), rtol=1e-12, atol=1e-18)


@HYP
@given(lrs, st.integers(0, 40), st.integers(0, 40), st.integers(0, 40), st.floats(0.0, 0.5),
       st.sampled_from(["linear", "cosine", "1-sqrt"]), st.sampled_from(["linear", "cosine", "1-sqrt"]))
def test_wsd_is_transformers_get_wsd_schedule(lr, W, S_, D, min_frac, decay, shape):
    make = lambda o: transformers_optimization.get_wsd_schedule(  # noqa: E731
        o, num_warmup_steps=W, num_decay_steps=D, num_stable_steps=S_, warmup_type=shape,
        decay_type=decay, min_lr_ratio=min_frac)
    steps = 3 * (W + S_ + D) + 3
    np.testing.assert_allclose(S.wsd(lr, W, S_, D, lr * min_frac, decay, shape)(np.arange(steps)),
                               torch_lrs(make, lr, steps), rtol=1e-12, atol=1e-18)


def test_inverse_sqrt_is_the_transformer_paper_formula():
    d, W = 512, 4000
    s = S.inverse_sqrt(d, W)
    for n in (1, 10, 3999, 4000, 4001, 100_000):  # the paper's step_num, counted from 1
        assert s(n - 1) == pytest.approx(d**-0.5 * min(n**-0.5, n * W**-1.5), rel=1e-14)
    assert int(np.argmax(s(np.arange(10_000)))) == W - 1  # the peak is the W-th update
    got = torch_lrs(lambda o: tls.LambdaLR(o, lambda t: s(t)), 1.0, 50)
    np.testing.assert_allclose(got, s(np.arange(50)), rtol=1e-14)


@HYP
@given(lrs, st.integers(1, 30), st.floats(0.05, 1.0), st.integers(5, 50), gammas)
def test_warmup_and_sequential_are_linearlr_and_sequentiallr(lr, W, f, step_size, gamma):
    sched = S.warmup(S.step_decay(lr, step_size, gamma), W, start_factor=f)

    def make(o):
        return tls.SequentialLR(o, [tls.LinearLR(o, start_factor=f, end_factor=1.0, total_iters=W),
                                    tls.StepLR(o, step_size, gamma)], milestones=[W])

    check(sched, make, lr, W + 3 * step_size)


def test_the_seeds_recipe_linear_then_cosine_through_sequentiallr():
    lr, W, T, floor = 3e-4, 1000, 10_000, 1e-5
    ours = S.sequential([S.warmup(S.constant(lr), W, start_factor=0.1), S.cosine(lr, T - W, floor)],
                        milestones=[W])

    def make(o):
        return tls.SequentialLR(o, [tls.LinearLR(o, start_factor=0.1, total_iters=W),
                                    tls.CosineAnnealingLR(o, T_max=T - W, eta_min=floor)], milestones=[W])

    check(ours, make, lr, T)


#: One schedule from every factory (and both compositions).
EVERY_FACTORY = [
    S.constant(0.1), S.step_decay(0.1, 7), S.multistep(0.1, [5, 20]), S.exponential(0.1, 0.97),
    S.cosine(0.1, 80, 1e-3), S.polynomial(0.1, 80, 2.0), S.cyclic(0.01, 0.1, 9), S.one_cycle(0.1, 100),
    S.sgdr(0.1, 10, 2), S.slanted_triangular(0.1, 100), S.warmup_constant(0.1, 10),
    S.warmup_linear(0.1, 10, 100),
    S.warmup_cosine(0.1, 10, 100, 1e-3),
    S.inverse_sqrt(64, 10), S.wsd(0.1, 10, 40, 30, 1e-3, "1-sqrt"), S.inverse_time(0.1, 20, 0.5),
    S.warmup(S.cosine(0.1, 90), 10), S.sequential([S.constant(0.1), S.exponential(0.1, 0.9)], [50]),
]
FACTORIES = {name for name in S.__all__ if name not in ("Schedule", "ScheduleLR")}
assert {s.name for s in EVERY_FACTORY} >= FACTORIES, FACTORIES - {s.name for s in EVERY_FACTORY}


@pytest.mark.parametrize("built_with", [1e-4, 0.01, 1.0, 37.0])
@pytest.mark.parametrize("schedule", EVERY_FACTORY, ids=lambda s: s.name)
def test_an_attached_schedule_puts_its_own_rate_into_the_optimizer(schedule, built_with):
    """Whatever lr the optimizer was built with (CyclicLR users build it with base_lr), the rate
    it uses at step t is s(t)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=built_with, momentum=0.9)
    sched = schedule.attach(opt)
    seen = []
    for _ in range(100):  # one_cycle is defined up to its total_steps, 100
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(seen, schedule(np.arange(100)), rtol=1e-12, atol=0)


def test_with_several_groups_the_largest_follows_the_schedule_and_the_others_keep_their_ratio():
    schedule = S.cyclic(0.01, 0.1, 5)
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    opt = torch.optim.Adam([{"params": [params[0]], "lr": 0.002}, {"params": [params[1]], "lr": 0.02},
                            {"params": [params[2]], "lr": 0.0}])
    sched = schedule.attach(opt)
    for t in range(30):
        rates = [g["lr"] for g in opt.param_groups]
        assert rates[1] == pytest.approx(schedule(t), rel=1e-12)
        assert rates[0] == pytest.approx(schedule(t) / 10, rel=1e-12) and rates[2] == 0.0
        opt.step()
        sched.step()
    frozen = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    with pytest.raises(ValueError, match="optimizer: at least one param group needs a rate > 0"):
        schedule.attach(frozen)


@pytest.mark.parametrize("schedule", EVERY_FACTORY, ids=lambda s: s.name)
def test_resume_mid_training_is_bit_identical(schedule):
    """100 steps straight versus 50, save everything, rebuild fresh, load, 50 more."""
    lr0 = schedule.lr
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 4, generator=gen), torch.randn(16, 1, generator=gen)) for _ in range(100)]

    def fresh():
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": lr0 / 10}],
                              lr=lr0, momentum=0.9)
        return model, opt, schedule.attach(opt)

    def run(model, opt, sched, part, record):
        for x, y in part:
            record.append([g["lr"] for g in opt.param_groups])
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            sched.step()

    straight_lrs, resumed_lrs = [], []
    straight = fresh()
    run(*straight, data, straight_lrs)
    first = fresh()
    run(*first, data[:50], resumed_lrs)
    saved = copy.deepcopy([first[0].state_dict(), first[1].state_dict(), first[2].state_dict()])
    second = fresh()
    for obj, state in zip(second, saved):
        obj.load_state_dict(state)
    run(*second, data[50:], resumed_lrs)
    assert straight_lrs == resumed_lrs
    for a, b in zip(straight[0].parameters(), second[0].parameters()):
        assert torch.equal(a, b)
    assert straight_lrs[10][0] == pytest.approx(schedule(10))
    assert straight_lrs[10][1] == pytest.approx(straight_lrs[10][0] / 10)  # groups keep their ratio


def test_vectorised_equals_scalar_and_repr_shows_parameters():
    s = S.one_cycle(0.5, 100, three_phase=True)
    t = np.arange(101)
    assert np.array_equal(s(t), np.array([s(int(i)) for i in t]))
    assert isinstance(s(3), float) and s(t).shape == (101,)
    assert repr(S.cosine(0.1, 100)) == "cosine(lr=0.1, total_steps=100, min_lr=0.0)"
    assert "step_size=5" in repr(S.step_decay(0.1, 5))


def test_plot_labels_its_axes():
    import matplotlib

    matplotlib.use("Agg")
    ax = S.sgdr(0.1, 10).plot(50)
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title() == "sgdr"
    assert len(ax.lines[0].get_xdata()) == 50


@pytest.mark.parametrize("make,match", [
    (lambda: S.constant(0.0), "lr must be > 0"), (lambda: S.cosine(-0.1, 10), "lr must be > 0"),
    (lambda: S.cosine(0.1, 0), "total_steps must be >= 1"),
    (lambda: S.warmup_linear(0.1, 200, 100), "warmup_steps must be <= total_steps=100"),
    (lambda: S.warmup_cosine(0.1, 101, 100), "warmup_steps must be <= total_steps"),
    (lambda: S.cyclic(0.1, 1.0, 5, mode="sawtooth"), "mode must be one of"),
    (lambda: S.one_cycle(0.1, 100, anneal="cosine"), "anneal must be one of 'cos', 'linear'"),
    (lambda: S.multistep(0.1, [30, 10]), "milestones must be a non-empty, strictly increasing"),
    (lambda: S.multistep(0.1, [10, 10]), "strictly increasing"),
    (lambda: S.sequential([S.constant(0.1), S.constant(0.2)], [5, 9]), "one fewer than schedules"),
    (lambda: S.wsd(0.1, 1, 1, 1, decay="exp"), "decay must be one of"),
    (lambda: S.cosine(0.1, 10, min_lr=0.2), r"min_lr must be in \[0, lr=0.1\]"),
    (lambda: S.one_cycle(0.1, 3, pct_start=0.1), "leaves a phase with no steps"),
    (lambda: S.cyclic(1.0, 0.1, 5), "max_lr must be >= base_lr"),
    (lambda: S.inverse_time(0.1, 0), "decay_steps must be >= 1"),
    (lambda: S.inverse_time(0.1, 10, power=0.0), "power must be > 0"),
    (lambda: S.warmup_constant(0.1, -1), "warmup_steps must be >= 0"),
    (lambda: S.slanted_triangular(0.1, 100, cut_frac=1.0), r"cut_frac must be in \(0, 1\)"),
    (lambda: S.slanted_triangular(0.1, 100, ratio=0.5), "ratio must be >= 1"),
])
def test_bad_arguments_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_steps():
    with pytest.raises(ValueError, match="t must be >= 0"):
        S.constant(0.1)(-1)
    with pytest.raises(TypeError, match="t must be an int"):
        S.constant(0.1)(1.5)
    assert math.isclose(S.constant(0.1)(np.int64(3)), 0.1)


def test_loading_the_scheduler_state_restores_the_rates_whatever_the_order():
    schedule = S.warmup_cosine(0.1, 10, 100)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = schedule.attach(opt)
    for _ in range(40):
        opt.step()
        sched.step()
    saved_opt, saved_sched = copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict())
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    opt2.load_state_dict(saved_opt)  # optimizer first: the scheduler's constructor resets the rate...
    sched2 = schedule.attach(opt2)
    assert opt2.param_groups[0]["lr"] == schedule(0)
    sched2.load_state_dict(saved_sched)  # ...and loading the scheduler puts it back
    assert opt2.param_groups[0]["lr"] == pytest.approx(schedule(40))
    assert "schedule" not in saved_sched
