"""End to end on a tiny synthetic kaggle_3m cohort: synth -> extract -> train -> predict (NIfTI + TIFF) -> evaluate."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from PIL import Image

from brats.checkpoint import read_checkpoint
from brats.cli import main
from brats.config import load_config
from brats.data import discover_cases, load_seg
from brats.predict.gate import predict_gated
from brats.predict.predictor import load_predictor
from brats.train.classifier import train_slice_classifier


def test_lgg_pipeline(tmp_path, capsys):
    cases, run = tmp_path / "kaggle_3m", tmp_path / "run"
    assert (
        main(["synth", str(cases), "--naming", "kaggle_3m", "--cases", "4", "--shape", "32", "32", "24"]) == 0
    )
    sets = [
        f"output_dir={run}",
        f"data.root={cases}",
        "data.train_fraction=0.5",
        "data.val_fraction=0.25",
        "patches.size=[128,128]",
        "patches.stride=[128,128]",
        "model.encoder=resnet18",
        "model.decoder_channels=[32,16,16,8,8]",
        "train.epochs=1",
        "train.steps_per_epoch=2",
        "train.batch_size=2",
        "train.val_max_batches=1",
        "train.num_threads=1",
    ]
    args = ["--config", "configs/lgg.yaml", *(x for s in sets for x in ("--set", s))]
    assert main(["extract", *args]) == 0
    splits = json.loads((run / "splits.json").read_text())
    assert splits["label_scheme"] == "binary" and splits["naming"] == "kaggle_3m"
    assert main(["train", *args]) == 0
    ckpt = read_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt.classes == 2 and ckpt.label_scheme.name == "binary"
    assert ckpt.modalities == ["t1", "flair", "t1ce"]
    # two-stage: a slice classifier trained on the same store gates the segmenter
    classifier, info = train_slice_classifier(load_config("configs/lgg.yaml", sets), steps=2, batch_size=2)
    assert info["steps"] == 2
    model, settings = load_predictor(run / "checkpoints" / "last.pt", device="cpu")
    case = discover_cases(cases)[0]
    classes, tumour, slice_prob = predict_gated(model, classifier, case, settings, threshold=1.1)
    n = load_seg(case).shape[2]
    assert classes.shape == tumour.shape == (256, 256, n) and slice_prob.shape == (n,)
    assert not classes.any() and not tumour.any()  # threshold above 1: every slice gated off
    pred = run / "pred"
    common = ["--checkpoint", str(run / "checkpoints" / "last.pt"), "--input", str(cases), "--device", "cpu"]
    assert main(["predict", *common, "--output", str(pred), "--probabilities", "--format", "tif"]) == 0
    for case in discover_cases(cases):
        img = nib.load(str(pred / f"{case.case_id}.nii.gz"))
        data = np.asarray(img.dataobj)
        assert data.shape == load_seg(case).shape and data.shape[:2] == (256, 256)
        assert set(np.unique(data)) <= {0, 1}
        assert nib.aff2axcodes(img.affine) == ("P", "L", "S")
        tif = np.stack(
            [
                np.asarray(Image.open(pred / case.case_id / f"{case.case_id}_{k + 1}_mask.tif"))
                for k in range(data.shape[2])
            ],
            axis=-1,
        )
        np.testing.assert_array_equal(tif, data * 255)
    capsys.readouterr()
    assert main(["evaluate", "--pred", str(pred), "--ref", str(cases), "--out", str(run / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "detection (max tumour probability)" in printed and "patient" in printed
    summary = json.loads((run / "eval" / "summary.json").read_text())
    assert summary["scheme"] == "binary" and summary["n_cases"] == 4
    for unit in ("slice", "patient"):
        assert {"sensitivity", "specificity", "precision", "f1", "auc"} <= set(summary["detection"][unit])
    assert summary["detection"]["patient"]["n"] == 4
    header = (run / "eval" / "cases.csv").read_text().splitlines()[0]
    assert header.startswith("case,tumour_dice,") and "slice_fp" in header
    # --format tif needs kaggle_3m cases: one line naming the option, non-zero exit, nothing written
    brats = tmp_path / "brats"
    assert main(["synth", str(brats), "--cases", "1", "--shape", "32", "32", "24"]) == 0
    capsys.readouterr()
    out = tmp_path / "pred_brats"
    assert main(["predict", *common[:2], "--input", str(brats), "--output", str(out), "--format", "tif"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--format tif" in err[0] and not out.exists()
