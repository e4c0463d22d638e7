"""VOC2011 / SBD reader on trees written in the exact on-disk layouts, and the per-object corruptions."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from voc_layouts import H, W, object_maps, write_voc_tree

from robustlabel.data.voc import (
    FOLDS,
    VOC_CLASSES,
    VOID,
    binarise_objects,
    categorise_objects,
    class_index,
    contiguous_labels,
    false_positive_objects,
    find_voc2011,
    load_voc_single_objects,
    object_classes,
    paint_objects,
    pretraining_classes,
    random_grouping,
    randomise_object_labels,
    read_index_png,
    super_category_grouping,
    unsegment_objects,
    write_synthetic_voc,
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_voc_tree(tmp_path_factory.mktemp("voc"))


def test_folds_are_the_thesis_folds():
    names = {f: [VOC_CLASSES[c - 1] for c in classes] for f, classes in FOLDS.items()}
    assert names == {1: ["aeroplane", "bicycle", "bird", "boat", "bottle"], 2: ["bus", "car", "cat", "chair", "cow"],
                     3: ["diningtable", "dog", "horse", "motorbike", "person"],
                     4: ["pottedplant", "sheep", "sofa", "train", "tvmonitor"]}
    assert len(pretraining_classes(3)) == 15 and class_index("dog") not in pretraining_classes(3)


def test_devkit_is_found_at_every_accepted_level(tree):
    for path in (tree.root, tree.root / "TrainVal", tree.root / "TrainVal" / "VOCdevkit", tree.voc):
        assert find_voc2011(path) == tree.voc


def test_missing_devkit_or_segmentation_object_names_the_path(tree, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        find_voc2011(missing)
    with pytest.raises(FileNotFoundError, match="no VOC2011 devkit under"):
        find_voc2011(tmp_path)
    copy = tmp_path / "VOC2011"
    shutil.copytree(tree.voc, copy)
    shutil.rmtree(copy / "SegmentationObject")
    with pytest.raises(FileNotFoundError, match=str(copy / "SegmentationObject")):
        load_voc_single_objects(copy)


def test_palette_pngs_keep_class_instance_and_void_indices(tree):
    cls = read_index_png(tree.voc / "SegmentationClass" / "2011_000001.png")
    inst = read_index_png(tree.voc / "SegmentationObject" / "2011_000001.png")
    expected_cls, expected_inst = object_maps([(3, 10, 4, 12, 12)])
    np.testing.assert_array_equal(cls, expected_cls)
    np.testing.assert_array_equal(inst, expected_inst)
    assert set(np.unique(cls)) == {0, 12, VOID} and object_classes(cls, inst) == {1: 12}


def test_voc_only_selection_keeps_single_objects_and_lists_corrupt_files(tree):
    sel = load_voc_single_objects(tree.voc, subsample=1)
    assert {s.image_id: s.object_class for s in sel.train} == tree.single_train
    assert {s.image_id: s.object_class for s in sel.test} == tree.single_val
    assert len(sel.skipped) == 1 and "2011_000005.png" in sel.skipped[0]
    assert sel.counts["voc_train_listed"] == 5 and sel.counts["voc_train_single_object"] == 3
    sample = next(s for s in sel.train if s.image_id == "2011_000001")
    assert sample.image.shape == (H, W, 3) and sample.image.dtype == np.uint8
    assert (sample.class_map == VOID).sum() > 0  # void borders survive
    assert sel.of_classes("test", [12])[0].image_id == "2011_000010"


def test_sbd_is_added_without_voc_val_images_and_subsampling_keeps_void(tree):
    sel = load_voc_single_objects(tree.root, tree.sbd, subsample=2)
    train = {s.image_id: (s.source, s.object_class) for s in sel.train}
    assert "2011_000010" not in train  # a VOC val image listed by SBD never enters training
    assert train["2011_000001"] == ("voc", 12)  # VOC's annotation wins over SBD's
    assert {i: c for i, (src, c) in train.items() if src == "sbd"} == tree.sbd_single
    assert sel.counts["sbd_excluded_in_voc_val"] == 1
    for s in sel.train + sel.test:
        assert s.image.shape == (H // 2, W // 2, 3) and s.class_map.shape == (H // 2, W // 2)
        assert set(np.unique(s.class_map)) <= {0, s.object_class, VOID}
    assert any((s.class_map == VOID).any() for s in sel.train if s.source == "voc")


def test_synthetic_tree_is_read_back(tmp_path):
    voc, sbd = write_synthetic_voc(tmp_path, n_train_per_class=1, n_val_per_class=1, size=(32, 40),
                                   classes=(1, 12), n_multi=1, with_sbd=True)
    sel = load_voc_single_objects(tmp_path, sbd, subsample=2)
    assert sorted(s.object_class for s in sel.train) == [1, 12] and sorted(s.object_class for s in sel.test) == [1, 12]
    assert sel.counts["sbd_excluded_in_voc_val"] == 1 and not sel.skipped


# --------------------------------------------------------------------------- corruptions on known instance maps
CLS, INST = object_maps([(2, 5, 2, 6, 12), (8, 12, 3, 9, 1), (8, 14, 12, 18, 15)])
OBJECTS = {1: 12, 2: 1, 3: 15}


def test_object_classes_and_paint_round_trip():
    assert object_classes(CLS, INST) == OBJECTS
    np.testing.assert_array_equal(paint_objects(CLS, INST, OBJECTS), CLS)
    painted = paint_objects(CLS, INST, {1: 0, 2: 7, 3: 7})
    assert set(np.unique(painted[INST == 1])) == {0} and set(np.unique(painted[INST == 2])) == {7}
    np.testing.assert_array_equal(painted == VOID, CLS == VOID)  # void stays void


def test_unsegmented_removes_objects_with_probability_p():
    assert unsegment_objects(OBJECTS, 0.0, np.random.default_rng(0)) == OBJECTS
    assert unsegment_objects(OBJECTS, 1.0, np.random.default_rng(0)) == {1: 0, 2: 0, 3: 0}
    rng = np.random.default_rng(0)
    many = {i: 5 for i in range(1, 2001)}
    dropped = sum(v == 0 for v in unsegment_objects(many, 0.5, rng).values())
    assert 900 < dropped < 1100
    assert unsegment_objects(OBJECTS, 0.5, np.random.default_rng(3)) == unsegment_objects(OBJECTS, 0.5,
                                                                                          np.random.default_rng(3))


def test_random_labels_always_change_the_class_within_the_label_space():
    classes = pretraining_classes(1)
    objects = {i: classes[i % 15] for i in range(1, 301)}
    every = randomise_object_labels(objects, classes, 1.0, np.random.default_rng(0))
    assert all(every[i] != objects[i] and every[i] in classes for i in objects)
    half = randomise_object_labels(objects, classes, 0.5, np.random.default_rng(0))
    changed = sum(half[i] != objects[i] for i in objects)
    assert 120 < changed < 180
    with pytest.raises(ValueError):
        randomise_object_labels(objects, [3], 1.0, np.random.default_rng(0))


def test_binarised_and_false_positive_labels():
    assert binarise_objects(OBJECTS) == {1: 1, 2: 1, 3: 1}
    dog = class_index("dog")
    assert false_positive_objects(OBJECTS, [dog], 0.0, np.random.default_rng(0)) == {1: 1, 2: 0, 3: 0}
    assert false_positive_objects(OBJECTS, [dog], 1.0, np.random.default_rng(0)) == {1: 1, 2: 1, 3: 1}
    many = {i: (dog if i % 3 == 0 else 1) for i in range(1, 1501)}
    fp = false_positive_objects(many, [dog], 0.5, np.random.default_rng(1))
    assert all(fp[i] == 1 for i in many if many[i] == dog)
    assert 400 < sum(fp[i] for i in many if many[i] != dog) < 600


def test_categorisation_by_super_category_and_random_grouping():
    grouping = super_category_grouping(pretraining_classes(1))  # person, animal, vehicle, indoor
    names = {VOC_CLASSES[c - 1]: g for c, g in grouping.items()}
    assert names["person"] == 1 and names["dog"] == names["sheep"] == 2 and names["car"] == 3 and names["sofa"] == 4
    fold3 = super_category_grouping(pretraining_classes(3))  # no person: animal, vehicle, indoor
    assert sorted(set(fold3.values())) == [1, 2, 3]
    assert categorise_objects(OBJECTS, {12: 2, 1: 3, 15: 1}) == {1: 2, 2: 3, 3: 1}
    with pytest.raises(KeyError, match="class 15"):
        categorise_objects(OBJECTS, {12: 2, 1: 3})
    for k in (4, 7, 11):
        g = random_grouping(pretraining_classes(2), k, np.random.default_rng(k))
        assert set(g) == set(pretraining_classes(2)) and set(g.values()) == set(range(1, k + 1))
    assert random_grouping(range(1, 16), 7, np.random.default_rng(0)) == random_grouping(range(1, 16), 7,
                                                                                        np.random.default_rng(0))
    assert contiguous_labels(FOLDS[2]) == {6: 1, 7: 2, 8: 3, 9: 4, 10: 5}
