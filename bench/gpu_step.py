#!/usr/bin/env python
"""Training and prediction speed of a config's model on a CUDA GPU: patches/s and peak memory per precision.

One training step = forward (under autocast for ``bf16``/``fp16``), the config's loss, backward and an Adam step
on random patches of the config's size and channels (batch ``train.batch_size``), as the trainer does it
(``fp16`` with a GradScaler). The first ``--warmup`` steps are left out; each step ends with a CUDA
synchronise. ``predict`` times :func:`brats.predict.sliding.predict_volume` (the config's ``predict`` settings,
float16 autocast as ``brats predict --precision auto`` picks on CUDA) on one random 4x240x240x155 volume with
an ellipsoid brain mask. Random weights: speed, not quality. Prints JSON; with ``--save NAME`` also writes
``bench/results/NAME.json``. Needs a GPU (exits with one line without one).

    python bench/gpu_step.py --config configs/demo.yaml --config configs/brats21_3d.yaml --save gpu-h200
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from results_io import load_now, write_result  # bench/ is on sys.path when a bench script runs

from brats.checkpoint import config_input_channels as model_channels
from brats.config import load_config
from brats.networks import build_model
from brats.predict.sliding import predict_volume
from brats.train.losses import build_loss

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(cfg, device: torch.device) -> tuple[torch.nn.Module, int]:
    dim = int(cfg.patches.dim)
    model = build_model(cfg.model, model_channels(cfg), 4, dim=dim).to(device)
    if dim == 2 and cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, dim


def train_speed(cfg, precision: str, steps: int, warmup: int, device: torch.device) -> dict:
    """Median seconds per training step of ``cfg``'s model at ``precision``, and the peak memory."""
    torch.manual_seed(0)
    model, dim = _model(cfg, device)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    loss_fn = build_loss(cfg.loss)
    bs, size = cfg.train.batch_size, list(cfg.patches.size)
    x = torch.randn(bs, model_channels(cfg), *size, device=device)
    if dim == 2 and cfg.train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (bs, *size), device=device)
    dtype = DTYPES[precision]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    s = float(np.median(times))
    return {
        "precision": precision,
        "batch_size": bs,
        "patch": size,
        "steps": steps,
        "s_per_step": round(s, 4),
        "patches_per_s": round(bs / s, 2),
        "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if device.type == "cuda"
        else None,
    }


def predict_speed(cfg, device: torch.device, tta: bool) -> dict:
    """Seconds to predict one random 240x240x155 case with ``cfg``'s predict settings (float16 autocast)."""
    torch.manual_seed(0)
    model, _ = _model(cfg, device)
    model.eval()
    shape = (240, 240, 155)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    mask = (grid**2).sum(0) < 0.8
    image = np.random.default_rng(0).standard_normal((model_channels(cfg), *shape)).astype(np.float32)
    image *= mask
    kwargs = dict(
        overlap=cfg.predict.overlap,
        blend=cfg.predict.blend,
        batch_size=cfg.predict.batch_size,
        tta=tta,
        device=device,
        channels_last=bool(cfg.train.channels_last),
        amp_dtype=torch.float16 if device.type == "cuda" else None,
    )
    with torch.inference_mode():
        crop = (slice(None), slice(72, 168), slice(72, 168), slice(30, 126))  # warm-up (cuDNN picks kernels)
        predict_volume(model, image[crop], cfg.patches.size, mask=mask[crop[1:]], **kwargs)
        _sync(device)
        t0 = time.perf_counter()
        predict_volume(model, image, cfg.patches.size, mask=mask, **kwargs)
        _sync(device)
    return {"tta": tta, "seconds": round(time.perf_counter() - t0, 2), "overlap": cfg.predict.overlap}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", required=True, help="config (repeatable)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16", "fp16"], choices=sorted(DTYPES))
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run of this script)")
    ap.add_argument("--save", metavar="NAME", help="also write bench/results/NAME.json")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/gpu_step.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    before = load_now()
    torch.backends.cudnn.benchmark = True
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    out: dict = {"gpu": gpu, "torch": torch.__version__, "configs": {}}
    for path in args.config:
        cfg = load_config(path)
        rows = [train_speed(cfg, p, args.steps, args.warmup, device) for p in args.precision]
        pred = [predict_speed(cfg, device, tta) for tta in (False, True)]
        out["configs"][path] = {
            "model": cfg.model.arch,
            "dim": cfg.patches.dim,
            "train": rows,
            "predict": pred,
        }
        print(json.dumps({path: out["configs"][path]}), flush=True)
    if args.save:
        write_result(args.save, out, load_before=before)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
