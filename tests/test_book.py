"""lrlib.book (glue for the chapters) and lrlib.exercise (the test cells' checks)."""

import json

import numpy as np
import pytest
import torch

from lrlib import book
from lrlib.book import GLUED, Claim, ClaimFailed, as_builtin, claim, fast, glue, ranges_apart, ranges_apart_p
from lrlib.exercise import expect, expect_close


@pytest.mark.parametrize("value,expected,kind", [
    (np.float64(0.25), 0.25, float), (np.int64(3), 3, int), (torch.tensor(2.5), 2.5, float),
    (np.array(7), 7, int), ("text", "text", str), (1.5, 1.5, float),
])
def test_as_builtin(value, expected, kind):
    out = as_builtin(value)
    assert out == expected and type(out) is kind


def test_glue_converts_and_records():
    assert glue("x_test", np.float32(0.5)) is None
    assert GLUED["x_test"] == 0.5 and type(GLUED["x_test"]) is float
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        glue("", 1)


def test_expect_prints_the_hint_before_failing(capsys):
    expect(True, "never shown")
    assert capsys.readouterr().out == ""
    with pytest.raises(AssertionError, match="the sign is wrong"):
        expect(False, "the sign is wrong")
    assert "the sign is wrong" in capsys.readouterr().out


def test_expect_close(capsys):
    expect_close(0.94 + 1e-13, 0.94, "x")
    expect_close(torch.tensor([1.0, 2.0]), [1.0, 2.0], "t")
    with pytest.raises(AssertionError, match=r"x should be 0.94, got 0.95"):
        expect_close(0.95, 0.94, "x", hint="look at the sign")
    with pytest.raises(AssertionError, match=r"should have shape \(2,\)"):
        expect_close([1.0], [1.0, 2.0], "v")
    with pytest.raises(AssertionError, match="should be a number"):
        expect_close(None, 1.0, "n")
    assert "look at the sign" in capsys.readouterr().out


@pytest.mark.parametrize("env,flag,expected", [
    ("", False, False), ("", True, True), ("1", False, True), ("yes", False, True),
    ("TRUE", False, True), ("0", False, False), ("no", True, True),
])
def test_fast_flag_and_its_environment_override(monkeypatch, env, flag, expected):
    monkeypatch.setenv("LRLIB_FAST", env)
    assert fast(flag) is expected


@pytest.fixture
def full_mode(monkeypatch):
    monkeypatch.delenv("LRLIB_FAST", raising=False)
    monkeypatch.setattr(book, "CLAIMS", [])
    fast(False)
    yield
    fast(False)


def test_a_claim_that_holds_is_recorded_and_glued(full_mode):
    assert claim(np.float64(0.1) < 0.3, "  A lower loss wins. ", "0.1 vs 0.3") is True
    record = book.CLAIMS[-1]
    assert record == Claim("A lower loss wins.", True, "0.1 vs 0.3", True)
    assert json.loads(GLUED["claim-001"]) == {"statement": "A lower loss wins.", "holds": True,
                                              "evidence": "0.1 vs 0.3", "full_mode": True, "test": "",
                                              "n": 0, "effect": None, "p_value": None}


def test_a_claim_with_a_paired_test_needs_the_test_to_pass_and_records_it(full_mode):
    from lrlib.stats import paired_comparison

    # 5 of 5: sign test p = 1/32
    strong = paired_comparison([1, 2, 3, 4, 5], [2, 3, 4, 5, 6], alternative="less")
    assert claim(strong.mean_difference < 0, "A wins.", test=strong) is True
    record = json.loads(GLUED[f"claim-{len(book.CLAIMS):03d}"])
    assert record["n"] == 5 and record["p_value"] == pytest.approx(1 / 32)
    assert record["test"].startswith("paired sign test (less), n=5 (5 of 5)")
    weak = paired_comparison([1, 2, 3, 4, 5], [2, 3, 4, 5, 4], alternative="less")  # 4 of 5: p = 6/32
    with pytest.raises(ClaimFailed, match="paired sign test"):
        claim(weak.mean_difference < 0, "A wins.", test=weak)
    with pytest.raises(TypeError, match="PairedComparison"):
        claim(True, "A wins.", test=0.01)
    three = paired_comparison([1, 2, 3], [2, 3, 4], alternative="less")  # 1/8 at best
    with pytest.raises(ValueError, match="can never reach p <= 0.05"):
        claim(True, "A wins.", test=three)


def test_check_is_an_assertion_not_a_claim(full_mode, monkeypatch):
    before = len(book.CLAIMS)
    book.check(1 + 1 == 2, "One and one make two.")
    with pytest.raises(AssertionError, match="check failed: a negative gradient"):
        book.check(False, "a negative gradient moves the weight up")
    monkeypatch.setenv(book.FAST_ENV_VAR, "1")
    fast(True)
    with pytest.raises(AssertionError):  # a fact does not depend on the run's length
        book.check(False, "still a bug")
    assert len(book.CLAIMS) == before


def test_a_false_claim_raises_in_full_mode_and_is_only_recorded_in_fast(full_mode, monkeypatch):
    with pytest.raises(ClaimFailed, match="no longer supports: 'Warmup helps.' \\(1 vs 2\\)"):
        claim(False, "Warmup helps.", "1 vs 2")
    assert book.CLAIMS[-1].holds is False
    assert fast(True) is True
    assert claim(torch.tensor(False), "Warmup helps.") is False
    assert book.CLAIMS[-1] == Claim("Warmup helps.", False, "", False)
    fast(False)
    monkeypatch.setenv("LRLIB_FAST", "1")
    assert fast(False) is True and claim(0, "Forced FAST by the environment.") is False


def test_claim_refuses_arrays_and_empty_statements(full_mode):
    with pytest.raises(TypeError, match="single truth value"):
        claim(np.array([True, False]), "Some seeds.")
    with pytest.raises(TypeError, match="single truth value"):
        claim(torch.tensor([True]), "Some seeds.")
    with pytest.raises(ValueError, match="statement must be a non-empty string"):
        claim(True, "  ")
    with pytest.raises(TypeError, match="evidence must be a string"):
        claim(True, "Fine.", evidence=0.5)
    assert book.CLAIMS == []


@pytest.mark.parametrize("n,m", [(3, 3), (5, 5), (3, 5), (2, 4)])
def test_ranges_apart_is_an_exact_rank_test(n, m):
    """Oracle: scipy's exact one-sided Mann-Whitney U test."""
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(n * 10 + m)
    low, high = rng.uniform(0, 1, n), rng.uniform(1, 2, m)
    assert ranges_apart(low, high) and not ranges_apart(high, low)
    p = mannwhitneyu(low, high, alternative="less", method="exact").pvalue
    assert ranges_apart_p(n, m) == pytest.approx(p)
    overlapping = np.append(low[1:], np.median(high))
    assert not ranges_apart(overlapping, high)
    assert mannwhitneyu(overlapping, high, alternative="less", method="exact").pvalue > ranges_apart_p(n, m)


def test_ranges_apart_counts_a_diverged_seed_as_worst_and_checks_sizes():
    assert not ranges_apart([0.1, float("nan")], [0.5, 0.6])
    assert ranges_apart([0.1, 0.2], [0.5, float("nan")])
    with pytest.raises(ValueError, match="lower must hold at least 2 seeds"):
        ranges_apart([0.1], [0.5, 0.6])
    with pytest.raises(ValueError, match="n and m must be >= 1"):
        ranges_apart_p(0, 3)
