"""Predict whole cases from a checkpoint and write NIfTI segmentations on the input grid.

``brats predict`` / ``tools/predict.py`` call :func:`run_predict`. The checkpoint alone says which modalities in
which order, how to normalise, the patch size, the per-window intensity rescale and the label scheme; the
``predict`` section of its config gives the defaults of overlap, blending, TTA, batch size and post-processing.

For each case (:func:`predict_case`):

1. load the modalities (``(C, X, Y, Z)`` float32, checkpoint order) with :func:`brats.data.load_case`;
2. normalise as the patch store recorded it (:class:`brats.preprocess.Normalization`, rounded through its dtype,
   float16 by default): the values the model was trained on (the next case is read meanwhile, in a thread);
3. sliding-window probabilities (:func:`brats.predict.sliding.predict_volume`) on the input the model was
   trained on (:func:`model_grid`): with ``preprocess.asymmetry`` the asymmetry channels are appended
   (:mod:`brats.asymmetry`); a model trained with ``preprocess.downsample`` > 1 sees the pooled image and its
   probabilities are upsampled to the input's grid (:mod:`brats.resolution`);
4. training classes (argmax, or region thresholds: :func:`brats.outputs.decode`), post-processing
   (:mod:`brats.predict.postprocess`), mapping back to the case's source labels (ET = 4 for 2020/2021 naming,
   3 for 2023);
5. ``OUTPUT/<case_id>.nii.gz`` (uint8), optionally ``OUTPUT/<case_id>_prob.nii.gz`` (``(X, Y, Z, K)`` float16
   values stored as float32: NIfTI-1 has no float16; ``regions`` models: ``1 - WT, WT, TC, ET``), both written
   atomically with the first modality's header.

kaggle_3m patients (TIFF slices, binary scheme; docs/lgg.md) are predicted on their slice grid, with the
checkpoint's ``data.slice_spacing_mm`` in the affine; ``fmt="tif"`` also writes
``OUTPUT/<case_id>/<case_id>_<k>_mask.tif`` (0/255), the dataset's own layout.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brats.asymmetry import add_asymmetry
from brats.data import Case, CaseError, Geometry, load_case, resolve_cases, save_nifti, save_seg
from brats.data.kaggle import with_slice_spacing, write_kaggle_masks
from brats.data.runs import run_split_cases
from brats.devices import resolve_device
from brats.extract.context import stack_context
from brats.fs import check_output_dir
from brats.labels import to_source
from brats.networks import model_from_checkpoint
from brats.outputs import decode
from brats.precision import forward_precision
from brats.predict.fuse import fold_batchnorm
from brats.predict.postprocess import postprocess_ml
from brats.predict.prefetch import predict_cases
from brats.predict.settings import PredictSettings, settings_from_checkpoint
from brats.predict.sliding import InferenceError, predict_volume
from brats.preprocess import Normalization
from brats.resolution import pool_image, upsample_probabilities

__all__ = [
    "PredictSettings",
    "settings_from_checkpoint",
    "load_predictor",
    "load_input",
    "predict_probabilities",
    "predict_case",
    "run_predict",
]

log = logging.getLogger(__name__)


def load_predictor(
    checkpoint: str | Path,
    device: str | torch.device = "auto",
    overlap: float | None = None,
    blend: str | None = None,
    tta: bool | None = None,
    batch_size: int | None = None,
    postprocess: bool = True,
    min_component_ml: float | None = None,
    et_min_ml: float | None = None,
    windows: str | None = None,
    precision: str | None = None,
    core_min_ml: float | None = None,
    decode: str | None = None,
    region_thresholds: Sequence[float] | None = None,
    fragment_ml: float | None = None,
) -> tuple[torch.nn.Module, PredictSettings]:
    """The model (eval mode, channels_last, on ``device``) and the settings of a checkpoint.

    ``None`` arguments take the checkpoint config's ``predict`` section; the precision is resolved on the
    device (:func:`brats.precision.forward_precision`).
    """
    dev = resolve_device(device, key="--device")
    model, ckpt = model_from_checkpoint(checkpoint, dev)
    if len(ckpt.patch_size) != ckpt.dim:
        raise InferenceError(f"{checkpoint}: patch_size {ckpt.patch_size} does not fit dim={ckpt.dim}")
    settings = settings_from_checkpoint(
        ckpt, overlap, blend, tta, batch_size, postprocess, min_component_ml, et_min_ml, windows, precision,
        core_min_ml, decode, region_thresholds, fragment_ml,
    )  # fmt: skip
    settings.check(str(checkpoint))
    fold_batchnorm(model)  # eval-mode batch norms merged into their convolutions (same outputs, faster)
    model.to(memory_format=torch.channels_last if ckpt.dim == 2 else torch.channels_last_3d)
    shape = (settings.batch_size if ckpt.dim == 2 else 1, ckpt.in_channels, *settings.patch_size)
    probe = forward_precision(model, settings.precision, dev, shape, dataclasses.asdict(ckpt.config.model))
    settings.amp_dtype, settings.precision_record = probe
    return model, settings


def _case_error(case: Case, exc: Exception) -> CaseError:
    msg = str(exc)
    return CaseError(msg if case.case_id in msg else f"case {case.case_id}: {msg}")


def load_input(case: Case, settings: PredictSettings) -> tuple[np.ndarray, Geometry]:
    """The normalised image ``(C, X, Y, Z)`` float32 of a case and its grid (steps 1-2 of the module doc)."""
    try:
        image, geometry = load_case(case, settings.modalities)
    except CaseError as exc:
        raise _case_error(case, exc) from exc
    return settings.normalization.apply(image), geometry


def model_grid(image: np.ndarray, affine: np.ndarray, norm: Normalization) -> np.ndarray:
    """A normalised case ``(C, X, Y, Z)`` as the model sees it: with ``norm.asymmetry`` its asymmetry channels
    appended (:mod:`brats.asymmetry`), then with ``norm.downsample`` > 1 pooled to the model's coarser in-plane
    grid (:mod:`brats.resolution`), each step rounded through the store's dtype (extraction rounds once, after
    both, so the two can differ by a float16 rounding where the grid is pooled)."""
    if norm.asymmetry:
        image = add_asymmetry(image, affine).astype(norm.dtype).astype(np.float32)
    if norm.downsample > 1:
        image = pool_image(image, norm.downsample).astype(norm.dtype).astype(np.float32)
    return image


def predict_probabilities(
    model: torch.nn.Module,
    case: Case,
    settings: PredictSettings,
    device: str | torch.device | None = None,
    loaded: tuple[np.ndarray, Geometry] | None = None,
) -> tuple[np.ndarray, Geometry]:
    """Load, normalise and predict one case (no post-processing, nothing written); ``loaded``: the result of
    :func:`load_input` when the caller read the case already (e.g. in a background thread).

    Returns:
        ``(prob, geometry)``: ``(K, X, Y, Z)`` float32 class probabilities and the grid of the first modality.

    Raises:
        CaseError: a modality is missing or unreadable, or the modalities' geometry disagrees (the message
            names the case and the files).
    """
    image, geometry = loaded if loaded is not None else load_input(case, settings)
    factor = settings.normalization.downsample
    brain = full_brain = np.any(image != 0, axis=0)
    image = model_grid(image, geometry.affine, settings.normalization)
    if factor > 1:
        brain = np.any(image != 0, axis=0)
    prob = predict_volume(
        model,
        stack_context(image, settings.context_slices),
        settings.patch_size,
        overlap=settings.overlap,
        blend=settings.blend,
        batch_size=settings.batch_size,
        tta=settings.tta,
        window_fn=settings.window_fn,
        device=device,
        multiple=settings.multiple,
        windows=settings.windows,
        amp_dtype=settings.amp_dtype,
        mask=brain,
        output=settings.output,
    )
    if factor > 1:
        prob = upsample_probabilities(prob, full_brain.shape[:2], factor)
        prob[:, ~full_brain] = 0.0
        prob[0, ~full_brain] = 1.0
    return prob, geometry


def predict_case(
    model: torch.nn.Module,
    case: Case,
    settings: PredictSettings,
    output_dir: str | Path,
    probabilities: bool = False,
    device: str | torch.device | None = None,
    fmt: str = "nifti",
    loaded: tuple[np.ndarray, Geometry] | None = None,
) -> dict[str, Any]:
    """Predict one case and write ``OUTPUT/<case_id>.nii.gz`` (and ``<case_id>_prob.nii.gz``).

    Returns:
        ``{"case", "seg", "prob" (path or None), "seconds", "postprocess" (stats or None),
        "labels" (source labels present)}``.

    Raises:
        CaseError: see :func:`predict_probabilities`.
    """
    t0 = time.perf_counter()
    output_dir = Path(output_dir)
    prob, geometry = predict_probabilities(model, case, settings, device, loaded)
    classes = decode(prob, settings.output, rule=settings.decode, thresholds=settings.region_thresholds)
    stats = None
    if settings.postprocess:
        classes, stats = postprocess_ml(
            classes, geometry.spacing, settings.min_component_ml, settings.et_min_ml, settings.core_min_ml,
            settings.fragment_ml,
        )  # fmt: skip
    scheme = case.label_scheme if case.naming != "custom" else settings.label_scheme
    labels = to_source(classes, scheme)
    seg_path = save_seg(output_dir / f"{case.case_id}.nii.gz", labels, geometry)
    if fmt == "tif":
        write_kaggle_masks(output_dir / case.case_id, case.case_id, labels)
    prob_path = None
    if probabilities:
        prob_path = save_nifti(
            output_dir / f"{case.case_id}_prob.nii.gz", np.moveaxis(prob, 0, -1), geometry, np.float16
        )
    seconds = time.perf_counter() - t0
    log.info("%s: %.1f s, post-processing %s", case.case_id, seconds, stats)
    return {
        "case": case.case_id,
        "seg": seg_path,
        "prob": prob_path,
        "seconds": seconds,
        "postprocess": stats,
        "labels": sorted(int(v) for v in np.unique(labels)),
    }


def run_predict(
    checkpoint: str | Path,
    input_path: str | Path | None,
    output_dir: str | Path,
    overlap: float | None = None,
    blend: str | None = None,
    tta: bool | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    probabilities: bool = False,
    shard: tuple[int, int] | None = None,
    postprocess: bool = True,
    progress: bool = False,
    fmt: str = "nifti",
    run_dir: str | Path | None = None,
    split: str | None = None,
    data_root: str | Path | None = None,
    min_component_ml: float | None = None,
    et_min_ml: float | None = None,
    windows: str | None = None,
    precision: str | None = None,
    core_min_ml: float | None = None,
    decode: str | None = None,
    region_thresholds: Sequence[float] | None = None,
    fragment_ml: float | None = None,
) -> list[Path]:
    """Predict every case under ``input_path`` (or of one split of a run) and write ``output_dir/<case_id>.nii.gz``.

    Args:
        checkpoint: a checkpoint written by training (``best.pt`` / ``last.pt``).
        input_path: a case folder, a folder of cases, or a text file listing case folders (one per line);
            None with ``run_dir`` and ``split``.
        output_dir: output folder (created).
        overlap, blend, tta, batch_size: sliding-window settings; None = the checkpoint config's ``predict``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        probabilities: also write ``<case_id>_prob.nii.gz`` (``(X, Y, Z, K)``, float16 values in float32).
        shard: ``(i, n)``: predict only cases ``i, i + n, i + 2n, ...`` of the sorted list.
        postprocess: apply post-processing (small and coreless components, ET rule, fragments).
        progress: show a progress bar over cases.
        fmt: ``nifti``, or ``tif`` (kaggle_3m cases only): also ``<case_id>/<case_id>_<k>_mask.tif``.
        run_dir, split: instead of ``input_path``: exactly the cases of ``split`` (``train``, ``val``, ``test``) in
            ``run_dir/splits.json``, read from its data root (:func:`brats.data.runs.run_split_cases`).
        data_root: with ``run_dir``: the data root, when it moved since extraction.
        min_component_ml, et_min_ml, core_min_ml, fragment_ml: thresholds in mL; None = the checkpoint's.
        windows, precision, decode, region_thresholds: see :class:`PredictSettings`; None = the config's.

    Returns:
        The segmentation paths written, in case order.
    """
    if shard is not None and (shard[1] < 1 or not 0 <= shard[0] < shard[1]):
        raise InferenceError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
    if (input_path is None) == (run_dir is None or split is None):
        raise InferenceError(
            "give either an input path or a run folder and a split (--run RUN_DIR --split test)"
        )
    output_dir = check_output_dir(output_dir, "--output")
    model, settings = load_predictor(
        checkpoint, device, overlap, blend, tta, batch_size, postprocess, min_component_ml, et_min_ml, windows,
        precision, core_min_ml, decode, region_thresholds, fragment_ml,
    )  # fmt: skip
    if input_path is not None:
        cases = resolve_cases(input_path, settings.naming, settings.pattern)
    else:
        _, cases = run_split_cases(run_dir, str(split), settings.naming, settings.pattern, data_root)  # type: ignore[arg-type]
    cases = [with_slice_spacing(c, settings.slice_spacing_mm) for c in cases]
    if fmt not in ("nifti", "tif") or (fmt == "tif" and any(c.naming != "kaggle_3m" for c in cases)):
        raise InferenceError(f"--format {fmt}: expected nifti, or tif for kaggle_3m cases only")
    if shard is not None:
        cases = cases[shard[0] :: shard[1]]
    log.info(
        "predicting %d case(s): overlap %s, %s blending, tta %s, batch %d, %s windows",
        len(cases), settings.overlap, settings.blend, settings.tta, settings.batch_size, settings.windows,
    )  # fmt: skip

    def one(case: Case, loaded: tuple[np.ndarray, Geometry]) -> Path:
        return predict_case(model, case, settings, output_dir, probabilities, fmt=fmt, loaded=loaded)["seg"]

    return predict_cases(
        cases, functools.partial(load_input, settings=settings), one, Path(output_dir), progress
    )
