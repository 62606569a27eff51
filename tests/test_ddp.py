"""DistributedDataParallel: two CPU processes (gloo), identical weights on both ranks after training steps,
also when the ranks' clocks disagree (the cosine learning rate follows rank 0's clock)."""

from __future__ import annotations

import itertools
import os
import socket
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from brats.checkpoint import read_checkpoint
from brats.config import config_from_dict
from brats.extract import StoreWriter, store_attrs
from brats.train import read_metrics_csv

SIZE = 32


def _store(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, 4, SIZE, SIZE)).astype(np.float32)
    labels = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(n, SIZE, SIZE), p=[0.7, 0.1, 0.1, 0.1])
    cfg = config_from_dict({"patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]}})
    attrs = store_attrs(cfg, "brats2021")
    path.parent.mkdir(parents=True, exist_ok=True)
    with StoreWriter(path, 4, (SIZE, SIZE), attrs=attrs) as w:
        w.add_case("case0", images, labels, np.zeros((n, 3), np.int32))


def _config(out: Path) -> dict:
    return {
        "output_dir": str(out),
        "seed": 1,
        "patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]},
        "model": {"encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 8]},
        "augment": {"elastic": {"num_control_points": 5, "max_displacement": 3.0}},
        "train": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "device": "cpu"},
    }


def _worker(rank: int, world: int, port: int, cfg_dict: dict, out: str, skew: float = 0.0) -> None:
    """One rank: the same environment torchrun sets, then the normal training entry point. ``skew`` > 0 makes
    rank 1's training clock run fast (each reading ``skew`` seconds later than the last)."""
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(world),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "OMP_NUM_THREADS": "1",
        }
    )
    torch.set_num_threads(1)
    from brats.train import Trainer

    if skew and rank == 1:
        import brats.train.engine as engine

        ticks = itertools.count()
        engine.time = types.SimpleNamespace(monotonic=lambda: time.monotonic() + skew * next(ticks))  # type: ignore

    trainer = Trainer(config_from_dict(cfg_dict))
    try:
        assert trainer.rt.world_size == world and trainer.rt.rank == rank
        initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        result = trainer.fit()
        torch.save(
            {
                "initial": initial,
                "final": trainer.model.state_dict(),
                "trained": trainer.train_net.state_dict(),  # with loss.deep_supervision, the heads too
                "saved": trainer.eval_model.state_dict(),
                "result": result,
            },
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        trainer.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    run = tmp_path / "run"
    _store(run / "patches" / "train.h5", 8, 0)
    _store(run / "patches" / "val.h5", 3, 1)  # odd: ranks validate 2 and 1 patches
    mp.spawn(_worker, args=(2, _free_port(), _config(run), str(tmp_path)), nprocs=2, join=True)

    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert r0["result"]["epoch"] == r1["result"]["epoch"] == 1
    for key, value in r0["final"].items():
        assert torch.equal(value, r1["final"][key]), key
    assert any(not torch.equal(r0["initial"][k], r0["final"][k]) for k in r0["final"])  # a step was taken
    # rank 0 wrote the run; its checkpoint holds the same weights
    ckpt = read_checkpoint(run / "checkpoints" / "last.pt")
    for key, value in ckpt.weights.items():
        assert torch.equal(value, r0["final"][key]), key
    rows = read_metrics_csv(run / "metrics.csv")
    assert len(rows) == 1 and np.isfinite(rows[0]["val_loss"])


def test_cosine_lr_follows_rank0_clock_when_clocks_disagree(tmp_path):
    """Time-based cosine progress read from each rank's own clock would give rank 1 a lower lr (its clock runs
    fast), and the ranks' weights would drift apart after the first step."""
    run = tmp_path / "run"
    _store(run / "patches" / "train.h5", 8, 0)
    _store(run / "patches" / "val.h5", 2, 1)
    cfg = _config(run)
    cfg["train"] |= {"steps_per_epoch": 3, "max_minutes": 30.0, "scheduler": {"name": "cosine"}}
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(tmp_path), 120.0), nprocs=2, join=True)

    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for key, value in r0["final"].items():
        assert torch.equal(value, r1["final"][key]), key
    assert r0["result"]["epoch"] == r1["result"]["epoch"] == 1


def test_two_gloo_ranks_average_the_same_weights(tmp_path):
    """train.swa_start under DDP: both ranks hold the same average (BatchNorm statistics synchronised too), and
    the checkpoint keeps it as the weights and the trained weights beside it."""
    run = tmp_path / "run"
    _store(run / "patches" / "train.h5", 8, 0)
    _store(run / "patches" / "val.h5", 3, 1)
    cfg = _config(run)
    cfg["train"].update(steps_per_epoch=2, swa_start=0.0)
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    ckpt = read_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt.training.averaged_steps == 2
    for key, value in r0["saved"].items():
        assert torch.equal(value, r1["saved"][key]), key
        assert torch.equal(ckpt.weights[key], value), key
        assert torch.equal(ckpt.training.raw_model[key], r0["final"][key]), key
    assert any(not torch.equal(r0["saved"][k], r0["final"][k]) for k in r0["final"])  # the average differs


def test_two_gloo_ranks_train_the_same_deep_supervision_heads(tmp_path):
    """loss.deep_supervision under DDP: the heads are inside the wrapped module, so their gradients are averaged
    over the ranks too and both ranks end with the same heads (and network); last.pt keeps rank 0's heads."""
    run = tmp_path / "run"
    _store(run / "patches" / "train.h5", 8, 0)
    _store(run / "patches" / "val.h5", 2, 1)
    cfg = _config(run)
    cfg["train"]["steps_per_epoch"] = 2
    cfg["loss"] = {"deep_supervision": 2}
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    heads = [k for k in r0["trained"] if k.startswith("heads.")]
    assert len(heads) == 4
    for key, value in r0["trained"].items():
        assert torch.equal(value, r1["trained"][key]), key
    saved = read_checkpoint(run / "checkpoints" / "last.pt").training.aux_heads
    for key in heads:
        assert torch.equal(saved[key.removeprefix("heads.")], r0["trained"][key]), key
