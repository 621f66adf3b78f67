"""lrlib.book (glue for the chapters) and lrlib.exercise (the test cells' checks)."""

import numpy as np
import pytest
import torch

from lrlib.book import GLUED, as_builtin, fast, glue
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
