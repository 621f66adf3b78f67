"""Exercise ch01: its usual mistakes (each must fail a visible test with a hint) and its answers
handed to an existing implementation (each part must be flagged); tests/test_exercise.py runs them."""

import copy

import torch

from lrgrade.delegation import find_delegations

from .conftest import ExerciseCells

EX = ExerciseCells("ch01_update_rule")


def per_tensor(before, after):  # the norm taken tensor by tensor, then added
    return float(sum((a - b).norm() / b.norm() for a, b in zip(after, before)))


def in_place_adam(model, x, y, lr):  # steps the model it was given
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    return float(torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)]).norm()
                 / torch.cat([b.flatten() for b in before]).norm())


def sgd_step_size(model, x, y, lr):  # an SGD step where Adam was asked for
    model = copy.deepcopy(model)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.nn.functional.cross_entropy(model(x), y).backward()
    torch.optim.SGD(model.parameters(), lr=lr).step()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return float((after - before).norm() / before.norm())


N_PARAMS = 64 * 128 + 128 + 128 * 10 + 10

MISTAKES = [
    ("implement-update", {"update": lambda theta, grad, lr: theta + lr * grad}, "negative gradient"),
    ("implement-update", {"update": lambda theta, grad, lr: theta - grad}, "rate multiplies"),
    ("implement-relative_update", {"relative_update": per_tensor}, "not tensor by tensor"),
    ("implement-relative_update", {"relative_update": lambda b, a: torch.tensor(0.1)}, "Python float"),
    ("predict-first_step", {"predict_first_step": lambda lr, n, norm: lr * n / norm}, "sqrt(4)"),
    ("predict-first_step", {"N_MOVING": N_PARAMS}, "counts every weight"),
    ("measure-first_step", {"measure_first_step": in_place_adam}, "copy.deepcopy"),
    ("measure-first_step", {"measure_first_step": sgd_step_size}, "torch.optim.Adam"),
    ("decide-adam_lr", {"ADAM_LR": 1e-3}, "target relative step"),
    ("decide-adam_lr", {"ADAM_LR": 3e-4}, "folklore"),
    ("decide-adam_lr", {"ADAM_LR": 1.5e-4}, "within 10%"),
]


#: Each answer handed to lrlib's own implementation (correct, but not the student's work).
DELEGATED = {
    "update": "from lrlib.update import sgd_step\n\ndef update(theta, grad, lr):\n"
              "    return sgd_step(theta, grad, lr)",
    "relative_update": "def relative_update(before, after):\n"
                       "    return lrlib.update.global_norm([a - b for a, b in zip(after, before)])"
                       " / lrlib.update.global_norm(before)",
    "measure_first_step": "from lrlib.update import relative_update_sizes\n\n"
                          "def measure_first_step(model, x, y, lr):\n"
                          "    return float(relative_update_sizes(model, lambda p: torch.optim.Adam(p, "
                          "lr=lr),\n"
                          "        [(x, y)], torch.nn.functional.cross_entropy)[0])",
}
DELEGABLE = {"implement-update", "implement-relative_update", "measure-first_step"}


def test_answers_handed_to_lrlib_pass_the_tests_but_are_flagged_part_by_part():
    ns = EX.namespace_of(**DELEGATED)
    for test_id in EX.tests:  # correct answers: only the own-work check can cost them
        exec(EX.hidden(test_id), ns)
    assert set(find_delegations(EX.notebook(**DELEGATED))) == DELEGABLE
    assert find_delegations(EX.notebook()) == {}  # the solution is its own work


def test_a_helper_in_an_earlier_part_cannot_smuggle_the_call_in():
    smuggled = {"update": EX.cells["update"] + "\n\nhelp_me = lrlib.update.relative_update_sizes\n",
                "measure_first_step": "def measure_first_step(model, x, y, lr):\n"
                                      "    return float(help_me(model, lambda p: torch.optim.Adam(p, "
                                      "lr=lr),\n"
                                      "        [(x, y)], torch.nn.functional.cross_entropy)[0])"}
    found = find_delegations(EX.notebook(**smuggled))
    assert set(found) == {"measure-first_step"} and "relative_update_sizes" in found["measure-first_step"]
