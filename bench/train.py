#!/usr/bin/env python
"""Training throughput of a config's model on this machine: patches/s for NCHW vs channels_last and
float32 vs bfloat16 autocast, plus the cost of the train augmentation pipeline. Prints JSON.

One training step = forward, loss (the config's, in float32), backward, Adam step, on random patches of the
config's size and channels (batch ``train.batch_size``). The first ``--warmup`` steps of every variant are
left out (oneDNN builds its kernels then). Run it on a quiet machine; figures vary by about 15 %.

    OMP_NUM_THREADS=2 python bench/train.py --config configs/demo.yaml
    python bench/train.py --config configs/demo.yaml --steps 3 --no-bf16   # quick
    python bench/train.py --augment 400 --save train-epyc   # also keep it as bench/results/train-epyc.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time

import numpy as np
import torch
from results_io import load_now, write_result  # bench/ is on sys.path when a bench script runs

from brats.checkpoint import config_input_channels as model_channels
from brats.config import load_config
from brats.networks import build_model
from brats.train.augment import build_transform, set_copies
from brats.train.losses import build_loss


def train_steps(cfg, channels_last: bool, amp: torch.dtype | None, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    c, (h, w), bs = model_channels(cfg), cfg.patches.size, cfg.train.batch_size
    model = build_model(cfg.model, c, 4)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
    loss_fn = build_loss(cfg.loss)
    x = torch.randn(bs, c, h, w).contiguous(memory_format=fmt)
    y = torch.randint(0, 4, (bs, h, w))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(x)
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    s = float(np.median(times))
    return {
        "memory_format": "channels_last" if channels_last else "NCHW",
        "amp": "bf16" if amp is not None else "fp32",
        "batch_size": bs,
        "steps": steps,
        "s_per_step": round(s, 3),
        "patches_per_s": round(bs / s, 2),
    }


def _sample(cfg) -> tuple[np.ndarray, np.ndarray]:
    """A random ``(C, H, W)`` patch of the config's shape with some background, and a label map with edema."""
    c, (h, w) = model_channels(cfg), cfg.patches.size
    rng = np.random.default_rng(0)
    image = rng.normal(size=(c, h, w)).astype(np.float32)
    image[:, : h // 8] = 0  # some background
    label = np.zeros((h, w), np.uint8)
    label[h // 3 : h // 2, w // 3 : w // 2] = 2
    return image, label


def augment_rate(cfg, n: int, copy_each: bool = False) -> dict:
    """Patches/s of the train pipeline (one process) on random (C, H, W) patches with a tumour. ``copy_each``:
    every transform deep-copies its input, TorchIO's default (the pipeline shares the Compose's one copy)."""
    torch.manual_seed(0)
    image, label = _sample(cfg)
    transform = build_transform(cfg, "train", "brats2021")
    if copy_each:
        set_copies(transform.transform, True)
    sample = {"image": image, "label": label, "index": 0}
    transform(sample)
    t0 = time.perf_counter()
    for _ in range(n):
        transform(sample)
    return {"patches": n, "patches_per_s": round(n / (time.perf_counter() - t0), 1)}


def engine_rates(cfg, n: int) -> dict:
    """Patches/s of the train pipeline with ``augment.engine`` patch and batch (``warp: torch``; batches of
    ``train.batch_size`` copies of the sample of :func:`augment_rate`), one process, same run."""
    from brats.train.augment import AugmentError
    from brats.train.batch_augment import build_batch_augment

    variant = copy.deepcopy(cfg)
    variant.augment.warp = "torch"
    rates = {"patch": augment_rate(variant, n)["patches_per_s"]}
    try:
        batched = build_batch_augment(variant, "brats2021")
    except AugmentError as err:
        return rates | {"batch": None, "why": str(err)}
    torch.manual_seed(0)
    image, label = _sample(cfg)
    bs = cfg.train.batch_size
    batch = [{"image": image, "label": label, "index": i} for i in range(bs)]
    batched(batch)
    steps = max(1, n // bs)
    t0 = time.perf_counter()
    for _ in range(steps):
        batched(batch)
    rates["batch"] = round(steps * bs / (time.perf_counter() - t0), 1)
    return rates | {"batch_vs_patch": round(rates["batch"] / rates["patch"], 2)}


def augment_rates(cfg, n: int) -> dict:
    """The train pipeline as configured, without elastic deformation, with each ``augment.warp``, as a TorchIO
    user would write it (TorchIO's warps, every transform copying its input), and with the asymmetry input with
    and without ``augment.recompute_asymmetry``: patches/s, same run."""
    out = {"augment_train_pipeline": augment_rate(cfg, n)}
    if cfg.augment.elastic.enabled:  # the slowest transform: its share of the pipeline, same run
        no_elastic = copy.deepcopy(cfg)
        no_elastic.augment.elastic.enabled = False
        out["augment_without_elastic"] = augment_rate(no_elastic, n)
    rates = {}
    for warp in ("torchio", "torch"):
        variant = copy.deepcopy(cfg)
        variant.augment.warp = warp
        rates[warp] = augment_rate(variant, n)["patches_per_s"]
    variant = copy.deepcopy(cfg)
    variant.augment.warp = "torchio"
    rates["torchio_copy_each"] = augment_rate(variant, n, copy_each=True)["patches_per_s"]
    out["augment_by_warp"] = rates | {
        "torch_vs_torchio_copy_each": round(rates["torch"] / rates["torchio_copy_each"], 2)
    }
    out["augment_by_engine"] = engine_rates(cfg, n)
    if cfg.preprocess.asymmetry:  # augment.recompute_asymmetry: the cost of the mirror images, same run
        by = {}
        for name, on in (("as_stored", False), ("recompute", True)):
            variant = copy.deepcopy(cfg)
            variant.augment.recompute_asymmetry = on
            by[name] = augment_rate(variant, n)["patches_per_s"]
        out["augment_by_asymmetry"] = by | {
            "recompute_vs_as_stored": round(by["recompute"] / by["as_stored"], 2)
        }
    return out


def amp_auto_choice(cfg) -> dict:
    """What ``train.amp: auto`` picks on this machine: the probe of :func:`brats.train.runtime.probe_amp`
    (1 warm-up + 2 timed steps per precision), measured afresh (a temporary cache), with its seconds."""
    import tempfile

    from brats.train.runtime import Runtime, probe_amp

    cfg.train.amp = "auto"
    c, bs = model_channels(cfg), cfg.train.batch_size
    model = build_model(cfg.model, c, 4).to(memory_format=torch.channels_last).train()
    rt = Runtime(torch.device("cpu"), None, False)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BRATS_CACHE_DIR"] = tmp
        t0 = time.perf_counter()
        record = probe_amp(cfg.train, rt, model, build_loss(cfg.loss), (bs, c, *cfg.patches.size), {})
        seconds = time.perf_counter() - t0
    return {**(record or {}), "probe_seconds": round(seconds, 2)}


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--steps", type=int, default=5, help="timed steps per float32 variant")
    p.add_argument("--bf16-steps", type=int, default=2, help="timed steps per bf16 variant (it is slow)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-bf16", action="store_true", help="skip the bf16 variants")
    p.add_argument("--augment", type=int, default=40, help="patches for the augmentation figure (0 = skip)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: OMP_NUM_THREADS/torch)")
    p.add_argument("--save", metavar="NAME", help="also write the result to bench/results/NAME.json")
    args = p.parse_args()
    load_before = load_now()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.set)
    try:
        bf16_native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001
        bf16_native = False
    results = []
    for amp in [None] + ([] if args.no_bf16 else [torch.bfloat16]):
        for cl in (False, True):
            results.append(train_steps(cfg, cl, amp, args.bf16_steps if amp else args.steps, args.warmup))
    out = {
        "bench": "train",
        "config": args.config,
        "overrides": args.set,
        "model": f"{cfg.model.arch}/{cfg.model.encoder} depth {cfg.model.encoder_depth}",
        "loss": cfg.loss.name,
        "patch": [model_channels(cfg), *cfg.patches.size],
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "bf16_instructions": bf16_native,
            "torch": torch.__version__,
        },
        "train_step": results,
    }
    fp32 = {r["memory_format"]: r["patches_per_s"] for r in results if r["amp"] == "fp32"}
    out["channels_last_speedup"] = round(fp32["channels_last"] / fp32["NCHW"], 2)
    bf = {r["memory_format"]: r["patches_per_s"] for r in results if r["amp"] == "bf16"}
    if bf:
        out["bf16_vs_fp32_channels_last"] = round(bf["channels_last"] / fp32["channels_last"], 3)
    out["amp_auto"] = amp_auto_choice(cfg)
    if args.augment:
        out |= augment_rates(cfg, args.augment)
    if args.save:  # a named record beside run_all's train.json, e.g. the same bench on another CPU
        write_result(args.save, out, load_before)
    print(json.dumps(out))  # one line: bench/run_all.py reads the last JSON line


if __name__ == "__main__":
    main()
