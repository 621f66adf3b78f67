"""lrlib.models: parameter counts by formula against torch's numel()."""

import pytest
import torch

from lrlib.models import MLP, TinyTransformer, count_parameters, transformer_param_count


@pytest.mark.parametrize("d,d_ff,heads", [(1, 1, 1), (16, 40, 2), (64, 256, 4), (96, 100, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_one_layer_matches_torch(d, d_ff, heads, bias):
    layer = torch.nn.TransformerEncoderLayer(d, heads, d_ff, bias=bias)
    assert transformer_param_count(d, d_ff, bias=bias) == count_parameters(layer)


def test_weight_matrices_only_is_the_short_formula():
    d, f, n, v = 32, 128, 3, 500
    assert transformer_param_count(d, f, n, v, bias=False, norms=False) == v * d + n * (
        4 * d * d + 2 * d * f) + d * v


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_tiny_transformer_is_formula_plus_positions(norm_first, bias):
    v, d, f, n, max_len = 50, 32, 64, 3, 12
    m = TinyTransformer(v, d, n_heads=4, d_ff=f, n_layers=n, max_len=max_len,
                        norm_first=norm_first, bias=bias)
    assert count_parameters(m) == transformer_param_count(d, f, n, v, bias=bias) + max_len * d
    out = m(torch.randint(0, v, (2, max_len)))
    assert out.shape == (2, max_len, v)


def test_tied_embeddings_and_meta_device():
    with torch.device("meta"):
        stack = torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(768, 12, 3072), 12, enable_nested_tensor=False)
    assert count_parameters(stack) == transformer_param_count(768, 3072, 12)
    untied = transformer_param_count(768, 3072, 12, 50257)
    tied = transformer_param_count(768, 3072, 12, 50257, tied_embeddings=True)
    assert untied - tied == 768 * 50257 + 50257


def test_count_parameters_trainable_only():
    m = MLP(4, (3,), 2)
    m.net[0].weight.requires_grad_(False)
    assert count_parameters(m) == 3 + 3 * 2 + 2
    assert count_parameters(m, trainable_only=False) == 4 * 3 + 3 + 3 * 2 + 2


def test_mlp_shapes_and_count():
    m = MLP(64, (128, 32), 10)
    assert m(torch.zeros(5, 8, 8)).shape == (5, 10)  # images are flattened
    assert count_parameters(m) == 64 * 128 + 128 + 128 * 32 + 32 + 32 * 10 + 10
    assert sum(isinstance(x, torch.nn.ReLU) for x in m.net) == 2


@pytest.mark.parametrize("kwargs,match", [
    ({"d_model": 0, "d_ff": 4}, "d_model must be >= 1"),
    ({"d_model": 4, "d_ff": 4, "n_layers": -1}, "n_layers must be >= 0"),
    ({"d_model": 4, "d_ff": 4, "vocab_size": 2.0}, "vocab_size must be an int"),
])
def test_count_rejects_bad_sizes(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        transformer_param_count(**kwargs)


def test_models_reject_bad_sizes():
    with pytest.raises(ValueError, match="d_model must be divisible by n_heads=3"):
        TinyTransformer(10, d_model=16, n_heads=3)
    with pytest.raises(ValueError, match="hidden must be >= 1"):
        MLP(4, (0,), 2)
