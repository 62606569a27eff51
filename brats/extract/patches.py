"""Patch extraction (2D axial or 3D) from normalised cases into the HDF5 store (:mod:`brats.extract.store`).

``run_extract(cfg)`` is the ``brats extract`` / ``tools/extract_patches.py`` stage:

1. discover the cases under ``data.root`` and check their files (headers, geometry, labels);
2. split them by patient (:func:`brats.data.split_cases`) and write ``OUTPUT_DIR/splits.json``;
3. normalise every train/val case (:func:`brats.preprocess.normalize`; with ``preprocess.asymmetry``, append the
   asymmetry channels, :mod:`brats.asymmetry`; with ``preprocess.downsample`` > 1, pool images, labels and brain
   mask to the coarser in-plane grid, :mod:`brats.resolution`), cut windows of
   ``patches.size`` with ``patches.stride`` (last window flush with the border; 2D: every ``slice_stride``-th
   axial slice), keep the windows holding ``>= min_foreground`` tumour voxels plus ``background_fraction`` x
   that many brain-only windows drawn with a generator seeded from ``seed`` and the case id (a case with no
   tumour window keeps ``tumour_free_windows`` brain-only windows); windows with no brain are never kept;
4. write ``OUTPUT_DIR/patches/{train,val}.h5`` under temporary names, renamed only when both are complete.

Cases are read and normalised by a process pool (``workers``); the parent writes them in case order, so the
output does not depend on ``workers``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brats import __version__
from brats.asymmetry import add_asymmetry, input_channels
from brats.bias import correct_bias
from brats.config import Config, config_to_yaml, save_config
from brats.data import (
    Case,
    discover_cases,
    load_case,
    load_seg,
    split_cases,
    validate_case,
)
from brats.errors import BratsError
from brats.extract.context import stack_context
from brats.extract.store import StoreWriter
from brats.extract.windows import case_rng, cut_patches, select_windows, window_grid
from brats.fs import atomic_path, atomic_write_text
from brats.preprocess import Normalization, brain_mask, normalize, pad_to
from brats.resolution import pool_image, pool_labels, pool_mask

log = logging.getLogger(__name__)

__all__ = [
    "CasePatches",
    "extract_case",
    "store_attrs",
    "run_extract",
]


@dataclass
class CasePatches:
    """The patches of one case: ``images`` ``(n, C, *patch)`` in the store dtype, ``labels`` ``(n, *patch)`` uint8
    source labels, ``positions`` ``(n, 3)`` int32 ``(x, y, z)`` starts."""

    case_id: str
    images: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    n_tumour: int
    n_background: int


def extract_case(case: Case, cfg: Config) -> CasePatches:
    """Load, normalise and cut the patches of one labelled case (pure function of ``case`` and ``cfg``).

    Raises:
        CaseError: a file is missing or unreadable (the message names it), or labels are unknown.
    """
    p = cfg.patches
    image, geometry = load_case(case, cfg.data.modalities)
    seg = load_seg(case, check=True)
    mask = brain_mask(image)
    if cfg.preprocess.bias_correction != "none":
        image = correct_bias(image, cfg.preprocess.bias_correction, mask=mask)
    image = normalize(image, cfg.preprocess.normalization, cfg.preprocess.percentiles, mask=mask)
    if cfg.preprocess.asymmetry:  # from the stored precision, as prediction computes it (brats.asymmetry)
        image = add_asymmetry(image.astype(cfg.preprocess.dtype).astype(np.float32), geometry.affine)
    if cfg.preprocess.downsample > 1:  # the model's coarser in-plane grid (brats.resolution)
        f = cfg.preprocess.downsample
        image, seg, mask = pool_image(image, f), pool_labels(seg, f), pool_mask(mask, f)
    image = image.astype(cfg.preprocess.dtype)
    if p.dim == 2 and p.context_slices:  # 2.5D: modality-major neighbour stacks (brats.extract.context)
        image = stack_context(image, p.context_slices)
    starts, ext = window_grid(image.shape[1:], p)  # type: ignore[arg-type]
    need = tuple(max(s, e) for s, e in zip(image.shape[1:], ext))
    image, seg, mask = pad_to(image, need), pad_to(seg, need), pad_to(mask, need)
    positions, n_t, n_b = select_windows(
        seg,
        mask,
        starts,
        ext,
        p.min_foreground,
        p.background_fraction,
        case_rng(cfg.seed, case.case_id),
        p.tumour_free_windows,
    )
    images, labels = cut_patches(image, seg, positions, ext, p.dim)
    return CasePatches(case.case_id, images, labels, positions.astype(np.int32), n_t, n_b)


# ----------------------------------------------------------------------------------------------------------------
# Parallel map (ordered, bounded)
# ----------------------------------------------------------------------------------------------------------------


def _task(kind: str, case: Case, cfg: Config) -> tuple[Any, str | None]:
    """Run one task in a worker; a user-facing error is returned as text, not raised."""
    try:
        if kind == "extract":
            return extract_case(case, cfg), None
        problems = validate_case(
            case, cfg.data.modalities, read_data=(kind == "read"), pattern=cfg.data.pattern
        )
        return None, "; ".join(f"{q.file}: {q.problem}" for q in problems) or None
    except BratsError as exc:
        return None, str(exc)


@contextlib.contextmanager
def _worker_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """A ``spawn`` process pool of ``workers`` processes (None for ``workers <= 1``: run in this process)."""
    if workers <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ordered_map(
    fn: Callable, jobs: Iterable[tuple], pool: ProcessPoolExecutor | None, ahead: int = 4
) -> Iterator[Any]:
    """``fn(*job)`` for each job, results in job order; computed by ``pool`` (if any) at most ``ahead`` jobs
    ahead of the consumer (bounding the memory held by finished results)."""
    if pool is None:
        for job in jobs:
            yield fn(*job)
        return
    pending: deque = deque()
    it = iter(jobs)
    try:
        for job in it:
            pending.append(pool.submit(fn, *job))
            if len(pending) >= ahead:
                break
        while pending:
            result = pending.popleft().result()
            for job in it:
                pending.append(pool.submit(fn, *job))
                break
            yield result
    finally:  # on an error (or an early close) do not run the queued jobs
        for fut in pending:
            fut.cancel()


def _progress(iterable: Iterable, total: int, desc: str, progress: bool) -> Iterable:
    if not progress:
        return iterable
    from brats.progress import track

    return track(iterable, total=total, desc=desc, unit="case")


# ----------------------------------------------------------------------------------------------------------------
# The extract stage
# ----------------------------------------------------------------------------------------------------------------


def _fail_or_skip(errors: dict[str, str], cfg: Config, what: str) -> None:
    if not errors:
        return
    listing = "; ".join(f"{cid}: {msg}" for cid, msg in errors.items())
    if not cfg.data.skip_invalid:
        raise BratsError(
            f"{len(errors)} invalid case(s) {what} under {cfg.data.root} (set data.skip_invalid: true to skip "
            f"them): {listing}"
        )
    log.warning("skipping %d invalid case(s): %s", len(errors), listing)


def _write_stores(
    cfg: Config,
    splits: dict[str, list[str]],
    results: Iterator[tuple[Any, str | None]],
    paths: dict[str, Path],
    attrs: dict[str, Any],
    skipped: dict[str, str],
    progress: bool,
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Consume the ordered task results (train cases, val cases, then test cases) into the two stores, renamed
    into place only when both are complete. Updates ``skipped``; returns patch counts and the kept case ids."""
    d, p = cfg.data, cfg.patches
    patch = tuple(int(s) for s in p.size)
    counts: dict[str, int] = {}
    kept: dict[str, list[str]] = {}
    with atomic_path(paths["train"]) as tmp_train, atomic_path(paths["val"]) as tmp_val:
        for split, tmp in (("train", tmp_train), ("val", tmp_val)):
            kept[split] = []
            k = p.context_slices if p.dim == 2 else 0
            n_channels = input_channels(len(d.modalities), cfg.preprocess.asymmetry, k)
            with StoreWriter(tmp, n_channels, patch, cfg.preprocess.dtype, p.compression, attrs) as w:
                for cid in _progress(splits[split], len(splits[split]), f"extract {split}", progress):
                    res, err = next(results)
                    if err:
                        _fail_or_skip({cid: err}, cfg, "while reading")
                        skipped[cid] = err
                        continue
                    w.add_case(cid, res.images, res.labels, res.positions)
                    kept[split].append(cid)
                    log.debug("%s: %d tumour + %d background patches", cid, res.n_tumour, res.n_background)
                counts[split] = w.n
        kept["test"] = []
        for cid in splits["test"]:
            _, err = next(results)
            if err:
                _fail_or_skip({cid: err}, cfg, "while reading")
                skipped[cid] = err
            else:
                kept["test"].append(cid)
        if not kept["train"]:
            raise BratsError(f"{d.root}: every training case was skipped as invalid")
    return counts, kept


def store_attrs(cfg: Config, label_scheme: str) -> dict[str, Any]:
    """The provenance attributes of a store made with ``cfg`` (see :data:`brats.extract.store.ATTRS`)."""
    p = cfg.patches
    return {
        "modalities": list(cfg.data.modalities),
        "dim": int(p.dim),
        "patch_size": [int(s) for s in p.size],
        "stride": [int(s) for s in p.stride],
        "slice_stride": int(p.slice_stride) if p.dim == 2 else 1,
        "context_slices": int(p.context_slices) if p.dim == 2 else 0,
        "min_foreground": int(p.min_foreground),
        "background_fraction": float(p.background_fraction),
        "normalization": Normalization.from_config(cfg.preprocess).to_dict(),
        "label_scheme": label_scheme,
        "config": config_to_yaml(cfg),
        "version": __version__,
    }


def _split(valid: list[Case], cfg: Config) -> tuple[dict[str, list[str]], str]:
    """Patient-level split of the valid cases, and the label scheme they share."""
    d = cfg.data
    try:
        splits = split_cases(valid, d.train_fraction, d.val_fraction, d.split_seed, d.fold, d.n_folds)
    except ValueError as exc:
        raise BratsError(f"data.fold: {exc}") from exc
    if not splits["train"]:
        raise BratsError(f"{d.root}: no labelled case (with a *_seg file) for the training split")
    by_id = {c.case_id: c for c in valid}
    schemes = sorted({by_id[c].label_scheme.name for c in splits["train"] + splits["val"]})
    if len(schemes) > 1:
        raise BratsError(
            f"{d.root}: cases mix label schemes {schemes} (ET = 4 vs ET = 3); extract them apart"
        )
    return splits, schemes[0]


def _split_doc(
    cfg: Config,
    kept: dict[str, list[str]],
    by_id: dict[str, Case],
    scheme: str,
    skipped: dict[str, str],
    counts: dict[str, int],
) -> dict[str, Any]:
    """The contents of ``splits.json``."""
    d = cfg.data
    naming = sorted({by_id[c].naming for s in kept.values() for c in s})
    return {
        **kept,
        "naming": naming[0] if len(naming) == 1 else naming,
        "label_scheme": scheme,
        "root": str(d.root),
        "split_seed": d.split_seed,
        "train_fraction": d.train_fraction,
        "val_fraction": d.val_fraction,
        "fold": d.fold,
        "n_folds": d.n_folds,
        "skipped": [{"case": cid, "problem": msg} for cid, msg in sorted(skipped.items())],
        "patches": counts,
        "version": __version__,
    }


def run_extract(cfg: Config, workers: int = 1, progress: bool = False) -> dict[str, Any]:
    """Extract the train/val patch stores of ``cfg`` (the ``brats extract`` command).

    Writes ``OUTPUT_DIR/splits.json``, ``OUTPUT_DIR/patches/{train,val}.h5`` and
    ``OUTPUT_DIR/config_extract.yaml``. The stores are written under temporary names and renamed only when both
    are complete, so a failure leaves any previous stores untouched.

    Returns:
        ``{"splits", "train", "val", "config"}`` paths and the counts ``train_cases``, ``val_cases``,
        ``test_cases``, ``train_patches``, ``val_patches``, ``skipped``.

    Raises:
        BratsError: no case found; invalid cases (listed, with the file and the problem) unless
            ``data.skip_invalid``; no labelled training case; mixed label schemes.
    """
    d = cfg.data
    out_dir = Path(cfg.output_dir)
    cases = discover_cases(d.root, d.naming, d.pattern)
    by_id = {c.case_id: c for c in cases}
    paths = {s: out_dir / "patches" / f"{s}.h5" for s in ("train", "val")}
    workers = max(int(workers), 1)
    with _worker_pool(workers) as pool:
        # 1. Files, headers, geometry and labels of every case (voxel data is read in step 3).
        results = _ordered_map(_task, [("check", c, cfg) for c in cases], pool, 4 * workers)
        errors = {
            c.case_id: err
            for c, (_, err) in zip(cases, _progress(results, len(cases), "check", progress))
            if err
        }
        _fail_or_skip(errors, cfg, "found")
        skipped = dict(errors)

        # 2. Patient-level split.
        valid = [c for c in cases if c.case_id not in errors]
        splits, scheme = _split(valid, cfg)

        # 3. Normalise and cut (the parent writes in case order); test cases are only read in full.
        jobs = [("extract", by_id[c], cfg) for s in ("train", "val") for c in splits[s]]
        jobs += [("read", by_id[c], cfg) for c in splits["test"]]
        results = _ordered_map(_task, jobs, pool, 2 * workers)
        try:
            counts, kept = _write_stores(
                cfg, splits, results, paths, store_attrs(cfg, scheme), skipped, progress
            )
        finally:
            results.close()  # type: ignore[attr-defined]
    # 4. Provenance (after the stores are in place).
    split_doc = _split_doc(cfg, kept, by_id, scheme, skipped, counts)
    splits_path = atomic_write_text(out_dir / "splits.json", json.dumps(split_doc, indent=2) + "\n")
    config_path = save_config(cfg, out_dir / "config_extract.yaml")
    return {
        "splits": str(splits_path),
        "train": str(paths["train"]),
        "val": str(paths["val"]),
        "config": str(config_path),
        "train_cases": len(kept["train"]),
        "val_cases": len(kept["val"]),
        "test_cases": len(kept["test"]),
        "train_patches": counts["train"],
        "val_patches": counts["val"],
        "skipped": len(skipped),
    }
