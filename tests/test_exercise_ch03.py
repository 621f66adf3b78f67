"""Exercise ch03: its usual mistakes (each must fail a visible test with a hint) and its answers
handed to an existing implementation (each part must be flagged); tests/test_exercise.py runs them."""

import numpy as np

from .conftest import ExerciseCells

EX = ExerciseCells("ch03_optimizers")
NS = EX.namespace()
LAM = np.linalg.eigvalsh(NS["H"])


def adam_without_bias_correction(theta, grad, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    return theta - lr * m / (np.sqrt(v) + eps), m, v


def adam_eps_inside(theta, grad, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    return theta - lr / (1 - beta1**t) * m / np.sqrt(v / (1 - beta2**t) + eps), m, v


def momentum(dampened=False, ignore_beta=False):
    def heavy_ball(A, x0, lr, beta, steps):
        x, buf, path = np.asarray(x0, float), None, [np.asarray(x0, float)]
        for _ in range(steps):
            g = np.asarray(A) @ x
            b = 0.0 if ignore_beta else beta
            step = (1 - b) * g if dampened else g  # dampened: the EMA form
            buf = step if buf is None else b * buf + step
            x = x - lr * buf
            path.append(x)
        return np.array(path)
    return heavy_ball


def smallest_unstable():  # the first grid point past the edge
    grid = NS["GRID"]
    return float(grid[np.searchsorted(grid, 3.8 / LAM[-1])])


MISTAKES = [
    ("implement-adam_step", {"adam_step": adam_without_bias_correction}, "bias correction"),
    ("implement-adam_step", {"adam_step": adam_eps_inside}, "outside the square root"),
    ("implement-heavy_ball", {"heavy_ball": momentum(dampened=True)}, "not at (1 - beta) * g"),
    ("implement-heavy_ball", {"heavy_ball": momentum(ignore_beta=True)}, "beta changes nothing"),
    ("predict-momentum", {"LIMIT": 2 / LAM[-1]}, "plain gradient descent's limit"),
    ("predict-momentum", {"LIMIT": 0.2 / LAM[-1]}, "not (1 - beta)"),
    ("predict-momentum", {"ETA_STAR": 2 / (LAM[-1] + LAM[0])}, "best rate without momentum"),
    ("predict-momentum", {"RHO_STAR": NS["BETA_STAR"]}, "sqrt(BETA_STAR)"),
    ("measure-momentum_limit", {"MEASURED_LIMIT": float(NS["GRID"][-1])}, "top of the grid"),
    ("measure-momentum_limit", {"MEASURED_LIMIT": 2 / LAM[-1]}, "use the momentum you passed"),
    ("measure-momentum_limit", {"MEASURED_LIMIT": smallest_unstable()}, "not the smallest unstable one"),
    ("decide-momentum", {"CHOSEN": (float(NS["RATES"][10]), 0.0)}, "chose no momentum"),
    ("decide-momentum", {"CHOSEN": (float(NS["RATES"][13]), 0.9)}, "near the stability limit"),
    ("decide-momentum", {"CHOSEN": (0.0331, 0.67)}, "a pair from the grid"),
]


#: Each answer handed to an existing implementation (correct, but not the student's work).
DELEGATED = {
    "adam_step": "def adam_step(theta, grad, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):\n"
                 "    p = torch.nn.Parameter(torch.tensor(theta, dtype=torch.float64))\n"
                 "    opt = torch.optim.Adam([p], lr=lr, betas=(beta1, beta2), eps=eps)\n"
                 "    opt.state[p] = {'step': torch.tensor(float(t - 1)), 'exp_avg': torch.tensor(m),\n"
                 "                    'exp_avg_sq': torch.tensor(v)}\n"
                 "    p.grad = torch.tensor(grad, dtype=torch.float64)\n    opt.step()\n"
                 "    s = opt.state[p]\n"
                 "    return p.detach().numpy(), s['exp_avg'].numpy(), s['exp_avg_sq'].numpy()",
    "heavy_ball": "from lrlib.landscapes import Quadratic, optimize\n\n"
                  "def heavy_ball(A, x0, lr, beta, steps):\n"
                  "    return optimize(Quadratic(np.asarray(A)), lambda p: torch.optim.SGD(p, lr=lr, "
                  "momentum=beta),"
                  " x0, steps).points",
    "predictions": "from lrlib.landscapes import Quadratic\nq = Quadratic(H)\nLIMIT = 3.8 / q.L\n"
                   "ETA_STAR = 4 / (q.L**0.5 + q.mu**0.5) ** 2\n"
                   "BETA_STAR = ((q.L**0.5 - q.mu**0.5) / (q.L**0.5 + q.mu**0.5)) ** 2\nRHO_STAR = "
                   "BETA_STAR**0.5",
    "largest_stable": "import lrlib.landscapes as ls\n\ndef largest_stable(A, x0, lrs, beta, steps):\n"
                      "    q = ls.Quadratic(np.asarray(A))\n"
                      "    return float(max(lr for lr in lrs if ls.optimize(q, lambda p: torch.optim.SGD(p, "
                      "lr=lr,"
                      " momentum=beta), x0, steps).losses[-1] < q.loss(np.asarray(x0, float))))\n\n"
                      "MEASURED_LIMIT = largest_stable(H, X0, GRID, 0.9, 300)",
}
DELEGABLE = {"implement-adam_step", "implement-heavy_ball", "predict-momentum", "measure-momentum_limit"}
