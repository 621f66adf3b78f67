"""lrlib.models: parameter counts by formula against torch's numel()."""

import copy

import pytest
import torch

from lrlib.models import (
    MLP,
    LoRALinear,
    TinyTransformer,
    TransformerBlock,
    TransformerClassifier,
    add_lora,
    count_parameters,
    transformer_param_count,
)

from .conftest import devices


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


# --- TransformerBlock and TransformerClassifier (chapter 5) -------------------------------------

def _reference_layer(block: TransformerBlock, d: int, heads: int, d_ff: int, bias: bool) -> torch.nn.Module:
    """torch's fused layer holding the block's weights: the oracle for what a block computes."""
    ref = torch.nn.TransformerEncoderLayer(d, heads, d_ff, dropout=0.0, batch_first=True,
                                           norm_first=block.norm_first, bias=bias)
    pairs = [(ref.self_attn.in_proj_weight, block.qkv.weight),
             (ref.self_attn.out_proj.weight, block.proj.weight),
             (ref.linear1.weight, block.ff_in.weight), (ref.linear2.weight, block.ff_out.weight),
             (ref.norm1.weight, block.norm1.weight), (ref.norm2.weight, block.norm2.weight)]
    if bias:
        pairs += [(ref.self_attn.in_proj_bias, block.qkv.bias),
                  (ref.self_attn.out_proj.bias, block.proj.bias),
                  (ref.linear1.bias, block.ff_in.bias), (ref.linear2.bias, block.ff_out.bias),
                  (ref.norm1.bias, block.norm1.bias), (ref.norm2.bias, block.norm2.bias)]
    with torch.no_grad():
        for theirs, ours in pairs:
            ours.normal_(0, 0.3)  # non-trivial LayerNorm gains and biases too
            theirs.copy_(ours)
    return ref


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("d,heads,d_ff", [(16, 4, 40), (24, 3, 24)])
def test_block_computes_what_torch_encoder_layer_computes(norm_first, bias, d, heads, d_ff):
    torch.manual_seed(0)
    block = TransformerBlock(d, heads, d_ff, norm_first=norm_first, bias=bias)
    ref = _reference_layer(block, d, heads, d_ff, bias)
    x = torch.randn(5, 7, d, requires_grad=True)
    ours, theirs = block(x), ref(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)  # float32 reassociation
    g_ours, = torch.autograd.grad(ours.square().sum(), x)
    g_theirs, = torch.autograd.grad(theirs.square().sum(), x)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-4, atol=1e-5)
    assert transformer_param_count(d, d_ff, bias=bias) == count_parameters(block) == count_parameters(ref)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("n_layers,d,d_ff", [(1, 8, 8), (6, 32, None), (3, 64, 96)])
def test_classifier_is_formula_plus_embeddings_and_head(norm_first, n_layers, d, d_ff):
    m = TransformerClassifier(8, 8, 10, d_model=d, n_heads=4, d_ff=d_ff, n_layers=n_layers,
                              norm_first=norm_first)
    f = 4 * d if d_ff is None else d_ff
    by_hand = (8 * d + d) + 8 * d + (2 * d if norm_first else 0) + (d * 10 + 10)
    assert m.extra_parameters() == by_hand
    assert count_parameters(m) == transformer_param_count(d, f, n_layers) + by_hand


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("norm_first", [True, False])
def test_classifier_shapes_and_determinism(device, norm_first):
    x = torch.randn(6, 64, device=device)

    def seeded(seed):
        torch.manual_seed(seed)
        return TransformerClassifier(norm_first=norm_first).to(device)

    out = seeded(3)(x)
    assert out.shape == (6, 10) and out.device.type == device
    assert torch.equal(out, seeded(3)(x))  # same seed, same model
    assert torch.equal(out, seeded(3)(x.view(6, 8, 8)))  # flat digits are read as 8 rows of 8 pixels
    assert not torch.allclose(out, seeded(4)(x))


def test_post_norm_output_of_every_block_is_normalised():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, norm_first=False)
    y = block(torch.randn(3, 5, 16) * 10)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    pre = TransformerBlock(16, 4, norm_first=True)
    x = torch.randn(3, 5, 16) * 10
    assert pre(x).std(-1).mean() > 5  # pre-norm leaves the residual stream's scale alone


def test_block_and_classifier_reject_bad_sizes():
    with pytest.raises(ValueError, match="d_model must be divisible by n_heads=3, got 16"):
        TransformerBlock(16, 3)
    with pytest.raises(ValueError, match="n_layers must be >= 1"):
        TransformerClassifier(n_layers=0)
    with pytest.raises(ValueError, match="seq_len must be >= 1"):
        TransformerClassifier(seq_len=0)


def test_mlp_with_batch_norm_and_dropout():
    m = MLP(64, (32, 16), 10, batch_norm=True, dropout=0.5)
    kinds = [type(x).__name__ for x in m.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout",
                     "Linear"]
    assert count_parameters(m) == count_parameters(MLP(64, (32, 16), 10)) + 2 * (32 + 16)
    m.eval()
    x = torch.randn(4, 64)
    assert torch.equal(m(x), m(x))  # eval: dropout off, running statistics used
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        MLP(dropout=1.0)


# --- LoRA (chapter 7) ---------------------------------------------------------------------------------

def test_lora_starts_as_the_base_layer_and_trains_only_its_factors():
    torch.manual_seed(0)
    base = torch.nn.Linear(12, 6)
    reference = copy.deepcopy(base)
    lora = LoRALinear(base, rank=3, alpha=6.0)
    x = torch.randn(5, 12)
    assert torch.equal(lora(x), reference(x))  # B = 0 at the start
    assert count_parameters(lora) == 3 * (12 + 6)
    with torch.no_grad():
        lora.lora_b.normal_()
    torch.testing.assert_close(lora(x), x @ lora.merged_weight().T + base.bias, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lora.merged_weight(), base.weight + 2.0 * lora.lora_b @ lora.lora_a)


@pytest.mark.parametrize("rank,alpha,rslora", [(1, 8.0, False), (4, 8.0, False), (16, 8.0, False),
                                               (4, 8.0, True), (16, 2.0, True)])
def test_lora_and_rslora_compute_what_peft_computes(rank, alpha, rslora):
    """Oracle: peft's LoRA layer (use_rslora: alpha / sqrt(r)) on the same base weights and factors."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(12, 6))
    ours = LoRALinear(copy.deepcopy(net[0]), rank=rank, alpha=alpha, rslora=rslora)
    theirs = peft.get_peft_model(copy.deepcopy(net), peft.LoraConfig(
        r=rank, lora_alpha=alpha, use_rslora=rslora, target_modules=["0"], lora_dropout=0.0))
    layer = theirs.base_model.model[0]
    with torch.no_grad():
        ours.lora_b.normal_()
        layer.lora_A["default"].weight.copy_(ours.lora_a)
        layer.lora_B["default"].weight.copy_(ours.lora_b)
    assert ours.scale == pytest.approx(layer.scaling["default"], rel=1e-12)
    x = torch.randn(5, 12)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
    assert count_parameters(ours) == sum(p.numel() for p in theirs.parameters() if p.requires_grad)


def test_add_lora_wraps_the_targets_and_freezes_the_rest():
    torch.manual_seed(0)
    model = TransformerClassifier(d_model=16, n_layers=2)
    x = torch.randn(3, 8, 8)
    before = model(x)
    add_lora(model, rank=2, targets=("qkv", "proj"))
    torch.testing.assert_close(model(x), before)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    factors = {f"blocks.{i}.{m}.lora_{f}" for i in range(2) for m in ("qkv", "proj") for f in "ab"}
    assert trainable == factors | {"head.weight", "head.bias"}
    assert count_parameters(model) == 2 * (2 * (16 + 48) + 2 * (16 + 16)) + 16 * 10 + 10
    with pytest.raises(ValueError, match="no nn.Linear named one of"):
        add_lora(TransformerClassifier(d_model=16, n_layers=1), targets=("nothing",))
    with pytest.raises(TypeError, match="base must be an nn.Linear"):
        LoRALinear(torch.nn.Conv1d(2, 2, 1))
