"""The ``predict`` section of the config schema: sliding-window inference, decoding and post-processing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from brats.config.fields import _f

__all__ = ["PostprocessConfig", "PredictConfig"]


@dataclass
class PostprocessConfig:
    min_component_ml: float = _f(
        0.0,
        "Remove connected tumour components (WT, 26-connectivity) smaller than this volume in mL (0 = off); "
        "converted to voxels with each case's voxel volume. Off by default: `brats tune-postprocess` chooses it on "
        "the validation split and stores it in the checkpoint (docs/predict.md).",
    )
    et_min_ml: float = _f(
        0.0,
        "nnU-Net BraTS rule: when the predicted ET is smaller than this volume in mL, relabel it as NCR (0 = off). "
        "Off by default; chosen on the validation split by `brats tune-postprocess` (docs/predict.md).",
    )
    core_min_ml: float = _f(
        0.0,
        "Remove connected tumour components (WT, 26-connectivity) whose tumour core (NCR + ET) is smaller than "
        "this volume in mL (0 = off): edema-like blobs with no core (docs/predict.md). A rule for gliomas, off "
        "by default; `brats tune-postprocess` keeps the config's value.",
    )
    fragment_ml: float = _f(
        0.0,
        "Inside each tumour component, relabel the ET pieces (26-connected) smaller than this volume in mL, other "
        "than the component's largest, as NCR, then the tumour core pieces as edema (0 = off): specks that the "
        "lesion-wise metrics count as false lesions (docs/predict.md). The whole tumour is unchanged; "
        "`brats tune-postprocess` keeps the config's value.",
    )
    tune: bool = _f(
        True,
        "`brats demo`: choose `min_component_ml` and `et_min_ml` on the validation split after training "
        "(`brats tune-postprocess`); false keeps the values above (configs/demo.yaml: chosen on the selection "
        "cohorts of bench/generalise.py, docs/training.md).",
    )


@dataclass
class PredictConfig:
    overlap: float = _f(0.5, "Sliding-window overlap in [0, 1).", ge=0, lt=1)
    blend: Literal["gaussian", "constant"] = _f("gaussian", "Blending of overlapping windows.")
    tta: bool = _f(False, "Flip test-time augmentation (mean of softmax over flips).")
    batch_size: int = _f(16, "Windows per forward pass.", ge=1)
    windows: Literal["box", "patch"] = _f(
        "box",
        "2D models: `box` = each axial slice's brain box (rounded up to a multiple of 32) is one window (overlap "
        "and blend then have no effect; labels agree with `patch` at overlap 0.5 on >= 99 % of brain voxels, "
        "docs/performance.md); `patch` = sliding windows of at most the training patch.",
    )
    precision: Literal["auto", "fp32", "bf16"] = _f(
        "auto",
        "Precision of the forward pass: `auto` = float16 on CUDA; on CPU bf16 when a short probe measures it "
        "faster than float32 (cached per machine and model), else float32.",
    )
    decode: Literal["argmax", "regions"] = _f(
        "argmax",
        "How a `classes` model's softmax becomes labels: `argmax`, or `regions` = the nested region rule (WT = "
        "1 - p(background), TC = p(NCR) + p(ET), ET = p(ET), each at or above its threshold; BraTS schemes only; "
        "brats/outputs.py). `model.output: regions` models always use the region rule.",
    )
    region_thresholds: list[float] = _f(
        [0.5, 0.5, 0.5],
        "WT, TC and ET probability thresholds of the region rule (`decode: regions`, and `model.output: "
        "regions` models).",
        gt=0,
        le=1,
    )
    postprocess: PostprocessConfig = _f(PostprocessConfig(), "Post-processing of the predicted labels.")
