"""lrlib.data: the offline digits, MNIST-1D, the texts and the minibatch stream."""

import numpy as np
import pytest
import torch

from lrlib.data import load_digits, minibatches


def test_digits_split_shapes_and_standardisation():
    d = load_digits()
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (1079, 359, 359)
    assert d.x_train.shape == (1079, 64) and d.x_val.shape == (359, 64)
    assert d.x_train.dtype == torch.float32 and d.y_val.dtype == torch.int64
    mean = d.x_train.mean(0)
    assert mean.abs().max() < 1e-5
    std = d.x_train.std(0, unbiased=False)
    varying = std > 0
    assert torch.allclose(std[varying], torch.ones(int(varying.sum())), atol=1e-4)
    # validation and test were scaled with the training statistics, not their own
    assert d.x_val.mean(0).abs().max() > 1e-3


def test_digits_splits_are_disjoint_complete_and_stratified():
    from sklearn.datasets import load_digits as sklearn_digits

    raw, labels = sklearn_digits(return_X_y=True)
    d = load_digits(val_fraction=0.15, test_fraction=0.25, seed=3)
    whole = torch.bincount(torch.tensor(labels), minlength=10).double()
    rows = {}
    for name, x, y, share in (("train", d.x_train, d.y_train, 0.6), ("val", d.x_val, d.y_val, 0.15),
                              ("test", d.x_test, d.y_test, 0.25)):
        counts = torch.bincount(y, minlength=10).double()
        # every class in the split's share of the whole, to rounding (one image per class)
        assert torch.all((counts - share * whole).abs() <= 1.0), (name, counts, share * whole)
        rows[name] = {tuple(r) for r in x.round(decimals=4).tolist()}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"]
    assert not rows["val"] & rows["test"]
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == len(labels)
    # the labels are shuffled across classes, not sorted
    assert not torch.equal(d.y_val, d.y_val.sort().values)


def test_digits_split_depends_on_seed_only():
    a, b, c = load_digits(seed=1), load_digits(seed=1), load_digits(seed=2)
    assert all(torch.equal(s, t) for s, t in zip(a.tensors(), b.tensors()))
    assert not torch.equal(a.x_test, c.x_test) and not torch.equal(a.x_val, c.x_val)


@pytest.mark.parametrize("name", ["val_fraction", "test_fraction"])
@pytest.mark.parametrize("bad", [0, 1, -0.2, 1.5])
def test_digits_rejects_bad_fraction(name, bad):
    with pytest.raises(ValueError, match=rf"{name} must be in \(0, 1\)"):
        load_digits(**{name: bad})


def test_digits_must_leave_images_to_train_on():
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction must be below 0.9"):
        load_digits(val_fraction=0.5, test_fraction=0.45)


def test_minibatches_cover_each_row_once_per_pass():
    x = torch.arange(10).float().unsqueeze(1)
    y = torch.arange(10)
    batches = list(minibatches(x, y, 5, steps=4, seed=3))
    assert len(batches) == 4 and all(len(b[1]) == 5 for b in batches)
    first_pass = torch.cat([b[1] for b in batches[:2]])
    assert sorted(first_pass.tolist()) == list(range(10))
    for bx, by in batches:
        assert torch.equal(bx.squeeze(1).long(), by)
    again = list(minibatches(x, y, 5, steps=4, seed=3))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again))


def test_minibatches_leave_global_rng_alone_and_check_arguments():
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    list(minibatches(torch.zeros(8, 1), torch.zeros(8), 4, steps=3))
    assert torch.equal(torch.rand(1), expected)
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, 8\]"):
        list(minibatches(torch.zeros(8, 1), torch.zeros(8), 9, steps=1))
    with pytest.raises(ValueError, match="y must have len"):
        list(minibatches(torch.zeros(8, 1), torch.zeros(7), 2, steps=1))
    assert list(minibatches(torch.zeros(8, 1), torch.zeros(8), 2, steps=0)) == []


def test_noisy_linear_regression_best_loss_is_the_least_squares_minimum():
    from lrlib.data import noisy_linear_regression

    r = noisy_linear_regression(n=500, dim=5, noise=0.3, seed=1)
    x, y = r.x.double(), r.y.double()
    w = torch.linalg.pinv(x) @ y  # an independent route to the minimiser
    assert float(0.5 * ((x @ w - y) ** 2).mean()) == pytest.approx(r.best_loss, rel=1e-5)
    assert r.best_loss == pytest.approx(0.5 * 0.3**2, rel=0.2)  # about half the noise variance
    other = w + 0.01
    assert float(0.5 * ((x @ other - y) ** 2).mean()) > r.best_loss
    with pytest.raises(ValueError, match="n must be >= dim=5"):
        noisy_linear_regression(n=4, dim=5)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        noisy_linear_regression(noise=-1.0)


def test_minibatches_with_replacement_are_iid_draws():
    x = torch.arange(10).float().unsqueeze(1)
    batches = list(minibatches(x, torch.arange(10), 4, steps=500, seed=0, replacement=True))
    assert len(batches) == 500 and all(len(b[1]) == 4 for b in batches)
    counts = torch.bincount(torch.cat([b[1] for b in batches]), minlength=10).float()
    assert counts.min() > 150 and counts.max() < 250  # 200 expected per row
    assert any(len(set(b[1].tolist())) < 4 for b in batches), "a row can repeat within a batch"


# --- MNIST-1D and the texts (stored experiments) --------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LRLIB_CACHE", str(tmp_path))
    return tmp_path


def test_mnist1d_is_the_packages_make_dataset_cached_and_leaves_global_rngs_alone(cache):
    from mnist1d.data import get_dataset_args, make_dataset

    from lrlib.data import mnist1d_arrays

    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    x, y = mnist1d_arrays(500)
    assert np.array_equal(np.random.get_state()[1], before)  # make_dataset reseeds; we put it back
    args = get_dataset_args()
    args.num_samples = 500
    made = make_dataset(args)
    np.testing.assert_allclose(x, np.concatenate([made["x"], made["x_test"]]), rtol=1e-6)
    assert np.array_equal(y, np.concatenate([made["y"], made["y_test"]]))
    assert len(list(cache.glob("mnist1d-500-42-*.npz"))) == 1
    again_x, _ = mnist1d_arrays(500)  # from the cache, identical
    assert np.array_equal(again_x, x)
    with pytest.raises(ValueError, match="n must be a multiple of 10"):
        mnist1d_arrays(505)


def test_mnist1d_split_is_stratified_disjoint_and_deterministic(cache):
    from lrlib.data import load_mnist1d

    d = load_mnist1d(n=1000)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (800, 100, 100)
    for part in (d.y_train, d.y_val, d.y_test):
        counts = torch.bincount(part, minlength=10)
        assert counts.min() == counts.max()  # 100 per class, cut in the same shares
    rows = lambda x: {tuple(r) for r in x.numpy().round(6).tolist()}  # noqa: E731
    assert not rows(d.x_train) & rows(d.x_val) and not rows(d.x_train) & rows(d.x_test)
    again = load_mnist1d(n=1000)
    assert all(torch.equal(a, b) for a, b in zip(d.tensors(), again.tensors()))
    other = load_mnist1d(n=1000, seed=1)
    assert not torch.equal(other.y_train, d.y_train)


@pytest.mark.parametrize("name", ["shakespeare", "python_docs"])
def test_text_windows_predict_the_next_byte_from_disjoint_parts(name):
    from lrlib.data import load_text, text_bytes, text_span

    raw = text_bytes(name)
    d = load_text(name, context=32)
    assert d.x_train.dtype == torch.int64 and d.x_train.shape[1] == 32
    assert torch.equal(d.x_train[:, 1:], d.y_train[:, :-1])  # y is x one byte later
    assert torch.equal(d.y_train[:-1, -1], d.x_train[1:, 0])  # windows are consecutive
    assert bytes(d.x_train[0].tolist()) == raw[:32]
    spans = text_span(len(raw), 32, 0.05, 0.05)
    assert spans["train"][1] == spans["val"][0] and spans["val"][1] == spans["test"][0]
    assert spans["test"][1] == len(raw)
    assert bytes(d.x_val[0].tolist()) == raw[spans["val"][0]:spans["val"][0] + 32]
    assert bytes(d.x_test[0].tolist()) == raw[spans["test"][0]:spans["test"][0] + 32]
    # every held-out window lies inside its own part: no training byte is a held-out target
    assert len(d.y_val) * 32 < spans["val"][1] - spans["val"][0]
    assert int(d.x_train.max()) < 256


def test_texts_ship_with_their_licences():
    from pathlib import Path

    import lrlib.data as data

    readme = (Path(data.__file__).parent / "corpora" / "README.md").read_text()
    assert "public domain" in readme and "Python Software Foundation License" in readme
    assert data.text_bytes("shakespeare").startswith(b"First Citizen:")
    with pytest.raises(ValueError, match="name must be one of"):
        data.text_bytes("moby_dick")
    with pytest.raises(ValueError, match="context must be"):
        data.load_text(context=1)
