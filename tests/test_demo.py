"""End to end: the demo at a tiny size (4 small cases, 3 training steps) writes every artefact."""

import dataclasses
import json

import nibabel as nib
import numpy as np

from brats.cli import main
from brats.demo import demo_config
from brats.synth import get_profile


def test_demo_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--output-dir",
            str(out),
            "--cases",
            "4",
            "--shape",
            "64",
            "64",
            "40",
            "--max-steps",
            "3",
            "--stress-cases",
            "2",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "report.html" in printed and "itksnap" in printed
    assert "test Dice:" in printed and "stress Dice:" in printed and "lesion-wise WT F1" in printed
    # configs/demo.yaml keeps its post-processing (chosen on the selection cohorts): no tuning on 4 cases
    assert "post-processing from the config (predict.postprocess.tune: false)" in printed
    assert not (out / "postprocess.json").exists()
    from brats.checkpoint import read_checkpoint

    pp = read_checkpoint(out / "checkpoints" / "best.pt").postprocess
    want = demo_config(out).predict.postprocess
    assert pp == {
        "min_component_ml": want.min_component_ml,
        "et_min_ml": want.et_min_ml,
        "core_min_ml": want.core_min_ml,
        "fragment_ml": want.fragment_ml,
        "source": "config",
    }

    # --max-steps: the budget is not fitted to the demo's 15 minutes
    assert json.loads((out / "demo.json").read_text())["train_budget"] is None
    assert "training budget" in (out / "report.html").read_text()
    assert "cut so that the demo ends" not in (out / "report.html").read_text()
    splits = json.loads((out / "splits.json").read_text())
    for path in [
        "patches/train.h5",
        "patches/val.h5",
        "config.yaml",
        "metrics.csv",
        "curves.png",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "evaluation/cases.csv",
        "evaluation/summary.json",
        "report.html",
        "demo.json",
    ]:
        assert (out / path).is_file(), path
    html = (out / "report.html").read_text()
    assert f"core_min_ml {want.core_min_ml:g}, fragment_ml {want.fragment_ml:g} (from the config)" in html
    assert splits["test"], "the tiny demo must keep a test case"
    for cid in splits["test"]:
        pred = out / "predictions" / f"{cid}.nii.gz"
        ref = nib.load(next((out / "cases" / cid).glob("*_flair.nii.gz")))
        img = nib.load(pred)
        assert img.shape == ref.shape and np.array_equal(img.affine, ref.affine)
        assert set(np.unique(np.asarray(img.dataobj))) <= {0, 1, 2, 4}
        assert cid in html
        assert (out / "figures" / f"{cid}.png").is_file()
    assert html.count("data:image/png;base64,") >= 1 + len(splits["test"])  # curves + overlays
    for name in ("WT", "TC", "ET", "NCR", "ED"):
        assert f">{name}<" in html
    # the stress cohort: its own cases (stress profile, seed + 1000), predicted, scored, reported beside the test
    stress_ids = sorted(p.name for p in (out / "stress" / "cases").iterdir())
    assert len(stress_ids) == 2
    assert sorted(p.name for p in (out / "stress" / "predictions").glob("*.nii.gz")) == [
        f"{c}.nii.gz" for c in stress_ids
    ]
    assert (out / "stress" / "evaluation" / "summary.json").is_file()
    result = json.loads((out / "demo.json").read_text())
    # the demo cohort's profile is recorded: train with twice its non-enhancing tumours (brats synth keeps 4)
    assert result["synth_profile"]["name"] == "train+non_enhancing_per_20"
    assert result["synth_profile"]["non_enhancing_per_20"] == 8
    assert get_profile("train").non_enhancing_per_20 == 4
    # every other setting is the train profile's
    train = json.loads(json.dumps(dataclasses.asdict(get_profile("train"))))
    assert result["synth_profile"] | {"name": "train", "non_enhancing_per_20": 4} == train
    for cohort in ("test", "stress"):
        assert set(result[f"{cohort}_dice"]) == {"NCR", "ED", "ET", "TC", "WT"}
        assert "WT_f1" in result[f"{cohort}_lesion"]
        summary = json.loads(
            (out / ("" if cohort == "test" else "stress") / "evaluation" / "summary.json").read_text()
        )
        per_case = summary["per_case"]["WT"]["dice"]
        assert result[f"{cohort}_cases"] == summary["n_cases"] == per_case["count"]
        assert result[f"{cohort}_wt_median"] == per_case["median"]
        line = next(x for x in printed.splitlines() if x.startswith(f"{cohort} Dice:"))
        # the mean's bootstrap interval where there are two cases or more (the stress cohort's 2), none for one
        assert result[f"{cohort}_wt_ci95"] == per_case["ci95"]
        if per_case["count"] < 2:
            assert per_case["ci95"] is None
            assert f"(means of {summary['n_cases']} cases; WT median {per_case['median']:.3f})" in line
            continue
        low, high = per_case["ci95"]
        assert low <= per_case["mean"] <= high
        assert (
            f"(means of {summary['n_cases']} cases, WT 95 % CI {low:.3f}-{high:.3f}; "
            f"WT median {per_case['median']:.3f})" in line
        )
        assert f"<small>[{low:.3f}, {high:.3f}]</small>" in html
    assert result["stress_wt_ci95"] is not None  # the interval's branch ran
    assert "Test split and stress cohort" in html and "WT lesion-wise F1" in html
    assert "http://" not in html and "https://" not in html  # renders offline
