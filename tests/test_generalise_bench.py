"""bench/generalise.py's --predict settings: parsed as YAML values, unknown keys refused with the valid ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import generalise  # noqa: E402
import generalise_table  # noqa: E402


def test_parse_predict_reads_yaml_values():
    got = generalise.parse_predict(["windows=patch", "tta=true", "overlap=0.25", "et_min_ml=0"])
    assert got == {"windows": "patch", "tta": True, "overlap": 0.25, "et_min_ml": 0}
    assert generalise.parse_predict([]) == {}


@pytest.mark.parametrize("item", ["windows", "device=cuda", "=patch"])
def test_parse_predict_refuses_unknown_keys(item):
    with pytest.raises(ValueError, match="KEY one of windows, tta"):
        generalise.parse_predict([item])


def test_every_predict_key_is_a_run_predict_keyword():
    import inspect

    from brats.predict import run_predict

    assert set(generalise.PREDICT_KEYS) <= set(inspect.signature(run_predict).parameters)


def _rec(select: float, stress: float, val: tuple[float, float, float]) -> dict:
    dice = dict(zip(("WT", "TC", "ET"), val))
    return {
        "result": {
            "select": {"WT": select, "TC": select, "ET": select},
            "select_stress": {"WT": stress, "TC": stress, "ET": stress},
            "val": dice,
        }
    }


def test_seed_means_hand_computed():
    # selection means 0.5 and 0.3 -> 0.4; select objectives 0.6 and 0.2 -> 0.4; val means 0.6 and 0.9 -> 0.75
    recs = {"a": _rec(0.6, 0.4, (0.5, 0.6, 0.7)), "a-s1": _rec(0.2, 0.4, (0.9, 0.9, 0.9))}
    line = generalise_table.seed_means(recs, ["a=a,a-s1"])
    assert line == "a (mean of 2: a, a-s1): selection mean 0.400, select objective 0.400, val mean 0.750"
    # the objective is select's alone: select 0.9 and select_stress 0.1 -> selection mean 0.5, objective 0.9
    assert "selection mean 0.500, select objective 0.900" in generalise_table.seed_means(
        {"b": _rec(0.9, 0.1, (0.5, 0.5, 0.5))}, ["b=b"]
    )
    assert generalise_table.seed_means(recs, []) == ""


@pytest.mark.parametrize("group", ["a", "a=", "a=a,b"])
def test_seed_means_refuses_bad_groups(group):
    with pytest.raises(ValueError, match="expected NAME=R1,R2"):
        generalise_table.seed_means({"a": _rec(0.5, 0.5, (0.5, 0.5, 0.5))}, [group])


def test_pooled_precision_recall_from_an_evaluation(tmp_path):
    """From a real evaluation of a synthetic case: a prediction that calls the whole tumour core background keeps
    WT precision 1 and lowers WT recall to the edema's share; TC and ET recall are 0."""
    import nibabel as nib
    import numpy as np

    from brats.evaluate import run_evaluate
    from brats.synth import generate_cohort

    folder = generate_cohort(tmp_path / "cases", 1, seed=0, shape=(64, 64, 40))[0]
    seg_img = nib.load(folder / f"{folder.name}_seg.nii.gz")
    ref = np.asarray(seg_img.dataobj)
    core, wt = int(np.isin(ref, (1, 4)).sum()), int((ref > 0).sum())
    assert core > 0 and wt > core  # the case has edema and a core
    pred = np.where(np.isin(ref, (1, 4)), 0, ref).astype(np.uint8)
    (tmp_path / "pred").mkdir()
    nib.save(
        nib.Nifti1Image(pred, seg_img.affine, seg_img.header), tmp_path / "pred" / f"{folder.name}.nii.gz"
    )
    summary = run_evaluate(pred_dir=tmp_path / "pred", ref_root=tmp_path / "cases", out_dir=tmp_path / "eval")
    got = generalise.pooled_precision_recall(summary)
    assert got["WT"] == {"precision": 1.0, "recall": round((wt - core) / wt, 4)}
    assert got["TC"]["recall"] == 0.0 and got["ET"]["recall"] == 0.0
    conf = generalise.confusion_fractions(summary)
    # every core voxel went to background; edema stayed edema
    assert conf["NCR"]["background"] == 1.0 and conf["ET"]["background"] == 1.0
    assert conf["ED"]["ED"] == 1.0 and conf["background"]["background"] == 1.0
    assert generalise.confusion_fractions({"pooled": {}}) is None


@pytest.mark.parametrize(
    ("extra", "item", "message"),
    [
        ([], "nope", "--profile-set 'nope': expected KEY=VALUE"),
        ([], "nope=1", "synth setting 'nope' is not one of"),
        (["--score-run", "somewhere"], "p_second=0.5", "--score-run trains nothing"),
    ],
)
def test_bad_profile_setting_is_one_line_before_anything_runs(tmp_path, capsys, extra, item, message):
    with pytest.raises(SystemExit) as exit_info:
        generalise.main(["--name", "x", "--output-dir", str(tmp_path / "run"), "--profile-set", item, *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _result(select: dict[str, float], stress: dict[str, float]) -> dict:
    def cohort(values):
        return {"per_case": {c: {"WT": v, "TC": v, "ET": v, "WT_ml": 1.0} for c, v in values.items()}}

    return {"result": {"select": cohort(select), "select_stress": cohort(stress)}}


def test_paired_difference_by_hand_and_its_interval():
    import paired_diff

    recs = {
        "b0": _result({"a": 0.5, "b": 0.7}, {"x": 0.2, "y": 0.4}),
        "a0": _result({"a": 0.6, "b": 0.9}, {"x": 0.2, "y": 0.4}),  # select +0.1, +0.2; stress 0
        "b1": _result({"c": 0.5}, {"z": 0.5}),
        "a1": _result({"c": 0.4}, {"z": 0.5}),  # select -0.1
    }
    pairs = [
        paired_diff._differences(recs["a0"]["result"], recs["b0"]["result"], "t"),
        paired_diff._differences(recs["a1"]["result"], recs["b1"]["result"], "t"),
    ]
    out = paired_diff.paired_diff(pairs)
    # seed 0: select +0.15, selection mean +0.075; seed 1: select -0.1, selection mean -0.05
    assert out["per_seed"] == [0.075, -0.05]
    assert out["selection_mean"][0] == pytest.approx(0.0125)
    assert out["select_objective"][0] == pytest.approx(0.025)
    lo, hi = out["selection_mean"][1:]
    # resampling seed 0's two select cases gives +0.1, +0.15 or +0.2 (seed 1 has one case): the interval's ends
    assert lo == pytest.approx((0.05 - 0.05) / 2) and hi == pytest.approx((0.1 - 0.05) / 2)
    assert paired_diff.paired_diff(pairs) == out  # a fixed generator: the same line every time
    line = paired_diff.paired_lines(recs, ["a=a0,a1", "b=b0,b1"], ["a:b"])
    assert line.startswith("a - b (2 paired seed(s), 6 cases): selection mean +0.013")
    assert "per seed +0.075, -0.050" in line


def test_paired_difference_refuses_results_of_different_cohorts():
    import paired_diff

    recs = {"a": _result({"p": 0.5}, {"q": 0.5}), "b": _result({"r": 0.5}, {"q": 0.5})}
    with pytest.raises(ValueError, match="different select cases"):
        paired_diff.paired_lines(recs, ["x=a", "y=b"], ["x:y"])
    with pytest.raises(ValueError, match="expected ARM:BASE"):
        paired_diff.paired_lines(recs, ["x=a", "y=b"], ["x-y"])


def test_size_bins_by_hand():
    import size_bins

    def case(wt, ml):
        return {"WT": wt, "TC": wt, "ET": wt, "WT_ml": ml}

    per_case = {
        "e": case(1.0, 0.0),
        "s1": case(0.4, 0.5),
        "s2": case(0.8, 2.99),
        "m": case(0.7, 3.0),
        "l": case(0.9, 250.0),
    }
    assert size_bins.size_bins(per_case) == {
        "free": (1.0, 1),
        "< 3 mL": (pytest.approx(0.6), 2),
        "3-20 mL": (0.7, 1),
        ">= 20 mL": (0.9, 1),
    }
    rec = {
        "result": {"select": {"per_case": per_case}, "select_stress": {"per_case": {"x": case(0.0, 10.0)}}}
    }
    table = size_bins.size_table({"r": rec}).splitlines()
    assert table[0].startswith("| result | select free | select < 3 mL |")
    assert table[2] == "| r | 1.000 (1) | 0.600 (2) | 0.700 (1) | 0.900 (1) | - | - | 0.000 (1) | - |"
    with pytest.raises(ValueError, match="no per-case scores for 'select_stress'"):
        size_bins.size_table({"r": {"result": {"select": {"per_case": per_case}}}})


def test_own_scores_older_than_the_checkpoint_are_not_reused(tmp_path):
    """A cohort's evaluation written before the run's checkpoint (e.g. a stress folder linked from another run)
    is another model's: score_run must predict again rather than report it."""
    import os

    run = tmp_path / "run"
    summary = run / "stress" / "evaluation" / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text('{"mean": {"WT": 0.5}}')
    ckpt = run / "checkpoints" / "best.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights")
    os.utime(summary, (1_000_000, 1_000_000))
    os.utime(ckpt, (2_000_000, 2_000_000))
    assert generalise._scored(run, "stress", run / "stress" / "cases", ckpt) is None
    os.utime(summary, (3_000_000, 3_000_000))
    own = generalise._scored(run, "stress", run / "stress" / "cases", ckpt)
    assert own is not None and own["summary"] == {"mean": {"WT": 0.5}}
    assert generalise._scored(run, "test", run / "cases") is None  # nothing written
