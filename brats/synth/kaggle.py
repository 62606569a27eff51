"""A synthetic cohort in the LGG ``kaggle_3m`` layout (``brats synth --naming kaggle_3m``; docs/lgg.md).

Each patient is a synthetic case (:func:`brats.synth.cohort.generate_case`) turned into the dataset's form:

1. reoriented so that voxel ``[i, j, k]`` runs anterior -> posterior, right -> left, inferior -> superior
   (the kaggle_3m display convention, :mod:`brats.data.kaggle`);
2. axial slices every ``slice_mm`` mm (default 3) through the brain, each resampled to 256x256 (linear for the
   images, nearest for the mask);
3. channels t1, flair, t1ce scaled per patient to uint8 (0 outside the brain, the brain's 99.5th percentile ->
   255); the mask is the whole tumour (every tumour label, i.e. the FLAIR abnormality) as 0/255;
4. every sixth patient (``index % 6 == 5``) keeps only the slab of brain slices free of tumour where one of at
   least 8 slices exists: a tumour-free patient, so patient-level specificity is defined;
5. ``data.csv``: one row per patient (``Patient`` = folder name without the date; made-up cluster, grade,
   gender and age columns in the dataset's column names).

Folder names follow the dataset: ``TCGA_<site>_<id>_<yyyymmdd>``, e.g. ``TCGA_CS_1000_19950101``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from brats.data.kaggle import SLICE_SIZE, write_kaggle_patient
from brats.fs import atomic_write_text
from brats.synth.cohort import SynthError, _check_seed, _check_shape, generate_case

__all__ = ["kaggle_patient_id", "kaggle_volumes", "write_kaggle_case", "generate_kaggle_cohort"]

_SITES = ("CS", "DU", "EZ", "FG", "HT")
CSV_COLUMNS = (
    "Patient",
    "RNASeqCluster",
    "MethylationCluster",
    "neoplasm_histologic_grade",
    "gender",
    "age_at_initial_pathologic",
    "death01",
)


def kaggle_patient_id(index: int) -> str:
    """Folder name of patient ``index``: ``TCGA_<site>_<1000 + index>_<yyyymmdd>``."""
    date = f"{1995 + index % 10}{index % 12 + 1:02d}{index % 28 + 1:02d}"
    return f"TCGA_{_SITES[index % len(_SITES)]}_{1000 + index}_{date}"


def _reorient(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``volume`` (X, Y, Z) with axes anterior->posterior, right->left, inferior->superior (codes P, L, S)."""
    ornt = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt(("P", "L", "S"))
    )
    return nib.orientations.apply_orientation(volume, ornt)


def _slab(brain: np.ndarray, tumour: np.ndarray, step: int, negative: bool) -> list[int]:
    """The z indices written: every ``step``-th brain slice (``negative``: the longest tumour-free run)."""
    zs = np.flatnonzero(brain.any(axis=(0, 1)))
    chosen = [int(z) for z in zs[::step]]
    if negative:
        free = [z for z in chosen if not tumour[..., z].any()]
        runs: list[list[int]] = []
        for z in free:
            if runs and chosen.index(z) == chosen.index(runs[-1][-1]) + 1:
                runs[-1].append(z)
            else:
                runs.append([z])
        best = max(runs, key=len, default=[])
        if len(best) >= 8:
            return best
    return chosen


def _resize(plane: np.ndarray, order: int) -> np.ndarray:
    zoom = (SLICE_SIZE[0] / plane.shape[0], SLICE_SIZE[1] / plane.shape[1])
    out = ndimage.zoom(plane, zoom, order=order, grid_mode=True, mode="grid-constant")
    return out[: SLICE_SIZE[0], : SLICE_SIZE[1]]


def kaggle_volumes(seed: int, index: int, shape=None, slice_mm: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Patient ``index`` of cohort ``seed`` as ``(image (3, 256, 256, n) uint8 t1/flair/t1ce, mask (256, 256, n)
    uint8 0/1)`` (see the module doc)."""
    if slice_mm <= 0:
        raise SynthError(f"slice spacing must be > 0 mm, got {slice_mm}")
    images, seg, affine = generate_case(seed, index, shape, "2021")
    vols = [_reorient(images[m], affine) for m in ("t1", "flair", "t1ce")]
    tumour = _reorient(seg, affine) > 0
    brain = vols[0] > 0
    dz = float(np.abs(affine[:3, :3]).max(axis=0)[2]) if affine[2, 2] == 0 else abs(float(affine[2, 2]))
    step = max(1, int(round(slice_mm / dz)))
    zs = _slab(brain, tumour, step, negative=index % 6 == 5)
    image = np.zeros((3, *SLICE_SIZE, len(zs)), dtype=np.uint8)
    mask = np.zeros((*SLICE_SIZE, len(zs)), dtype=np.uint8)
    for c, vol in enumerate(vols):
        top = float(np.percentile(vol[brain], 99.5)) if brain.any() else 1.0
        scaled = np.clip(vol / max(top, 1e-6) * 255.0, 0, 255)
        for n, z in enumerate(zs):
            image[c, :, :, n] = np.rint(np.clip(_resize(scaled[..., z], 1), 0, 255)).astype(np.uint8)
    for n, z in enumerate(zs):
        mask[:, :, n] = _resize(tumour[..., z].astype(np.float32), 1) >= 0.5
    return image, mask


def write_kaggle_case(out_dir: str | Path, seed: int, index: int, shape=None, slice_mm: float = 3.0) -> Path:
    """Write patient ``index`` as ``out_dir/<patient folder>/<folder>_<k>[_mask].tif``; returns the folder."""
    image, mask = kaggle_volumes(seed, index, shape, slice_mm)
    return write_kaggle_patient(Path(out_dir) / kaggle_patient_id(index), image, mask)


def _csv_text(seed: int, n_cases: int) -> str:
    rng = np.random.default_rng([seed, 15])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for i in range(n_cases):
        patient = kaggle_patient_id(i).rsplit("_", 1)[0]
        w.writerow(
            [
                patient,
                int(rng.integers(1, 5)),
                int(rng.integers(1, 6)),
                int(rng.integers(1, 3)),
                int(rng.integers(1, 3)),
                int(rng.integers(20, 76)),
                int(rng.integers(0, 2)),
            ]
        )
    return buf.getvalue()


def generate_kaggle_cohort(
    out_dir: str | Path,
    n_cases: int = 10,
    seed: int = 0,
    shape=None,
    slice_mm: float = 3.0,
    progress: bool = False,
) -> list[Path]:
    """Write ``n_cases`` patients and ``data.csv`` under ``out_dir``; returns the patient folders.

    ``shape`` is the synthetic grid before slicing (as for ``brats synth``; small shapes are fast), ``slice_mm``
    the distance between written slices.
    """
    seed = _check_seed(seed)
    shape = _check_shape(shape)
    if int(n_cases) < 1:
        raise SynthError(f"--cases must be >= 1, got {n_cases}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from brats.progress import track

    paths = [
        write_kaggle_case(out, seed, i, shape, slice_mm)
        for i in track(range(int(n_cases)), desc="synth", unit="patient", enabled=progress)
    ]
    atomic_write_text(out / "data.csv", _csv_text(seed, int(n_cases)))
    return paths
