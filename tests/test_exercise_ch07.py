"""Exercise ch07: its usual mistakes (each must fail a visible test with a hint) and its answers
handed to an existing implementation (each part must be flagged); tests/test_exercise.py runs them."""

import math
from statistics import NormalDist

import numpy as np

from .conftest import ExerciseCells

EX = ExerciseCells("ch07_finetuning_sweep")
NS = EX.namespace()


def split_on_commas(line):
    if not line.startswith("epoch"):
        return None
    parts = [p.split("::")[-1].strip() for p in line.split(",")]
    return {"epoch": int(line.split()[1].rstrip(":")), "train_loss": float(parts[0]),
            "train_acc": float(parts[1]), "dev_acc": float(parts[2])}  # debris makes float() fail


def as_strings(line):
    record = NS["parse_epoch_line"](line)
    return None if record is None else {k: str(v) for k, v in record.items()}


def wald(acc, n, level=0.95):
    z = NormalDist().inv_cdf(0.5 + level / 2)
    half = z * math.sqrt(acc * (1 - acc) / n)
    return acc - half, acc + half


def wilson_with(z_of_level):
    def wilson(acc, n, level=0.95):
        z = z_of_level(level)
        centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return centre - half, centre + half
    return wilson


def optimism_of(e_max):
    return lambda p, k, n: math.sqrt(p * (1 - p) / n) * e_max(k)


def mean_of_means(true_acc, k, n, trials=20000, seed=0):
    scores = np.random.default_rng(seed).binomial(n, true_acc, size=(trials, k)) / n
    return float(scores.mean(axis=0).max() - true_acc)  # the best average, not the average best


def counts(true_acc, k, n, trials=20000, seed=0):  # forgot to divide by n
    scores = np.random.default_rng(seed).binomial(n, true_acc, size=(trials, k))
    return float(scores.max(axis=1).mean() / n ** 0.5 - true_acc)


LAST_EPOCH = {1e-7: 0.261, 1e-6: 0.291, 1e-5: 0.41, 2e-5: 0.41, 1e-4: 0.39, 1e-3: 0.373}

MISTAKES = [
    ("implement-parse_epoch_line", {"parse_epoch_line": split_on_commas}, "strip the block characters"),
    ("implement-parse_epoch_line", {"parse_epoch_line": as_strings}, "as int and floats"),
    ("implement-wilson", {"wilson": wald}, "not acc +- z"),
    ("implement-wilson", {"wilson": wilson_with(lambda level: NormalDist().inv_cdf(level))},
     "not inv_cdf(level)"),
    ("predict-winners_curse", {"expected_optimism": optimism_of(lambda k: 1.0)}, "E[Z] = 0"),
    ("predict-winners_curse", {"expected_optimism": optimism_of(lambda k: 0.0),
                               "PREDICTED": math.sqrt(0.24 / 1101) * 0.5}, "1 / sqrt(pi)"),
    ("predict-winners_curse", {"PREDICTED": math.sqrt(0.24 / 1101) * 0.9}, "about one sigma"),
    ("measure-winners_curse", {"MEASURED": mean_of_means(0.4, 4, 1101)}, "then the mean over sweeps"),
    ("measure-winners_curse", {"MEASURED": NS["PREDICTED"] * 1.2}, "divide by n"),
    ("measure-winners_curse", {"winners_curse": counts}, "no choice and no optimism"),
    ("decide-differ", {"BEST_DEV": LAST_EPOCH}, "not the last epoch"),
    ("decide-differ", {"TOP": [1e-4]}, "choose on dev"),
]


#: Each answer handed to lrlib's own implementation (correct, but not the student's work).
DELEGATED = {
    "parse_epoch_line": "from lrlib.sweep import parse_log\n\ndef parse_epoch_line(line):\n"
                        "    rows = parse_log('##### 1\\n' + line).epochs\n"
                        "    if len(rows) == 0:\n        return None\n"
                        "    r = rows.iloc[0]\n"
                        "    return {'epoch': int(r.epoch), 'train_loss': r.train_loss,\n"
                        "            'train_acc': r.train_acc, 'dev_acc': r.dev_acc}",
    "wilson": "from lrlib.sweep import accuracy_interval as wilson",
    "expected_optimism": "import lrlib.sweep\n\ndef expected_optimism(p, k, n):\n"
                         "    return lrlib.sweep.expected_optimism(p, k, n)\n\nPREDICTED = 0.0187",
    "winners_curse": "def winners_curse(true_acc, k, n, trials=20000, seed=0):\n"
                     "    return lrlib.sweep.winners_curse(true_acc, k, n, trials, seed)\n\n"
                     "MEASURED = 0.0188",
    "decision": "from lrlib.sweep import compare_accuracies, parse_log\nlog = parse_log(LOG)\n"
                "BEST_DEV = log.epochs.groupby('lr').dev_acc.max().to_dict()\nTOP = [1e-5, 2e-5]\n"
                "RUNNER_UP = 1e-4\nDIFFER = bool(compare_accuracies(0.41, 0.39, N_DEV).p_value < 0.05)",
}
DELEGABLE = set(EX.tests)  # every part could be handed to lrlib
