import numpy as np
import pytest

from brats.labels import (
    LabelError,
    check_labels,
    class_masks,
    get_scheme,
    region_masks,
    scheme_for_naming,
    to_classes,
    to_source,
)

SRC_2021 = np.array([[0, 1, 2], [4, 4, 0]], dtype=np.uint8)
CLASSES = np.array([[0, 1, 2], [3, 3, 0]], dtype=np.uint8)
SRC_2023 = np.array([[0, 1, 2], [3, 3, 0]], dtype=np.uint8)


def test_remap_2021_hand_written():
    np.testing.assert_array_equal(to_classes(SRC_2021, "brats2021"), CLASSES)
    np.testing.assert_array_equal(to_source(CLASSES, "brats2021"), SRC_2021)


def test_remap_2023_hand_written():
    np.testing.assert_array_equal(to_classes(SRC_2023, "brats2023"), CLASSES)
    np.testing.assert_array_equal(to_source(CLASSES, "brats2023"), SRC_2023)


@pytest.mark.parametrize("name", ["brats2021", "brats2023"])
def test_round_trip(name):
    scheme = get_scheme(name)
    rng = np.random.default_rng(0)
    src = rng.choice(scheme.source_labels, size=(7, 5, 3)).astype(np.uint8)
    np.testing.assert_array_equal(to_source(to_classes(src, scheme), scheme), src)


def test_naming_to_scheme():
    assert scheme_for_naming("2020").et_label == 4
    assert scheme_for_naming("2021").et_label == 4
    assert scheme_for_naming("2023").et_label == 3
    assert get_scheme("brats2021").mapping == {0: 0, 1: 1, 2: 2, 4: 3}
    assert get_scheme("brats2023").inverse_mapping == {0: 0, 1: 1, 2: 2, 3: 3}


def test_unknown_labels_are_named():
    with pytest.raises(LabelError, match=r"\[3, 7\]"):
        to_classes(np.array([0, 3, 7, 4]), "brats2021", where="x_seg.nii.gz")
    with pytest.raises(LabelError, match=r"\[4\]"):
        check_labels(np.array([0, 4]), "brats2023")
    with pytest.raises(LabelError):
        to_source(np.array([0, 5]), "brats2021")


def test_region_masks_hand_written():
    r = region_masks(CLASSES)
    np.testing.assert_array_equal(r["WT"], [[False, True, True], [True, True, False]])
    np.testing.assert_array_equal(r["TC"], [[False, True, False], [True, True, False]])
    np.testing.assert_array_equal(r["ET"], [[False, False, False], [True, True, False]])
    c = class_masks(CLASSES)
    np.testing.assert_array_equal(c["NCR"], [[False, True, False], [False, False, False]])
    np.testing.assert_array_equal(c["ED"], [[False, False, True], [False, False, False]])
