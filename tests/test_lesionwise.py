"""Lesion-wise BraTS metrics: hand-computed cases for both rule sets, and a cross-check of the default rules
against the official ``BraTS-evaluation`` package, run in its own venv (scripts/brats_eval_venv.sh) through
tests/brats_eval_driver.py."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brats.errors import BratsError
from brats.evaluate.lesionwise import (
    LESION_COLUMNS,
    METRICS,
    OFFICIAL_HD95_INF,
    REGIONS,
    VARIANTS,
    lesion_metrics,
)

ROOT = Path(__file__).resolve().parents[1]
EVAL_VENV = ROOT / ".venv-brats-eval"
NAN = math.nan


def region(scores: dict[str, float | int], name: str) -> dict[str, float | int]:
    return {m: scores[f"{name}_lesion_{m}"] for m in METRICS}


def same(a: float, b: float, tol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol


def assert_region(got: dict[str, float | int], want: dict[str, float]) -> None:
    for key, value in want.items():
        assert same(float(got[key]), value, 1e-4), f"{key}: got {got[key]}, want {value}\n{got}"


def volume(shape: tuple[int, int, int] = (24, 24, 24)) -> np.ndarray:
    return np.zeros(shape, np.uint8)


# --------------------------------------------------------------------------------------------------------
# Hand-computed cases (numbers derived in docs/metrics-lesionwise.md)
# --------------------------------------------------------------------------------------------------------


def matched_missed_fp() -> tuple[np.ndarray, np.ndarray]:
    """Two reference ET lesions (4x4x4 cubes); the first is found shifted by one voxel, the second missed;
    plus one false-positive cube far from both."""
    ref, pred = volume(), volume()
    ref[2:6, 2:6, 2:6] = 3
    ref[2:6, 16:20, 2:6] = 3
    pred[3:7, 2:6, 2:6] = 3
    pred[16:20, 16:20, 16:20] = 3
    return pred, ref


def split_lesion() -> tuple[np.ndarray, np.ndarray]:
    """One 8x4x4 reference ET lesion, predicted as two pieces (4x4x4 and 3x4x4) with a one-voxel gap."""
    ref, pred = volume(), volume()
    ref[2:10, 2:6, 2:6] = 3
    pred[2:6, 2:6, 2:6] = 3
    pred[7:10, 2:6, 2:6] = 3
    return pred, ref


def test_columns_and_variants():
    assert VARIANTS[0] == "official" and "2023" in VARIANTS
    assert LESION_COLUMNS[:8] == [
        "ET_lesion_dice",
        "ET_lesion_hd95",
        "ET_lesion_tp",
        "ET_lesion_fp",
        "ET_lesion_fn",
        "ET_lesion_precision",
        "ET_lesion_recall",
        "ET_lesion_f1",
    ]
    assert len(LESION_COLUMNS) == 24 and [c.split("_")[0] for c in LESION_COLUMNS[::8]] == list(REGIONS)
    pred, ref = matched_missed_fp()
    scores = lesion_metrics(pred, ref)
    assert list(scores) == LESION_COLUMNS
    assert all(isinstance(scores[f"{r}_lesion_{m}"], int) for r in REGIONS for m in ("tp", "fp", "fn"))


def test_official_matched_missed_and_false_positive():
    # Matched pair: Dice 2*48/(64+64) = 0.75; surface distances 0 or 1 voxel -> HD95 1.0.
    # Means run over the single TP pair; the FN and FP lesions only enter precision/recall/F1.
    pred, ref = matched_missed_fp()
    scores = lesion_metrics(pred, ref)
    want = dict(dice=0.75, hd95=1.0, tp=1, fp=1, fn=1, precision=0.5, recall=0.5, f1=0.5)
    for name in REGIONS:  # only label 3: ET, TC and WT are the same mask
        assert_region(region(scores, name), want)


def test_2023_matched_missed_and_false_positive():
    # Both reference lesions are 64 mm^3 > 50: (0.75 + 0 [FN]) / (2 + 1 FP) = 0.25;
    # HD95 (1.0 + 374 [FN] + 374 [FP]) / 3 = 249.6667.
    pred, ref = matched_missed_fp()
    want = dict(dice=0.25, hd95=749.0 / 3, tp=1, fp=1, fn=1, precision=0.5, recall=0.5, f1=0.5)
    assert_region(region(lesion_metrics(pred, ref, variant="2023"), "ET"), want)


def test_2023_ignores_small_reference_lesions():
    # Same layout with voxels of 0.5 mm: each 64-voxel lesion is 8 mm^3 <= 50, so both drop out;
    # the FP lesion still counts: Dice 0 / 1, HD95 374 / 1.
    pred, ref = matched_missed_fp()
    want = dict(dice=0.0, hd95=374.0, tp=0, fp=1, fn=0, precision=0.0, recall=NAN, f1=0.0)
    assert_region(region(lesion_metrics(pred, ref, (0.5, 0.5, 0.5), variant="2023"), "ET"), want)


def test_official_split_lesion_counts_second_piece_as_false_positive():
    # One-to-one matching keeps the piece with the higher Dice: 2*64/(128+64) = 0.6667 beats
    # 2*48/(128+48) = 0.5455. HD95 of lesion vs. kept piece: 160 pooled surface distances
    # (104 x 0, 16 x 1, 12 x 2, 12 x 3, 16 x 4 voxels) -> 95th percentile 4.0.
    pred, ref = split_lesion()
    want = dict(dice=2 / 3, hd95=4.0, tp=1, fp=1, fn=0, precision=0.5, recall=1.0, f1=2 / 3)
    assert_region(region(lesion_metrics(pred, ref), "ET"), want)


def test_2023_split_lesion_matches_both_pieces():
    # Both pieces touch the dilated lesion: Dice against their union 2*112/(128+112) = 0.9333, HD95 1.0.
    pred, ref = split_lesion()
    want = dict(dice=224 / 240, hd95=1.0, tp=1, fp=0, fn=0, precision=1.0, recall=1.0, f1=1.0)
    assert_region(region(lesion_metrics(pred, ref, variant="2023"), "ET"), want)


def test_empty_reference_empty_prediction_and_both_empty():
    ref, pred = volume(), volume()
    ref[4:8, 4:8, 4:8] = 2  # reference: oedema only, so its ET and TC are empty
    pred[4:8, 4:8, 4:8] = 3  # prediction: the same cube called ET
    official = lesion_metrics(pred, ref)
    empty_ref = dict(dice=0.0, hd95=OFFICIAL_HD95_INF, tp=0, fp=1, fn=0, precision=0.0, recall=NAN, f1=0.0)
    assert_region(region(official, "ET"), empty_ref)
    assert_region(region(official, "TC"), empty_ref)
    perfect = dict(dice=1.0, hd95=0.0, tp=1, fp=0, fn=0, precision=1.0, recall=1.0, f1=1.0)
    assert_region(region(official, "WT"), perfect)
    v2023 = lesion_metrics(pred, ref, variant="2023")
    assert_region(region(v2023, "ET"), dict(empty_ref, hd95=374.0))
    assert_region(region(v2023, "WT"), perfect)

    # Empty prediction: every reference lesion is a FN.
    official = lesion_metrics(volume(), pred)
    empty_pred = dict(dice=0.0, hd95=OFFICIAL_HD95_INF, tp=0, fp=0, fn=1, precision=NAN, recall=0.0, f1=0.0)
    assert_region(region(official, "ET"), empty_pred)
    assert_region(region(lesion_metrics(volume(), pred, variant="2023"), "ET"), dict(empty_pred, hd95=374.0))

    # Both empty: undefined under the official rules, perfect under the 2023 rules.
    official = lesion_metrics(volume(), volume())
    nothing = dict(dice=NAN, hd95=NAN, tp=0, fp=0, fn=0, precision=NAN, recall=NAN, f1=NAN)
    for name in REGIONS:
        assert_region(region(official, name), nothing)
        got = region(lesion_metrics(volume(), volume(), variant="2023"), name)
        assert_region(got, dict(nothing, dice=1.0, hd95=0.0))


def test_spacing_scales_hd95():
    pred, ref = split_lesion()
    scores = lesion_metrics(pred, ref, spacing=(2.0, 1.0, 1.0))
    assert scores["ET_lesion_hd95"] == pytest.approx(8.0)  # distances run along X: 4 voxels of 2 mm
    assert scores["ET_lesion_dice"] == pytest.approx(2 / 3)


def test_full_size_volume_matches_small_one():
    # Cropping must not change anything: the same case embedded in a 240x240x155 volume scores the same.
    pred, ref = make_tumour_case(np.random.default_rng(3), (48, 48, 48))
    big_p, big_r = np.zeros((240, 240, 155), np.uint8), np.zeros((240, 240, 155), np.uint8)
    big_p[100:148, 90:138, 60:108] = pred
    big_r[100:148, 90:138, 60:108] = ref
    for variant in VARIANTS:
        small = lesion_metrics(pred, ref, variant=variant)
        start = time.perf_counter()
        big = lesion_metrics(big_p, big_r, variant=variant)
        assert time.perf_counter() - start < 30
        assert all(same(float(small[k]), float(big[k]), 1e-12) for k in LESION_COLUMNS), (small, big)


def test_rejects_bad_input():
    ref = volume()
    with pytest.raises(BratsError, match="mapped to 3"):
        lesion_metrics(np.full_like(ref, 4), ref)
    with pytest.raises(BratsError, match="shape"):
        lesion_metrics(ref[:-1], ref)
    with pytest.raises(BratsError, match="variant"):
        lesion_metrics(ref, ref, variant="2024")
    with pytest.raises(BratsError, match="spacing"):
        lesion_metrics(ref, ref, spacing=(1.0, 0.0, 1.0))
    assert lesion_metrics(ref.astype(np.float64), ref)["WT_lesion_tp"] == 0  # integral floats are fine


# --------------------------------------------------------------------------------------------------------
# Cross-check against the official package
# --------------------------------------------------------------------------------------------------------


def ball(shape: tuple[int, ...], centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    c = np.asarray(centre, np.float32)[:, None, None, None]
    r = np.asarray(radii, np.float32)[:, None, None, None]
    return (((grid - c) / r) ** 2).sum(0) <= 1.0


def tumour(
    shape: tuple[int, ...], centre: tuple[float, ...], size: float, rng: np.random.Generator
) -> np.ndarray:
    """One glioma-like blob: ED ellipsoid around an NCR core with an ET rim (classes 0..3)."""
    out = np.zeros(shape, np.uint8)
    radii = tuple(size * rng.uniform(0.7, 1.3) for _ in range(3))
    out[ball(shape, centre, radii)] = 2
    core = tuple(r * 0.55 for r in radii)
    out[ball(shape, centre, core)] = 3
    out[ball(shape, centre, tuple(r * 0.6 for r in core))] = 1
    return out


def make_tumour_case(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Reference with 1-3 tumours; prediction shifted, resized, with one tumour dropped and a FP blob."""
    ref = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    n = int(rng.integers(1, 4))
    for i in range(n):
        centre = tuple(float(rng.uniform(10, s - 10)) for s in shape)
        size = float(rng.uniform(3, 8))
        r = tumour(shape, centre, size, rng)
        ref = np.maximum(ref, r)
        if i == 0 or rng.random() < 0.7:
            shifted = tuple(c + rng.uniform(-2, 2) for c in centre)
            pred = np.maximum(pred, tumour(shape, shifted, size * rng.uniform(0.8, 1.2), rng))
    fp = tuple(float(rng.uniform(5, s - 5)) for s in shape)
    pred[ball(shape, fp, (2.5, 2.0, 2.0)) & (ref == 0)] = 3
    return pred, ref


@functools.lru_cache(maxsize=1)
def cross_check_cases() -> dict[str, tuple[np.ndarray, np.ndarray, tuple[float, float, float]]]:
    rng = np.random.default_rng(20240917)
    shape = (48, 48, 48)
    iso = (1.0, 1.0, 1.0)
    cases: dict[str, tuple[np.ndarray, np.ndarray, tuple[float, float, float]]] = {}
    for i in range(3):
        pred, ref = make_tumour_case(rng, shape)
        cases[f"tumours_{i}"] = (pred, ref, iso)
    pred, ref = make_tumour_case(rng, shape)
    cases["anisotropic"] = (pred, ref, (0.9, 1.1, 2.5))
    cases["identical"] = (ref.copy(), ref, iso)

    # Split: one reference ET blob, predicted as two unequal halves; merged: two reference ET blobs,
    # one bridging prediction.
    ref = np.zeros(shape, np.uint8)
    ref[ball(shape, (24, 24, 24), (10, 6, 6))] = 3
    pred = ref.copy()
    pred[20:22] = 0
    cases["split"] = (pred, ref, iso)
    ref = np.zeros(shape, np.uint8)
    ref[ball(shape, (14, 24, 24), (5, 5, 5))] = 3
    ref[ball(shape, (33, 24, 24), (6, 5, 5))] = 3
    pred = np.zeros(shape, np.uint8)
    pred[ball(shape, (24, 24, 24), (16, 4, 4))] = 3
    cases["merged"] = (pred, ref, iso)

    # Many small lesions competing for matches: noisy copy of a blob field.
    ref = np.zeros(shape, np.uint8)
    for _ in range(8):
        c = tuple(float(rng.uniform(6, 42)) for _ in range(3))
        ref[ball(shape, c, tuple(float(rng.uniform(1.5, 4)) for _ in range(3)))] = rng.integers(1, 4)
    pred = ref.copy()
    flips = rng.random(shape) < 0.01
    pred[flips] = rng.integers(0, 4, size=int(flips.sum()))
    pred[np.roll(ref, 2, axis=1) == 3] = 3
    cases["many_small"] = (pred, ref, iso)

    tumour_ref = make_tumour_case(rng, shape)[1]
    no_et = np.where(tumour_ref == 3, 1, tumour_ref).astype(np.uint8)
    cases["empty_pred"] = (np.zeros(shape, np.uint8), tumour_ref, iso)
    cases["empty_ref"] = (tumour_ref, np.zeros(shape, np.uint8), iso)
    cases["ref_without_et"] = (tumour_ref, no_et, iso)
    cases["both_empty"] = (np.zeros(shape, np.uint8), np.zeros(shape, np.uint8), iso)
    return cases


@pytest.fixture(scope="module")
def official_scores(tmp_path_factory) -> dict[str, dict[str, float]]:
    """Scores of cross_check_cases() from the official package (its venv is created on first use)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "brats_eval_venv.sh")], check=True, timeout=900)
    root = tmp_path_factory.mktemp("brats_eval")
    cases = cross_check_cases()
    for sub in ("pred", "ref"):
        (root / sub).mkdir()
    for name, (pred, ref, spacing) in cases.items():
        affine = np.diag([*spacing, 1.0])
        nib.save(nib.Nifti1Image(pred.astype(np.uint8), affine), root / "pred" / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(ref.astype(np.uint8), affine), root / "ref" / f"{name}.nii.gz")
    (root / "cases.json").write_text(json.dumps(list(cases)))
    proc = subprocess.run(
        [str(EVAL_VENV / "bin" / "python"), str(ROOT / "tests" / "brats_eval_driver.py"), str(root)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"official driver failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(cross_check_cases()))
def test_matches_official_package(name, official_scores):
    pred, ref, spacing = cross_check_cases()[name]
    # panoptica 2.1.7 reads .nii.gz through SimpleITK: the array comes back as (Z, Y, X) but the spacing
    # as (x, y, z), so with anisotropic voxels the official HD95 uses the spacing axes reversed. We keep
    # physical distances right; to compare like with like, feed the official axis mix-up back in here.
    ours = lesion_metrics(pred, ref, spacing[::-1])
    theirs = official_scores[name]
    for key in LESION_COLUMNS:
        want = float(theirs[key])
        if key.endswith("hd95") and math.isinf(want):
            want = OFFICIAL_HD95_INF  # the package's parser leaves lesion-wise HD95 infinite; we report 373
        tol = 0.5 if key.endswith("hd95") else 1e-3 if key.endswith("dice") else 1e-9
        assert same(float(ours[key]), want, tol), f"{name} {key}: ours {ours[key]}, official {theirs[key]}"
