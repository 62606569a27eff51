"""The LGG ``kaggle_3m`` layout: one folder of axial TIFF slices per patient (docs/lgg.md).

Layout::

    ROOT/data.csv                                   (optional: one row per patient, ``Patient`` column)
    ROOT/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_1.tif        256x256 RGB uint8: t1, flair, t1ce
    ROOT/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_1_mask.tif   256x256 uint8: 0 or 255
    ...                                                            k = 1..n, in slice order

A patient folder becomes a :class:`~brats.data.naming.Case` with ``naming="kaggle_3m"``: ``images`` maps
``t1``, ``flair`` and ``t1ce`` to the folder (the three channels of every slice), ``seg`` is the folder when
it holds any mask, and ``metadata`` is the patient's ``data.csv`` row (strings).

Volumes: the image is ``(3, 256, 256, n)`` channels ``t1, flair, t1ce`` (or the requested order) and the mask
``(256, 256, n)`` uint8 0/1 (source 255 -> 1); voxel ``[i, j, k - 1]`` is pixel (row ``i``, column ``j``) of
slice ``k``.

Geometry (:func:`kaggle_affine`): the slices are displayed radiologically, anterior at the top, so row ``i``
runs anterior -> posterior, column ``j`` runs patient right -> left, and slice ``k`` runs inferior -> superior.
In RAS+ world coordinates (mm)::

    x = -j + 127.5          (column: right -> left)
    y = -i + 127.5          (row: anterior -> posterior)
    z = s * (k - 1) - s * (n - 1) / 2     (slice, s = slice spacing)

i.e. 1 mm in-plane, ``s`` = ``data.slice_spacing_mm`` (default :data:`DEFAULT_SLICE_SPACING_MM` = 1.0: the
dataset does not record its slice spacing, so by default HD95 and volumes are in voxel units along ``k``),
centred on the origin. Axis codes ``('P', 'L', 'S')``: ITK-SNAP shows a written NIfTI the right way up.
"""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path

import nibabel as nib
import numpy as np

from brats.data.naming import Case, CaseError
from brats.fs import atomic_path
from brats.labels import LabelError

__all__ = [
    "KAGGLE_NAMING",
    "KAGGLE_MODALITIES",
    "DEFAULT_SLICE_SPACING_MM",
    "is_kaggle_folder",
    "kaggle_case",
    "slice_files",
    "kaggle_affine",
    "kaggle_geometry",
    "load_kaggle_case",
    "load_kaggle_seg",
    "write_kaggle_patient",
    "write_kaggle_masks",
    "with_slice_spacing",
]

KAGGLE_NAMING = "kaggle_3m"
#: The channels of a slice TIFF, in file order.
KAGGLE_MODALITIES: tuple[str, ...] = ("t1", "flair", "t1ce")
DEFAULT_SLICE_SPACING_MM = 1.0
SLICE_SIZE = (256, 256)


def _slice_re(folder_name: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(folder_name)}_(\d+)(_mask)?\.tiff?$")


def slice_files(folder: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """``(images, masks)``: slice number ``k`` -> file, for the ``<folder>_<k>[_mask].tif`` files of ``folder``."""
    images: dict[int, Path] = {}
    masks: dict[int, Path] = {}
    rx = _slice_re(folder.name)
    for p in folder.iterdir():
        m = rx.match(p.name)
        if m and p.is_file():
            (masks if m.group(2) else images)[int(m.group(1))] = p
    return dict(sorted(images.items())), dict(sorted(masks.items()))


def is_kaggle_folder(folder: Path) -> bool:
    """Whether ``folder`` holds at least one ``<folder name>_<k>.tif`` or ``_mask.tif`` slice."""
    rx = _slice_re(folder.name)
    return any(rx.match(p.name) for p in folder.iterdir())


@functools.lru_cache(maxsize=8)
def _csv_rows(path: str, mtime: float) -> dict[str, dict[str, str]]:
    try:
        with open(path, newline="") as f:
            return {r["Patient"]: dict(r) for r in csv.DictReader(f) if r.get("Patient")}
    except (OSError, KeyError, csv.Error, UnicodeDecodeError):
        return {}


def _metadata(folder: Path) -> dict[str, str]:
    """The ``data.csv`` row of the patient (``TCGA_<site>_<id>`` = folder name without the date), or ``{}``."""
    table = folder.parent / "data.csv"
    if not table.is_file():
        return {}
    rows = _csv_rows(str(table), table.stat().st_mtime)
    patient = re.sub(r"_\d{8}$", "", folder.name)
    return rows.get(patient, rows.get(folder.name, {}))


def kaggle_case(folder: Path) -> Case:
    """The case of one patient folder (see the module doc)."""
    _, masks = slice_files(folder)
    return Case(
        case_id=folder.name,
        folder=folder,
        naming=KAGGLE_NAMING,
        images={m: folder for m in KAGGLE_MODALITIES},
        seg=folder if masks else None,
        metadata=_metadata(folder),
    )


def with_slice_spacing(case: Case, slice_spacing_mm: float) -> Case:
    """``case`` with the slice spacing its geometry uses (kaggle_3m only; other cases are returned as they are)."""
    if case.naming != KAGGLE_NAMING:
        return case
    import dataclasses

    return dataclasses.replace(case, metadata={**case.metadata, "slice_spacing_mm": float(slice_spacing_mm)})


def _spacing(case: Case) -> float:
    return float(case.metadata.get("slice_spacing_mm", DEFAULT_SLICE_SPACING_MM))


def kaggle_affine(n_slices: int, slice_spacing_mm: float = DEFAULT_SLICE_SPACING_MM) -> np.ndarray:
    """The documented 4x4 voxel -> RAS+ affine of a ``(256, 256, n)`` kaggle_3m volume (module doc)."""
    s = float(slice_spacing_mm)
    return np.array(
        [
            [0.0, -1.0, 0.0, (SLICE_SIZE[1] - 1) / 2],
            [-1.0, 0.0, 0.0, (SLICE_SIZE[0] - 1) / 2],
            [0.0, 0.0, s, -s * (n_slices - 1) / 2],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def kaggle_geometry(
    n_slices: int, slice_spacing_mm: float = DEFAULT_SLICE_SPACING_MM, source: Path | None = None
):
    """A :class:`~brats.data.nifti.Geometry` (shape, affine, NIfTI header with sform/qform) for ``n`` slices."""
    from brats.data.nifti import Geometry

    shape = (*SLICE_SIZE, int(n_slices))
    affine = kaggle_affine(n_slices, slice_spacing_mm)
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_zooms((1.0, 1.0, float(slice_spacing_mm)))
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    return Geometry(shape, affine, hdr, source)


def read_tiff(path: Path) -> np.ndarray:
    """A TIFF as a uint8 array (``(H, W)`` or ``(H, W, C)``). Raises CaseError naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise CaseError(f"{path}: unreadable TIFF ({type(exc).__name__}: {exc})") from exc
    return arr


def _check_slices(case: Case, files: dict[int, Path], what: str) -> list[int]:
    ks = sorted(files)
    if not ks:
        raise CaseError(f"case {case.case_id}: no {what} slices in {case.folder}")
    if ks != list(range(1, len(ks) + 1)):
        missing = sorted(set(range(1, ks[-1] + 1)) - set(ks))
        raise CaseError(f"case {case.case_id}: {what} slice numbers have gaps (missing k = {missing[:10]})")
    return ks


def load_kaggle_case(case: Case, modalities: list[str] | tuple[str, ...] = KAGGLE_MODALITIES):
    """The ``(C, 256, 256, n)`` float32 image (channels in ``modalities`` order) and its Geometry.

    Raises:
        CaseError: a modality other than t1/flair/t1ce, no slice, gaps in ``k``, an unreadable TIFF, or a
            slice that is not 256x256 RGB (the message names the file).
    """
    unknown = [m for m in modalities if m not in KAGGLE_MODALITIES]
    if unknown:
        raise CaseError(
            f"case {case.case_id}: kaggle_3m slices hold {', '.join(KAGGLE_MODALITIES)}; no {', '.join(unknown)}"
        )
    images, _ = slice_files(case.folder)
    ks = _check_slices(case, images, "image")
    channels = [KAGGLE_MODALITIES.index(m) for m in modalities]
    out = np.empty((len(modalities), *SLICE_SIZE, len(ks)), dtype=np.float32)
    for z, k in enumerate(ks):
        arr = read_tiff(images[k])
        if arr.shape != (*SLICE_SIZE, 3):
            raise CaseError(f"{images[k]}: slice of shape {arr.shape}, expected {(*SLICE_SIZE, 3)} (RGB)")
        out[:, :, :, z] = np.moveaxis(arr[:, :, channels], -1, 0)
    return out, kaggle_geometry(len(ks), _spacing(case), images[ks[0]])


def load_kaggle_seg(case: Case, check: bool = True) -> np.ndarray:
    """The ``(256, 256, n)`` uint8 mask, 0/1 (source 255 -> 1).

    Raises:
        CaseError: no mask, gaps in ``k``, unreadable or mis-sized slices, masks and images that disagree in
            number.
        LabelError: (when ``check``) a value other than 0 and 255; without ``check`` values >= 128 are tumour.
    """
    images, masks = slice_files(case.folder)
    ks = _check_slices(case, masks, "mask")
    if images and len(images) != len(ks):
        raise CaseError(f"case {case.case_id}: {len(images)} image slices but {len(ks)} masks")
    out = np.empty((*SLICE_SIZE, len(ks)), dtype=np.uint8)
    for z, k in enumerate(ks):
        arr = read_tiff(masks[k])
        if arr.ndim == 3:
            arr = arr[..., 0]
        if arr.shape != SLICE_SIZE:
            raise CaseError(f"{masks[k]}: mask of shape {arr.shape}, expected {SLICE_SIZE}")
        if check:
            bad = sorted(int(v) for v in np.unique(arr) if v not in (0, 255))
            if bad:
                raise LabelError(f"{masks[k]}: mask values {bad[:10]}; kaggle_3m masks hold 0 and 255")
        out[:, :, z] = arr >= 128
    return out


def _write_tiff(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="TIFF")


def write_kaggle_patient(folder: Path, image: np.ndarray, mask: np.ndarray | None) -> Path:
    """Write ``(3, 256, 256, n)`` uint8 slices (t1, flair, t1ce) and ``(256, 256, n)`` 0/1 masks (as 0/255).

    Each file is written atomically; returns ``folder``.
    """
    folder = Path(folder)
    if image.dtype != np.uint8 or image.shape[:3] != (3, *SLICE_SIZE):
        raise CaseError(f"{folder}: image must be (3, 256, 256, n) uint8, got {image.shape} {image.dtype}")
    folder.mkdir(parents=True, exist_ok=True)
    for z in range(image.shape[3]):
        _write_tiff(folder / f"{folder.name}_{z + 1}.tif", np.moveaxis(image[..., z], 0, -1))
    if mask is not None:
        write_kaggle_masks(folder, folder.name, mask)
    return folder


def write_kaggle_masks(out_dir: Path, case_id: str, labels: np.ndarray) -> list[Path]:
    """Write ``(256, 256, n)`` binary labels as ``out_dir/<case_id>_<k>_mask.tif`` (0/255), atomically."""
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.shape[:2] != SLICE_SIZE:
        raise CaseError(f"{out_dir}: masks must be (256, 256, n), got {labels.shape}")
    paths = []
    for z in range(labels.shape[2]):
        path = Path(out_dir) / f"{case_id}_{z + 1}_mask.tif"
        _write_tiff(path, np.where(labels[..., z] > 0, 255, 0).astype(np.uint8))
        paths.append(path)
    return paths
