"""CIFAR-100 reader on files in the official python layout, and the thesis' CIFAR PU split."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from robustlabel.data.cifar import CIFAR10_CLASSES, CifarFormatError, ImageSet, synthetic_cifar_images
from robustlabel.data.cifar100 import (
    NON_RELEVANT,
    combine_relevant_and_nonrelevant,
    load_cifar100,
    pu_observed_labels,
    random_subset,
    read_cifar100_file,
    read_cifar100_names,
    resolve_cifar100_dir,
    stratified_subset,
    synthetic_cifar100_images,
    write_cifar100,
    write_synthetic_cifar100,
)

FINE = [f"fine_{k}" for k in range(100)]
COARSE = [f"coarse_{k}" for k in range(20)]


def _dump(path, obj) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def _official_split(n: int, seed: int) -> dict:
    """A ``train`` / ``test`` dict with exactly the keys and types of the official files."""
    rng = np.random.default_rng(seed)
    fine = rng.integers(0, 100, n)
    return {b"filenames": [f"img_{i}.png".encode() for i in range(n)], b"batch_label": b"training batch 1 of 1",
            b"fine_labels": [int(v) for v in fine], b"coarse_labels": [int(v) // 5 for v in fine],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}


@pytest.fixture()
def official_dir(tmp_path):
    """``cifar-100-python`` written by hand (plain ``pickle``), not by our writer."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _dump(folder / "train", _official_split(30, 0))
    _dump(folder / "test", _official_split(12, 1))
    _dump(folder / "meta", {b"fine_label_names": [n.encode() for n in FINE],
                            b"coarse_label_names": [n.encode() for n in COARSE]})
    return folder


def test_reads_the_official_layout(official_dir, tmp_path) -> None:
    train, test = load_cifar100(tmp_path)  # the parent folder works too
    raw = _official_split(30, 0)
    assert train.images.shape == (30, 3, 32, 32) and train.images.dtype == np.uint8 and len(test) == 12
    np.testing.assert_array_equal(train.images.reshape(30, -1), raw[b"data"])  # R, G, B planes in order
    np.testing.assert_array_equal(train.labels, raw[b"fine_labels"])
    assert train.class_names == tuple(FINE)
    images, fine, coarse = read_cifar100_file(official_dir / "train")
    np.testing.assert_array_equal(coarse, np.asarray(raw[b"coarse_labels"]))
    assert read_cifar100_names(official_dir / "meta") == (tuple(FINE), tuple(COARSE))
    assert resolve_cifar100_dir(official_dir) == official_dir


def test_writer_roundtrip_and_python2_style(tmp_path) -> None:
    train, test = synthetic_cifar100_images(57, seed=1), synthetic_cifar100_images(9, seed=2)
    folder = write_cifar100(tmp_path, train, test)
    assert folder.name == "cifar-100-python" and sorted(os.listdir(folder)) == ["meta", "test", "train"]
    got_train, got_test = load_cifar100(folder)
    np.testing.assert_array_equal(got_train.images, train.images)
    np.testing.assert_array_equal(got_test.labels, test.labels)
    raw = (folder / "train").read_bytes()
    assert raw.startswith(b"\x80\x02}q\x00(U\tfilenames")  # protocol 2 with Python 2 strings, like the originals
    with open(folder / "train", "rb") as handle:
        as_str = pickle.load(handle, encoding="latin1")  # how torchvision reads CIFAR-100
    assert as_str["fine_labels"] == [int(v) for v in train.labels]
    assert as_str["coarse_labels"] == [int(v) // 5 for v in train.labels]


def test_synthetic_images_are_class_dependent() -> None:
    data = synthetic_cifar100_images(400, seed=0)
    assert sorted(set(data.labels.tolist())) == list(range(100))
    mean_colour = data.images.reshape(400, 3, -1).mean(-1)
    by_class = [mean_colour[data.labels == k].mean(0) for k in (0, 1)]
    assert np.abs(by_class[0] - by_class[1]).max() > 10


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: d.pop(b"fine_labels"), "missing key b'fine_labels'"),
        (lambda d: d.__setitem__(b"coarse_labels", [20] * 30), r"b'coarse_labels' must lie in \[0, 20\)"),
        (lambda d: d.__setitem__(b"fine_labels", [0] * 29), r"30 images but b'fine_labels' has shape \(29,\)"),
        (lambda d: d.__setitem__(b"data", d[b"data"][:, :100]), r"shape \(N, 3072\)"),
        (lambda d: d.__setitem__(b"data", d[b"data"].astype(np.int16)), "uint8"),
    ],
)
def test_malformed_files_are_named(official_dir, mutate, match) -> None:
    obj = _official_split(30, 0)
    mutate(obj)
    _dump(official_dir / "train", obj)
    with pytest.raises(CifarFormatError, match=match) as info:
        load_cifar100(official_dir)
    assert "train" in str(info.value)


def test_missing_files_and_code_in_pickles(official_dir, tmp_path) -> None:
    (official_dir / "test").unlink()
    with pytest.raises(CifarFormatError, match="test: file not found .*CIFAR-100"):
        load_cifar100(official_dir)
    with pytest.raises(CifarFormatError, match="not found"):
        load_cifar100(tmp_path / "nowhere")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    _dump(official_dir / "test", {b"data": Evil()})
    with pytest.raises(CifarFormatError, match="refusing to load global"):
        load_cifar100(official_dir)


def test_write_synthetic_needs_sizes(tmp_path) -> None:
    with pytest.raises(ValueError, match="n_train >= 1"):
        write_synthetic_cifar100(tmp_path, n_train=0)


# --------------------------------------------------------------------------- PU split
def test_combine_relevant_and_nonrelevant() -> None:
    relevant = synthetic_cifar_images(20, seed=0)
    nonrelevant = synthetic_cifar100_images(7, seed=0)
    both = combine_relevant_and_nonrelevant(relevant, nonrelevant)
    assert len(both) == 27 and both.class_names == ("non-relevant", *CIFAR10_CLASSES)
    assert (both.labels[:7] == NON_RELEVANT).all()
    np.testing.assert_array_equal(both.labels[7:], relevant.labels + 1)
    np.testing.assert_array_equal(both.images[7:], relevant.images)


def test_pu_observed_labels_keeps_the_share_of_each_relevant_class() -> None:
    rng = np.random.default_rng(0)
    true = np.concatenate([np.zeros(100, np.int64), np.repeat(np.arange(1, 11), 20)])
    rng.shuffle(true)
    observed, labelled = pu_observed_labels(true, 0.5, seed=3)
    for k in range(1, 11):
        assert labelled[true == k].sum() == 10  # exactly π · n_k of each relevant class
    assert not labelled[true == 0].any()
    np.testing.assert_array_equal(observed[labelled], true[labelled])
    assert (observed[~labelled] == NON_RELEVANT).all() and (observed == 0).sum() == 100 + 100
    again, _ = pu_observed_labels(true, 0.5, seed=3)
    other, _ = pu_observed_labels(true, 0.5, seed=4)
    assert np.array_equal(again, observed) and not np.array_equal(other, observed)
    everything, all_labelled = pu_observed_labels(true, 1.0, seed=0)
    assert np.array_equal(everything, true) and all_labelled.sum() == 200
    with pytest.raises(ValueError, match=r"fraction must lie in \(0, 1\]"):
        pu_observed_labels(true, 0.0, seed=0)


def test_stratified_and_random_subsets() -> None:
    labels = np.array([0] * 10 + [1] * 4 + [2] * 6)
    chosen = stratified_subset(labels, 0.5, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [5, 2, 3] and np.all(np.diff(chosen) > 0)
    data = ImageSet(np.zeros((20, 3, 32, 32), np.uint8), labels, ("a", "b", "c"))
    sub = random_subset(data, 8)
    assert len(sub) == 8 and random_subset(data, None) is data and random_subset(data, 50) is data
    np.testing.assert_array_equal(random_subset(data, 8).labels, sub.labels)  # fixed seed
    with pytest.raises(ValueError, match=">= 1"):
        random_subset(data, 0)
