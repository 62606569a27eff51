"""bench/error_kinds.py: each wrong whole-tumour voxel sorted into false lesion, edge, missed lesion or far, the
Dice with one kind put right, and the one-voxel yardstick, all by hand; scored cases read from a generated cohort."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import error_kinds  # noqa: E402


def _box(mask, lo, hi):
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = True


def _scene():
    """A reference cube with a tail and a lone lesion; a prediction with a one-voxel slab and a column on the
    cube, part of the tail, and a false lesion (every count below is worked out in the comments)."""
    ref = np.zeros((24, 24, 24), bool)
    _box(ref, (8, 8, 8), (12, 12, 12))  # cube, 64
    _box(ref, (12, 8, 8), (16, 10, 10))  # tail, 16, touching the cube at x = 12
    _box(ref, (20, 20, 20), (22, 22, 22))  # lone lesion, 8: nothing predicted there
    pred = np.zeros_like(ref)
    _box(pred, (8, 8, 8), (12, 12, 12))  # the cube: 64 true
    _box(pred, (12, 8, 8), (13, 10, 10))  # the tail's first slab: 4 true
    _box(pred, (8, 8, 7), (12, 12, 8))  # a slab under the cube: 16 false, 1 mm from it
    _box(pred, (8, 8, 3), (9, 9, 7))  # a column under the slab: z = 6 is 2 mm away (edge), z = 3-5 farther
    _box(pred, (20, 2, 2), (22, 4, 4))  # a false lesion: 8
    return pred, ref


def test_kinds_by_hand():
    pred, ref = _scene()
    got = error_kinds.error_kinds(pred, ref)
    # tail voxels missed: x = 13 (1 mm from the prediction) and 14 (2 mm) are edge, x = 15 (3 mm) far
    assert got == {
        "tp": 68,
        "fp": 28,
        "fn": 20,
        "false lesion fp": 8,
        "false lesion fn": 0,
        "edge fp": 17,
        "edge fn": 8,
        "missed lesion fp": 0,
        "missed lesion fn": 8,
        "far fp": 3,
        "far fn": 4,
    }
    assert error_kinds.corrected_dice(got) == pytest.approx(136 / 184)
    assert error_kinds.corrected_dice(got, "edge") == pytest.approx(2 * 76 / (2 * 76 + 11 + 12))
    assert error_kinds.corrected_dice(got, "missed lesion") == pytest.approx(2 * 76 / (2 * 76 + 28 + 12))
    assert error_kinds.corrected_dice(got, "false lesion") == pytest.approx(136 / (136 + 20 + 20))
    assert error_kinds.corrected_dice(got, "far") == pytest.approx(2 * 72 / (2 * 72 + 25 + 16))


def test_dice_as_the_evaluation_computes_it(tmp_path):
    """On a generated case, its reference shifted by two voxels and a false blob added: the Dice as predicted is
    the evaluation's WT Dice, and each kind put right lands between it and 1."""
    from brats.data import discover_cases, load_seg
    from brats.evaluate.metrics import region_dice
    from brats.labels import get_scheme, to_classes
    from brats.synth import generate_cohort

    generate_cohort(tmp_path, 1, seed=3, shape=(48, 48, 40))
    case = discover_cases(tmp_path)[0]
    ref = to_classes(load_seg(case), get_scheme("brats2021"))
    pred = np.roll(ref, 2, axis=0)
    pred[:3, :3, :3] = 2
    counts = error_kinds.error_kinds(pred > 0, ref > 0)
    assert counts["fp"] > 0 and counts["fn"] > 0 and counts["false lesion fp"] > 0
    assert error_kinds.corrected_dice(counts) == pytest.approx(region_dice(pred, ref)["WT"])
    for kind in error_kinds.KINDS:
        assert error_kinds.corrected_dice(counts) <= error_kinds.corrected_dice(counts, kind) <= 1.0


def test_spacing_moves_the_edge():
    """On 2 mm slices the slab is still 2 mm from the cube (edge) but the column's first voxel is 4 mm (far)."""
    pred, ref = _scene()
    got = error_kinds.error_kinds(pred, ref, spacing=(1.0, 1.0, 2.0))
    assert (got["edge fp"], got["far fp"]) == (16, 4)
    assert (got["edge fn"], got["far fn"]) == (8, 4)  # the tail runs along x, unchanged


def test_empty_rules():
    empty = np.zeros((6, 6, 6), bool)
    blob = empty.copy()
    _box(blob, (1, 1, 1), (3, 3, 3))
    nothing = error_kinds.error_kinds(empty, empty)
    assert error_kinds.corrected_dice(nothing) == 1.0
    false = error_kinds.error_kinds(blob, empty)
    assert false["false lesion fp"] == 8 and error_kinds.corrected_dice(false) == 0.0
    assert error_kinds.corrected_dice(false, "false lesion") == 1.0
    missed = error_kinds.error_kinds(empty, blob)
    assert missed["missed lesion fn"] == 8 and error_kinds.corrected_dice(missed) == 0.0
    assert error_kinds.corrected_dice(missed, "missed lesion") == 1.0


def test_summary_by_bin_and_share():
    cases = {
        "a": {
            "bin": "free",
            "grown": 1.0,
            "counts": error_kinds.error_kinds(np.ones((2, 2, 2)), np.zeros((2, 2, 2))),
        },
        "b": {"bin": "< 3 mL", "grown": 0.5, "counts": error_kinds.error_kinds(*_scene())},
    }
    s = error_kinds.summarise(cases)
    assert s["bins"]["free"] == {
        "cases": 1,
        "WT": 0.0,
        "false lesion": 1.0,
        "edge": 0.0,
        "missed lesion": 0.0,
        "far": 0.0,
        "grown": 1.0,
    }
    assert s["bins"]["all"]["WT"] == pytest.approx((0 + 136 / 184) / 2)
    assert s["bins"]["all"]["grown"] == 0.75
    assert s["wrong_voxels"] == 8 + 48
    assert s["share"] == pytest.approx(
        {"false lesion": 16 / 56, "edge": 25 / 56, "missed lesion": 8 / 56, "far": 7 / 56}
    )
    text = error_kinds.table({"r": {"result": {"summary": {"select": s}}}})
    assert "| r | select | free | 1 | 0.000 | 1.000 | 0.000 | 0.000 | 0.000 | 1.000 |" in text
    assert (s["edge_fp"], s["edge_fn"], s["far_fp"], s["far_fn"]) == (17, 8, 3, 4)
    assert "| r | select | 56 | 28.6% | 44.6% | 14.3% | 12.5% | 17 / 8 | 3 / 4 |" in text


def test_grown_yardstick_on_a_slab():
    ref = np.zeros((5, 5, 5), bool)
    _box(ref, (0, 0, 2), (5, 5, 3))  # a 5 x 5 slab: grows by one layer on each side in z only
    assert error_kinds.grown_dice(ref) == pytest.approx(2 * 25 / (25 + 75))


def test_reads_a_cohort_and_its_predictions(tmp_path, capsys):
    """Cases of a generated cohort against their own references as predictions: Dice 1, no wrong voxel; a case
    without a prediction is one line naming the file, exit 2, and no result written."""
    import shutil

    from brats.synth import generate_cohort

    root = tmp_path / "runs" / "select-0-2"
    generate_cohort(root / "select", 2, seed=5, shape=(48, 48, 40))
    generate_cohort(root / "select_stress", 1, seed=6, shape=(48, 48, 40), profile="stress")
    run = tmp_path / "run"
    for cohort in error_kinds.COHORTS:
        out = run / f"bench_{cohort}" / "predictions"
        out.mkdir(parents=True)
        for seg in (root / cohort).glob("*/*_seg.nii.gz"):
            shutil.copy(seg, out / seg.name.replace("_seg", ""))
    got = error_kinds.measure(run, root)
    assert set(got["per_case"]["select"]) == {p.name for p in (root / "select").iterdir() if p.is_dir()}
    for cohort in error_kinds.COHORTS:
        assert got["summary"][cohort]["bins"]["all"]["WT"] == 1.0
        assert got["summary"][cohort]["wrong_voxels"] == 0
    json.dumps(got)  # it is saved as JSON
    # a checkpoint newer than the predictions: they belong to an earlier model and are refused
    import os

    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best.pt").write_bytes(b"")
    stale = next((run / "bench_select_stress" / "predictions").iterdir())
    os.utime(stale, (0, 0))
    with pytest.raises(FileNotFoundError, match=f"{stale.name}: older than .*best.pt"):
        error_kinds.measure(run, root)
    stale.touch()
    missing = next((run / "bench_select" / "predictions").iterdir())
    missing.unlink()
    code = error_kinds.main(["--name", "x", "--run", str(run), "--select-root", str(root)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and missing.name in err and "no prediction" in err
    assert not (Path(error_kinds.__file__).parent / "results" / "errors-x.json").exists()


def test_yardstick_reads_references_only(tmp_path, capsys):
    from brats.data import discover_cases, load_seg
    from brats.synth import generate_cohort

    generate_cohort(tmp_path / "cases", 2, seed=5, shape=(48, 48, 40))
    want = [error_kinds.grown_dice(load_seg(c) > 0) for c in discover_cases(tmp_path / "cases")]
    assert error_kinds.main(["--yardstick", str(tmp_path / "cases")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[-1] == f"mean over 2 cases: {np.mean(want):.3f}"
    assert lines[0].endswith(f"grown 1 voxel {want[0]:.3f}")
    assert error_kinds.main(["--yardstick", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err
