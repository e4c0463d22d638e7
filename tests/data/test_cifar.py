"""CIFAR-10 reader on files written in the official python layout, good and malformed."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from robustlabel.data.cifar import (
    CIFAR10_CLASSES,
    CifarFormatError,
    ImageSet,
    TEST_BATCH,
    TRAIN_BATCHES,
    load_cifar10,
    read_cifar_batch,
    resolve_cifar10_dir,
    synthetic_cifar_images,
    write_cifar10,
    write_synthetic_cifar10,
)


@pytest.fixture()
def cifar_dir(tmp_path):
    return write_synthetic_cifar10(tmp_path, n_train=50, n_test=20, seed=3)


def _dump(path, obj):
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def test_roundtrip_images_labels_and_layout(tmp_path):
    train, test = synthetic_cifar_images(53, seed=1), synthetic_cifar_images(7, seed=2)
    folder = write_cifar10(tmp_path, train, test)
    assert folder.name == "cifar-10-batches-py"
    assert sorted(os.listdir(folder)) == sorted([*TRAIN_BATCHES, TEST_BATCH, "batches.meta"])
    got_train, got_test = load_cifar10(tmp_path)  # the parent folder works too
    np.testing.assert_array_equal(got_train.images, train.images)
    np.testing.assert_array_equal(got_train.labels, train.labels)
    np.testing.assert_array_equal(got_test.images, test.images)
    assert got_train.images.dtype == np.uint8 and got_train.images.shape == (53, 3, 32, 32)
    assert got_train.class_names == CIFAR10_CLASSES
    assert resolve_cifar10_dir(folder) == folder


def test_files_are_python2_style_pickles_readable_both_ways(cifar_dir):
    raw = (cifar_dir / "data_batch_1").read_bytes()
    assert raw.startswith(b"\x80\x02}q\x00(U\x0bbatch_label")  # protocol 2, Python 2 strings as keys
    with open(cifar_dir / "data_batch_1", "rb") as handle:
        as_bytes = pickle.load(handle, encoding="bytes")
    with open(cifar_dir / "data_batch_1", "rb") as handle:
        as_str = pickle.load(handle, encoding="latin1")  # how torchvision reads CIFAR
    assert as_bytes[b"data"].shape == (10, 3072) and as_bytes[b"data"].dtype == np.uint8
    np.testing.assert_array_equal(as_str["data"], as_bytes[b"data"])
    assert as_str["labels"] == as_bytes[b"labels"]


def test_pixel_order_is_red_then_green_then_blue(tmp_path):
    images = np.zeros((5, 3, 32, 32), np.uint8)
    images[:, 0, 0, 1] = 200  # red channel, row 0, column 1
    images[:, 2, 31, 31] = 90  # blue channel, last pixel
    folder = write_cifar10(tmp_path, ImageSet(images, np.arange(5), CIFAR10_CLASSES), ImageSet(images[:1], np.zeros(1, np.int64), CIFAR10_CLASSES))
    with open(folder / "data_batch_1", "rb") as handle:
        row = pickle.load(handle, encoding="bytes")[b"data"][0]
    assert row[1] == 200 and row[3071] == 90 and row.sum() == 290


def test_missing_file_is_named(cifar_dir):
    (cifar_dir / "data_batch_3").unlink()
    with pytest.raises(CifarFormatError, match="data_batch_3: file not found"):
        load_cifar10(cifar_dir)


def test_missing_folder(tmp_path):
    with pytest.raises(CifarFormatError, match="not found"):
        load_cifar10(tmp_path / "nowhere")
    with pytest.raises(CifarFormatError, match="neither"):
        load_cifar10(tmp_path)


def test_wrong_keys(cifar_dir):
    _dump(cifar_dir / "test_batch", {b"pixels": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    with pytest.raises(CifarFormatError, match=r"test_batch: missing key b'data' \(found keys: b'pixels', b'labels'\)"):
        load_cifar10(cifar_dir)


def test_wrong_data_shape_and_dtype(tmp_path):
    path = tmp_path / "data_batch_1"
    _dump(path, {b"data": np.zeros((2, 32, 32, 3), np.uint8), b"labels": [0, 1]})
    with pytest.raises(CifarFormatError, match=r"data_batch_1: b'data' must have shape \(N, 3072\), got \(2, 32, 32, 3\)"):
        read_cifar_batch(path)
    _dump(path, {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]})
    with pytest.raises(CifarFormatError, match="must be a uint8"):
        read_cifar_batch(path)


def test_wrong_labels(tmp_path):
    path = tmp_path / "data_batch_1"
    _dump(path, {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]})
    with pytest.raises(CifarFormatError, match=r"3 images but b'labels' has shape \(2,\)"):
        read_cifar_batch(path)
    _dump(path, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(CifarFormatError, match=r"labels must lie in \[0, 10\)"):
        read_cifar_batch(path)


def test_not_a_pickle_and_not_a_dict(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(CifarFormatError, match="data_batch_1: not a readable CIFAR pickle"):
        read_cifar_batch(path)
    _dump(path, [1, 2, 3])
    with pytest.raises(CifarFormatError, match="expected a pickled dict, got list"):
        read_cifar_batch(path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    _dump(path, {b"data": _Evil(), b"labels": []})
    with pytest.raises(CifarFormatError, match="refusing to load global"):
        read_cifar_batch(path)


def test_synthetic_images_are_class_dependent():
    data = synthetic_cifar_images(400, seed=0)
    assert np.bincount(data.labels).tolist() == [40] * 10
    centre = data.images[:, :, 12:20, 12:20].reshape(400, 3, -1).mean(-1)  # blob colour dominates the centre
    means = np.stack([centre[data.labels == k].mean(0) for k in range(10)])
    assert np.ptp(means[:, 0]) > 60  # red differs a lot between classes
    np.testing.assert_array_equal(synthetic_cifar_images(10, seed=5).images, synthetic_cifar_images(10, seed=5).images)
