"""FCN-AlexNet: output size, the transferable / non-transferable split, ImageNet weight loading."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import alexnet

from robustlabel.networks.fcn import (
    CROP_OFFSET,
    NON_TRANSFERABLE,
    TRANSFERABLE,
    FCNAlexNet,
    bilinear_kernel,
    count_parameters,
    load_alexnet_weights,
    receptive_output_size,
)


@pytest.mark.parametrize("size", [(94, 125), (125, 94), (1, 1), (33, 17)])
def test_logits_have_the_input_size(size):
    model = FCNAlexNet(3, width=0.125).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *size)).shape == (2, 3, *size)


def test_padding_100_covers_every_small_image_and_full_width_matches_alexnet():
    assert all(receptive_output_size(s) >= s + CROP_OFFSET for s in range(1, 400))
    model = FCNAlexNet(21)
    reference = alexnet(weights=None)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 192, 384, 256, 256] and convs[0].padding == (100, 100)
    # features + fc6 + fc7 hold exactly AlexNet's parameters except its 1000-class layer
    assert count_parameters(model, TRANSFERABLE) == count_parameters(reference) - 4096 * 1000 - 1000
    assert count_parameters(model, NON_TRANSFERABLE) == 4096 * 21 + 21 + 21 * 21 * 63 * 63
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.randn(1, 1, 8, 8))


def test_transfer_copies_features_and_reinitialises_the_head():
    torch.manual_seed(0)
    source = FCNAlexNet(16, width=0.125)
    torch.manual_seed(1)
    target = FCNAlexNet(6, width=0.125)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    state = source.transferable_state_dict()
    assert {k.split(".")[0] for k in state} == set(TRANSFERABLE)
    torch.manual_seed(2)
    target.load_transferable(state)
    after = target.state_dict()
    for key, value in after.items():
        if key.split(".")[0] in TRANSFERABLE:
            assert torch.equal(value, state[key]), key
        elif key.endswith("weight"):  # score / upscore: fresh Xavier weights, not the ones before
            assert not torch.equal(value, before[key]), key
    assert target.score.weight.shape == (6, 512, 1, 1) and torch.count_nonzero(target.score.bias) == 0
    with pytest.raises(ValueError, match="shape"):
        FCNAlexNet(6, width=0.25).load_transferable(state)
    with pytest.raises(KeyError, match="missing"):
        target.load_transferable({k: v for k, v in state.items() if not k.startswith("fc7")})


def test_imagenet_state_dict_loads_into_features_fc6_fc7(tmp_path):
    torch.manual_seed(0)
    reference = alexnet(weights=None)
    path = tmp_path / "alexnet.pth"
    torch.save(reference.state_dict(), path)
    model = FCNAlexNet(2)
    loaded = load_alexnet_weights(model, path)
    assert {k.split(".")[0] for k in loaded} == set(TRANSFERABLE)
    assert torch.equal(model.features[0].weight, reference.features[0].weight)
    assert torch.equal(model.fc6[0].weight.flatten(1), reference.classifier[1].weight)
    assert torch.equal(model.fc7[0].weight.flatten(1), reference.classifier[4].weight)
    with pytest.raises(ValueError, match="width 1.0"):
        load_alexnet_weights(FCNAlexNet(2, width=0.5), path)
    with pytest.raises(FileNotFoundError):
        load_alexnet_weights(model, tmp_path / "missing.pth")


def test_bilinear_head_upsamples_a_constant_map_to_a_constant():
    model = FCNAlexNet(2, width=0.125, head_init="bilinear")
    kernel = bilinear_kernel(2, 63)
    assert torch.equal(model.upscore.weight, kernel) and kernel[0, 1].abs().sum() == 0
    with torch.no_grad():
        up = model.upscore(torch.ones(1, 2, 4, 4))
    inner = up[0, 0, 40:-40, 40:-40]
    assert torch.allclose(inner, torch.ones_like(inner), atol=1e-5)
