"""Tests of brats.evaluate: hand-computed values, MONAI agreement, label conventions, cohort evaluation, CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from brats.cli import main
from brats.errors import BratsError
from brats.evaluate import (
    BRATS_HD95_MAX,
    Counts,
    MetricsError,
    batch_class_counts,
    case_columns,
    check_empty_rule,
    confusion_counts,
    confusion_matrix,
    dice_from_counts,
    dice_scores,
    evaluate_case,
    format_summary,
    hd95,
    overlap_scores,
    pooled_dice,
    report_rows,
    run_evaluate,
    structure_counts,
    summarize,
)
from brats.evaluate.interval import bootstrap_ci
from brats.labels import LabelError

torch.set_num_threads(1)
nan = math.nan

# The exact cases.csv header the issue (#7) asks for, written out: other tools parse it.
EXPECTED_HEADER = ["case"]
for _name in ("NCR", "ED", "ET", "TC", "WT"):
    EXPECTED_HEADER += [f"{_name}_{m}" for m in ("dice", "iou", "precision", "recall", "specificity")]
    EXPECTED_HEADER += [f"{_name}_hd95"] if _name in ("ET", "TC", "WT") else []
    EXPECTED_HEADER += [f"{_name}_{m}" for m in ("vol_ref", "vol_pred", "vol_ref_ml", "vol_pred_ml")]
for _name in ("ET", "TC", "WT"):
    EXPECTED_HEADER += [
        f"{_name}_lesion_{m}" for m in ("dice", "hd95", "tp", "fp", "fn", "precision", "recall", "f1")
    ]


def same(a: float, b: float, tol: float = 1e-12) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def assert_scores(got: dict, expected: dict, tol: float = 1e-12) -> None:
    for k, v in expected.items():
        assert same(got[k], v, tol), f"{k}: got {got[k]}, expected {v}"


# ----------------------------------------------------------------------------------------------------------------
# Hand-computed counts and scores
# ----------------------------------------------------------------------------------------------------------------


def test_binary_two_thirds():
    # pred [1,1,0,0] vs ref [1,0,0,0]: TP 1, FP 1, FN 0, TN 2
    c = confusion_counts(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]), {"x": 1})["x"]
    assert c == Counts(tp=1, fp=1, fn=0, tn=2)
    assert_scores(
        overlap_scores(c),
        {"dice": 2 / 3, "iou": 1 / 2, "precision": 1 / 2, "recall": 1.0, "specificity": 2 / 3},
    )


def test_binary_point_eight():
    # TP 4, FP 1, FN 1, TN 2 -> Dice 8/10
    pred = np.array([1, 1, 1, 1, 1, 0, 0, 0])
    ref = np.array([1, 1, 1, 1, 0, 1, 0, 0])
    c = confusion_counts(pred, ref, [1])[1]
    assert c == Counts(4, 1, 1, 2)
    assert_scores(
        overlap_scores(c), {"dice": 0.8, "iou": 2 / 3, "precision": 0.8, "recall": 0.8, "specificity": 2 / 3}
    )
    assert dice_from_counts(4, 1, 1) == pytest.approx(0.8, abs=1e-15)


# index:        0  1  2  3  4  5  6  7
MULTI_REF = [0, 1, 1, 2, 2, 3, 3, 0]
MULTI_PRED = [0, 1, 3, 2, 0, 3, 2, 2]
# Worked by hand: NCR ref{1,2} pred{1}; ED ref{3,4} pred{3,6,7}; ET ref{5,6} pred{2,5};
# TC ref{1,2,5,6} pred{1,2,5}; WT ref{1..6} pred{1,2,3,5,6,7}.
MULTI_COUNTS = {
    "NCR": Counts(1, 0, 1, 6),
    "ED": Counts(1, 2, 1, 4),
    "ET": Counts(1, 1, 1, 5),
    "TC": Counts(3, 0, 1, 4),
    "WT": Counts(5, 1, 1, 1),
}
MULTI_DICE = {"NCR": 2 / 3, "ED": 2 / 5, "ET": 1 / 2, "TC": 6 / 7, "WT": 10 / 12}


def test_classes_and_regions_by_hand():
    counts = confusion_counts(np.array(MULTI_PRED), np.array(MULTI_REF))
    assert counts == MULTI_COUNTS
    assert_scores(dice_scores(counts), MULTI_DICE)
    # a sequence of classes / tuples of classes keys the result by the items themselves
    seq = confusion_counts(np.array(MULTI_PRED), np.array(MULTI_REF), [3, (1, 3)])
    assert seq[3] == MULTI_COUNTS["ET"] and seq[(1, 3)] == MULTI_COUNTS["TC"]
    cm = confusion_matrix(np.array(MULTI_PRED), np.array(MULTI_REF))
    assert cm.sum() == 8 and cm[1, 3] == 1 and cm[2, 0] == 1  # ref NCR predicted ET; ref ED missed


def test_batch_class_counts_numpy_and_torch():
    pred = np.array(MULTI_PRED).reshape(2, 2, 2)
    ref = np.array(MULTI_REF).reshape(2, 2, 2)
    expected = np.array([[1, 0, 1], [1, 2, 1], [1, 1, 1]])  # [tp, fp, fn] of NCR, ED, ET
    np.testing.assert_array_equal(batch_class_counts(pred, ref), expected)
    np.testing.assert_array_equal(batch_class_counts(torch.from_numpy(pred), torch.from_numpy(ref)), expected)
    # counts of successive batches add up; dice_scores names the rows NCR, ED, ET
    total = batch_class_counts(pred, ref) + batch_class_counts(ref, ref)
    assert_scores(dice_scores(total), {"NCR": 6 / 7, "ED": 6 / 9, "ET": 6 / 8})
    assert_scores(dice_scores(expected, names=["a", "b", "c"]), {"a": 2 / 3, "b": 0.4, "c": 0.5})


def test_pooled_dice_classes_and_regions_by_hand():
    cm = confusion_matrix(np.array(MULTI_PRED), np.array(MULTI_REF))
    got = pooled_dice(cm)
    # classes: NCR tp 1 fn 1; ED tp 1 fp 2 fn 1; ET tp 1 fp 1 fn 1. WT: 6 ref, 6 pred, 5 shared; TC: 4 ref, 3 pred, 3
    expected = {"NCR": 2 / 3, "ED": 0.4, "ET": 0.5, "WT": 10 / 12, "TC": 6 / 7}
    assert_scores(got, {**expected, "mean": (2 / 3 + 0.4 + 0.5) / 3})
    assert set(got) == {"NCR", "ED", "ET", "mean", "WT", "TC"}
    # empty rule: no tumour in either -> 1 everywhere; binary scheme: one structure, no regions
    assert pooled_dice(confusion_matrix(np.zeros(4, int), np.zeros(4, int))) == dict.fromkeys(got, 1.0)
    binary = pooled_dice(confusion_matrix(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]), 2), binary=True)
    assert binary == {"tumour": 2 / 3, "mean": 2 / 3}


def test_pooled_dice_agrees_with_monai_over_batches():
    from monai.metrics import compute_dice

    rng = np.random.default_rng(5)
    batches = [(rng.integers(0, 4, (3, 6, 6)), rng.integers(0, 4, (3, 6, 6))) for _ in range(4)]
    cm = sum(confusion_matrix(p, r) for p, r in batches)  # pooled over batches, as the trainer sums them
    got = pooled_dice(cm)
    pred = np.concatenate([p.ravel() for p, _ in batches])
    ref = np.concatenate([r.ravel() for _, r in batches])
    for name, classes in {"NCR": (1,), "ED": (2,), "ET": (3,), "TC": (1, 3), "WT": (1, 2, 3)}.items():
        p = torch.from_numpy(np.isin(pred, classes)[None, None].astype(np.float32))
        r = torch.from_numpy(np.isin(ref, classes)[None, None].astype(np.float32))
        assert got[name] == pytest.approx(float(compute_dice(p, r, include_background=True)), abs=1e-6)


def test_region_dice_hand_computed_and_monai():
    from monai.metrics import compute_dice

    from brats.evaluate import region_dice

    # TC: the prediction has 1 of the reference's 2 core voxels and no other -> 2 / 3; ET: only a false positive
    got = region_dice(np.array([0, 2, 2, 3]), np.array([0, 2, 1, 1]))
    assert got == pytest.approx({"WT": 1.0, "TC": 2 / 3, "ET": 0.0})
    assert region_dice(np.zeros(4, int), np.zeros(4, int)) == {"WT": 1.0, "TC": 1.0, "ET": 1.0}  # empty rule
    rng = np.random.default_rng(7)
    pred, ref = rng.integers(0, 4, (6, 7, 5)), rng.integers(0, 4, (6, 7, 5))
    got = region_dice(pred, ref)
    for name, classes in {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}.items():
        p = torch.from_numpy(np.isin(pred, classes)[None, None].astype(np.float32))
        r = torch.from_numpy(np.isin(ref, classes)[None, None].astype(np.float32))
        assert got[name] == pytest.approx(float(compute_dice(p, r, include_background=True)), abs=1e-6)


@pytest.mark.parametrize(
    "counts, rule, expected",
    [
        # both empty: every 0/0 is "agreement" under brats
        ((0, 0, 0, 10), "brats", {"dice": 1, "iou": 1, "precision": 1, "recall": 1, "specificity": 1}),
        ((0, 0, 0, 10), "nan", {"dice": nan, "iou": nan, "precision": nan, "recall": nan, "specificity": 1}),
        # prediction empty, reference not: Dice 0 under both rules; precision is 0/0
        ((0, 0, 3, 7), "brats", {"dice": 0, "iou": 0, "precision": 0, "recall": 0, "specificity": 1}),
        ((0, 0, 3, 7), "nan", {"dice": 0, "iou": 0, "precision": nan, "recall": 0, "specificity": 1}),
        # reference empty, prediction not: recall is 0/0
        ((0, 2, 0, 8), "brats", {"dice": 0, "iou": 0, "precision": 0, "recall": 0, "specificity": 0.8}),
        ((0, 2, 0, 8), "nan", {"dice": 0, "iou": 0, "precision": 0, "recall": nan, "specificity": 0.8}),
    ],
)
def test_empty_rules_overlap(counts, rule, expected):
    assert_scores(overlap_scores(Counts(*counts), rule), expected)


def test_empty_rules_hd95():
    empty = np.zeros((6, 6, 6), bool)
    one = empty.copy()
    one[2, 3, 1] = True
    assert hd95(empty, empty, empty="brats") == 0.0
    assert math.isnan(hd95(empty, empty, empty="nan"))
    assert hd95(one, empty, empty="brats") == BRATS_HD95_MAX == 373.13
    assert hd95(empty, one, empty="brats") == 373.13
    assert math.isnan(hd95(empty, one, empty="nan"))


def test_hd95_by_hand():
    ref = np.zeros((8, 8, 12), bool)
    ref[5, 5, 5] = True
    pred = ref.copy()
    pred[5, 5, 9] = True  # 4 voxels away along z, spacing 2.5 -> 10 mm
    # pred->ref distances [0, 10]: 95th percentile (linear) = 0.95 * 10 = 9.5; ref->pred [0]
    assert hd95(pred, ref, spacing=(1, 1, 2.5)) == pytest.approx(9.5, abs=1e-9)
    assert hd95(pred, ref, spacing=(1, 1, 2.5), percentile=100) == pytest.approx(10.0, abs=1e-9)
    # 3x3x3 cubes, the prediction shifted by 2 voxels along x (1.5 mm): surface distances are 0 (9 voxels),
    # 1.5 mm (8) and 3 mm (9) both ways -> HD95 = 3 mm
    cube = np.zeros((10, 6, 6), bool)
    cube[1:4, 1:4, 1:4] = True
    assert hd95(np.roll(cube, 2, axis=0), cube, spacing=(1.5, 1, 1)) == pytest.approx(3.0, abs=1e-9)


def test_bad_inputs_raise():
    with pytest.raises(MetricsError, match="did you mean 'brats'"):
        check_empty_rule("bratz")
    with pytest.raises(MetricsError, match="0..3"):
        confusion_matrix(np.array([0, 4]), np.array([0, 1]))
    with pytest.raises(MetricsError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(MetricsError, match="shape"):
        hd95(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))
    with pytest.raises(MetricsError, match=r"\(K, 3\)"):
        dice_scores(np.zeros(3))


# ----------------------------------------------------------------------------------------------------------------
# Agreement with MONAI
# ----------------------------------------------------------------------------------------------------------------


def _blobs(shape, rng, n=3):
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    classes = np.zeros(shape, np.uint8)
    for cls, radius in ((2, 9.0), (1, 5.0), (3, 3.0)):
        centre = np.array(shape) / 2 + rng.normal(0, 1.5, 3)
        dist = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
        noise = ndimage.gaussian_filter(rng.standard_normal(shape), 2) * 6
        classes[dist + noise < radius] = cls
    return classes


def _monai(pred: np.ndarray, ref: np.ndarray, spacing) -> tuple[float, float, float]:
    from monai.metrics import DiceMetric, HausdorffDistanceMetric, compute_iou

    p = torch.from_numpy(pred.astype(np.float32))[None, None]
    r = torch.from_numpy(ref.astype(np.float32))[None, None]
    dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(p, r).item()
    iou = compute_iou(p, r, include_background=True, ignore_empty=False).item()
    hd = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(
        p, r, spacing=spacing
    )
    return dice, iou, hd.item()


@pytest.mark.parametrize("kind, seed", [("random", 0), ("random", 1), ("blob", 2), ("blob", 3), ("blob", 4)])
def test_agrees_with_monai(kind, seed):
    rng = np.random.default_rng(seed)
    shape, spacing = (28, 24, 20), (0.9, 1.1, 2.0)
    if kind == "random":
        ref = rng.integers(0, 4, shape).astype(np.uint8)
        pred = np.where(rng.random(shape) < 0.3, rng.integers(0, 4, shape), ref).astype(np.uint8)
    else:
        ref, pred = _blobs(shape, rng), _blobs(shape, rng)
    row, _ = evaluate_case(pred, ref, spacing=spacing)
    for name, classes in {"NCR": (1,), "ED": (2,), "ET": (3,), "TC": (1, 3), "WT": (1, 2, 3)}.items():
        p, r = np.isin(pred, classes), np.isin(ref, classes)
        assert p.any() and r.any()  # conventions coincide only when both masks are non-empty
        dice, iou, hd = _monai(p, r, spacing)
        assert abs(row[f"{name}_dice"] - dice) < 1e-6, name
        assert abs(row[f"{name}_iou"] - iou) < 1e-6, name
        assert abs(hd95(p, r, spacing) - hd) < 1e-3, name
        if name in ("ET", "TC", "WT"):
            assert abs(row[f"{name}_hd95"] - hd) < 1e-3, name


def test_both_empty_dice_agrees_with_monai():
    z = np.zeros((5, 5, 5), bool)
    assert _monai(z, z, (1, 1, 1))[0] == overlap_scores(Counts(0, 0, 0, 125))["dice"] == 1.0


# ----------------------------------------------------------------------------------------------------------------
# Cohorts on disk
# ----------------------------------------------------------------------------------------------------------------

AFFINE = np.diag([1.2, 1.0, 2.0, 1.0])
SHAPE = (16, 14, 8)


def _write(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    img = nib.Nifti1Image(data.astype(np.uint8), affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    nib.save(img, str(path))


def _class_maps(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (reference, prediction) training-class maps; case 0 has no ET in either."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        ref = np.zeros(SHAPE, np.uint8)
        ref[3:13, 3:11, 2:6] = 2
        ref[5:10, 5:9, 3:5] = 1
        if i > 0:
            ref[6:8, 5:8, 3:5] = 3
        pred = np.roll(ref, i % 2, axis=0)
        pred[rng.random(SHAPE) < 0.02] = 2
        if i == 0:
            pred[pred == 3] = 1
        out.append((ref, pred))
    return out


def _cohort(tmp: Path, naming: str, n: int = 3) -> tuple[Path, Path]:
    """Write references in ``naming`` (2021: ET = 4; 2023: ET = 3) and predictions in the same labels."""
    et = 4 if naming == "2021" else 3
    lut = np.array([0, 1, 2, et], np.uint8)
    ref_root, pred_dir = tmp / f"ref{naming}", tmp / f"pred{naming}"
    pred_dir.mkdir(parents=True)
    for i, (ref, pred) in enumerate(_class_maps(n)):
        cid = f"BraTS2021_{i:05d}" if naming == "2021" else f"BraTS-GLI-{i:05d}-000"
        sep = "_" if naming == "2021" else "-"
        (ref_root / cid).mkdir(parents=True)
        _write(ref_root / cid / f"{cid}{sep}seg.nii.gz", lut[ref])
        _write(pred_dir / f"{cid}.nii.gz", lut[pred])
    return ref_root, pred_dir


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def test_2021_and_2023_conventions_give_identical_scores(tmp_path):
    r21, p21 = _cohort(tmp_path, "2021")
    r23, p23 = _cohort(tmp_path, "2023")
    s21 = run_evaluate(p21, r21, progress=False)
    s23 = run_evaluate(p23, r23, progress=False)
    assert s21["per_case"] == s23["per_case"] and s21["pooled"] == s23["pooled"]
    h21, rows21 = _read_csv(p21 / "cases.csv")
    h23, rows23 = _read_csv(p23 / "cases.csv")
    assert h21 == h23 == EXPECTED_HEADER
    assert [r[1:] for r in rows21] == [r[1:] for r in rows23]
    assert [r[0] for r in rows23] == [f"BraTS-GLI-{i:05d}-000" for i in range(3)]
    # the ET class actually came out non-empty in cases 1 and 2 (not silently dropped)
    col = EXPECTED_HEADER.index("ET_vol_ref")
    assert [int(r[col]) for r in rows23] == [0, 12, 12]
    # volumes in ml use the header spacing: 12 voxels x 1.2 x 1.0 x 2.0 mm3 = 28.8 mm3
    assert float(rows23[1][EXPECTED_HEADER.index("ET_vol_ref_ml")]) == pytest.approx(0.0288)


def test_cohort_scores_match_evaluate_case_and_pooling(tmp_path):
    ref_root, pred_dir = _cohort(tmp_path, "2021")
    out = tmp_path / "eval"
    summary = run_evaluate(pred_dir, ref_root, out_dir=out, empty="nan", progress=False)
    assert (out / "cases.csv").is_file() and (out / "summary.json").is_file()
    assert not (pred_dir / "cases.csv").exists()
    rows, cms = zip(*(evaluate_case(p, r, (1.2, 1.0, 2.0), "nan") for r, p in _class_maps(3)))
    wt = [row["WT_dice"] for row in rows]
    assert summary["per_case"]["WT"]["dice"]["mean"] == pytest.approx(np.mean(wt), abs=1e-12)
    tot = [sum(structure_counts(c)["WT"][i] for c in cms) for i in range(3)]
    assert summary["pooled"]["WT"]["dice"] == pytest.approx(
        2 * tot[0] / (2 * tot[0] + tot[1] + tot[2]), abs=1e-12
    )
    # case 0 has ET empty in both masks: under "nan" its ET Dice and HD95 are left out and counted
    assert summary["per_case"]["ET"]["dice"]["count"] == 2 and summary["per_case"]["ET"]["dice"]["n_nan"] == 1
    assert summary["per_case"]["ET"]["hd95"]["n_nan"] == 1
    # the mean Dice's bootstrap interval is over the same values as the mean, NaN left out
    et = [row["ET_dice"] for row in rows if not np.isnan(row["ET_dice"])]
    assert summary["per_case"]["ET"]["dice"]["ci95"] == pytest.approx(bootstrap_ci(et))
    assert summary["per_case"]["WT"]["dice"]["ci95"] == pytest.approx(bootstrap_ci(wt))
    assert "ci95" not in summary["per_case"]["WT"]["iou"]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["per_case"]["ET"]["dice"]["count"] == 2 and on_disk["empty"] == "nan"
    text = format_summary(summary)
    assert all(name in text for name in ("NCR", "ED", "ET", "TC", "WT")) and "left out as NaN" in text
    low, high = summary["per_case"]["WT"]["dice"]["ci95"]
    wt_row = next(line for line in text.splitlines() if line.startswith("WT ") and "|" in line)
    assert f" {low:.3f}-{high:.3f} " in wt_row and "95% CI" in text


def test_summarize_mean_vs_pooled_by_hand():
    # case A: WT perfect (4 voxels); case B: 1 reference voxel, 1 predicted voxel elsewhere
    a_ref = np.array([[[2, 2, 2, 2, 0, 0]]], np.uint8)
    b_ref = np.array([[[0, 0, 0, 0, 2, 0]]], np.uint8)
    b_pred = np.array([[[0, 0, 0, 0, 0, 2]]], np.uint8)
    cases = [evaluate_case(a_ref, a_ref), evaluate_case(b_pred, b_ref)]
    s = summarize([r for r, _ in cases], [c for _, c in cases])
    assert s["per_case"]["WT"]["dice"]["mean"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert s["per_case"]["WT"]["dice"]["std"] == pytest.approx(math.sqrt(0.5))  # sample std (ddof 1)
    assert s["pooled"]["WT"]["dice"] == pytest.approx(0.8)  # TP 4, FP 1, FN 1
    assert s["pooled"]["WT"]["accuracy"] == pytest.approx(10 / 12)
    # ET empty in both cases: Dice 1 and HD95 0 under the brats rule
    assert s["per_case"]["ET"]["dice"]["mean"] == 1.0 and s["per_case"]["ET"]["hd95"]["mean"] == 0.0
    means, pooled = report_rows(s)
    assert [r["name"] for r in means] == ["NCR", "ED", "ET", "TC", "WT"]
    assert means[4]["dice"] == pytest.approx(0.5) and means[4]["n"] == 2 and means[0]["hd95"] is None
    assert pooled[4]["dice"] == pytest.approx(0.8) and pooled[4]["accuracy"] == pytest.approx(10 / 12)


def test_pooled_confusion_by_hand():
    # classes 0 background, 1 NCR, 2 ED, 3 ET; source labels 0, 1, 2, 4 are not used here (training classes)
    a_ref = np.array([[[1, 1, 2, 2, 3, 0]]], np.uint8)
    a_pred = np.array([[[1, 2, 2, 0, 3, 0]]], np.uint8)  # NCR->ED once, ED->background once
    b_ref = np.array([[[1, 1, 0, 0, 0, 0]]], np.uint8)
    b_pred = np.array([[[0, 2, 0, 0, 3, 0]]], np.uint8)  # NCR->background, NCR->ED, background->ET
    cases = [evaluate_case(a_pred, a_ref), evaluate_case(b_pred, b_ref)]
    s = summarize([r for r, _ in cases], [c for _, c in cases])
    conf = s["confusion"]
    assert conf["classes"] == ["background", "NCR", "ED", "ET"]
    assert conf["voxels"] == [[4, 0, 0, 1], [1, 1, 2, 0], [1, 0, 1, 0], [0, 0, 0, 1]]
    assert conf["row_fraction"][1] == [0.25, 0.25, 0.5, 0.0]  # of 4 NCR voxels, half were called edema
    # the pooled counts are those of the summed matrix, and agree with summing each case's counts
    per_case = [structure_counts(c) for _, c in cases]
    for name in ("NCR", "ED", "ET", "TC", "WT"):
        summed = [sum(c[name][i] for c in per_case) for i in range(4)]
        assert [s["pooled"][name][k] for k in ("tp", "fp", "fn", "tn")] == summed
    assert s["pooled"]["NCR"]["recall"] == pytest.approx(0.25)
    # a class absent from every reference has no row fraction; the printed block shows "-"
    s2 = summarize([cases[1][0]], [cases[1][1]])
    assert s2["confusion"]["row_fraction"][2] is None and s2["confusion"]["row_fraction"][3] is None
    text = format_summary(s2).splitlines()
    row = next(line for line in text if line.startswith("NCR ") and "|" in line and "  2 |" in line)
    assert row.split("|")[1].split() == ["50.00", "0.00", "50.00", "0.00"]
    assert (
        next(line for line in text if line.startswith("ED ") and "  0 |" in line).split("|")[1].split()
        == ["-"] * 4
    )


def test_missing_predictions(tmp_path):
    ref_root, pred_dir = _cohort(tmp_path, "2023")
    (pred_dir / "BraTS-GLI-00001-000.nii.gz").unlink()
    with pytest.raises(BratsError, match=r"1 of 3 case\(s\) have no prediction.*BraTS-GLI-00001-000"):
        run_evaluate(pred_dir, ref_root, progress=False)
    s = run_evaluate(pred_dir, ref_root, missing="zero", progress=False)
    assert s["missing_predictions"] == ["BraTS-GLI-00001-000"]
    header, rows = _read_csv(pred_dir / "cases.csv")
    row = dict(zip(header, rows[1]))
    assert float(row["WT_dice"]) == 0.0 and float(row["WT_hd95"]) == 373.13 and row["WT_vol_pred"] == "0"


def test_grid_mismatch_names_the_case(tmp_path):
    ref_root, pred_dir = _cohort(tmp_path, "2021")
    bad = pred_dir / "BraTS2021_00002.nii.gz"
    _write(bad, np.zeros((16, 14, 9), np.uint8))
    with pytest.raises(BratsError, match=r"case BraTS2021_00002: .*shape \(16, 14, 9\)"):
        run_evaluate(pred_dir, ref_root, progress=False)
    _write(bad, np.zeros(SHAPE, np.uint8), affine=np.diag([1.2, 1.0, 2.5, 1.0]))
    with pytest.raises(BratsError, match=r"case BraTS2021_00002: .*affine"):
        run_evaluate(pred_dir, ref_root, progress=False)


def test_label_outside_the_case_convention_is_an_error(tmp_path):
    ref_root, pred_dir = _cohort(tmp_path, "2023")
    _write(
        pred_dir / "BraTS-GLI-00000-000.nii.gz", np.full(SHAPE, 4, np.uint8)
    )  # 2021 ET label in a 2023 case
    with pytest.raises(LabelError, match=r"BraTS-GLI-00000-000\.nii\.gz.*\[4\]"):
        run_evaluate(pred_dir, ref_root, progress=False)


def test_cli_evaluate(tmp_path, capsys):
    ref_root, pred_dir = _cohort(tmp_path, "2021")
    out = tmp_path / "out"
    rc = main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_root), "--out", str(out)])
    assert rc == 0
    header, rows = _read_csv(out / "cases.csv")
    assert header == EXPECTED_HEADER == ["case", *case_columns()]
    assert len(rows) == 3
    printed = capsys.readouterr().out
    assert "WT" in printed and "pooled" in printed and str(out / "cases.csv") in printed
    (pred_dir / "BraTS2021_00000.nii.gz").unlink()
    rc = main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_root), "--out", str(out)])
    assert rc == 1 and "BraTS2021_00000" in capsys.readouterr().err
