"""bench/keep_core.py: the most-cored component is put back after the coreless rule, scored by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import keep_core  # noqa: E402


def _blob(out, lo, hi, value):
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    return out


def test_keep_most_cored_puts_back_the_component_with_most_core():
    # a 4x4x4 edema blob with 2 ET voxels, a 3x3x3 edema blob with 1 NCR voxel, an edema blob with no core
    raw = np.zeros((20, 20, 20), np.uint8)
    _blob(raw, (0, 0, 0), (4, 4, 4), 2)
    raw[1, 1, 1:3] = 3
    _blob(raw, (10, 10, 10), (13, 13, 13), 2)
    raw[11, 11, 11] = 1
    _blob(raw, (16, 16, 16), (19, 19, 19), 2)
    emptied = np.zeros_like(raw)
    out = keep_core.keep_most_cored(raw, emptied)
    np.testing.assert_array_equal(out[:4, :4, :4], raw[:4, :4, :4])
    assert not out[8:].any() and emptied.sum() == 0  # the others stay removed; the input is not modified
    # no core anywhere: nothing is put back
    coreless = np.where(raw > 0, 2, 0).astype(np.uint8)
    assert not keep_core.keep_most_cored(coreless, emptied).any()


def test_score_with_and_without_the_fallback():
    # reference: a 3x3x3 tumour (NCR centre, edema around); prediction: the same edema with no core, so
    # core_min_ml 0.001 (1 voxel at 1 mm) removes it and no fallback can bring it back
    ref = np.zeros((12, 12, 12), np.uint8)
    _blob(ref, (2, 2, 2), (5, 5, 5), 2)
    ref[3, 3, 3] = 1
    pred = np.where(ref > 0, 2, 0).astype(np.uint8)
    pp = {"min_component_ml": 0.0, "et_min_ml": 0.0, "core_min_ml": 0.001}
    assert keep_core.score(pred, ref, (1, 1, 1), pp, keep=False)["WT"] == 0.0
    assert keep_core.score(pred, ref, (1, 1, 1), pp, keep=True)["WT"] == 0.0
    # with its core predicted, but core_min_ml 0.002 (2 voxels): removed, then put back by the fallback
    pp["core_min_ml"] = 0.002
    assert keep_core.score(ref, ref, (1, 1, 1), pp, keep=False)["WT"] == 0.0
    dice = keep_core.score(ref, ref, (1, 1, 1), pp, keep=True)
    assert dice == {"WT": 1.0, "TC": 1.0, "ET": 1.0}  # no ET on either side: Dice 1 by the BraTS empty rule
