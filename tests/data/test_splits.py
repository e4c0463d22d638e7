"""Labelled / unlabelled / validation splits, the teacher–student training sets and the CIFAR transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlabel.data.cifar_transforms import image_transform
from robustlabel.data.splits import AugmentedImageDataset, TrainingSet, make_training_set, split_indices
from robustlabel.data.studies import FINAL, PSEUDO


def test_split_indices_disjoint_sizes_deterministic():
    split = split_indices(1000, labelled_fraction=0.1, val_fraction=0.1, seed=4)
    assert (len(split.val), len(split.labelled), len(split.unlabelled)) == (100, 90, 810)
    parts = np.concatenate([split.labelled, split.unlabelled, split.val])
    assert np.array_equal(np.sort(parts), np.arange(1000))
    again = split_indices(1000, 0.1, 0.1, seed=4)
    assert np.array_equal(again.labelled, split.labelled)
    assert not np.array_equal(split_indices(1000, 0.1, 0.1, seed=5).labelled, split.labelled)
    with pytest.raises(ValueError, match="labelled_fraction"):
        split_indices(10, 0.0, 0.1, 0)
    with pytest.raises(ValueError, match="leaves none labelled"):
        split_indices(10, 0.01, 0.1, 0)


def test_make_training_set_rows():
    images = np.arange(6, dtype=np.uint8)[:, None, None, None].repeat(3, 1).repeat(4, 2).repeat(4, 3)
    true = np.array([0, 1, 2, 0, 1, 2])
    teacher = make_training_set(images, true, np.array([1, 4]))
    assert teacher.labels.tolist() == [1, 1] and not teacher.is_pseudo.any()
    assert teacher.images[:, 0, 0, 0].tolist() == [1, 4]
    student = make_training_set(images, true, np.array([1, 4]), np.array([0, 5]), pseudo_labels=np.array([2, 2]))
    assert student.labels.tolist() == [1, 1, 2, 2] and student.is_pseudo.tolist() == [False, False, True, True]
    assert student.images[:, 0, 0, 0].tolist() == [1, 4, 0, 5]
    upper = make_training_set(images, true, np.array([1, 4]), np.array([0, 5]))
    assert upper.labels.tolist() == [1, 1, 0, 2] and not upper.is_pseudo.any()
    with pytest.raises(ValueError, match="2 unlabelled samples but 1 pseudo-labels"):
        make_training_set(images, true, np.array([1]), np.array([0, 5]), pseudo_labels=np.array([2]))
    with pytest.raises(ValueError, match="uint8"):
        TrainingSet(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.bool))


def test_image_transform_augments_and_normalises():
    torch.manual_seed(0)
    image = torch.full((3, 32, 32), 255, dtype=torch.uint8)
    out = image_transform(train=True)(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert (out.amin(dim=(1, 2)) < 0).any()  # zero padding shows up in some crop
    batch = image_transform(train=False)(torch.zeros(5, 3, 32, 32, dtype=torch.uint8))
    assert torch.allclose(batch[:, 0], torch.tensor(-0.4914 / 0.2470))


def test_dataset_items_carry_the_label_source():
    images = torch.arange(3, dtype=torch.uint8)[:, None, None, None].expand(3, 3, 32, 32).contiguous()
    data = make_training_set(images, np.array([4, 5, 6]), np.array([0]), np.array([1, 2]), pseudo_labels=np.array([7, 8]))
    dataset = AugmentedImageDataset(data, image_transform(train=False))
    assert len(dataset) == 3
    assert [dataset[i]["source"] for i in range(3)] == [FINAL, PSEUDO, PSEUDO]
    assert [int(dataset[i]["label"]) for i in range(3)] == [4, 7, 8]
    item = dataset[2]
    assert item["image"].dtype == torch.float32 and torch.allclose(item["image"][0], torch.tensor((2 / 255 - 0.4914) / 0.2470))
