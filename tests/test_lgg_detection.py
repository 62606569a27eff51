"""Detection metrics against hand-computed confusion tables and AUCs; binary case rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brats.evaluate.binary import evaluate_binary_case
from brats.evaluate.detection import detection_counts, detection_scores, presence, roc_auc, unit_scores


def test_symmetric_table():
    ref = [1, 1, 1, 0, 0, 0, 0, 1]
    pred = [1, 0, 1, 1, 0, 0, 0, 1]
    c = detection_counts(ref, pred)
    assert tuple(c) == (3, 1, 1, 3)  # tp, fp, fn, tn
    s = detection_scores(c)
    assert s["sensitivity"] == 0.75 and s["specificity"] == 0.75 and s["precision"] == 0.75
    assert s["f1"] == 0.75 and s["accuracy"] == 0.75 and s["n"] == 8
    assert math.isnan(s["auc"])  # no scores given


def test_asymmetric_table():
    c = detection_counts([1, 1, 0, 0, 0], [1, 1, 1, 1, 0])
    assert tuple(c) == (2, 2, 0, 1)
    s = detection_scores(c)
    assert s["sensitivity"] == 1.0
    assert s["specificity"] == pytest.approx(1 / 3)
    assert s["precision"] == 0.5
    assert s["f1"] == pytest.approx(4 / 6)


def test_undefined_ratios_are_nan():
    s = detection_scores(detection_counts([1, 1], [1, 0]), [1, 1], [0.9, 0.2])
    assert s["sensitivity"] == 0.5 and math.isnan(s["specificity"]) and math.isnan(s["auc"])
    s = detection_scores(detection_counts([0, 0], [0, 0]))
    assert math.isnan(s["sensitivity"]) and s["specificity"] == 1.0 and math.isnan(s["precision"])
    assert math.isnan(s["f1"])


def test_auc_hand_computed():
    # positives 0.9, 0.4; negatives 0.5, 0.1: pairs won 0.9>0.5, 0.9>0.1, 0.4>0.1, lost 0.4<0.5 -> 3/4
    assert roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1]) == 0.75
    # ties count 1/2: positives 0.5, 0.5; negatives 0.5, 0.1 -> (0.5 + 1 + 0.5 + 1) / 4
    assert roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.1]) == 0.75
    assert roc_auc([1, 0], [0.2, 0.8]) == 0.0
    rng = np.random.default_rng(0)
    ref = rng.random(200) < 0.3
    scores = np.round(rng.random(200) + 0.4 * ref, 1)  # many ties
    sklearn = pytest.importorskip("sklearn.metrics")
    assert roc_auc(ref, scores) == pytest.approx(sklearn.roc_auc_score(ref, scores))


def test_presence_and_scores_per_slice():
    mask = np.zeros((4, 4, 3), dtype=np.uint8)
    mask[1, 1, 0] = 1
    mask[2, 3, 2] = 1
    np.testing.assert_array_equal(presence(mask), [True, False, True])
    assert bool(presence(mask, None)) and not bool(presence(np.zeros((2, 2, 2)), None))
    prob = np.zeros((4, 4, 3))
    prob[0, 0, 1] = 0.3
    prob[3, 3, 2] = 0.9
    np.testing.assert_array_equal(unit_scores(prob), [0.0, 0.3, 0.9])
    assert float(unit_scores(prob, None)) == 0.9


def test_binary_case_row():
    ref = np.zeros((8, 8, 4), dtype=np.uint8)
    pred = np.zeros_like(ref)
    ref[2:4, 2:4, 1] = 1  # slice 2: 4 voxels
    ref[2:4, 2:4, 2] = 1  # slice 3: 4 voxels
    pred[2:4, 2:4, 1] = 1  # slice 2 found exactly
    pred[6, 6, 3] = 1  # slice 4: a false-positive voxel; slice 3 missed
    row, counts, units = evaluate_binary_case(pred, ref, spacing=(1.0, 1.0, 2.0))
    assert tuple(counts) == (4, 1, 4, 8 * 8 * 4 - 9)
    assert row["tumour_dice"] == pytest.approx(8 / 13)
    assert row["tumour_vol_ref"] == 8 and row["tumour_vol_ref_ml"] == pytest.approx(0.016)
    assert (row["slice_tp"], row["slice_fp"], row["slice_fn"], row["slice_tn"]) == (1, 1, 1, 1)
    assert row["slices"] == 4 and row["ref_present"] == 1 and row["pred_present"] == 1
    np.testing.assert_array_equal(units["ref"], [False, True, True, False])


def test_gate_clears_low_probability_slices():
    from brats.predict.gate import gate_labels

    classes = np.ones((2, 2, 3), dtype=np.uint8)
    out = gate_labels(classes, np.array([0.9, 0.2, 0.5]), threshold=0.5)
    np.testing.assert_array_equal(out.any(axis=(0, 1)), [True, False, True])
    assert classes.all()  # input untouched
    with pytest.raises(ValueError, match="2 slice probabilities for 3 slices"):
        gate_labels(classes, np.array([0.9, 0.2]))


def test_run_evaluate_binary_cohort(tmp_path):
    import json

    from brats.data import save_nifti, save_seg
    from brats.data.kaggle import kaggle_geometry, write_kaggle_patient
    from brats.evaluate import format_summary, run_evaluate

    ref_root, pred = tmp_path / "ref", tmp_path / "pred"
    image = np.zeros((3, 256, 256, 4), dtype=np.uint8)
    image[:, 50:200, 50:200] = 100
    tumour = np.zeros((256, 256, 4), dtype=np.uint8)
    tumour[100:110, 100:110, 1:3] = 1  # slices k = 2, 3
    write_kaggle_patient(ref_root / "TCGA_CS_0001_20000101", image, tumour)
    write_kaggle_patient(ref_root / "TCGA_CS_0002_20000101", image, np.zeros_like(tumour))  # tumour-free
    geom = kaggle_geometry(4, 2.0)
    p1 = tumour.copy()
    p1[..., 2] = 0  # slice 3 missed
    p2 = np.zeros_like(tumour)
    p2[5, 5, 0] = 1  # a false positive on the tumour-free patient
    save_seg(pred / "TCGA_CS_0001_20000101.nii.gz", p1, geom)
    save_seg(pred / "TCGA_CS_0002_20000101.nii.gz", p2, geom)
    prob = np.zeros((256, 256, 4, 2), dtype=np.float32)
    prob[..., 1] = [0.1, 0.9, 0.4, 0.2]  # slice scores of patient 1
    save_nifti(pred / "TCGA_CS_0001_20000101_prob.nii.gz", prob, geom)
    s = run_evaluate(pred, ref_root, out_dir=tmp_path / "eval")
    assert s["detection"]["score"] == "predicted label (no _prob.nii.gz)"  # patient 2 has no probabilities
    sl, pt = s["detection"]["slice"], s["detection"]["patient"]
    assert (sl["tp"], sl["fp"], sl["fn"], sl["tn"]) == (1, 1, 1, 5)
    assert (pt["tp"], pt["fp"], pt["fn"], pt["tn"]) == (1, 1, 0, 0)
    assert pt["sensitivity"] == 1.0 and pt["specificity"] == 0.0
    # slice AUC: positives 0.9, 0.4; negatives 0.1, 0.2 (patient 1) and 1, 0, 0, 0 (patient 2's labels)
    assert sl["auc"] == pytest.approx(roc_auc([0, 1, 1, 0, 0, 0, 0, 0], [0.1, 0.9, 0.4, 0.2, 1, 0, 0, 0]))
    assert s["pooled"]["tumour"]["tp"] == 100 and s["pooled"]["tumour"]["fn"] == 100
    assert s["per_case"]["tumour"]["dice"]["mean"] == pytest.approx((2 / 3 + 0.0) / 2)
    assert s["per_case"]["tumour"]["vol_ref_ml"]["mean"] == pytest.approx(200 * 2.0 / 1000 / 2)
    saved = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert saved["detection"]["patient"]["specificity"] == 0.0
    assert "slice        8     1     1     1     5" in format_summary(s)
    # two patients at Dice 2/3 and 0: the mean's bootstrap interval spans both (resampled means 0, 1/3, 2/3)
    assert s["per_case"]["tumour"]["dice"]["ci95"] == pytest.approx([0.0, 2 / 3])
    assert "Dice 0.333 (95% CI 0.000-0.667, median 0.333)" in format_summary(s)
