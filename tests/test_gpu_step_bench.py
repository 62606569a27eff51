"""bench/gpu_step.py: without CUDA it stops with one line; its training step is the trainer's, on any device."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_step  # noqa: E402

from brats.config import load_config  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_without_cuda_one_line_and_nonzero_exit():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_step.py"), "--config", "configs/demo.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "bench/gpu_step.py needs a CUDA GPU (torch.cuda.is_available() is False)"
    ]


def test_train_speed_of_the_demo_config_on_the_cpu():
    cfg = load_config(ROOT / "configs" / "demo.yaml")
    row = gpu_step.train_speed(cfg, "fp32", steps=2, warmup=1, device=torch.device("cpu"))
    assert row["batch_size"] == cfg.train.batch_size == 16
    assert row["patch"] == [128, 128]
    assert row["steps"] == 2 and row["s_per_step"] > 0
    assert row["patches_per_s"] == pytest.approx(16 / row["s_per_step"], rel=0.01)
    assert row["peak_gib"] is None  # memory is read on CUDA only


def test_sync_waits_on_cuda_once_and_not_on_the_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    gpu_step._sync(torch.device("cpu"))
    assert calls == []
    gpu_step._sync(torch.device("cuda", 0))  # before: called itself, a RecursionError on every GPU
    assert calls == [torch.device("cuda", 0)]
