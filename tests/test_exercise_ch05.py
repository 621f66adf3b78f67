"""Exercise ch05: its usual mistakes (each must fail a visible test with a hint) and its answers
handed to an existing implementation (each part must be flagged); tests/test_exercise.py runs them."""

import numpy as np

from .conftest import ExerciseCells

EX = ExerciseCells("ch05_warmup")
NS = EX.namespace()


def warmup_without_restart(schedule, warmup_steps, start_factor=0.0):
    def warmed(t):
        if t < warmup_steps:
            return schedule(0) * (start_factor + (1 - start_factor) * t / warmup_steps)
        return schedule(t)  # forgot that the schedule starts afresh at the milestone
    return warmed


def warmup_ignoring_start_factor(schedule, warmup_steps, start_factor=0.0):
    def warmed(t):
        if t < warmup_steps:
            return schedule(0) * t / warmup_steps
        return schedule(t - warmup_steps)
    return warmed


def distance_from_start(steps, grad, lr=1e-3):  # the total distance, not each step's
    ratios = NS["radam_ratios"](steps, grad, lr)
    return list(np.cumsum(ratios))


def pick(aggregate):
    def shortest(lengths, val_losses, tolerance):
        values = [aggregate(np.asarray(v, float)) for v in val_losses]
        best = np.nanmin(values)
        return min(w for w, m in zip(lengths, values) if m <= (1 + tolerance) * best)
    return shortest


def best_length(lengths, val_losses, tolerance):  # the best, not the shortest sufficient
    return lengths[int(np.argmin(np.median(val_losses, axis=1)))]


def median_skipping_nan(v):
    return float(np.nanmedian(v))


MISTAKES = [
    ("implement-with_warmup", {"with_warmup": warmup_without_restart}, "schedule(t - W)"),
    ("implement-with_warmup", {"with_warmup": warmup_ignoring_start_factor}, "start_factor * schedule(0)"),
    ("predict-radam", {"FIRST_RECTIFIED": 5}, "needs rho_t > 5"),
    ("predict-radam", {"FIRST_RECTIFIED": 4}, "count steps from t = 1"),
    ("predict-radam", {"WARMUP_RULE": 1000.0}, "2 / (1 - beta2)"),
    ("measure-radam", {"radam_ratios": distance_from_start}, "not the distance from the start"),
    ("measure-radam", {"MEASURED_FIRST": NS["MEASURED_FIRST"] - 1}, "steps count from 1"),
    ("measure-radam", {"MEASURED_R100": NS["radam_ratios"](101, 100.0)[100]}, "index 99"),
    ("decide-warmup", {"shortest_sufficient": pick(np.min)}, "not the best seed or the mean"),
    ("decide-warmup", {"shortest_sufficient": pick(median_skipping_nan)}, "count as the worst value"),
    ("decide-warmup", {"shortest_sufficient": best_length}, "not the best length itself"),
]


#: Each answer handed to an existing implementation (correct, but not the student's work).
DELEGATED = {
    "with_warmup": "def with_warmup(schedule, warmup_steps, start_factor=0.0):\n"
                   "    return lrlib.schedules.sequential([lrlib.schedules.warmup(lrlib.schedules.constant("
                   "schedule(0)), warmup_steps, start_factor=start_factor), schedule], [warmup_steps])",
    "predictions": "p = torch.nn.Parameter(torch.zeros(1))\nopt = torch.optim.RAdam([p], lr=1e-3)\n"
                   "steps = []\nfor t in range(1, 101):\n    b = p.item()\n"
                   "    p.grad = torch.full_like(p, 100.0)\n"
                   "    opt.step()\n    steps.append(abs(p.item() - b) / 1e-3)\n"
                   "FIRST_RECTIFIED = 1 + next(i for i, r in enumerate(steps) if r < 50)\n"
                   "R_100 = steps[99]\nWARMUP_RULE = 2000.0",
    "shortest_sufficient": "import pandas as pd\nfrom lrlib.trials import best_setting\n\n"
                           "def shortest_sufficient(lengths, val_losses, tolerance):\n"
                           "    f = pd.DataFrame([{'g': 0, 'lr': w, 'val_loss': x}\n"
                           "                      for w, v in zip(lengths, val_losses) for x in v])\n"
                           "    best = best_setting(f, 'g')[0]\n    return best\n\nCHOSEN_WARMUP = 10",
}
DELEGABLE = {"implement-with_warmup", "predict-radam", "decide-warmup"}
