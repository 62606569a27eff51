"""Validation of a kaggle_3m patient folder: every problem as a named :class:`~brats.data.validate.Problem`.

Problem codes (``Problem.code``; docs/lgg.md):

================== ==============================================================================
code               meaning
================== ==============================================================================
``slice-gap``      the slice numbers ``k`` are not 1..n: some ``k`` has neither image nor mask
``missing-mask``   an image slice has no ``_mask.tif`` (in a patient that has masks)
``missing-image``  a mask has no image slice
``unreadable``     a TIFF cannot be read
``slice-size``     an image slice is not 256x256 RGB, or a mask is not 256x256
``mask-values``    a mask holds values other than 0 and 255
``modality``       a requested modality is not one of t1, flair, t1ce
================== ==============================================================================
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brats.data.kaggle import KAGGLE_MODALITIES, SLICE_SIZE, read_tiff, slice_files
from brats.data.naming import MODALITIES, Case, CaseError
from brats.data.validate import Problem

__all__ = ["validate_kaggle_case"]


def _gaps(ks: list[int]) -> list[int]:
    return sorted(set(range(1, max(ks) + 1)) - set(ks)) if ks else []


def _check_file(path: Path, shape: tuple[int, ...], is_mask: bool) -> list[tuple[str, str]]:
    """``(code, text)`` problems of one slice file."""
    try:
        arr = read_tiff(path)
    except CaseError as exc:
        return [("unreadable", str(exc).split(": ", 1)[-1])]
    if is_mask and arr.ndim == 3:
        arr = arr[..., 0]
    if arr.shape != shape:
        what = "mask" if is_mask else "image slice"
        return [("slice-size", f"{what} of size {arr.shape}, expected {shape}")]
    if is_mask:
        bad = sorted(int(v) for v in np.unique(arr) if v not in (0, 255))
        if bad:
            return [("mask-values", f"mask values {bad[:10]}; masks must hold only 0 and 255")]
    return []


def validate_kaggle_case(
    case: Case, modalities: list[str] | tuple[str, ...] = KAGGLE_MODALITIES, read_data: bool = True
) -> list[Problem]:
    """Every problem of one kaggle_3m patient folder (codes in the module doc); ``[]`` when it is sound.

    ``modalities`` other than t1, flair, t1ce are reported (the BraTS default list counts as "not chosen").
    ``read_data=False`` checks the file names only.
    """
    problems: list[Problem] = []
    cid, folder = case.case_id, case.folder

    def add(file: Path | str, code: str, text: str) -> None:
        problems.append(Problem(cid, str(file), f"{code}: {text}", code))

    if tuple(modalities) != MODALITIES:
        for m in modalities:
            if m not in KAGGLE_MODALITIES:
                add(
                    folder,
                    "modality",
                    f"no modality {m}; kaggle_3m slices hold {', '.join(KAGGLE_MODALITIES)}",
                )
    images, masks = slice_files(folder)
    gaps = _gaps(sorted(set(images) | set(masks)))  # numbers with neither an image nor a mask
    if gaps:
        add(folder, "slice-gap", f"slice numbers skip k = {gaps[:10]}")
    if masks:
        for k in sorted(set(images) - set(masks)):
            add(folder / f"{cid}_{k}_mask.tif", "missing-mask", f"image slice {k} has no mask")
        for k in sorted(set(masks) - set(images)):
            add(folder / f"{cid}_{k}.tif", "missing-image", f"mask {k} has no image slice")
    if read_data:
        for path in images.values():
            for code, text in _check_file(path, (*SLICE_SIZE, 3), is_mask=False):
                add(path, code, text)
        for path in masks.values():
            for code, text in _check_file(path, SLICE_SIZE, is_mask=True):
                add(path, code, text)
    return problems
