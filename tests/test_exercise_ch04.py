"""Exercise ch04: its usual mistakes (each must fail a visible test with a hint) and its answers
handed to an existing implementation (each part must be flagged); tests/test_exercise.py runs them."""

import copy
import math

import numpy as np
import pandas as pd

from .conftest import ExerciseCells

EX = ExerciseCells("ch04_schedules")
NS = EX.namespace()
SOLVED = NS["warmup_cosine_lr"]
P, W, T = NS["PEAK"], NS["WARMUP"], NS["TOTAL"]


def cosine_without_restart(t, peak, warmup_steps, total_steps, start_factor=0.1, floor=0.0):
    if t < warmup_steps:
        return peak * (start_factor + (1 - start_factor) * t / warmup_steps)
    return floor + (peak - floor) * (1 + math.cos(math.pi * t / total_steps)) / 2  # forgot tau = t - W


def notes_bug(t, peak, warmup_steps, total_steps, start_factor=0.1, floor=0.0):
    if t < warmup_steps:
        return peak * (start_factor + (1 - start_factor) * t / warmup_steps)
    # the notes' T_max = T
    return floor + (peak - floor) * (1 + math.cos(math.pi * (t - warmup_steps) / total_steps)) / 2


def warmup_from_zero(t, peak, warmup_steps, total_steps, start_factor=0.1, floor=0.0):
    if t < warmup_steps:
        return peak * t / warmup_steps
    return SOLVED(t, peak, warmup_steps, total_steps, start_factor, floor)


def forgets_the_scheduler(model, optimizer, scheduler):
    return copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict()})


def load_without_scheduler(checkpoint, model, optimizer, scheduler):
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])


def model_only(model, optimizer, scheduler):
    return copy.deepcopy({"model": model.state_dict(), "scheduler": scheduler.state_dict()})


def load_model_only(checkpoint, model, optimizer, scheduler):
    model.load_state_dict(checkpoint["model"])
    scheduler.load_state_dict(checkpoint["scheduler"])


RIGHT = {300: SOLVED(300, P, W, T), 301: SOLVED(1, P, W, T), 350: SOLVED(50, P, W, T)}


def by_column(column):
    def choose(frame):
        loss = frame[column].astype(float).fillna(np.inf)
        schedule, lr = loss.groupby([frame.schedule, frame.lr]).median().idxmin()
        return schedule, float(lr)
    return choose


def best_single_run(frame):
    row = frame.loc[frame.val_loss.astype(float).idxmin()]
    return row.schedule, float(row.lr)


def skips_nan(frame):
    schedule, lr = frame.val_loss.groupby([frame.schedule, frame.lr]).median().idxmin()  # NaN skipped
    return schedule, float(lr)


MISTAKES = [
    ("implement-warmup_cosine_lr", {"warmup_cosine_lr": cosine_without_restart}, "starts afresh"),
    ("implement-warmup_cosine_lr", {"warmup_cosine_lr": notes_bug}, "spans T - W steps"),
    ("implement-warmup_cosine_lr", {"warmup_cosine_lr": warmup_from_zero}, "not at 0"),
    ("implement-checkpoint",
     {"save_checkpoint": forgets_the_scheduler, "load_checkpoint": load_without_scheduler},
     "scheduler's state_dict"),
    ("implement-checkpoint", {"save_checkpoint": model_only, "load_checkpoint": load_model_only},
     "load it too"),
    ("predict-resume", {"PREDICTED": {**RIGHT, 301: SOLVED(301, P, W, T)}}, "counts from 0 again"),
    ("predict-resume", {"PREDICTED": {**RIGHT, 300: SOLVED(0, P, W, T)}}, "holds the rate it had"),
    ("predict-resume", {"PREDICTED": {**RIGHT, 350: SOLVED(350, P, W, T)}}, "finished its warmup"),
    ("measure-resume", {"forgot": NS["kept"]}, "load only the model's and the optimizer's"),
    ("measure-resume", {"forgot": [P] + NS["forgot"][1:]}, "record the rate after building the scheduler"),
    ("measure-resume", {"PREDICTED": {**RIGHT, 301: RIGHT[300]}}, "one of the two is wrong"),
    ("decide-schedule", {"choose_schedule": by_column("test_loss")}, "you chose on test_loss"),
    ("decide-schedule", {"choose_schedule": best_single_run}, "not the lowest single run"),
    ("decide-schedule", {"choose_schedule": skips_nan}, "not be skipped"),
]


#: Each answer handed to an existing implementation (correct, but not the student's work).
DELEGATED = {
    "warmup_cosine_lr": "def warmup_cosine_lr(t, peak, warmup_steps, total_steps, start_factor=0.1, "
                        "floor=0.0):\n"
                        "    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)\n"
                        "    s = lr_scheduler.SequentialLR(opt, [lr_scheduler.LinearLR(opt, start_factor, "
                        "total_iters=warmup_steps), lr_scheduler.CosineAnnealingLR(opt, total_steps - "
                        "warmup_steps,"
                        " floor)], milestones=[warmup_steps])\n"
                        "    for _ in range(t):\n        opt.step()\n        s.step()\n"
                        "    return opt.param_groups[0]['lr']",
    "predictions": "from lrlib.schedules import warmup_cosine\n"
                   "PREDICTED = "
                   "{300: warmup_cosine_lr(300, PEAK, WARMUP, TOTAL), 301: warmup_cosine_lr(1, PEAK,"
                   " WARMUP, TOTAL), 350: warmup_cosine_lr(50, PEAK, WARMUP, TOTAL)}\n"
                   "CORRECT_301 = warmup_cosine_lr(301, PEAK, WARMUP, TOTAL)",
    "choose_schedule": "from lrlib.trials import best_setting\n\ndef choose_schedule(frame):\n"
                       "    f = frame.assign(g=0, key=list(zip(frame.schedule, frame.lr)))\n"
                       "    return tuple(best_setting(f, 'g', over='key')[0])\n\nCHOSEN = ('cosine', 0.1)",
}
DELEGABLE = {"implement-warmup_cosine_lr", "predict-resume", "decide-schedule"}


def test_the_sweep_table_the_students_choose_from_has_the_named_columns():
    frame = NS["frame"]
    assert isinstance(frame, pd.DataFrame)
    assert {"schedule", "lr", "seed", "val_loss", "test_loss"} <= set(frame.columns)
