"""Exercise ch02: its usual mistakes (each must fail a visible test with a hint) and its answers
handed to an existing implementation (each part must be flagged); tests/test_exercise.py runs them."""

import numpy as np

from .conftest import ExerciseCells

EX = ExerciseCells("ch02_too_big_too_small")
NS = EX.namespace()  # the solution's runs (each test gets its own copy)
H = NS["H"]
LAM = np.linalg.eigvalsh(H)


def along_x(A, x0, lr, steps):  # ignores the curvature: the "gradient" is x
    path = [np.asarray(x0, float)]
    for _ in range(steps):
        path.append(path[-1] - lr * path[-1])
    return np.array(path)


def uphill(A, x0, lr, steps):
    path = [np.asarray(x0, float)]
    for _ in range(steps):
        path.append(path[-1] + lr * np.asarray(A) @ path[-1])
    return np.array(path)


def finite_is_stable(A, x0, lrs, steps):  # "stable" = did not overflow
    gd = NS["gd_quadratic"]
    return float(max(lr for lr in lrs if np.isfinite(gd(A, x0, lr, steps)[-1]).all()))


def smallest_unstable(A, x0, lrs, steps):  # one grid step too far
    gd, loss = NS["gd_quadratic"], NS["quadratic_loss"]
    with np.errstate(over="ignore", invalid="ignore"):
        return float(min(lr for lr in lrs if loss(A, gd(A, x0, lr, steps)[-1]) >= loss(A, x0)))


def mean_rate(lrs, val):
    return float(lrs[int(np.nanargmin(np.nanmean(np.asarray(val, float), axis=1)))])


def drop_diverged(lrs, val):  # ignores the seeds that diverged
    return float(lrs[int(np.nanargmin(np.nanmedian(np.where(np.isfinite(val), val, np.nan), axis=1)))])


MISTAKES = [
    ("implement-gd_quadratic", {"gd_quadratic": along_x}, "gradient of 0.5 * x^T A x is A @ x"),
    ("implement-gd_quadratic", {"gd_quadratic": uphill}, "moved uphill"),
    ("implement-gd_quadratic", {"gd_quadratic": lambda A, x0, lr, steps: uphill(A, x0, -lr, steps)[1:]},
     "return x_0 too"),
    ("implement-gd_quadratic", {"quadratic_loss": lambda A, x: float(x @ A @ x)}, "one half"),
    ("predict-rates", {"LR_MAX": 2 / H.diagonal().max()}, "largest diagonal entry"),
    ("predict-rates", {"LR_MAX": 1 / LAM[-1]}, "stops being monotone"),
    ("predict-rates", {"LR_BEST": 1 / LAM[-1]}, "balance the two"),
    ("predict-rates", {"RHO": 1 - LAM[0] / LAM[-1]}, "the factor at lr = 1/L"),
    ("measure-largest_stable", {"MEASURED_MAX": finite_is_stable(H, NS["X0"], NS["GRID"], 100)},
     "unstable even while the loss is finite"),
    ("measure-largest_stable", {"MEASURED_MAX": smallest_unstable(H, NS["X0"], NS["GRID"], 100)},
     "not the smallest unstable one"),
    ("decide-rate", {"choose_rate": drop_diverged}, "inf counting as the worst"),
    ("decide-rate", {"choose_rate": mean_rate}, "not the mean or the minimum"),
    ("decide-rate", {"choose_rate": lambda lrs, val: float(lrs[int(np.argmin(np.min(val, axis=1)))])},
     "not the best seed"),
]


#: Each answer handed to lrlib's own implementation (correct, but not the student's work).
DELEGATED = {
    "gd_quadratic": "from lrlib.landscapes import Quadratic, gradient_descent\n\n"
                    "def quadratic_loss(A, x):\n    return float(Quadratic(np.asarray(A)).loss(np.asarray(x, "
                    "float)))\n\n"
                    "def gd_quadratic(A, x0, lr, steps):\n"
                    "    return gradient_descent(Quadratic(np.asarray(A)), x0, lr, steps).points",
    "predictions": "from lrlib.landscapes import Quadratic\nq = Quadratic(H)\n"
                   "LR_MAX, LR_BEST = 2 / q.L, q.best_lr\nRHO = (q.L - q.mu) / (q.L + q.mu)",
    "largest_stable": "from lrlib.landscapes import Quadratic, gradient_descent\n\n"
                      "def largest_stable(A, x0, lrs, steps):\n    q = Quadratic(np.asarray(A))\n"
                      "    ok = [lr for lr in lrs if gradient_descent(q, x0, lr, steps).losses[-1] < "
                      "q.loss(np.asarray(x0, float))]\n"
                      "    return float(max(ok))\n\nMEASURED_MAX = largest_stable(H, X0, GRID, 100)",
    "choose_rate": "import pandas as pd\nfrom lrlib.trials import best_setting\n\n"
                   "def choose_rate(lrs, val_losses):\n    val = np.asarray(val_losses, float)\n"
                   "    frame = pd.DataFrame([{'g': 0, 'lr': lr, 'val_loss': v} for lr, row in zip(lrs, val) "
                   "for v in row])\n"
                   "    return float(best_setting(frame, 'g')[0])\n\nCHOSEN_LR = 1.6",
}
DELEGABLE = set(EX.tests)  # every part could be handed to lrlib
