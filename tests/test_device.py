"""lrlib.device: resolving preferences, the LRLIB_DEVICE override, clear errors, seeding."""

import random

import numpy as np
import pytest
import torch

from lrlib.device import DeviceUnavailableError, pick_device, seed_everything

from .conftest import HAS_CUDA


@pytest.fixture(autouse=True)
def no_env_override(monkeypatch):
    monkeypatch.delenv("LRLIB_DEVICE", raising=False)


def test_cpu_and_auto():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if HAS_CUDA else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert pick_device("auto").type == expected
    assert pick_device(None).type == expected
    assert pick_device(" CPU ") == torch.device("cpu")


def test_environment_variable_overrides_the_argument(monkeypatch):
    monkeypatch.setenv("LRLIB_DEVICE", "cpu")
    assert pick_device("auto") == torch.device("cpu")
    monkeypatch.setenv("LRLIB_DEVICE", "")
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "tpu", "", "cpu:0"])
def test_unknown_preference_names_the_allowed_forms(bad):
    with pytest.raises(ValueError, match=r"preference must be one of 'auto', 'cpu', 'cuda', 'cuda:N'"):
        pick_device(bad)


def test_bad_environment_variable_is_named(monkeypatch):
    monkeypatch.setenv("LRLIB_DEVICE", "gpu")
    with pytest.raises(ValueError, match="LRLIB_DEVICE must be one of"):
        pick_device("cpu")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("want", ["cuda", "cuda:0"])
def test_cuda_without_cuda_says_so(want, monkeypatch):
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available on this machine"):
        pick_device(want)
    monkeypatch.setenv("LRLIB_DEVICE", want)
    with pytest.raises(DeviceUnavailableError, match="environment variable LRLIB_DEVICE"):
        pick_device("cpu")


@pytest.mark.cuda
def test_cuda_when_present():
    assert pick_device("cuda").type == "cuda"
    assert pick_device("auto").type == "cuda"
    with pytest.raises(DeviceUnavailableError, match="index must be in"):
        pick_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_without_mps_says_so():
    with pytest.raises(DeviceUnavailableError, match="MPS is not available"):
        pick_device("mps")


def _draw():
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_seed_everything_repeats_every_generator():
    seed_everything(123)
    first = _draw()
    seed_everything(123)
    assert _draw() == first
    seed_everything(124)
    assert _draw() != first


@pytest.mark.parametrize("bad,err", [(-1, ValueError), (2**32, ValueError), (1.5, TypeError),
                                     ("0", TypeError), (True, TypeError)])
def test_seed_everything_rejects_bad_seeds(bad, err):
    with pytest.raises(err, match="seed must"):
        seed_everything(bad)
