"""lrlib.optim against torch.optim: same parameters after 100 steps, for random settings of every flag."""

import copy
import inspect
import random

import pytest
import torch

import lrlib.optim as ours
from lrlib.data import load_digits, minibatches
from lrlib.models import MLP

from .conftest import devices

IMPLEMENTATION_SWITCHES = {"foreach", "fused", "capturable", "differentiable"}
NAMES = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]
DATA = load_digits()


def random_settings(name: str, rng: random.Random) -> dict:
    """Hyperparameters drawn at random, every flag on or off."""
    wd = rng.choice([0.0, rng.uniform(1e-4, 0.1)])
    if name == "SGD":
        momentum = rng.choice([0.0, rng.uniform(0.1, 0.99)])
        nesterov = momentum > 0 and rng.random() < 0.5
        return dict(lr=rng.uniform(1e-3, 0.2), momentum=momentum, weight_decay=wd, nesterov=nesterov,
                    dampening=0.0 if nesterov else rng.choice([0.0, rng.uniform(0, 0.5)]),
                    maximize=rng.random() < 0.2)
    if name == "Adagrad":
        return dict(lr=rng.uniform(1e-3, 0.1), lr_decay=rng.choice([0.0, rng.uniform(0, 0.01)]),
                    weight_decay=wd, initial_accumulator_value=rng.choice([0.0, rng.uniform(0, 0.5)]),
                    eps=rng.choice([1e-10, 1e-6]), maximize=rng.random() < 0.2)
    if name == "RMSprop":
        return dict(lr=rng.uniform(1e-4, 1e-2), alpha=rng.uniform(0.8, 0.999), eps=rng.choice([1e-8, 1e-5]),
                    weight_decay=wd, momentum=rng.choice([0.0, rng.uniform(0.1, 0.95)]),
                    centered=rng.random() < 0.5, maximize=rng.random() < 0.2)
    settings = dict(lr=rng.uniform(1e-4, 1e-2), betas=(rng.uniform(0.5, 0.99), rng.uniform(0.9, 0.9999)),
                    eps=rng.choice([1e-8, 1e-6]), weight_decay=wd, amsgrad=rng.random() < 0.5,
                    maximize=rng.random() < 0.2)
    if name == "Adam" and rng.random() < 0.3:
        settings["decoupled_weight_decay"] = True
    return settings


def train_twins(name, settings, device, steps=100):
    torch.manual_seed(0)
    model = MLP(64, (32, 16), 10).to(device)
    twin = copy.deepcopy(model)
    opt_ours = getattr(ours, name)(model.parameters(), **settings)
    opt_torch = getattr(torch.optim, name)(twin.parameters(), foreach=False, **settings)
    x, y = DATA.x_train.to(device), DATA.y_train.to(device)
    for xb, yb in minibatches(x, y, 64, steps=steps, seed=1):
        for net, opt in ((model, opt_ours), (twin, opt_torch)):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xb), yb)
            (-loss if settings.get("maximize") else loss).backward()  # maximize a negated loss: same path
            opt.step()
    return model, twin


CASES = [(name, seed) for name in NAMES for seed in range(8)]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("name,seed", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_same_parameters_as_torch_after_100_steps(name, seed, device):
    settings = random_settings(name, random.Random(1000 * NAMES.index(name) + seed))
    model, twin = train_twins(name, settings, device)
    for (pname, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6,
                                   msg=lambda m, pname=pname: f"{pname} with {settings}: {m}")


@pytest.mark.parametrize("name", NAMES)
def test_defaults_and_arguments_match_torch(name):
    mine = inspect.signature(getattr(ours, name).__init__).parameters
    theirs = {k: v for k, v in inspect.signature(getattr(torch.optim, name).__init__).parameters.items()
              if k not in IMPLEMENTATION_SWITCHES}
    assert list(mine) == [k for k in theirs if k in mine] and set(mine) == set(theirs), name
    for key, param in theirs.items():
        assert mine[key].default == param.default, f"{name}({key}=...) default differs"


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_resume_is_identical_to_an_uninterrupted_run(name):
    settings = random_settings(name, random.Random(7 + NAMES.index(name)))
    settings["maximize"] = False
    batches = list(minibatches(DATA.x_train, DATA.y_train, 64, steps=60, seed=2))

    def fresh():
        torch.manual_seed(0)
        model = MLP(64, (32,), 10)
        return model, getattr(ours, name)(model.parameters(), **settings)

    def run(model, opt, part):
        for xb, yb in part:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()

    straight, opt = fresh()
    run(straight, opt, batches)
    first, opt = fresh()
    run(first, opt, batches[:30])
    saved = copy.deepcopy((first.state_dict(), opt.state_dict()))
    resumed, opt2 = fresh()  # a new process would start from scratch like this
    resumed.load_state_dict(saved[0])
    opt2.load_state_dict(saved[1])
    run(resumed, opt2, batches[30:])
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name,kwargs,match", [
    ("SGD", {"lr": -0.1}, "lr must be"), ("Adam", {"lr": float("nan")}, "lr must be"),
    ("Adam", {"betas": (0.9, 1.0)}, r"betas\[1\] must be in \[0, 1\)"),
    ("AdamW", {"betas": (-0.1, 0.99)}, r"betas\[0\] must be in \[0, 1\)"),
    ("Adam", {"betas": (0.9,)}, "betas must be a pair"),
    ("Adam", {"eps": -1e-8}, "eps must be"), ("RMSprop", {"alpha": 1.0}, r"alpha must be in \[0, 1\)"),
    ("RMSprop", {"momentum": -0.5}, "momentum must be"), ("Adagrad", {"lr_decay": -1}, "lr_decay must be"),
    ("SGD", {"weight_decay": -1}, "weight_decay must be"),
    ("SGD", {"nesterov": True}, "Nesterov momentum requires momentum > 0"),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "dampening = 0"),
])
def test_bad_hyperparameters_name_the_argument(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(ours, name)([torch.nn.Parameter(torch.zeros(2))], **kwargs)


def test_param_groups_keep_their_own_settings():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = ours.Adam([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = torch.ones(2), torch.ones(2)
    opt.step()
    torch.testing.assert_close(a.detach(), torch.full((2,), 0.9))
    torch.testing.assert_close(b.detach(), torch.full((2,), 0.5))


def test_closure_is_evaluated_and_parameters_without_grad_are_skipped():
    p, q = torch.nn.Parameter(torch.tensor([2.0])), torch.nn.Parameter(torch.tensor([5.0]))
    opt = ours.SGD([p, q], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(4.0)
    assert p.item() == pytest.approx(1.6) and q.item() == 5.0
