"""bench/fragments_select.py: region Dice and pooled lesion counts with and without the fragment rule, by hand."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import fragments_select  # noqa: E402


def _case():
    """Reference: an ED slab with a 2x2x2 NCR core. Prediction: the same plus a 1-voxel NCR speck in the edema,
    away from the core (a second TC lesion, false)."""
    ref = np.zeros((10, 6, 4), np.uint8)
    ref[0:10] = 2
    ref[0:2, 0:2, 0:2] = 1
    pred = ref.copy()
    pred[8, 4, 3] = 1
    return pred, ref, (1.0, 1.0, 1.0)


def test_score_counts_the_speck_as_a_false_lesion_until_the_rule_removes_it():
    cases = [_case()]
    off = fragments_select.score(cases, 0.0)
    # TC: one true lesion (the core) and one false (the speck): F1 = 1 / (1 + 1/2); Dice 2*8 / (9 + 8)
    assert (off["TC_tp"], off["TC_fp"], off["TC_fn"]) == (1, 1, 0)
    assert off["TC_f1"] == round(1 / 1.5, 4) and off["dice_TC"] == round(16 / 17, 4)
    # no ET anywhere: BraTS empty rule gives Dice 1; no lesions, F1 undefined
    assert off["dice_ET"] == 1.0 and math.isnan(off["ET_f1"])
    # 0.002 mL is 2 voxels at 1 mm: the 1-voxel speck goes, the 8-voxel core stays
    on = fragments_select.score(cases, 0.002)
    assert (on["TC_tp"], on["TC_fp"], on["TC_fn"]) == (1, 0, 0) and on["TC_f1"] == 1.0
    assert on["dice_TC"] == 1.0 and on["dice_WT"] == off["dice_WT"] == 1.0
    assert on["objective"] == 1.0 and off["objective"] == round((1 + 16 / 17 + 1) / 3, 4)


def _result(select, stress, val=(0.9, 1.0, 1.0)):
    row = lambda o, tc, et: {"objective": o, "TC_f1": tc, "ET_f1": et, "WT_f1": 0.5}  # noqa: E731
    return {"rows": {"0.0": {"val": row(*val), "select": row(*select), "select_stress": row(*stress)}}}


def test_table_means_over_models():
    records = {
        "a": {"result": _result((0.8, 0.4, 0.6), (0.3, 0.1, 0.1))},
        "b": {"result": _result((0.6, 0.6, 0.8), (0.1, 0.3, 0.3))},
    }
    lines = fragments_select.table(records).splitlines()
    assert lines[0] == "(2 model(s): a, b)"
    # objectives 0.7 / 0.2, selection mean 0.45; select TC/ET 0.5/0.7, stress 0.2/0.2: lesion (0.6 + 0.2) / 2
    assert lines[-1] == (
        "| 0 | 0.7000 / 0.2000 | 0.4500 | 0.500 / 0.700 / 0.500 | 0.200 / 0.200 / 0.500 | 0.4000 | "
        "0.9000, 1.000 / 1.000 |"
    )
