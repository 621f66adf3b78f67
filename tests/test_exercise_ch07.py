"""Exercise ch07: the visible tests catch the usual mistakes and say what is wrong."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from .conftest import ExerciseCells

EX = ExerciseCells("ch07_finetuning_sweep")


@pytest.mark.parametrize("test_id", EX.tests)
def test_the_solution_passes_visible_and_hidden_tests(test_id):
    exec(EX.hidden(test_id), EX.namespace())


def split_on_commas(line):
    if not line.startswith("epoch"):
        return None
    parts = [p.split("::")[-1].strip() for p in line.split(",")]
    return {"epoch": int(line.split()[1].rstrip(":")), "train_loss": float(parts[0]),
            "train_acc": float(parts[1]), "dev_acc": float(parts[2])}  # debris makes float() fail


def wald(acc, n, level=0.95):
    z = NormalDist().inv_cdf(0.5 + level / 2)
    half = z * math.sqrt(acc * (1 - acc) / n)
    return acc - half, acc + half


def one_sided(acc_a, acc_b, n_a, n_b, alpha=0.05):
    pooled = (acc_a * n_a + acc_b * n_b) / (n_a + n_b)
    z = (acc_a - acc_b) / math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    p = 1 - NormalDist().cdf(abs(z))  # forgot the factor 2
    return z, p, p < alpha


def max_of_means(true_acc, k, n, trials=20000, seed=0):
    scores = np.random.default_rng(seed).binomial(n, true_acc, size=(trials, k)) / n
    return float(scores.mean(axis=0).max() - true_acc)  # the best average, not the average best


MISTAKES = [
    ("test-parse_epoch_line", {"parse_epoch_line": lambda line: None}, "expected epoch 0"),
    ("test-wilson", {"wilson": wald}, "not acc +- z"),
    ("test-differ", {"differ": one_sided}, "two-sided p-value"),
    ("test-winners_curse", {"winners_curse": max_of_means}, "maximum over the k rates of each sweep"),
]


@pytest.mark.parametrize("test_id,wrong,hint", MISTAKES, ids=lambda v: v if isinstance(v, str) else "")
def test_a_usual_mistake_fails_the_visible_test_with_a_hint(test_id, wrong, hint):
    assert hint in EX.visible_output_when_failing(test_id, **wrong)


def test_a_parser_without_debris_handling_fails():
    def safe(line):
        try:
            return split_on_commas(line)
        except ValueError:
            return None

    assert "strip the block characters" in EX.visible_output_when_failing("test-parse_epoch_line",
                                                                          parse_epoch_line=safe)
