"""Training engine on tiny HDF5 stores: outputs, resume == uninterrupted, overfitting, budgets, errors."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from brats.checkpoint import read_checkpoint
from brats.cli import main as cli_main
from brats.config import config_from_dict, config_to_yaml
from brats.devices import resolve_device
from brats.errors import BratsError
from brats.extract import StoreWriter, store_attrs
from brats.networks import model_from_checkpoint
from brats.train import (
    METRIC_COLUMNS,
    Runtime,
    Trainer,
    TrainError,
    read_metrics_csv,
    resolve_amp,
    run_training,
    train_loader,
)
from brats.train.swa import averaged_steps, build_average, load_average

torch.set_num_threads(1)

SIZE = 32
MODEL = {"encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 8]}


def make_patches(n: int, seed: int, et: int = 4, channels: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``n`` patches (C, 32, 32) with a disc tumour (ED ring, ET, NCR core) whose intensity depends on the class."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    brain = np.hypot(xx - SIZE / 2, yy - SIZE / 2) < SIZE * 0.45
    images = np.zeros((n, channels, SIZE, SIZE), np.float32)
    labels = np.zeros((n, SIZE, SIZE), np.uint8)
    for i in range(n):
        cx, cy = rng.integers(11, SIZE - 11, 2)
        d = np.hypot(xx - cx, yy - cy)
        r = rng.uniform(5, 8)
        cls = np.select([d < 0.3 * r, d < 0.6 * r, d < r], [1, 3, 2], 0) * brain
        labels[i] = np.where(cls == 3, et, cls)
        for c in range(channels):
            images[i, c] = (rng.normal(0, 0.2, (SIZE, SIZE)) + 0.5 + cls * (0.4 + 0.3 * c)) * brain
    return images, labels


def write_store(path: Path, images: np.ndarray, labels: np.ndarray, et: int = 4, modalities=None) -> Path:
    modalities = modalities or ["t1", "t1ce", "t2", "flair"]
    cfg = config_from_dict(
        {"data": {"modalities": modalities}, "patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]}}
    )
    attrs = store_attrs(cfg, "brats2021" if et == 4 else "brats2023")
    path.parent.mkdir(parents=True, exist_ok=True)
    with StoreWriter(path, images.shape[1], (SIZE, SIZE), attrs=attrs) as w:
        w.add_case("case0", images, labels, np.zeros((len(images), 3), np.int32))
    return path


def make_run(out: Path, n_train: int = 12, n_val: int = 4, et: int = 4) -> Path:
    write_store(out / "patches" / "train.h5", *make_patches(n_train, 0, et), et=et)
    write_store(out / "patches" / "val.h5", *make_patches(n_val, 1, et), et=et)
    return out


def tiny_config(out: Path, **train):
    return config_from_dict(
        {
            "output_dir": str(out),
            "seed": 3,
            "patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]},
            "model": MODEL,
            # elastic grid suited to 32-voxel patches
            "augment": {"elastic": {"num_control_points": 5, "max_displacement": 3.0}},
            "train": {"epochs": 2, "batch_size": 4, "num_workers": 0, **train},
        }
    )


def state_of(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path).weights


def test_run_writes_outputs_then_resumes_from_the_cli(tmp_path):
    out = make_run(tmp_path / "run")
    cfg = tiny_config(out, steps_per_epoch=2)
    result = run_training(cfg, progress=False)
    assert result["epochs_run"] == 2 and result["epoch"] == 2 and not result["stopped_early"]
    for name in ("metrics.csv", "curves.png", "config.yaml", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]  # no temp files
    rows = read_metrics_csv(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert list(rows[0]) == list(METRIC_COLUMNS)
    assert all(math.isfinite(r["train_loss"]) and 0 <= r["val_dice_mean"] <= 1 for r in rows)
    ckpt = read_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt.training.epoch == 2 and ckpt.label_scheme.to_dict() == {
        "name": "brats2021",
        "source_labels": [0, 1, 2, 4],
    }
    assert ckpt.modalities == ["t1", "t1ce", "t2", "flair"] and ckpt.in_channels == 4
    assert ckpt.normalization.method == "zscore" and ckpt.patch_size == [SIZE, SIZE]
    model, _ = model_from_checkpoint(out / "checkpoints" / "best.pt")
    assert model(torch.zeros(1, 4, SIZE, SIZE)).shape == (1, 4, SIZE, SIZE)

    # `brats train --resume` with one more epoch runs exactly one epoch
    (tmp_path / "cfg.yaml").write_text(config_to_yaml(cfg))
    args = ["train", "--config", str(tmp_path / "cfg.yaml"), "--set", "train.epochs=3", "--resume"]
    assert cli_main(args) == 0
    assert [r["epoch"] for r in read_metrics_csv(out / "metrics.csv")] == [1, 2, 3]
    assert read_checkpoint(out / "checkpoints" / "last.pt").training.epoch == 3
    # resuming a finished run does nothing
    again = run_training(tiny_config(out, steps_per_epoch=2, epochs=3), resume=True, progress=False)
    assert again["epochs_run"] == 0 and len(read_metrics_csv(out / "metrics.csv")) == 3


def test_resume_equals_uninterrupted(tmp_path):
    """2 epochs, then --resume for 2 more == 4 epochs in one go (CPU, augmentation on)."""
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b")
    run_training(tiny_config(a, epochs=4, steps_per_epoch=2), progress=False)
    run_training(tiny_config(b, epochs=2, steps_per_epoch=2), progress=False)
    mid = state_of(b / "checkpoints" / "last.pt")
    run_training(tiny_config(b, epochs=4, steps_per_epoch=2), resume=True, progress=False)
    sa, sb = state_of(a / "checkpoints" / "last.pt"), state_of(b / "checkpoints" / "last.pt")
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=1e-5, msg=key)
    assert any(not torch.equal(mid[k], sb[k]) for k in mid)  # the resumed epochs did train
    ra, rb = read_metrics_csv(a / "metrics.csv"), read_metrics_csv(b / "metrics.csv")
    for x, y in zip(ra, rb):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-5)
        assert x["val_loss"] == pytest.approx(y["val_loss"], abs=1e-5)


def test_weight_average_by_hand():
    """The running mean of the weights: 1, then (1 + 3) / 2 = 2; loaded as the mean of 2 steps, 9 makes 11 / 3."""
    model = torch.nn.Linear(1, 1, bias=False)
    average = build_average(model, 0.5)
    assert build_average(model, None) is None and averaged_steps(None) == 0 and averaged_steps(average) == 0
    for w in (1.0, 3.0):
        model.weight.data.fill_(w)
        average.update_parameters(model)
    assert float(average.module.weight) == 2.0 and averaged_steps(average) == 2
    load_average(average, {"weight": torch.full((1, 1), 1.0)}, 2)
    model.weight.data.fill_(9.0)
    average.update_parameters(model)
    assert float(average.module.weight) == pytest.approx(11.0 / 3.0) and averaged_steps(average) == 3


def test_weight_average_is_saved_and_resumed_without_changing_training(tmp_path, monkeypatch):
    """train.swa_start: the checkpoint's weights are the average of the last steps, the optimiser's own weights
    are those of a run without it (the average never feeds back), and resume == uninterrupted."""
    runs = {name: make_run(tmp_path / name) for name in ("plain", "late", "swa", "resumed")}
    run = {"epochs": 4, "steps_per_epoch": 2}
    run_training(tiny_config(runs["plain"], **run), progress=False)
    run_training(tiny_config(runs["late"], **run, swa_start=1.0), progress=False)  # never starts
    run_training(tiny_config(runs["swa"], **run, swa_start=0.5), progress=False)
    train_epoch = Trainer.train_epoch

    def crash_in_epoch_4(self, epoch, deadline=None):
        if epoch == 3:
            raise KeyboardInterrupt
        return train_epoch(self, epoch, deadline)

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(Trainer, "train_epoch", crash_in_epoch_4)
        run_training(tiny_config(runs["resumed"], **run, swa_start=0.5), progress=False)
    assert read_checkpoint(runs["resumed"] / "checkpoints" / "last.pt").training.averaged_steps == 2
    run_training(tiny_config(runs["resumed"], **run, swa_start=0.5), resume=True, progress=False)
    ck = {k: read_checkpoint(v / "checkpoints" / "last.pt") for k, v in runs.items()}
    assert ck["plain"].training.raw_model is None
    assert "raw_model" not in torch.load(runs["plain"] / "checkpoints" / "last.pt", weights_only=True)
    assert ck["late"].training.averaged_steps == 0
    # steps 4..7 of 8 begin at progress >= 0.5
    assert ck["swa"].training.averaged_steps == 4 and ck["resumed"].training.averaged_steps == 4
    swa, resumed = ck["swa"], ck["resumed"]
    for key, value in ck["plain"].weights.items():
        torch.testing.assert_close(ck["late"].weights[key], value, rtol=0, atol=0, msg=key)
        torch.testing.assert_close(swa.training.raw_model[key], value, rtol=0, atol=0, msg=key)
        torch.testing.assert_close(resumed.weights[key], swa.weights[key], rtol=0, atol=1e-6, msg=key)
        raw = resumed.training.raw_model[key]
        torch.testing.assert_close(raw, swa.training.raw_model[key], rtol=0, atol=1e-6, msg=key)
    plain = ck["plain"].weights
    moved = [k for k, v in swa.weights.items() if v.is_floating_point() and not torch.equal(v, plain[k])]
    assert len(moved) > 10  # the average differs from the trained weights
    # the validation scores are the trained weights' until averaging begins, then the average's
    rows = {k: read_metrics_csv(runs[k] / "metrics.csv") for k in ("plain", "swa")}
    assert [r["train_loss"] for r in rows["plain"]] == [r["train_loss"] for r in rows["swa"]]
    assert [r["val_loss"] for r in rows["plain"]][:2] == [r["val_loss"] for r in rows["swa"]][:2]
    assert rows["plain"][-1]["val_loss"] != rows["swa"][-1]["val_loss"]


def test_overfits_two_patches(tmp_path):
    images, labels = make_patches(2, 5)
    out = tmp_path / "fit"
    write_store(out / "patches" / "train.h5", images, labels)
    write_store(out / "patches" / "val.h5", images, labels)
    cfg = tiny_config(out, batch_size=2, steps_per_epoch=10, lr=3e-3)
    cfg.augment.enabled = False
    trainer = Trainer(cfg)
    try:
        before = trainer.validate()
        losses = [trainer.train_epoch(e)[0] for e in range(8)]
        after = trainer.validate()
    finally:
        trainer.close()
    assert after["val_loss"] < before["val_loss"] / 10, (before, after)
    assert losses[-1] < losses[0] / 5, losses
    assert after["val_dice_ED"] > 0.8, after  # the largest class is learnt first


class Oracle(torch.nn.Module):
    """Logits that put the class read from channel 0 (intensity == class) first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = x[:, 0].round().long().clamp(0, 3)
        return torch.nn.functional.one_hot(cls, 4).permute(0, 3, 1, 2).float() * 20 - 10


def test_validation_dice_of_a_perfect_model_is_one(tmp_path):
    _, labels = make_patches(5, 2, et=3)
    images = np.repeat(labels[:, None].astype(np.float32), 4, axis=1)  # brats2023: class == source label
    out = tmp_path / "oracle"
    write_store(out / "patches" / "train.h5", images, labels, et=3)
    write_store(out / "patches" / "val.h5", images, labels, et=3)
    cfg = tiny_config(out, batch_size=2, channels_last=False)
    cfg.augment.rescale.enabled = False
    trainer = Trainer(cfg)
    try:
        trainer.model = Oracle()
        val = trainer.validate()
    finally:
        trainer.close()
    assert val["val_dice_NCR"] == val["val_dice_ED"] == val["val_dice_ET"] == val["val_dice_mean"] == 1.0
    assert val["val_dice_WT"] == val["val_dice_TC"] == 1.0
    assert val["val_loss"] < 1e-3


def test_time_budget_stops_within_the_epoch_and_best_by_dice(tmp_path, caplog):
    out = make_run(tmp_path / "budget")
    cfg = tiny_config(out, epochs=5, steps_per_epoch=4, max_minutes=0.0, best_metric="val_dice_mean")
    cfg.train.log_every = 1
    with caplog.at_level(logging.DEBUG, logger="brats.train.engine"):
        result = run_training(cfg, progress=False)
    assert result["stopped_early"] and result["epoch"] == 1
    steps = [r.getMessage() for r in caplog.records if " step " in r.getMessage()]
    assert len(steps) == 1 and steps[0].startswith("epoch 1 step 1/4: loss")  # cut after its first step
    assert len(read_metrics_csv(out / "metrics.csv")) == 1
    best = read_checkpoint(out / "checkpoints" / "best.pt").training
    assert best.best_metric == "val_dice_mean"
    assert best.best_score == pytest.approx(
        read_metrics_csv(out / "metrics.csv")[0]["val_dice_mean"], abs=1e-6
    )


def test_validate_every_nth_epoch_and_the_last(tmp_path):
    """val_every=2 over 5 epochs validates epochs 2, 4 and 5 with the same figures as validating all five, trains
    the same weights, and picks best.pt among the validated epochs; a budget that ends the run validates it."""
    runs = {n: make_run(tmp_path / f"every{n}", n_train=8, n_val=4) for n in (1, 2)}
    for n, out in runs.items():
        run_training(tiny_config(out, epochs=5, steps_per_epoch=2, val_every=n), progress=False)
    every, second = (read_metrics_csv(runs[n] / "metrics.csv") for n in (1, 2))
    assert [r["epoch"] for r in second] == [1, 2, 3, 4, 5]
    assert [r["epoch"] for r in second if "val_loss" in r] == [2, 4, 5]
    assert not any(k.startswith("val_") for k in second[0]) and math.isfinite(second[0]["train_loss"])
    for a, b in zip(every, second):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        if "val_loss" in b:
            assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-6)
            assert a["val_dice_mean"] == pytest.approx(b["val_dice_mean"], abs=1e-6)
    weights = [state_of(runs[n] / "checkpoints" / "last.pt") for n in (1, 2)]
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, rtol=0, atol=1e-6, msg=key)
    best = read_checkpoint(runs[2] / "checkpoints" / "best.pt").training
    lowest = min((r for r in second if "val_loss" in r), key=lambda r: r["val_loss"])
    assert best.epoch == lowest["epoch"] and best.best_score == pytest.approx(lowest["val_loss"], abs=1e-6)

    out = make_run(tmp_path / "budget_every", n_train=4, n_val=2)
    result = run_training(
        tiny_config(out, epochs=5, steps_per_epoch=2, max_minutes=0.0, val_every=3), progress=False
    )
    rows = read_metrics_csv(out / "metrics.csv")
    assert (
        result["stopped_early"] and [r["epoch"] for r in rows] == [1] and math.isfinite(rows[0]["val_loss"])
    )
    with pytest.raises(BratsError, match="val_every"):
        tiny_config(out, val_every=0)


def test_best_by_epoch_is_the_final_weights(tmp_path):
    out = make_run(tmp_path / "final", n_train=4, n_val=2)
    run_training(tiny_config(out, epochs=3, steps_per_epoch=2, best_metric="epoch"), progress=False)
    best = read_checkpoint(out / "checkpoints" / "best.pt")
    last = read_checkpoint(out / "checkpoints" / "last.pt")
    assert best.training.epoch == last.training.epoch == 3 and best.training.best_score == 3
    assert best.weights.keys() == last.weights.keys()
    for key, value in last.weights.items():
        torch.testing.assert_close(best.weights[key], value)


def test_bf16_autocast_step_on_cpu(tmp_path):
    out = make_run(tmp_path / "bf16", n_train=4, n_val=2, et=3)
    result = run_training(tiny_config(out, epochs=1, steps_per_epoch=1, amp="bf16"), progress=False)
    assert math.isfinite(read_metrics_csv(out / "metrics.csv")[0]["train_loss"])
    assert result["epoch"] == 1


class BlasThreads(torch.utils.data.Dataset):
    """Each item: the thread counts of the BLAS libraries loaded in the process that reads it."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        from threadpoolctl import threadpool_info

        return torch.tensor([p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"])


def test_loader_workers_run_one_blas_thread(tmp_path):
    """A loader process's BLAS gets one thread (its pool would spin on the cores training uses); the training
    process keeps its own setting."""
    from threadpoolctl import threadpool_info

    before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    cfg = tiny_config(tmp_path, steps_per_epoch=1, batch_size=2, num_workers=1)
    loader, _ = train_loader(
        BlasThreads(), cfg.train, Runtime(torch.device("cpu"), None, False), seed=0, epoch=0
    )
    counts = next(iter(loader))
    assert counts.numel() > 0 and counts.eq(1).all(), counts
    after = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert after == before  # the limit stayed in the worker, whatever the environment set


def test_train_loader_steps_and_epoch_permutations(tmp_path):
    out = make_run(tmp_path / "loader", n_train=6)
    from brats.train.dataset import PatchDataset

    ds = PatchDataset(out / "patches" / "train.h5")
    cfg = tiny_config(out, steps_per_epoch=5, batch_size=4)
    rt = Runtime(torch.device("cpu"), None, False)

    def order(epoch):
        loader, steps = train_loader(ds, cfg.train, rt, seed=0, epoch=epoch)
        return steps, [int(i) for b in loader for i in b["index"]]

    steps, first = order(0)
    assert steps == 5 and len(first) == 20  # several passes over the 6 patches
    assert sorted(first[:6]) == list(range(6))  # each pass is a permutation
    assert order(0)[1] == first and order(1)[1] != first
    ds.close()


def test_amp_and_device_rules():
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) == (None, False)
    assert resolve_amp("off", cpu) == (None, False)
    assert resolve_amp("bf16", cpu) == (torch.bfloat16, False)
    assert resolve_amp("auto", torch.device("cuda")) == (torch.float16, True)
    with pytest.raises(TrainError, match="fp16 needs a CUDA device"):
        resolve_amp("fp16", cpu)
    assert resolve_device("cpu") == cpu
    if not torch.cuda.is_available():
        assert resolve_device("auto") == cpu
        with pytest.raises(BratsError, match="CUDA is not available"):
            resolve_device("cuda")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(TrainError, match=r"train.h5 not found: run `brats extract"):
        run_training(tiny_config(tmp_path / "empty"), progress=False)
    out = make_run(tmp_path / "run", n_train=4, n_val=2)
    with pytest.raises(TrainError, match="no checkpoint"):
        run_training(tiny_config(out), resume=True, progress=False)
    with pytest.raises(TrainError, match="best_metric"):
        run_training(tiny_config(out, best_metric="dice"), progress=False)
    cfg = tiny_config(out)
    cfg.data.modalities = ["t1ce", "flair"]
    with pytest.raises(TrainError, match=r"modalities \['t1', 't1ce', 't2', 'flair'\] but data.modalities"):
        run_training(cfg, progress=False)
    cfg = tiny_config(out)
    cfg.patches.size = [36, 36]
    with pytest.raises(
        TrainError, match=r"not divisible by 2\*\*model.encoder_depth = 8; use patches.size \[40, 40\]"
    ):
        run_training(cfg, progress=False)
    run_training(tiny_config(out, epochs=1, steps_per_epoch=1), progress=False)
    changed = tiny_config(out, epochs=2, steps_per_epoch=1)
    changed.model.decoder_channels = [64, 32, 16]
    with pytest.raises(TrainError, match="model section differs"):
        run_training(changed, resume=True, progress=False)


def test_docs_list_every_training_key_with_its_default():
    import re

    import yaml

    from brats.config import iter_config_fields

    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    rows = dict(re.findall(r"^\| `([\w.]+)` \| [^|]+ \| `([^`]*)` \|", text, re.M))
    for dotted, _, default, _, is_section in iter_config_fields():
        if is_section or dotted.split(".")[0] not in ("model", "loss", "augment", "train"):
            continue
        assert dotted in rows, f"docs/training.md does not list {dotted}"
        expected = "null" if default is None else yaml.safe_dump(default, default_flow_style=True).strip()
        expected = expected.removesuffix("\n...").removesuffix("...").strip()
        assert rows[dotted] == expected, (
            f"docs/training.md: default of {dotted} is {expected}, not {rows[dotted]}"
        )
