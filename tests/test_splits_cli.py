"""Held-out protocol end to end on a tiny run: extract + train (as tools/extract_patches.py and tools/train.py do),
then ``predict --run --split``, ``evaluate --run --split`` (legacy + lesion-wise columns) and ``tune-postprocess``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from brats.checkpoint import read_checkpoint
from brats.cli import main
from brats.config import save_config
from brats.data import discover_cases, load_geometry, load_label_file, load_seg
from brats.demo import demo_config
from brats.evaluate.lesionwise import LESION_COLUMNS, lesion_metrics
from brats.labels import to_classes
from brats.predict.predictor import settings_from_checkpoint
from brats.synth import generate_cohort

SHAPE = (64, 64, 40)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """8 synthetic cases split 4 train / 2 val / 2 test; 2 training steps."""
    base = tmp_path_factory.mktemp("splitrun")
    out = base / "run"
    cfg = demo_config(out, shape=SHAPE, max_steps=2)
    generate_cohort(cfg.data.root, n_cases=8, seed=3, shape=SHAPE, workers=1, progress=False)
    config = save_config(cfg, base / "tiny.yaml")
    sets = ["--set", "data.train_fraction=0.5", "--set", "data.val_fraction=0.25"]
    assert main(["-q", "extract", "--config", str(config), *sets]) == 0
    assert main(["-q", "train", "--config", str(config), *sets]) == 0
    splits = json.loads((out / "splits.json").read_text())
    assert [len(splits[s]) for s in ("train", "val", "test")] == [4, 2, 2]
    return out


def _splits(run: Path) -> dict:
    return json.loads((run / "splits.json").read_text())


def test_predict_split_writes_exactly_the_test_cases(run, tmp_path):
    out = tmp_path / "pred"
    assert main(["-q", "predict", "--run", str(run), "--split", "test", "--output", str(out)]) == 0
    test_ids = _splits(run)["test"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{cid}.nii.gz" for cid in test_ids)


def test_evaluate_split_lesion_columns_equal_lesion_metrics(run, tmp_path):
    pred = tmp_path / "pred"
    ckpt = run / "checkpoints" / "best.pt"
    assert (
        main(
            [
                "-q",
                "predict",
                "--checkpoint",
                str(ckpt),
                "--run",
                str(run),
                "--split",
                "val",
                "--output",
                str(pred),
            ]
        )
        == 0
    )
    cases = {c.case_id: c for c in discover_cases(_splits(run)["root"])}
    for variant in ("official", "2023"):
        out = tmp_path / f"eval_{variant}"
        argv = ["-q", "evaluate", "--pred", str(pred), "--run", str(run), "--split", "val", "--out", str(out)]
        assert main([*argv, "--lesion-variant", variant]) == 0
        with open(out / "cases.csv") as f:
            rows = list(csv.DictReader(f))
        assert [r["case"] for r in rows] == _splits(run)["val"]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["split"] == "val" and summary["lesionwise"]["variant"] == variant
        for r in rows:
            case = cases[r["case"]]
            ref = to_classes(load_seg(case), case.label_scheme)
            p = to_classes(load_label_file(pred / f"{case.case_id}.nii.gz"), case.label_scheme)
            expected = lesion_metrics(p, ref, load_geometry(case.seg).spacing, variant)
            for col in LESION_COLUMNS:
                got, want = float(r[col]), float(expected[col])
                assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-7), col
        for region in ("ET", "TC", "WT"):
            dice = [float(r[f"{region}_lesion_dice"]) for r in rows]
            ok = [d for d in dice if not math.isnan(d)]
            got = summary["lesionwise"][region]["dice"]["mean"]
            assert (got is None and not ok) or got == pytest.approx(float(np.mean(ok)))
            assert summary["lesionwise"][region]["fp"]["sum"] == sum(
                int(r[f"{region}_lesion_fp"]) for r in rows
            )


def test_tune_postprocess_stores_the_validation_choice(run, tmp_path):
    ckpt = tmp_path / "tuned.pt"
    ckpt.write_bytes((run / "checkpoints" / "best.pt").read_bytes())
    assert main(["-q", "tune-postprocess", "--run", str(run), "--checkpoint", str(ckpt)]) == 0
    doc = json.loads((run / "postprocess.json").read_text())
    assert doc["val_cases"] == _splits(run)["val"] and doc["source"] == "validation"
    assert len(doc["sweep"]) == len(doc["grid"]["min_component_ml"]) * len(doc["grid"]["et_min_ml"])
    best = max(r["objective"] for r in doc["sweep"])
    assert doc["score"] == best
    chosen = [r for r in doc["sweep"] if r["objective"] == best]
    assert (doc["et_min_ml"], doc["min_component_ml"]) == min(
        (r["et_min_ml"], r["min_component_ml"]) for r in chosen
    )
    stored = read_checkpoint(ckpt)
    assert stored.postprocess["min_component_ml"] == doc["min_component_ml"]
    assert stored.postprocess["sweep"] == doc["sweep"]
    assert stored.training is not None  # the resume state survives the rewrite
    settings = settings_from_checkpoint(stored)
    assert (settings.min_component_ml, settings.et_min_ml) == (doc["min_component_ml"], doc["et_min_ml"])
    over = settings_from_checkpoint(stored, min_component_ml=0.0, et_min_ml=3.0)
    assert (over.min_component_ml, over.et_min_ml) == (0.0, 3.0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "--run", "RUN", "--output", "O"], "--split"),
        (["predict", "--run", "RUN", "--split", "test", "--input", "X", "--output", "O"], "not both"),
        (["predict", "--checkpoint", "C", "--output", "O"], "give --input"),
        (["evaluate", "--pred", "P"], "give --ref"),
        (
            ["predict", "--input", "X", "--data-root", "D", "--output", "O", "--checkpoint", "C"],
            "--data-root",
        ),
    ],
)
def test_bad_source_options_are_one_line(argv, message, capsys, tmp_path):
    argv = [a.replace("RUN", str(tmp_path)) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_missing_data_root_and_moved_cases(run, tmp_path, capsys):
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "splits.json").write_text(json.dumps({**_splits(run), "root": str(tmp_path / "gone")}))
    out = tmp_path / "o"
    argv = [
        "predict",
        "--checkpoint",
        str(run / "checkpoints" / "best.pt"),
        "--run",
        str(moved),
        "--split",
        "test",
    ]
    assert main([*argv, "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gone" in err[0] and "--data-root" in err[0]
    assert not out.exists()
    # --data-root pointing at a folder that lacks the split's cases: names them
    empty = tmp_path / "other"
    generate_cohort(empty, n_cases=1, seed=9, shape=(32, 32, 16), workers=1, progress=False, naming="2023")
    assert main([*argv, "--output", str(out), "--data-root", str(empty)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and _splits(run)["test"][0] in err[0] and "not found" in err[0]


def test_checkpoint_with_voxel_thresholds_reads_as_ml(run, tmp_path):
    """Checkpoints written before thresholds were in mL held voxel counts on BraTS's 1 mm grid."""
    raw = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    raw["config"]["predict"]["postprocess"] = {"min_component": 200, "et_min_voxels": 500}
    raw["postprocess"] = {"min_component": 200, "et_min_voxels": 500}
    old = tmp_path / "old.pt"
    torch.save(raw, old)
    ckpt = read_checkpoint(old)
    assert ckpt.config.predict.postprocess.min_component_ml == pytest.approx(0.2)
    assert ckpt.postprocess == {"min_component_ml": pytest.approx(0.2), "et_min_ml": pytest.approx(0.5)}
