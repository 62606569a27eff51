"""NIfTI loading and saving with geometry: images ``(C, X, Y, Z)``, segmentations, writes on the input grid.

Arrays are channel-first ``(C, X, Y, Z)`` in nibabel's voxel order, channels in the requested modality order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt

from brats.data.naming import MODALITIES, Case, CaseError
from brats.fs import atomic_path
from brats.labels import LabelScheme, check_labels

__all__ = [
    "AFFINE_TOL",
    "check_finite",
    "Geometry",
    "load_case",
    "load_seg",
    "load_label_file",
    "load_geometry",
    "geometry_mismatch",
    "save_nifti",
    "save_seg",
]

AFFINE_TOL = 1e-4


@dataclass
class Geometry:
    """Voxel grid of a case: shape, affine and the NIfTI header of the reference (first) modality."""

    shape: tuple[int, ...]
    affine: np.ndarray
    header: nib.Nifti1Header
    source: Path | None = None

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(float(z) for z in self.header.get_zooms()[:3])


def _load_nifti(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for broken files
        raise CaseError(f"{path}: cannot read NIfTI header ({exc})") from exc
    return img  # type: ignore[return-value]


def _read_data(img: nib.Nifti1Image, path: Path, dtype: type) -> np.ndarray:
    """The voxel data; floating data must be finite (a NaN or infinite voxel raises, naming the file)."""
    try:
        if np.issubdtype(dtype, np.floating):
            data = np.asarray(img.get_fdata(dtype=dtype))
        else:
            return np.asarray(img.dataobj)
    except Exception as exc:  # truncated gzip: EOFError, zlib.error, OSError ...
        raise CaseError(f"{path}: cannot read image data ({type(exc).__name__}: {exc})") from exc
    check_finite(data, path)
    return data


def check_finite(data: np.ndarray, path: Path | str) -> None:
    """Raise :class:`CaseError` naming ``path`` when ``data`` holds NaN or infinite values.

    One float64 sum decides (NaN and inf propagate into it); the voxels are counted only when it fails.
    """
    if not np.issubdtype(data.dtype, np.floating) or np.isfinite(
        np.add.reduce(data, axis=None, dtype=np.float64)
    ):
        return
    nan, inf = int(np.isnan(data).sum()), int(np.isinf(data).sum())
    if nan or inf:
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(data))[0])
        raise CaseError(
            f"{path}: {nan} NaN and {inf} infinite voxel(s) (first at voxel {first}); "
            "fix or re-export the image"
        )


def load_geometry(path: str | Path) -> Geometry:
    """Shape, affine and header of one NIfTI file (no voxel data read)."""
    path = Path(path)
    img = _load_nifti(path)
    return Geometry(tuple(int(s) for s in img.shape[:3]), img.affine.copy(), img.header.copy(), path)


def geometry_mismatch(a: Geometry, b: Geometry) -> str | None:
    if a.shape != b.shape:
        return f"shape {b.shape} differs from {a.source.name if a.source else 'reference'} shape {a.shape}"
    if not np.allclose(a.affine, b.affine, atol=AFFINE_TOL, rtol=0):
        diff = float(np.abs(a.affine - b.affine).max())
        return (
            f"affine differs from {a.source.name if a.source else 'reference'} by up to {diff:.4g} "
            f"(tolerance {AFFINE_TOL})"
        )
    return None


def load_case(
    case: Case, modalities: list[str] | tuple[str, ...] = MODALITIES
) -> tuple[np.ndarray, Geometry]:
    """Load the modalities of a case.

    Returns:
        ``(image, geometry)``: ``image`` is ``(C, X, Y, Z)`` float32 with channels in ``modalities`` order;
        ``geometry`` is that of the first modality.

    Raises:
        CaseError: a modality is missing or unreadable, or shapes/affines disagree (the message lists every file
            with its shape and affine).
    """
    if case.naming == "kaggle_3m":  # TIFF slices (brats.data.kaggle)
        from brats.data.kaggle import load_kaggle_case

        return load_kaggle_case(case, modalities)
    missing = [m for m in modalities if m not in case.images]
    if missing:
        raise CaseError(
            f"case {case.case_id}: missing modality {', '.join(missing)} "
            f"(expected {', '.join(str(case.expected_path(m)) for m in missing if case.naming != 'custom')})"
        )
    geoms = [load_geometry(case.images[m]) for m in modalities]
    ref = geoms[0]
    if any(geometry_mismatch(ref, g) for g in geoms[1:]):
        listing = "\n".join(
            f"  {g.source}: shape {g.shape}, affine {np.round(g.affine, 4).tolist()}" for g in geoms
        )
        raise CaseError(f"case {case.case_id}: modalities disagree in geometry:\n{listing}")
    out = np.empty((len(modalities), *ref.shape), dtype=np.float32)
    for i, m in enumerate(modalities):
        img = _load_nifti(case.images[m])
        data = _read_data(img, case.images[m], np.float32)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        out[i] = data
    return out, ref


def load_label_file(path: str | Path, scheme: LabelScheme | None = None, check: bool = True) -> np.ndarray:
    """A label map file as ``(X, Y, Z)`` uint8 labels; labels outside ``scheme`` raise when ``check``.

    Raises:
        CaseError: unreadable file, non-integer values, values outside 0..255.
        LabelError: a label the scheme does not know (when ``check`` and ``scheme`` are given).
    """
    path = Path(path)
    img = _load_nifti(path)
    data = _read_data(img, path, np.uint8)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.mod(data, 1) == 0):
        raise CaseError(f"{path}: segmentation holds non-integer values")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise CaseError(f"{path}: segmentation values outside 0..255")
    seg = data.astype(np.uint8)
    if check and scheme is not None:
        check_labels(seg, scheme, where=str(path))
    return seg


def load_seg(case: Case, check: bool = True) -> np.ndarray:
    """The segmentation of a case as ``(X, Y, Z)`` uint8 source labels. Unknown labels raise when ``check``."""
    if case.seg is None:
        raise CaseError(f"case {case.case_id}: no segmentation file")
    if case.naming == "kaggle_3m":  # binary TIFF masks, 255 -> 1 (brats.data.kaggle)
        from brats.data.kaggle import load_kaggle_seg

        return load_kaggle_seg(case, check)
    return load_label_file(case.seg, case.label_scheme, check)


def _header_for(geometry: Geometry, dtype: np.dtype) -> nib.Nifti1Header:
    hdr = geometry.header.copy()
    hdr.set_data_dtype(dtype)
    hdr.set_slope_inter(1.0, 0.0)
    hdr["cal_min"] = 0
    hdr["cal_max"] = 0
    hdr["glmax"] = 0
    hdr["glmin"] = 0
    return hdr


def save_nifti(
    path: str | Path, data: np.ndarray, geometry: Geometry, dtype: npt.DTypeLike | None = None
) -> Path:
    """Write ``data`` on the grid of ``geometry`` (same affine, sform/qform and codes), atomically.

    ``data`` is ``(X, Y, Z)`` or ``(X, Y, Z, K)`` (e.g. one channel per class). NIfTI-1 has no float16
    datatype, so float16 data is written as float32.
    """
    path = Path(path)
    data = np.asarray(data)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if data.dtype == np.float16:  # NIfTI-1 has no half-float datatype
        data = data.astype(np.float32)
    if tuple(data.shape[:3]) != tuple(geometry.shape):
        raise CaseError(f"{path}: data shape {data.shape[:3]} does not match the input grid {geometry.shape}")
    hdr = _header_for(geometry, data.dtype)
    if data.ndim == 4:
        hdr.set_data_shape(data.shape)
        hdr.set_intent("vector")
    img = nib.Nifti1Image(data, None, header=hdr)
    # affine=None keeps the header's qform/sform (and codes) exactly as they are in the input.
    try:
        with atomic_path(path) as tmp:
            nib.save(img, str(tmp))
    except OSError as exc:  # a file where the folder should be, no permission, a full disk
        raise CaseError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    return path


def save_seg(path: str | Path, labels: np.ndarray, geometry: Geometry) -> Path:
    """Write a label map (``(X, Y, Z)`` integer) as uint8 on exactly the input's grid, atomically."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise CaseError(f"{path}: a segmentation must be integer, got {labels.dtype}")
    return save_nifti(path, labels, geometry, np.dtype(np.uint8))
