"""Faults (issue 17): every bad input or failing environment is one line on stderr, a non-zero exit, no
traceback and no half-written output.

Full disks are simulated by making the NIfTI writer raise ``OSError(ENOSPC)``; Ctrl-C by raising
``KeyboardInterrupt`` inside the prediction / evaluation loop.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brats.cli import main
from brats.config import ConfigError, load_config
from brats.data import CaseError, discover_cases, load_case
from brats.data.validate import validate_cohort
from tests.cohort import make_case
from tests.test_infer import SHAPE, make_checkpoint

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` -> (exit code, stderr); stderr must be one line without a traceback."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return code, err


def leftovers(folder: Path) -> list[str]:
    """Files in ``folder`` that look finished or half-written (anything but folders)."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --------------------------------------------------------------------------------------------------------------
# Config values
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.lr=-1", "train.lr"),
        ("train.lr=0", "train.lr"),
        ("patches.slice_stride=0", "patches.slice_stride"),
        ("patches.slice_stride=-2", "patches.slice_stride"),
        ("patches.background_fraction=-0.5", "patches.background_fraction"),
        ("patches.min_foreground=0", "patches.min_foreground"),
        ("preprocess.percentiles=[99, 1]", "preprocess.percentiles"),
        ("preprocess.percentiles=[-1, 50]", "preprocess.percentiles"),
        ("preprocess.percentiles=[1, 101]", "preprocess.percentiles"),
        ("preprocess.percentiles=[1]", "preprocess.percentiles"),
        ("augment.rescale.percentiles=[50, 50]", "augment.rescale.percentiles"),
        ("train.batch_size=0", "train.batch_size"),
        ("train.epochs=0", "train.epochs"),
        ("train.steps_per_epoch=0", "train.steps_per_epoch"),
        ("train.num_workers=-1", "train.num_workers"),
        ("train.scheduler.factor=1.5", "train.scheduler.factor"),
        ("data.train_fraction=1.2", "data.train_fraction"),
        ("data.val_fraction=-0.1", "data.val_fraction"),
        ("data.n_folds=1", "data.n_folds"),
        ("data.fold=5", "data.fold"),
        ("patches.size=[128, 0]", "patches.size[1]"),
        ("predict.batch_size=0", "predict.batch_size"),
        ("predict.overlap=1.0", "predict.overlap"),
        ("train.lr=.nan", "train.lr"),
    ],
)
def test_out_of_range_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as exc:
        load_config(ROOT / "configs" / "demo.yaml", [override])
    assert key in str(exc.value)


def test_out_of_range_in_a_file_names_file_and_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  lr: -0.001\n")
    with pytest.raises(ConfigError, match=r"'train\.lr' in .*bad\.yaml: must be > 0, got -0\.001"):
        load_config(p)


def test_null_optional_values_pass_their_range():
    cfg = load_config(None, ["train.steps_per_epoch=null", "train.max_minutes=null", "data.fold=null"])
    assert cfg.train.steps_per_epoch is None and cfg.data.fold is None


@pytest.mark.parametrize("override", ["train.lr=[1, 2", "train.lr={a: 1", "=3", "train..lr=1", "train.lr"])
def test_malformed_set_is_an_error(override, capsys):
    with pytest.raises(ConfigError, match="--set"):
        load_config(None, [override])
    code, err = run_cli(capsys, ["train", "--config", str(ROOT / "configs" / "demo.yaml"), "--set", override])
    assert code == 1 and err.startswith("error: --set")


def test_cli_range_error_is_one_line(capsys):
    code, err = run_cli(
        capsys, ["train", "--config", str(ROOT / "configs" / "demo.yaml"), "--set", "train.lr=-1"]
    )
    assert code == 1 and "train.lr" in err and "-1" in err


# --------------------------------------------------------------------------------------------------------------
# NaN / Inf voxels
# --------------------------------------------------------------------------------------------------------------


def poison(folder: Path, modality_suffix: str, value: float) -> Path:
    path = next(folder.glob(f"*_{modality_suffix}.nii.gz"))
    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    data[5, 6, 3] = value
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(path))
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_are_a_validate_problem(tmp_path, value, capsys):
    make_case(tmp_path, 0, shape=SHAPE)
    bad = poison(make_case(tmp_path, 1, shape=SHAPE), "flair", value)
    report = validate_cohort(tmp_path)
    problems = report["problems"]
    assert [p["file"] for p in problems] == [str(bad)]
    assert "NaN" in problems[0]["problem"] and "(5, 6, 3)" in problems[0]["problem"]
    capsys.readouterr()
    assert main(["validate", str(tmp_path)]) == 1
    assert f"{bad}: 1 NaN" in capsys.readouterr().out or np.isinf(value)


def test_non_finite_voxels_stop_predict_naming_the_file(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "m.pt")
    bad = poison(make_case(tmp_path / "cases", 0, shape=SHAPE, seg=False), "t1", np.nan)
    with pytest.raises(CaseError, match="NaN"):
        load_case(discover_cases(tmp_path / "cases")[0])
    out = tmp_path / "out"
    code, err = run_cli(
        capsys,
        ["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "cases"), "--output", str(out)],
    )
    assert code == 1 and str(bad) in err and "NaN" in err
    assert leftovers(out) == []


# --------------------------------------------------------------------------------------------------------------
# Output paths, full disk, Ctrl-C
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def predict_setup(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt")
    for i in range(2):
        make_case(tmp_path / "cases", i, shape=SHAPE, seg=True)
    return ckpt, tmp_path / "cases"


def predict_argv(ckpt: Path, cases: Path, out: Path) -> list[str]:
    return [
        "predict",
        "--checkpoint",
        str(ckpt),
        "--input",
        str(cases),
        "--output",
        str(out),
        "--precision",
        "fp32",
    ]


def test_output_that_is_a_file(tmp_path, predict_setup, capsys):
    ckpt, cases = predict_setup
    out = tmp_path / "taken"
    out.write_text("keep me")
    code, err = run_cli(capsys, predict_argv(ckpt, cases, out))
    assert code == 1 and str(out) in err and "is a file" in err
    assert out.read_text() == "keep me"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_output_folder(tmp_path, predict_setup, capsys):
    ckpt, cases = predict_setup
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o500)
    try:
        code, err = run_cli(capsys, predict_argv(ckpt, cases, out))
    finally:
        out.chmod(0o700)
    assert code == 1 and str(out) in err and "not writable" in err


def test_unwritable_output_folder_checked_by_access(tmp_path, predict_setup, capsys, monkeypatch):
    """The same check as above, also under root (``os.access`` reports the folder read-only)."""
    ckpt, cases = predict_setup
    out = tmp_path / "locked"
    out.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == out else real(p, mode, **kw))
    code, err = run_cli(capsys, predict_argv(ckpt, cases, out))
    assert code == 1 and str(out) in err and "not writable" in err


def test_full_disk_while_writing_a_prediction(tmp_path, predict_setup, capsys, monkeypatch):
    ckpt, cases = predict_setup
    out = tmp_path / "out"

    def full_disk(img, filename):
        Path(filename).write_bytes(b"\x00" * 100)  # a partial file, as a real full disk leaves one
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))

    monkeypatch.setattr(nib, "save", full_disk)
    code, err = run_cli(capsys, predict_argv(ckpt, cases, out))
    assert code == 1 and str(out) in err and "No space left on device" in err
    assert leftovers(out) == []


def test_ctrl_c_during_predict(tmp_path, predict_setup, capsys, monkeypatch):
    ckpt, cases = predict_setup
    out = tmp_path / "out"
    import brats.predict.predictor as predictor

    real, calls = predictor.predict_volume, []

    def interrupt_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(predictor, "predict_volume", interrupt_second)
    code, err = run_cli(capsys, predict_argv(ckpt, cases, out))
    assert code == 130 and "interrupted" in err and str(out) in err and "1 of 2" in err
    assert leftovers(out) == ["BraTS2021_00000.nii.gz"]  # the finished case only, nothing half-written


def test_ctrl_c_during_evaluate(tmp_path, predict_setup, capsys, monkeypatch):
    ckpt, cases = predict_setup
    pred = tmp_path / "pred"
    assert main(predict_argv(ckpt, cases, pred)) == 0
    capsys.readouterr()
    import brats.evaluate.cohort as cohort

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cohort, "evaluate_case", interrupt)
    out = tmp_path / "eval"
    code, err = run_cli(capsys, ["evaluate", "--pred", str(pred), "--ref", str(cases), "--out", str(out)])
    assert code == 130 and "interrupted" in err and str(out) in err
    assert leftovers(out) == []


def test_full_disk_while_writing_evaluation(tmp_path, predict_setup, capsys, monkeypatch):
    ckpt, cases = predict_setup
    pred = tmp_path / "pred"
    assert main(predict_argv(ckpt, cases, pred)) == 0
    capsys.readouterr()
    import brats.fs as fs

    def full_disk(self, text, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(fs.Path, "write_text", full_disk)
    out = tmp_path / "eval"
    code, err = run_cli(capsys, ["evaluate", "--pred", str(pred), "--ref", str(cases), "--out", str(out)])
    assert code == 1 and str(out) in err and "No space left on device" in err
    assert leftovers(out) == []


# --------------------------------------------------------------------------------------------------------------
# Progress: a bar on a terminal, plain lines in a log
# --------------------------------------------------------------------------------------------------------------


def test_progress_writes_plain_lines_when_not_a_terminal(caplog, monkeypatch):
    import brats.progress as progress

    ticks = iter(range(0, 1000, 10))  # every call of the clock advances 10 s
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(ticks)))
    with caplog.at_level("INFO", logger="brats.progress"):
        out = list(progress.track(range(5), desc="predict", unit="case", every=25, terminal=False))
    assert out == list(range(5))
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all("\r" not in line for line in lines)
    assert lines[0].startswith("predict: 3/5 case (60%)") and lines[-1].startswith("predict: 5/5 case (100%)")


def test_progress_is_silent_when_disabled(caplog, capsys):
    import brats.progress as progress

    with caplog.at_level("INFO", logger="brats.progress"):
        assert list(progress.track([1, 2], enabled=False, every=0)) == [1, 2]
    assert caplog.records == [] and capsys.readouterr().err == ""


def test_evaluate_output_that_is_a_file(tmp_path, predict_setup, capsys):
    ckpt, cases = predict_setup
    pred = tmp_path / "pred"
    assert main(predict_argv(ckpt, cases, pred)) == 0
    capsys.readouterr()
    out = tmp_path / "taken"
    out.write_text("keep me")
    code, err = run_cli(capsys, ["evaluate", "--pred", str(pred), "--ref", str(cases), "--out", str(out)])
    assert code == 1 and str(out) in err
    assert out.read_text() == "keep me"
