"""Benchmark of patch extraction and of reading patches back (prints one JSON object).

    python bench/extract.py [--cases 8] [--shape 240 240 155] [--config configs/demo.yaml]

1. A synthetic cohort (``brats.synth.generate_cohort``; not timed) is extracted with ``configs/demo.yaml``
   (2D 128x128 patches, stride 64, every 2nd slice) by ``tools/extract_patches.py --workers K`` (K = 1, 2) in a
   fresh process, as a user runs it: cases/s over every case of the cohort (start-up, check, split, read,
   normalise, cut, write).
2. Store size: bytes per patch of ``train.h5`` as written (no compression), and of copies written with lzf and
   gzip-4, each read back at random (patches/s, ``num_workers=0``), to choose the compression by measurement.
3. Loader: ``brats.data.PatchDataset`` + ``DataLoader(shuffle=True, batch_size=16)`` over the whole training
   store with ``num_workers`` 0 and 2 (worker start-up included): patches/s.
4. On the fly, as a competent user writes it without a store: one epoch over the same training patches in random
   order, each case loaded (nibabel) and normalised **once**, on first use, and kept in memory (float32); every
   patch is then cropped from the cached volume. patches/s over the epoch (first loads included), and the memory
   the cache holds (what the store saves: a cohort of 1,251 BraTS cases would need ~180 GB of RAM this way).
   (An earlier version re-read and re-normalised the whole case for every patch, a baseline nobody writes.)

Writes ``bench/results/extract.json`` (:mod:`results_io`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from results_io import load_now, write_result  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from brats.config import load_config  # noqa: E402
from brats.data import discover_cases, load_case, load_seg  # noqa: E402
from brats.extract.store import StoreWriter, read_store_info  # noqa: E402
from brats.preprocess import normalize  # noqa: E402
from brats.train.dataset import PatchDataset  # noqa: E402

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def _cohort(root: Path, n_cases: int, shape: list[int], seed: int) -> None:
    try:
        from brats.synth import generate_cohort
    except ImportError:  # pragma: no cover - the generator is part of the package
        raise SystemExit("bench/extract.py needs brats.synth.generate_cohort") from None
    generate_cohort(root, n_cases=n_cases, seed=seed, workers=2, shape=tuple(shape), progress=False)


def _loader_rate(path: Path, num_workers: int, seed: int = 0) -> float:
    ds = PatchDataset(path)
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(ds, batch_size=16, shuffle=True, num_workers=num_workers, generator=g)
    t0 = time.perf_counter()
    n = sum(int(b["image"].shape[0]) for b in loader)
    return n / (time.perf_counter() - t0)


def _random_read_rate(path: Path, n: int, seed: int = 0) -> float:
    ds = PatchDataset(path)
    order = np.random.default_rng(seed).permutation(len(ds))[:n]
    ds[0]
    t0 = time.perf_counter()
    for i in order:
        ds[int(i)]
    return len(order) / (time.perf_counter() - t0)


def _recompress(src: Path, dst: Path, compression: str) -> None:
    import h5py

    info = read_store_info(src)
    with h5py.File(src, "r") as f:
        images, labels = f["images"][()], f["labels"][()]
        case_index, position = f["case_index"][()], f["position"][()]
    attrs = {
        k: info[k] for k in ("modalities", "dim", "patch_size", "stride", "normalization", "label_scheme")
    }
    with StoreWriter(dst, images.shape[1], images.shape[2:], str(images.dtype), compression, attrs) as w:
        for ci, cid in enumerate(info["cases"]):  # h5py's gzip default level is 4
            sel = case_index == ci
            w.add_case(cid, images[sel], labels[sel], position[sel])


def _on_the_fly_rate(root: Path, store: Path, cfg, seed: int = 0) -> tuple[float, int]:
    """One epoch over the store's patches in random order, cropped from volumes cached on first use.

    Each case is loaded and normalised once (the first time one of its patches is drawn) and kept in memory.
    Returns ``(patches/s over the epoch, bytes held by the cache at the end)``.
    """
    info = read_store_info(store)
    with __import__("h5py").File(store, "r") as f:
        case_index, position = f["case_index"][()], f["position"][()]
    cases = {c.case_id: c for c in discover_cases(root)}
    order = np.random.default_rng(seed).permutation(len(case_index))
    h, w = info["patch_size"]
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    t0 = time.perf_counter()
    for i in order:
        ci = int(case_index[i])
        if ci not in cache:
            case = cases[info["cases"][ci]]
            image, _ = load_case(case, cfg.data.modalities)
            image = normalize(image, cfg.preprocess.normalization, cfg.preprocess.percentiles)
            cache[ci] = (image, load_seg(case))
        image, seg = cache[ci]
        x, y, z = (int(v) for v in position[i])
        patch = torch.from_numpy(image[:, x : x + h, y : y + w, z].astype(np.float32))
        label = torch.from_numpy(seg[x : x + h, y : y + w, z].astype(np.int64))
        assert patch.shape[1:] == label.shape
    rate = len(order) / (time.perf_counter() - t0)
    return rate, int(sum(a.nbytes + b.nbytes for a, b in cache.values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8, help="synthetic cases (default 8)")
    parser.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155], help="volume shape")
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/extract.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    out: dict = {
        "what": "brats extract + PatchDataset vs cropping from .nii.gz on the fly",
        "cases": args.cases,
    }
    out["shape"] = args.shape
    before = load_now()  # other work on the machine skews the figures: results_io records the load
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "cases"
        _cohort(root, args.cases, args.shape, args.seed)
        rates = {}
        for workers in (1, 2):  # as a user runs it: the tool in a fresh process (start-up included)
            run = tmp / f"run{workers}"
            sets = [f"data.root={root}", f"output_dir={run}"]
            cmd = [sys.executable, str(REPO / "tools" / "extract_patches.py"), "--config", args.config]
            cmd += [x for kv in sets for x in ("--set", kv)] + ["--workers", str(workers)]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            rates[workers] = args.cases / (time.perf_counter() - t0)
        cfg = load_config(args.config, sets)
        out["extract_cases_per_s"] = {str(k): round(v, 3) for k, v in rates.items()}
        counts = json.loads((run / "splits.json").read_text())["patches"]
        out["patches"] = counts
        train = run / "patches" / "train.h5"
        info = read_store_info(train)
        out["patch_shape"] = list(info["image_shape"])
        out["store_dtype"] = info["dtype"]

        n = info["n_patches"]
        sizes, reads = {}, {}
        for comp in ("none", "lzf", "gzip"):
            path = train if comp == "none" else tmp / f"train_{comp}.h5"
            if comp != "none":
                _recompress(train, path, comp)
            sizes[comp] = round(path.stat().st_size / n)
            reads[comp] = round(_random_read_rate(path, min(n, 1000)), 1)
        out["bytes_per_patch"] = sizes
        out["random_read_patches_per_s"] = reads

        loader = {str(w): round(_loader_rate(train, w), 1) for w in (0, 2)}
        out["loader_patches_per_s"] = loader
        fly, cache_bytes = _on_the_fly_rate(root, train, cfg)
        out["cached_on_the_fly_patches_per_s"] = round(fly, 1)
        out["cached_on_the_fly_cache_bytes"] = cache_bytes
        out["cached_on_the_fly_cases"] = len(info["cases"])
        out["store_vs_cached_on_the_fly"] = round(loader["0"] / fly, 2)
    if not args.no_save:
        write_result("extract", out, before)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
