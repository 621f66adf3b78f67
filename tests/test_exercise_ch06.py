"""Exercise ch06: its usual mistakes (each must fail a visible test with a hint) and its answers
handed to an existing implementation (each part must be flagged); tests/test_exercise.py runs them."""

import copy

import numpy as np
import torch

from .conftest import ExerciseCells

EX = ExerciseCells("ch06_lr_finder")
NS = EX.namespace()


def uncorrected(losses, alpha=0.05):
    avg, out = 0.0, []
    for loss in losses:
        avg = (1 - alpha) * avg + alpha * loss
        out.append(avg)
    return np.array(out)


def corrected_at_i(losses, alpha=0.05):  # the correction's exponent one short
    avg, out = 0.0, []
    for i, loss in enumerate(losses):
        avg = (1 - alpha) * avg + alpha * loss
        out.append(avg / (1 - (1 - alpha) ** max(i, 1)))
    return np.array(out)


def range_test_variant(copy_model=True, exponent_over_steps=False, loss_after=False):
    def range_test(model, loss_fn, batches, lr_min, lr_max, steps):
        model = copy.deepcopy(model) if copy_model else model
        i = np.arange(steps)
        rates = lr_min * (lr_max / lr_min) ** (i / (steps if exponent_over_steps else steps - 1))
        opt = torch.optim.SGD(model.parameters(), lr=float(rates[0]))
        lrs, losses = [], []
        for rate, (x, y) in zip(rates, batches):
            opt.param_groups[0]["lr"] = float(rate)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if loss_after:
                loss = loss_fn(model(x), y)
            lrs.append(float(rate))
            losses.append(loss.item())
        return np.array(lrs), np.array(losses)
    return range_test


LOSSES_Q = NS["losses_q"]


MISTAKES = [
    ("implement-smooth_losses", {"smooth_losses": uncorrected}, "the bias correction"),
    ("implement-smooth_losses", {"smooth_losses": corrected_at_i}, "1 - beta ** (i + 1), the weight"),
    ("implement-range_test", {"range_test": range_test_variant(copy_model=False)}, "copy.deepcopy"),
    ("implement-range_test", {"range_test": range_test_variant(exponent_over_steps=True)}, "i / (steps - 1)"),
    ("implement-range_test", {"range_test": range_test_variant(loss_after=True)}, "before the first update"),
    ("predict-edge", {"PASS_STEP": int(np.argmax(
        1e-3 * 1e4 ** (np.arange(100) / 99) > 1 / 8))}, "passes 1/L"),
    ("predict-edge", {"PASS_STEP": 60.0}, "is a step index"),
    ("measure-edge", {"FIRST_RISE": int(np.argmin(LOSSES_Q)) + 1}, "one step late"),
    ("measure-edge", {"FIRST_RISE": int(np.argmin(NS["smooth_losses"](LOSSES_Q, 0.05)))}, "smoothed curve"),
    ("decide-finder_rate", {"CHOSEN_LR": 5.0}, "blows up"),
    ("decide-finder_rate", {"CHOSEN_LR": 1e-3}, "flat start"),
]


#: Each answer handed to lrlib's own implementation (correct, but not the student's work).
DELEGATED = {
    "smooth_losses": "from lrlib.finder import smooth\n\ndef smooth_losses(losses, alpha=0.05):\n"
                     "    return smooth(losses, alpha)",
    "range_test": "import lrlib.finder\n\ndef range_test(model, loss_fn, batches, lr_min, lr_max, steps):\n"
                  "    r = lrlib.finder.find_lr(model, lambda p: torch.optim.SGD(p, lr=lr_min), loss_fn,\n"
                  "                             batches,\n"
                  "                             start_lr=lr_min, end_lr=lr_max, num_iters=steps)\n"
                  "    return r.lrs, r.losses",
    "pass_step": "from lrlib.finder import sweep_lrs\n"
                 "PASS_STEP = int(np.argmax(sweep_lrs(*SWEEP) > 2 / CURVATURE))",
    "first_rise": "lrs_q, losses_q = range_test(Scalar(1.0), half_curvature(CURVATURE),\n"
                  "                            [(None, None)] * 100, *SWEEP)\n"
                  "from lrlib.finder import smooth\n"
                  "FIRST_RISE = int(np.argmax(np.diff(smooth(losses_q, 1.0)) > 0))",
    "chosen_lr": "from lrlib.finder import find_lr\n"
                 "r = find_lr(net, lambda p: torch.optim.SGD(p, lr=1e-4), F.cross_entropy, finder_batches)\n"
                 "CHOSEN_LR = float(r.suggest('steepest'))",
}
DELEGABLE = set(EX.tests)  # every part could be handed to lrlib
