"""TransBTS: shapes, logits, dropout modes, parameter count, positional embedding, checkpointing,
sliding-window inference and the ``build_network`` factory.  Tiny configs only (CPU, a few seconds)."""

from __future__ import annotations

import math

import pytest
import torch
from monai.inferers import sliding_window_inference

from robustlabel.networks import (
    OFFICIAL_NUM_PARAMS,
    OFFICIAL_UNUSED_PARAMS,
    OFFICIAL_USED_PARAMS,
    TINY_TRANSBTS,
    TransBTS,
    build_network,
)
from robustlabel.networks.transformer import LearnedPositionalEmbedding, SelfAttention


def _tiny(**overrides) -> TransBTS:
    torch.manual_seed(0)
    return TransBTS(**{**TINY_TRANSBTS, **overrides})


def _input(*spatial: int, batch: int = 1, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, *spatial, generator=generator)


def _num_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_output_shape_and_unnormalised_logits() -> None:
    net = _tiny().eval()
    with torch.no_grad():
        logits = net(_input(32, 32, 32, batch=2))
    assert logits.shape == (2, 4, 32, 32, 32)
    assert torch.isfinite(logits).all()
    # logits, not probabilities: negative values exist and channels do not sum to one
    assert (logits < 0).any()
    assert not torch.allclose(logits.sum(dim=1), torch.ones(2, 32, 32, 32), atol=1e-3)


def _two_seeded_passes(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two forward passes under different RNG seeds (10, 11): differ only if the net is random."""
    outputs = []
    with torch.no_grad():
        for seed in (10, 11):
            torch.manual_seed(seed)
            outputs.append(net(x))
    return outputs[0], outputs[1]


def test_eval_is_deterministic_and_train_uses_dropout() -> None:
    net = _tiny()
    x = _input(32, 32, 32)
    first, second = _two_seeded_passes(net.eval(), x)
    assert torch.equal(first, second)
    third, fourth = _two_seeded_passes(net.train(), x)
    assert not torch.allclose(third, fourth)


def test_without_dropout_train_mode_is_deterministic() -> None:
    """With every dropout rate at 0 the two train passes agree: dropout was the only randomness."""
    net = _tiny(dropout_rate=0.0, attn_dropout_rate=0.0, init_dropout_rate=0.0).train()
    first, second = _two_seeded_passes(net, _input(32, 32, 32))
    assert torch.equal(first, second)


def test_default_param_count_matches_official_less_unused_layers() -> None:
    with torch.device("meta"):
        net = TransBTS()
    count = _num_params(net)
    assert OFFICIAL_UNUSED_PARAMS == 512 * 512 + 512 + 2 * 512  # linear_encoding + pre_head_ln
    assert round(OFFICIAL_NUM_PARAMS / 1e6, 2) == 32.99
    assert abs(count - OFFICIAL_USED_PARAMS) / OFFICIAL_USED_PARAMS < 0.01
    # the exact figure of the docstring: conv biases of the 9 encoder residual blocks are absent
    assert count == OFFICIAL_USED_PARAMS - 2 * (16 + 2 * 32 + 2 * 64 + 4 * 128) == 32_722_468
    transformer = sum(_num_params(layer) for layer in net.transformer_layers)
    assert transformer == 4 * (4 * 512 * 512 + 512 + 2 * 512 * 4096 + 4096 + 512 + 4 * 512)


def test_every_parameter_is_used() -> None:
    net = _tiny().train()
    net(_input(32, 32, 32, batch=2)).square().mean().backward()
    unused = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert unused == []


@pytest.mark.parametrize(("img_size", "tokens"), [(32, 64), (64, 512), ((32, 48, 64), 4 * 6 * 8), (128, 4096)])
def test_positional_embedding_size_follows_img_size(img_size, tokens: int) -> None:
    with torch.device("meta"):
        net = TransBTS(**{**TINY_TRANSBTS, "img_size": img_size})
    assert tuple(net.position_embedding.embedding.shape) == (1, tokens, TINY_TRANSBTS["embedding_dim"])


def test_positional_embedding_interpolation_keeps_token_order() -> None:
    """An embedding that grows along depth only must still do so after resizing, in C token order."""
    embedding = LearnedPositionalEmbedding((4, 2, 3), embedding_dim=2)
    depth = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 2, 3, 2)
    with torch.no_grad():
        embedding.embedding.copy_(depth.reshape(1, 24, 2))
    assert embedding.resized((4, 2, 3)) is embedding.embedding
    resized = embedding.resized((8, 5, 3)).reshape(8, 5, 3, 2)
    assert torch.allclose(resized, resized[:, :1, :1, :].expand_as(resized))  # constant over (h, w)
    along_depth = resized[:, 0, 0, 0]
    assert torch.all(along_depth[1:] >= along_depth[:-1]) and along_depth[-1] > along_depth[0]
    assert along_depth[0] == 0.0 and along_depth[-1] == 3.0


def test_runs_on_sizes_other_than_img_size() -> None:
    net = _tiny().eval()
    with torch.no_grad():
        torch.nn.init.normal_(net.position_embedding.embedding)
        logits = net(_input(48, 40, 56))
    assert logits.shape == (1, 4, 48, 40, 56)
    assert torch.isfinite(logits).all()


def test_input_not_divisible_by_8_raises_with_shape() -> None:
    net = _tiny().eval()
    with pytest.raises(ValueError, match=r"\(1, 4, 36, 32, 32\)"):
        net(_input(36, 32, 32))
    with pytest.raises(ValueError, match="in_channels|\\(B, 4"):
        net(torch.zeros(1, 3, 32, 32, 32))


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"img_size": 36}, "img_size"),
        ({"base_channels": 4}, "base_channels"),
        ({"embedding_dim": 30, "num_heads": 4}, "embedding_dim"),
        ({"dropout_rate": 1.0}, "dropout_rate"),
        ({"num_layers": 0}, "num_layers"),
    ],
)
def test_invalid_arguments_raise(overrides: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        TransBTS(**{**TINY_TRANSBTS, **overrides})


def test_sdpa_attention_matches_explicit_formula() -> None:
    torch.manual_seed(0)
    attention = SelfAttention(embedding_dim=16, num_heads=4, attn_dropout_rate=0.5).eval()
    tokens = torch.randn(2, 10, 16)
    q, k, v = attention.qkv(tokens).reshape(2, 10, 3, 4, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(4), dim=-1)
    expected = attention.out_proj((weights @ v).transpose(1, 2).reshape(2, 10, 16))
    with torch.no_grad():
        assert torch.allclose(attention(tokens), expected, atol=1e-5)


def test_gradient_checkpointing_gives_same_gradients() -> None:
    plain = _tiny(num_layers=2).train()
    checkpointed = _tiny(num_layers=2, gradient_checkpointing=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    calls = {"plain": 0, "checkpointed": 0}
    plain.transformer_layers[0].register_forward_pre_hook(lambda *_: calls.__setitem__("plain", calls["plain"] + 1))
    checkpointed.transformer_layers[0].register_forward_pre_hook(
        lambda *_: calls.__setitem__("checkpointed", calls["checkpointed"] + 1)
    )
    x = _input(32, 32, 32, batch=2)
    outputs = []
    for net in (plain, checkpointed):
        torch.manual_seed(123)  # same dropout masks; checkpoint restores the RNG state on recompute
        out = net(x)
        out.square().mean().backward()
        outputs.append(out.detach())
    assert calls == {"plain": 1, "checkpointed": 2}  # the layer really was recomputed
    assert torch.allclose(outputs[0], outputs[1], atol=1e-6)
    grads = dict(checkpointed.named_parameters())
    for name, param in plain.named_parameters():
        assert torch.allclose(param.grad, grads[name].grad, rtol=1e-4, atol=1e-6), name


def test_sliding_window_inference_on_odd_sized_volume() -> None:
    net = _tiny().eval()
    volume = _input(50, 41, 37)
    with torch.no_grad():
        logits = sliding_window_inference(volume, roi_size=(32, 32, 32), sw_batch_size=2, predictor=net, overlap=0.25)
    assert logits.shape == (1, 4, 50, 41, 37)
    assert torch.isfinite(logits).all()


def test_build_network() -> None:
    config = {"name": "TransBTS", **TINY_TRANSBTS}
    net = build_network(config, num_layers=2)
    assert isinstance(net, TransBTS) and len(net.transformer_layers) == 2
    assert config == {"name": "TransBTS", **TINY_TRANSBTS}  # not modified
    assert isinstance(build_network(TINY_TRANSBTS), TransBTS)  # name defaults to transbts
    with pytest.raises(ValueError, match="transbts"):
        build_network({"name": "unet"})
    with pytest.raises(ValueError, match="depth"):
        build_network(TINY_TRANSBTS, depth=3)
