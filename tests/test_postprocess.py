"""Post-processing: small-component removal (26-connectivity), coreless-component removal and the nnU-Net BraTS
ET rule, hand-computed and against per-component reference loops."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from brats.evaluate import sweep_postprocess
from brats.predict import (
    ml_to_voxels,
    postprocess,
    postprocess_ml,
    remove_coreless_components,
    remove_fragments,
    remove_small_components,
    suppress_small_et,
    tumour_components,
)


def _volume() -> np.ndarray:
    """A 6x6x3 class map with four tumour components (26-connectivity):

    * A: 8 voxels, a 2x2x2 cube of ED (2) with one ET (3) voxel, at x,y in 0..1, z in 0..1;
    * B: 2 voxels touching only at a corner: (4, 0, 0) = 1 and (5, 1, 1) = 3;
    * C: 1 voxel, (0, 5, 2) = 2;
    * D: 3 voxels in a row, (3..5, 4, 2) = 1.
    """
    c = np.zeros((6, 6, 3), np.uint8)
    c[0:2, 0:2, 0:2] = 2
    c[1, 1, 1] = 3
    c[4, 0, 0] = 1
    c[5, 1, 1] = 3
    c[0, 5, 2] = 2
    c[3:6, 4, 2] = 1
    return c


def test_components_are_26_connected():
    labels, sizes = tumour_components(_volume())
    assert sorted(sizes[1:].tolist()) == [1, 2, 3, 8]
    assert sizes[0] == 6 * 6 * 3 - 14
    # The corner-touching pair is one component.
    assert labels[4, 0, 0] == labels[5, 1, 1] != 0


@pytest.mark.parametrize(
    "min_voxels, kept",
    [
        (0, {"A", "B", "C", "D"}),
        (1, {"A", "B", "C", "D"}),
        (2, {"A", "B", "D"}),
        (3, {"A", "D"}),
        (4, {"A"}),
        (8, {"A"}),
        (9, set()),
    ],
)
def test_remove_small_components_hand_computed(min_voxels, kept):
    c = _volume()
    expected = np.zeros_like(c)
    if "A" in kept:
        expected[0:2, 0:2, 0:2] = 2
        expected[1, 1, 1] = 3
    if "B" in kept:
        expected[4, 0, 0] = 1
        expected[5, 1, 1] = 3
    if "C" in kept:
        expected[0, 5, 2] = 2
    if "D" in kept:
        expected[3:6, 4, 2] = 1
    before = c.copy()
    out = remove_small_components(c, min_voxels)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(c, before)  # the input is not modified


#: Boxes holding exactly one component of :func:`_volume` each (the rest of each box is 0).
_BOXES = {
    "A": np.s_[0:2, 0:2, 0:2],
    "B": np.s_[4:6, 0:2, 0:2],
    "C": np.s_[0, 5, 2],
    "D": np.s_[3:6, 4, 2],
}


def _reference_remove(classes: np.ndarray, min_voxels: int) -> np.ndarray:
    """Reference: loop over the components of scipy's labelling one by one."""
    out = classes.copy()
    labels, n = ndimage.label(classes > 0, structure=np.ones((3, 3, 3)))
    for i in range(1, n + 1):
        comp = labels == i
        if comp.sum() < min_voxels:
            out[comp] = 0
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_remove_small_components_matches_reference(seed):
    rng = np.random.default_rng(seed)
    c = (rng.random((20, 18, 9)) < 0.12) * rng.integers(1, 4, (20, 18, 9))
    c = c.astype(np.uint8)
    for min_voxels in (2, 5, 20):
        np.testing.assert_array_equal(
            remove_small_components(c, min_voxels), _reference_remove(c, min_voxels)
        )


@pytest.mark.parametrize(
    "n_et, threshold, relabelled",
    [(5, 10, True), (9, 10, True), (10, 10, False), (11, 10, False), (5, 0, False), (0, 10, False)],
)
def test_et_rule(n_et, threshold, relabelled):
    c = np.zeros((4, 4, 4), np.uint8)
    c[0] = 2
    c.reshape(-1)[16 : 16 + n_et] = 3
    out = suppress_small_et(c, threshold)
    expected = c.copy()
    if relabelled:
        expected[c == 3] = 1
    np.testing.assert_array_equal(out, expected)
    assert (out == 3).sum() == (0 if relabelled else n_et)


def test_postprocess_removes_components_before_the_et_rule():
    c = _volume()  # ET voxels: one in A (8 voxels), one in B (2 voxels)
    out, stats = postprocess(c, min_component=3, et_min_voxels=2)
    # B and C go first, which leaves 1 ET voxel (in A) < 2: relabelled NCR.
    expected = np.zeros_like(c)
    expected[0:2, 0:2, 0:2] = 2
    expected[1, 1, 1] = 1
    expected[3:6, 4, 2] = 1
    np.testing.assert_array_equal(out, expected)
    assert stats == {
        "components": 4,
        "components_removed": 2,
        "voxels_removed": 3,
        "coreless_removed": 0,
        "coreless_voxels_removed": 0,
        "et_voxels": 1,
        "et_relabelled": True,
        "et_fragment_voxels": 0,
        "core_fragment_voxels": 0,
    }


@pytest.mark.parametrize(
    "core_min_voxels, kept",
    # cores: A 1 (its ET voxel), B 2 (NCR + ET), C 0 (one ED voxel), D 3 (three NCR)
    [(0, {"A", "B", "C", "D"}), (1, {"A", "B", "D"}), (2, {"B", "D"}), (3, {"D"}), (4, set())],
)
def test_remove_coreless_components_hand_computed(core_min_voxels, kept):
    c = _volume()
    out, n_removed, voxels = remove_coreless_components(c, core_min_voxels)
    sizes = {"A": 8, "B": 2, "C": 1, "D": 3}
    expected = c.copy()
    for name, box in _BOXES.items():
        if name not in kept:
            expected[box] = 0
    np.testing.assert_array_equal(out, expected)
    assert n_removed == 4 - len(kept) and voxels == sum(v for k, v in sizes.items() if k not in kept)


def _reference_coreless(c: np.ndarray, core_min: int) -> np.ndarray:
    """One component at a time with scipy (26-connectivity): drop it when it holds < core_min NCR + ET voxels."""
    out = c.copy()
    lab, n = ndimage.label(c > 0, structure=np.ones((3, 3, 3)))
    for i in range(1, n + 1):
        comp = lab == i
        if np.isin(c[comp], (1, 3)).sum() < core_min:
            out[comp] = 0
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_remove_coreless_components_matches_reference(seed):
    rng = np.random.default_rng(seed)
    c = ((rng.random((20, 18, 9)) < 0.12) * rng.choice([1, 2, 2, 2, 3], (20, 18, 9))).astype(np.uint8)
    for core_min in (1, 2, 4):
        np.testing.assert_array_equal(
            remove_coreless_components(c, core_min)[0], _reference_coreless(c, core_min)
        )


def test_postprocess_removes_small_then_coreless_components():
    out, stats = postprocess(_volume(), min_component=3, et_min_voxels=0, core_min_voxels=2)
    # B (2 voxels) and C (1) are small; of A (core 1) and D (core 3), A has too little core.
    expected = np.zeros_like(out)
    expected[3:6, 4, 2] = 1
    np.testing.assert_array_equal(out, expected)
    assert (stats["components_removed"], stats["coreless_removed"], stats["coreless_voxels_removed"]) == (
        2,
        1,
        8,
    )


def test_postprocess_off_is_identity():
    c = _volume()
    out, stats = postprocess(c, 0, 0)
    np.testing.assert_array_equal(out, c)
    assert stats["components_removed"] == 0 and stats["et_relabelled"] is False


def test_empty_and_bad_inputs():
    empty = np.zeros((3, 3, 3), np.uint8)
    np.testing.assert_array_equal(remove_small_components(empty, 10), empty)
    assert postprocess(empty, 10, 10)[1]["components"] == 0
    with pytest.raises(ValueError, match="integer"):
        remove_small_components(np.zeros((2, 2, 2), np.float32), 3)
    with pytest.raises(ValueError, match=r"\(X, Y, Z\)"):
        suppress_small_et(np.zeros((2, 2), np.uint8), 3)


# ----------------------------------------------------------------------------------------------------------------
# Thresholds in mL
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ml, spacing, voxels",
    [
        (0.2, (1, 1, 1), 200),  # 0.2 / 0.001 is 200.00000000000003 in floating point: still 200
        (0.5, (1, 1, 1), 500),
        (0.0, (1, 1, 1), 0),
        # 3.75 mm grid: one voxel is 52.734375 mm3; 0.5 mL / 0.052734375 mL = 9.48 -> 10 voxels
        (0.5, (3.75, 3.75, 3.75), 10),
        (0.2, (3.75, 3.75, 3.75), 4),  # 3.79 -> 4
        (0.006, (1.0, 1.0, 2.0), 3),  # 2 mm3 voxels: exactly 3
    ],
)
def test_ml_to_voxels_hand_computed(ml, spacing, voxels):
    assert ml_to_voxels(ml, spacing) == voxels


def test_ml_to_voxels_rejects_negative():
    with pytest.raises(ValueError, match=">= 0 mL"):
        ml_to_voxels(-0.1, (1, 1, 1))


def test_postprocess_ml_means_the_same_volume_on_any_grid():
    c = _volume()  # components of 8, 3, 2 and 1 voxels
    # 2 mm3 voxels: components of 16, 6, 4 and 2 mm3. 0.005 mL = 5 mm3 -> 3 voxels: B (2) and C (1) go.
    out_ml, stats = postprocess_ml(c, (1.0, 1.0, 2.0), min_component_ml=0.005)
    np.testing.assert_array_equal(out_ml, remove_small_components(c, 3))
    assert stats["min_component_voxels"] == 3 and stats["components_removed"] == 2
    # 1 mm3 voxels: 5 voxels: B, C and D (3) go, only A stays.
    out_1mm, _ = postprocess_ml(c, (1.0, 1.0, 1.0), min_component_ml=0.005)
    np.testing.assert_array_equal(out_1mm > 0, remove_small_components(c, 8) > 0)
    assert int((out_1mm > 0).sum()) == 8


def test_sweep_scores_by_hand():
    # Reference: the 2x2x2 cube A with its ET voxel. Prediction: A plus a stray 1-voxel ED blob.
    ref = np.zeros((6, 6, 3), np.uint8)
    ref[0:2, 0:2, 0:2] = 2
    ref[1, 1, 1] = 3
    pred = ref.copy()
    pred[5, 5, 2] = 2
    rows = sweep_postprocess(
        [pred], [ref], [(1.0, 1.0, 1.0)], min_component_ml=(0.0, 0.002), et_min_ml=(0.0,)
    )
    off, on = rows
    # WT: TP 8, FP 1 -> 16/17; TC and ET: identical (1 voxel) -> 1.
    assert off["dice_WT"] == pytest.approx(16 / 17) and off["dice_TC"] == off["dice_ET"] == 1.0
    assert off["objective"] == pytest.approx((16 / 17 + 2) / 3) and off["changed"] == 0
    assert on["dice_WT"] == 1.0 and on["objective"] == 1.0 and on["changed"] == 1


def test_sweep_applies_the_fixed_core_rule_to_every_pair():
    # Reference: cube A with its ET voxel. Prediction: A plus a 3-voxel ED bar without core, far from A.
    ref = np.zeros((6, 6, 3), np.uint8)
    ref[0:2, 0:2, 0:2] = 2
    ref[1, 1, 1] = 3
    pred = ref.copy()
    pred[3:6, 5, 2] = 2
    grid = {"min_component_ml": (0.0, 0.002), "et_min_ml": (0.0,)}
    off = sweep_postprocess([pred], [ref], [(1.0, 1.0, 1.0)], **grid)
    core = sweep_postprocess([pred], [ref], [(1.0, 1.0, 1.0)], **grid, core_min_ml=0.001)
    # WT without the rule: TP 8, FP 3 -> 16/19 for both pairs (the bar has 3 >= 2 voxels)
    assert [r["dice_WT"] for r in off] == pytest.approx([16 / 19, 16 / 19])
    assert [r["dice_WT"] for r in core] == [1.0, 1.0] and [r["changed"] for r in core] == [1, 1]


@pytest.mark.parametrize("key", ["min_component_ml", "et_min_ml", "core_min_ml", "fragment_ml"])
def test_config_rejects_negative_ml(key):
    from brats.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=f"predict.postprocess.{key} must be >= 0"):
        load_config(None, [f"predict.postprocess.{key}=-1"])
    assert getattr(load_config(None, [f"predict.postprocess.{key}=0.5"]).predict.postprocess, key) == 0.5


# ----------------------------------------------------------------------------------------------------------------
# Core and ET fragments
# ----------------------------------------------------------------------------------------------------------------


def _fragments_volume() -> np.ndarray:
    """Two tumour components in a 12x5x3 map of ED (26-connectivity):

    * left, x 0..6: an NCR block of 8 voxels (x 0..1, y 0..1, z 0..1) holding 2 ET voxels at (0, 0, 0), (1, 0, 0);
      a 1-voxel ET speck at (4, 0, 0); a 2-voxel NCR speck at (4, 3, 2), (5, 3, 2); a 1-voxel NCR speck at (6, 0, 2);
    * right, x 9..11: ED with one 1-voxel NCR core at (10, 2, 1), its only core piece.
    """
    c = np.zeros((12, 5, 3), np.uint8)
    c[0:7] = 2
    c[0:2, 0:2, 0:2] = 1
    c[0:2, 0, 0] = 3
    c[4, 0, 0] = 3
    c[4:6, 3, 2] = 1
    c[6, 0, 2] = 1
    c[9:12] = 2
    c[10, 2, 1] = 1
    return c


@pytest.mark.parametrize(
    "fragment_voxels, et_speck, ncr_speck2, ncr_speck1",
    # what the ET speck, the 2-voxel and the 1-voxel NCR specks of the left component become
    [(0, 3, 1, 1), (1, 3, 1, 1), (2, 2, 1, 2), (3, 2, 2, 2), (8, 2, 2, 2), (9, 2, 2, 2)],
)
def test_remove_fragments_hand_computed(fragment_voxels, et_speck, ncr_speck2, ncr_speck1):
    c = _fragments_volume()
    out, n_et, n_core = remove_fragments(c, fragment_voxels)
    expected = c.copy()
    expected[4, 0, 0] = et_speck
    expected[4:6, 3, 2] = ncr_speck2
    expected[6, 0, 2] = ncr_speck1
    np.testing.assert_array_equal(out, expected)
    # The ET speck becomes NCR first (one voxel), then, as a 1-voxel core piece, edema (counted as core).
    assert n_et == int(fragment_voxels >= 2)
    assert n_core == int(et_speck == 2) + 2 * int(ncr_speck2 == 2) + int(ncr_speck1 == 2)
    # The largest core piece of each component stays whatever the threshold: the block (8 voxels, even at 9)
    # and the right component's 1-voxel core; the whole tumour never changes.
    np.testing.assert_array_equal(out[0:2, 0:2, 0:2], c[0:2, 0:2, 0:2])
    assert out[10, 2, 1] == 1
    np.testing.assert_array_equal(out > 0, c > 0)


def _reference_fragments(c: np.ndarray, min_voxels: int) -> np.ndarray:
    """One piece at a time with scipy: within each tumour component, ET pieces under ``min_voxels`` other than the
    largest (first on ties, in label order) become NCR; then core pieces likewise become ED."""
    out = c.copy()
    s26 = np.ones((3, 3, 3))
    comps, n = ndimage.label(c > 0, structure=s26)
    for values, new in (((3,), 1), ((1, 3), 2)):
        for i in range(1, n + 1):
            pieces, m = ndimage.label(np.isin(out, values) & (comps == i), structure=s26)
            sizes = [int((pieces == j).sum()) for j in range(1, m + 1)]
            if m < 2:
                continue
            keep = 1 + int(np.argmax(sizes))
            for j in range(1, m + 1):
                if j != keep and sizes[j - 1] < min_voxels:
                    out[pieces == j] = new
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_remove_fragments_matches_reference(seed):
    rng = np.random.default_rng(seed)
    c = ((rng.random((18, 16, 8)) < 0.5) * rng.choice([1, 2, 2, 2, 3], (18, 16, 8))).astype(np.uint8)
    for min_voxels in (2, 3, 6):
        out = remove_fragments(c, min_voxels)[0]
        np.testing.assert_array_equal(out, _reference_fragments(c, min_voxels))
        np.testing.assert_array_equal(out > 0, c > 0)


def test_remove_fragments_leaves_a_binary_map_alone():
    # kaggle_3m maps have class 1 only: each tumour component is its own single core piece, the largest.
    c = (np.random.default_rng(0).random((10, 10, 6)) < 0.3).astype(np.uint8)
    np.testing.assert_array_equal(remove_fragments(c, 1000)[0], c)


def test_postprocess_applies_fragments_last_and_reports_them():
    c = _fragments_volume()
    out, stats = postprocess(c, fragment_voxels=3)
    np.testing.assert_array_equal(out, remove_fragments(c, 3)[0])
    assert (stats["et_fragment_voxels"], stats["core_fragment_voxels"]) == (1, 4)
    # in mL on a 2 mm3 grid: 0.006 mL is 3 voxels
    out_ml, stats_ml = postprocess_ml(c, (1.0, 1.0, 2.0), fragment_ml=0.006)
    np.testing.assert_array_equal(out_ml, out)
    assert stats_ml["fragment_voxels"] == 3
