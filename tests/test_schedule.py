"""The ``cosine`` learning-rate schedule: hand-computed values, progress by steps or by time budget, and the engine
annealing to ``min_lr`` by the end of a run."""

from __future__ import annotations

import math

import pytest
import torch

from brats.config import ConfigError, load_config
from brats.train.schedule import anneal, cosine_lr, run_progress


def test_cosine_lr_hand_values():
    assert cosine_lr(1e-3, 1e-5, 0.0) == pytest.approx(1e-3)
    assert cosine_lr(1e-3, 1e-5, 0.5) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)
    assert cosine_lr(1e-3, 1e-5, 1.0) == pytest.approx(1e-5)
    assert cosine_lr(1e-3, 0.0, 0.25) == pytest.approx(1e-3 * (1 + math.cos(math.pi / 4)) / 2)
    assert cosine_lr(1e-3, 0.0, 7.0) == cosine_lr(1e-3, 0.0, 1.0)  # clipped
    assert cosine_lr(1e-3, 0.0, -1.0) == cosine_lr(1e-3, 0.0, 0.0)


def test_progress_is_the_further_of_steps_and_time():
    assert run_progress(10, 100, 5.0, None) == pytest.approx(0.1)
    assert run_progress(10, 100, 30.0, 60.0) == pytest.approx(0.5)  # time is further
    assert run_progress(80, 100, 30.0, 60.0) == pytest.approx(0.8)  # steps are further
    assert run_progress(10, 100, 120.0, 60.0) == 1.0
    assert run_progress(0, 0, 0.0, None) == 1.0


def test_anneal_sets_every_group():
    cfg = load_config(None, ["train.lr=0.01", "train.scheduler.name=cosine", "train.scheduler.min_lr=0.001",
                             "train.epochs=2", "train.max_minutes=null"])  # fmt: skip
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([{"params": [p1]}, {"params": [p2]}], lr=0.5)
    lr = anneal(opt, cfg.train, steps_done=5, steps_per_epoch=5, seconds=0.0)  # half of 2 x 5 steps
    assert lr == pytest.approx(0.001 + 0.009 / 2)
    assert [g["lr"] for g in opt.param_groups] == [lr, lr]


def test_engine_anneals_along_the_run(tmp_path):
    """A 2-epoch x 2-step cosine run: epoch 1 starts at train.lr, epoch 2 at the cosine value after 1 of 4 steps
    (metrics.csv records the rate at each epoch's start), and the last step runs at the value after 3 of 4."""
    from brats.train import Trainer, read_metrics_csv
    from tests.test_train import make_run, tiny_config

    out = make_run(tmp_path / "cosine")
    cfg = tiny_config(out, epochs=2, steps_per_epoch=2, lr=0.01)
    cfg.train.scheduler.name = "cosine"
    cfg.train.scheduler.min_lr = 0.001
    trainer = Trainer(cfg)
    try:
        trainer.fit()
        last = trainer.optimizer.param_groups[0]["lr"]
    finally:
        trainer.close()
    rows = read_metrics_csv(out / "metrics.csv")
    assert [r["lr"] for r in rows] == pytest.approx([0.01, cosine_lr(0.01, 0.001, 0.25)])
    assert last == pytest.approx(cosine_lr(0.01, 0.001, 0.75))


def test_warmup_ramps_the_first_steps_linearly():
    # 4 warm-up steps of a 2 x 5-step cosine run: step i runs at cosine(i / 10) * (i + 1) / 4, then plain cosine
    cfg = load_config(None, ["train.lr=0.01", "train.scheduler.name=cosine", "train.scheduler.min_lr=0.0",
                             "train.epochs=2", "train.max_minutes=null", "train.scheduler.warmup_steps=4"])  # fmt: skip
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    got = [anneal(opt, cfg.train, steps_done=i, steps_per_epoch=5, seconds=0.0) for i in range(6)]
    expected = [cosine_lr(0.01, 0.0, i / 10) * min(1.0, (i + 1) / 4) for i in range(6)]
    assert got == pytest.approx(expected)
    assert got[0] == pytest.approx(0.01 / 4) and got[4] == pytest.approx(cosine_lr(0.01, 0.0, 0.4))
    with pytest.raises(ConfigError, match="warmup_steps"):
        load_config(None, ["train.scheduler.warmup_steps=-1"])
    with pytest.raises(ConfigError, match="warmup_steps is for name: cosine, got name: plateau"):
        load_config(None, ["train.scheduler.warmup_steps=10"])
