"""Crop to the non-zero bounding box before the sliding window, paste back (engine.crop)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlabel.engine.crop import align_to_windows, foreground_box, paste, predict_in_foreground
from robustlabel.engine.inference import (INFER_WINDOWS, POOL_WINDOWS, STOCK_OVERLAP, WindowSettings, cpu_bf16_supported,
                                         make_inferer, predict_probabilities)

K = 3


class Pointwise(nn.Module):
    """A 1×1×1 convolution: each voxel's logits depend on that voxel only, so any crop or window
    placement gives the same value there; counts its forward calls and the shapes it saw."""

    out_channels = K

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(2, K, kernel_size=1)
        with torch.no_grad():
            self.conv.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))  # background is not certain at x = 0
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.conv(x)


def _edge_volume() -> torch.Tensor:
    """(1, 2, 20, 16, 12): foreground touching the x = 0 face and the z = 11 face, one channel only in places."""
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(1, 2, 20, 16, 12)
    x[0, 0, 0:7, 5:9, 6:12] = torch.randn(7, 4, 6, generator=g)
    x[0, 1, 3:9, 4:6, 8:12] = torch.randn(6, 2, 4, generator=g)
    return x


def _softmax_pointwise(net: Pointwise):
    return lambda x: torch.softmax(net(x), dim=1)


def test_box_touching_edges_is_clipped_and_holds_every_non_zero_voxel() -> None:
    x = _edge_volume()[0]
    box = foreground_box(x, margin=2)
    assert box == (slice(0, 11), slice(2, 11), slice(4, 12))  # clipped at x = 0 and at z = 12
    inside = torch.zeros(x.shape[1:], dtype=torch.bool)
    inside[box] = True
    assert not (x != 0).any(0)[~inside].any()
    assert foreground_box(x, margin=0) == (slice(0, 9), slice(4, 9), slice(6, 12))


def test_crop_and_paste_is_exact_for_foreground_on_an_edge() -> None:
    x = _edge_volume()
    net = Pointwise()
    with torch.no_grad():
        full = _softmax_pointwise(net)(x)
        out = predict_in_foreground(_softmax_pointwise(net), x, margin=2, num_classes=K)
    box = (slice(0, 11), slice(2, 11), slice(4, 12))
    assert net.shapes[-1] == (1, 2, 11, 9, 8)  # the network saw the crop only
    assert out.shape == full.shape
    # the paste is exact; the network's own values on the crop and on the whole volume may differ
    # in the last bit (oneDNN picks its vectorised path by shape and threads), far below any misplacement
    torch.testing.assert_close(out[(slice(None), slice(None), *box)], full[(slice(None), slice(None), *box)],
                               rtol=0, atol=1e-6)
    outside = torch.ones(x.shape[2:], dtype=torch.bool)
    outside[box] = False
    assert torch.equal(out[0, 0][outside], torch.ones(int(outside.sum())))
    assert torch.equal(out[0, 1:][:, outside], torch.zeros(K - 1, int(outside.sum())))
    # the un-cropped run does not predict background with certainty there: the paste matters
    assert full[0, 0][outside].max() < 0.99


def test_paste_places_the_crop_and_checks_its_shape() -> None:
    crop = torch.rand(2, K, 3, 4, 5)
    box = (slice(1, 4), slice(0, 4), slice(5, 10))
    out = paste(crop, box, (6, 4, 10))
    assert torch.equal(out[:, :, 1:4, :, 5:10], crop)
    assert out[:, 0, 0].eq(1).all() and out[:, 1:, 0].eq(0).all()
    with pytest.raises(ValueError, match="does not fit"):
        paste(crop, (slice(0, 3), slice(0, 4), slice(0, 4)), (6, 4, 10))


def test_zero_volume_is_background_everywhere_without_running_the_network() -> None:
    x = torch.zeros(2, 2, 9, 8, 7)
    net = Pointwise()
    out = predict_in_foreground(_softmax_pointwise(net), x, margin=4, num_classes=K)
    assert net.shapes == []
    assert out.shape == (2, K, 9, 8, 7)
    assert out[:, 0].eq(1).all() and out[:, 1:].eq(0).all()
    # without the number of classes the network runs once on the whole volume (documented)
    predict_in_foreground(_softmax_pointwise(net), x, margin=4)
    assert net.shapes == [(2, 2, 9, 8, 7)]


def test_batch_is_cropped_to_the_union_of_its_boxes() -> None:
    x = torch.zeros(2, 2, 10, 10, 10)
    x[0, 0, 1, 2, 3] = 1.0
    x[1, 1, 7, 8, 4] = -2.0
    net = Pointwise()
    out = predict_in_foreground(_softmax_pointwise(net), x, margin=0, num_classes=K)
    assert net.shapes == [(2, 2, 7, 7, 2)]
    with torch.no_grad():
        full = _softmax_pointwise(net)(x)
    torch.testing.assert_close(out[:, :, 1:8, 2:9, 3:5], full[:, :, 1:8, 2:9, 3:5], rtol=0, atol=1e-6)  # see above


def test_predict_probabilities_crop_option_with_the_sliding_window() -> None:
    x = _edge_volume()
    net = Pointwise()
    inferer = make_inferer((8, 8, 8), sw_batch_size=2, overlap=0.5)
    stock = predict_probabilities(net, x, inferer)  # default: no crop, today's behaviour
    assert all(s[2:] == (8, 8, 8) for s in net.shapes)
    cropped = predict_probabilities(net, x, inferer, crop_margin=2)
    box = (slice(None), slice(None), slice(0, 11), slice(2, 11), slice(4, 12))
    # a pointwise network: window placement and Gaussian blending change nothing but rounding
    torch.testing.assert_close(cropped[box], stock[box], rtol=0, atol=1e-6)
    assert cropped[0, 0, 11:].eq(1).all()
    net.shapes.clear()
    zeros = predict_probabilities(net, torch.zeros(1, 2, 9, 9, 9), inferer, crop_margin=2)  # K from out_channels
    assert net.shapes == [] and zeros[:, 0].eq(1).all()


def test_window_settings_stock_switch_and_validation() -> None:
    stock = WindowSettings.stock(sw_batch_size=4)
    assert (stock.sw_batch_size, stock.overlap, stock.crop_margin, stock.crop_align) == (4, STOCK_OVERLAP, None, False)
    assert STOCK_OVERLAP == 0.5
    assert (WindowSettings().crop_margin, WindowSettings().crop_align) == (8, True)  # the default keeps the labels
    inferer = WindowSettings(sw_batch_size=2, overlap=0.25, crop_margin=8).inferer((16, 16, 16))
    assert (inferer.sw_batch_size, inferer.overlap, tuple(inferer.roi_size)) == (2, 0.25, (16, 16, 16))
    for bad in ({"sw_batch_size": 0}, {"overlap": 1.0}, {"crop_margin": -1}):
        with pytest.raises(ValueError):
            WindowSettings(**bad)


def test_cpu_bf16_only_where_the_cpu_has_it_and_never_for_stock() -> None:
    native = cpu_bf16_supported()
    assert isinstance(native, bool)
    for defaults in (INFER_WINDOWS, POOL_WINDOWS):
        assert defaults.cpu_bf16 and defaults.autocast_dtype("cpu", None) is (torch.bfloat16 if native else None)
        assert defaults.autocast_dtype(torch.device("cuda"), torch.float16) is torch.float16  # CUDA: the caller's
    stock = WindowSettings.stock()
    assert not stock.cpu_bf16 and stock.autocast_dtype("cpu", None) is None
    assert stock.autocast_dtype("cuda", torch.bfloat16) is torch.bfloat16
    assert POOL_WINDOWS.replace(cpu_bf16=False).autocast_dtype("cpu", None) is None
    assert POOL_WINDOWS.channels_last_on("cpu") and not POOL_WINDOWS.channels_last_on("cuda")
    assert not stock.channels_last_on("cpu")


def test_align_to_windows_moves_the_box_onto_the_window_grid() -> None:
    # n = 40, roi 8, overlap 0.5: step 4; an axis no longer than the window stays whole
    box = (slice(13, 27), slice(35, 40), slice(0, 3), slice(2, 4))
    assert align_to_windows(box, (40, 40, 40, 6), (8, 8, 8, 8), 0.5) == (
        slice(12, 28), slice(32, 40), slice(0, 8), slice(0, 6))
    # the end would pass the volume: it becomes the volume's end, the start a grid point <= n - roi
    assert align_to_windows((slice(36, 41),), (41,), (8,), 0.5) == (slice(32, 41),)
    assert align_to_windows((slice(30, 39),), (41,), (8,), 0.5) == (slice(28, 40),)  # last window 32: on the grid
    with pytest.raises(ValueError, match="one entry per axis"):
        align_to_windows(box, (40, 40), (8, 8), 0.5)


class Local(Pointwise):
    """A 3×3×3 convolution with zero padding: a voxel's value depends on where the window lies."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv3d(2, K, kernel_size=3, padding=1)


def test_aligned_crop_reproduces_the_uncropped_sliding_window_on_the_foreground() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.zeros(1, 2, 40, 36, 24)
    x[0, :, 14:26, 15:25, 6:18] = torch.randn(2, 12, 10, 12, generator=g) + 3.0
    inferer = make_inferer((8, 8, 8), sw_batch_size=4, overlap=0.5)  # step 4, window overlap 4
    net = Local()
    stock = predict_probabilities(net, x, inferer)
    fg = (slice(None), slice(None), slice(14, 26), slice(15, 25), slice(6, 18))
    aligned = predict_probabilities(net, x, inferer, crop_margin=4, crop_align=True)
    torch.testing.assert_close(aligned[fg], stock[fg], rtol=0, atol=1e-5)
    plain = predict_probabilities(net, x, inferer, crop_margin=4)  # other window positions: other values
    assert (plain[fg] - stock[fg]).abs().max() > 1e-3
    assert aligned[0, 0, :8].eq(1).all()  # outside the aligned box (12..28 in x): background


# ----------------------------------------------------------------------------- through the pool
def _padded_studies(root, shape=(96, 48, 40)):
    """Two 4-D modality files of ``shape`` whose non-zero brain fills a small part of the volume
    (different places: the batch is cropped to the union of the boxes)."""
    import nibabel as nib
    import numpy as np

    g = np.random.default_rng(3)
    items = []
    for i, (x0, y0, z0) in enumerate(((20, 10, 6), (30, 14, 10))):
        data = np.zeros((*shape, 4), np.float32)
        data[x0:x0 + 24, y0:y0 + 22, z0:z0 + 20] = g.normal(100.0, 20.0, (24, 22, 20, 4))
        path = root / f"case{i}.nii.gz"
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
        items.append({"image": str(path), "case": f"case{i}"})
    return items


def test_pool_with_the_aligned_crop_labels_the_brain_exactly_as_without_it(tmp_path) -> None:
    """Real PseudoLabeller on a fixed (seeded) tiny TransBTS: stock settings against the crop aligned
    to stock's window grid with a margin of one window overlap (32 - 16): the same labels on every
    non-zero voxel, background outside the aligned box, and the sidecar says which settings ran."""
    import nibabel as nib
    import numpy as np

    from robustlabel.engine.checkpoint import TrainingRecord, atomic_torch_save
    from robustlabel.engine.config import TrainConfig
    from robustlabel.engine.pseudo_label import PseudoLabeller, StudiesSink
    from robustlabel.networks import TINY_TRANSBTS, build_network

    items = _padded_studies(tmp_path)
    config = TrainConfig(network=dict(TINY_TRANSBTS), device="cpu")
    torch.manual_seed(0)
    checkpoint = atomic_torch_save({"network": build_network(config.network).state_dict(),
                                    "record": TrainingRecord(config=config.to_dict()).state_dict()}, tmp_path / "t.pt")
    runs = {"stock": WindowSettings.stock(sw_batch_size=1),
            "crop": WindowSettings(sw_batch_size=1, overlap=STOCK_OVERLAP, crop_margin=16, crop_align=True)}
    labels, infos = {}, {}
    for name, windows in runs.items():
        # one layout for both (stock's own is the contiguous one): the comparison is exact
        labeller = PseudoLabeller(checkpoint, device="cpu", batch_size=2, windows=windows, channels_last=True)
        results = labeller.label(items, StudiesSink(tmp_path / name, label_dir=tmp_path / name / "labels"), progress=False)
        labels[name] = [np.asarray(nib.load(r.location).dataobj) for r in results]
        infos[name] = [r.info["inference"] for r in results]
    assert infos["stock"][0]["crop_margin"] is None and infos["crop"][0]["crop_margin"] == 16
    assert infos["stock"][0]["amp_dtype"] == "fp32" and not infos["stock"][0]["cpu_bf16"]  # float32: exact comparison
    # the pool's default runs bf16 where the CPU has it natively; amp=False is float32 everywhere
    assert PseudoLabeller(checkpoint, device="cpu").amp_dtype is (torch.bfloat16 if cpu_bf16_supported() else None)
    assert PseudoLabeller(checkpoint, device="cpu", amp=False).amp_dtype is None
    with pytest.raises(ValueError, match="amp_dtype"):
        PseudoLabeller(checkpoint, device="cpu", amp=False, amp_dtype="fp8")
    # the layout follows the settings: oneDNN's channels-last by default, stock's contiguous one for stock
    assert PseudoLabeller(checkpoint, device="cpu").channels_last
    assert not PseudoLabeller(checkpoint, device="cpu", windows=WindowSettings.stock()).channels_last
    assert infos["crop"][0]["crop_align"] is True
    for item, stock, crop in zip(items, labels["stock"], labels["crop"]):
        brain = np.asarray(nib.load(item["image"]).dataobj).any(-1)
        assert np.array_equal(crop[brain], stock[brain])
        # union of the boxes (x 20..54, y 10..36, z 6..30) + 16, aligned to the grid of step 16
        box = align_to_windows((slice(4, 70), slice(0, 48), slice(0, 40)), (96, 48, 40), (32, 32, 32), 0.5)
        outside = np.ones(brain.shape, bool)
        outside[box] = False
        assert box[0] != slice(0, 96) and not crop[outside].any()
