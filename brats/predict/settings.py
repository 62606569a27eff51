"""Prediction settings: :class:`PredictSettings` (everything but the model) and the ones a checkpoint implies.

:func:`settings_from_checkpoint` reads the checkpoint's config (``predict`` section, patch size, normalisation,
``model.output``) and the post-processing thresholds ``brats tune-postprocess`` stored in it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from brats.asymmetry import rescaled_channels
from brats.checkpoint import Checkpoint
from brats.labels import LabelScheme, get_scheme
from brats.networks import input_multiple
from brats.outputs import DECODE_RULES, region_threshold_problem
from brats.predict.sliding import BLEND_MODES, WINDOW_MODES, InferenceError
from brats.preprocess import Normalization, rescale_batch

__all__ = ["PRECISIONS", "PredictSettings", "settings_from_checkpoint"]

#: ``--precision`` choices: ``auto`` measures on a CPU (:mod:`brats.precision`), float16 on CUDA.
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class PredictSettings:
    """Everything :func:`predict_case` needs besides the model (built by :func:`load_predictor`).

    Attributes:
        modalities: input channels in order, e.g. ``["t1", "t1ce", "t2", "flair"]``.
        patch_size: training patch, ``[H, W]`` (2D) or ``[X, Y, Z]`` (3D).
        normalization: how the training patches were normalised (the patch store's record).
        overlap, blend, tta, batch_size: sliding-window settings.
        multiple: window sizes are multiples of it (``2 ** encoder_depth``).
        window_fn: per-window-batch transform (the training rescale), or None.
        min_component_ml, et_min_ml: post-processing thresholds in mL (0 = off), converted per case with its
            voxel size; by default the checkpoint's (chosen on validation by ``brats tune-postprocess``).
        core_min_ml: drop tumour components with less core than this, in mL (0 = off); by default the config's.
        fragment_ml: relabel core and ET pieces smaller than this, in mL, that are not their tumour component's
            largest (0 = off; :func:`brats.predict.remove_fragments`); by default the config's.
        postprocess: apply them.
        label_scheme: source labels for cases whose naming does not fix them (``custom`` naming).
        context_slices: 2.5D models: ``k`` neighbouring slices per side (:mod:`brats.extract.context`).
        windows, precision: ``box``/``patch`` windows; ``auto``/``fp32``/``bf16``, resolved on the device into
            ``amp_dtype`` by :func:`load_predictor` (``precision_record`` says why).
        output: the model's ``model.output`` (``classes`` or ``regions``; :mod:`brats.outputs`).
        decode: how ``classes`` probabilities become labels, ``argmax`` or ``regions``
            (:func:`brats.outputs.decode`).
        region_thresholds: WT, TC and ET probability thresholds of the region rule.
    """

    modalities: list[str]
    patch_size: list[int]
    normalization: Normalization = field(default_factory=Normalization)
    overlap: float = 0.5
    blend: str = "gaussian"
    tta: bool = False
    batch_size: int = 16
    multiple: int = 32
    window_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    min_component_ml: float = 0.0
    et_min_ml: float = 0.0
    core_min_ml: float = 0.0
    fragment_ml: float = 0.0
    postprocess: bool = True
    label_scheme: LabelScheme = field(default_factory=lambda: get_scheme("brats2021"))
    naming: str = "auto"
    pattern: str | None = None
    slice_spacing_mm: float = 1.0  # kaggle_3m slice grids (data.slice_spacing_mm)
    context_slices: int = 0
    windows: str = "box"
    precision: str = "auto"
    amp_dtype: torch.dtype | None = None
    precision_record: dict[str, Any] = field(default_factory=dict)
    output: str = "classes"
    decode: str = "argmax"
    region_thresholds: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def check(self, where: str) -> None:
        """Raise :class:`InferenceError` naming ``where`` for an out-of-range setting."""
        if not 0 <= self.overlap < 1:
            raise InferenceError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.blend not in BLEND_MODES:
            raise InferenceError(f"blend must be one of {', '.join(BLEND_MODES)}, got {self.blend!r}")
        if self.batch_size < 1:
            raise InferenceError(f"batch size must be at least 1, got {self.batch_size}")
        for key in ("min_component_ml", "et_min_ml", "core_min_ml", "fragment_ml"):
            value = getattr(self, key)
            if not value >= 0:
                raise InferenceError(f"{where}: {key} must be >= 0 (mL; 0 = off), got {value}")
        for key, allowed in (("windows", WINDOW_MODES), ("precision", PRECISIONS), ("decode", DECODE_RULES)):
            if getattr(self, key) not in allowed:
                raise InferenceError(f"{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        problem = region_threshold_problem(self.region_thresholds)
        if problem:
            raise InferenceError(f"{where}: {problem}")
        if self.decode == "regions" and self.output == "classes" and self.label_scheme.is_binary:
            raise InferenceError(
                f"{where}: decode=regions needs a BraTS label scheme, got {self.label_scheme.name!r}"
            )


def settings_from_checkpoint(
    ckpt: Checkpoint,
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
) -> PredictSettings:
    """The prediction settings a checkpoint implies; ``None`` arguments take its config's ``predict`` section.

    Post-processing thresholds: the arguments, else the checkpoint's :attr:`~brats.checkpoint.Checkpoint.postprocess`
    (the values ``brats tune-postprocess`` chose on validation, or the config's at training time).
    """
    cfg = ckpt.config
    pc = cfg.predict
    settings = PredictSettings(
        modalities=list(ckpt.modalities),
        patch_size=list(ckpt.patch_size),
        normalization=ckpt.normalization,
        overlap=float(pc.overlap if overlap is None else overlap),
        blend=str(pc.blend if blend is None else blend),
        tta=bool(pc.tta if tta is None else tta),
        batch_size=int(pc.batch_size if batch_size is None else batch_size),
        multiple=input_multiple(cfg.model),
        context_slices=int(cfg.patches.context_slices),
        min_component_ml=float(
            ckpt.postprocess.get("min_component_ml", pc.postprocess.min_component_ml)
            if min_component_ml is None
            else min_component_ml
        ),
        et_min_ml=float(
            ckpt.postprocess.get("et_min_ml", pc.postprocess.et_min_ml) if et_min_ml is None else et_min_ml
        ),
        core_min_ml=float(
            ckpt.postprocess.get("core_min_ml", pc.postprocess.core_min_ml)
            if core_min_ml is None
            else core_min_ml
        ),
        fragment_ml=float(
            ckpt.postprocess.get("fragment_ml", pc.postprocess.fragment_ml)
            if fragment_ml is None
            else fragment_ml
        ),
        postprocess=bool(postprocess),
        label_scheme=ckpt.label_scheme,
        naming="custom" if cfg.data.naming == "custom" else "auto",
        pattern=cfg.data.pattern if cfg.data.naming == "custom" else None,
        slice_spacing_mm=float(cfg.data.slice_spacing_mm),
        windows=str(pc.windows if windows is None else windows),
        precision=str(pc.precision if precision is None else precision),
        output=str(cfg.model.output),
        decode=str(pc.decode if decode is None else decode),
        region_thresholds=tuple(  # type: ignore[arg-type]
            float(v) for v in (pc.region_thresholds if region_thresholds is None else region_thresholds)
        ),
    )
    rescale = cfg.augment.rescale
    if rescale.enabled:
        settings.window_fn = functools.partial(
            rescale_batch,
            out_min_max=list(rescale.out_min_max),
            percentiles=list(rescale.percentiles),
            # as training rescaled: the modalities only, not the asymmetry channels after them
            channels=rescaled_channels(
                len(ckpt.modalities), ckpt.normalization.asymmetry, cfg.patches.context_slices
            ),
        )
    return settings
