"""The synthetic BraTS-like cohort generator (``brats synth``): real anatomy, synthetic gliomas.

Anatomy comes from the MNI152 2009a template that nilearn ships (grey/white-matter probability maps and brain
mask; CSF = brain - GM - WM), warped per case (:mod:`brats.synth.anatomy`). Tumours are lobulated level sets with
necrotic or non-enhancing core, enhancing rim and edema (:mod:`brats.synth.tumour`). Four contrasts come from the
tissue fractions with per-case scale, offset, bias field and Rician noise (:mod:`brats.synth.contrast`).
See ``docs/synthetic.md`` for the model and what it does not imitate.

Case ``i`` of seed ``s`` depends only on ``(s, i)`` (and the grid shape), so workers, cohort sizes and the
machine's core count never change a case (BLAS runs one thread while a case is simulated). The pose, the tumours
and the contrast parameters depend only on ``(s, i)``: the same case at another ``shape`` shows the same patient,
with different noise.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from threadpoolctl import threadpool_limits

from brats.data import SEPARATOR, SUFFIXES, Geometry, save_nifti
from brats.errors import BratsError
from brats.labels import scheme_for_naming, to_source
from brats.synth.anatomy import DEFAULT_SHAPE, load_template, output_affine, random_pose, warp_anatomy
from brats.synth.contrast import draw_contrast, render_images
from brats.synth.lookalike import LookAlikes, draw_lookalikes
from brats.synth.profile import SynthProfile, get_profile
from brats.synth.tumour import TumourSpec, case_role, draw_tumours, paint_tumours

log = logging.getLogger(__name__)

__all__ = [
    "SynthError",
    "SynthCase",
    "NAMINGS",
    "case_id",
    "simulate_case",
    "generate_case",
    "write_case",
    "generate_cohort",
]

NAMINGS = ("2020", "2021", "2023")
_CASE_IDS = {"2020": "BraTS20_Training_{:03d}", "2021": "BraTS2021_{:05d}", "2023": "BraTS-GLI-{:05d}-000"}
_MIN_SIDE = 16


class SynthError(BratsError, ValueError):
    """Bad arguments for the synthetic generator."""


@dataclass
class SynthCase:
    """One simulated case on the full ``shape`` grid.

    Attributes:
        case_id: e.g. ``BraTS2021_00003``.
        images: canonical modality (``t1``, ``t1ce``, ``t2``, ``flair``) -> ``(X, Y, Z)`` float32 holding
            non-negative integers (written as int16), 0 outside the brain.
        seg: ``(X, Y, Z)`` uint8 in the naming's source labels (0, 1 NCR/NET, 2 ED, 4 ET; ET = 3 for 2023).
        affine: 4x4 voxel-to-world (RAS mm) matrix, BraTS-like.
        tissues: ``gm``, ``wm``, ``csf`` -> ``(X, Y, Z)`` float32 fractions of normal tissue (before tumours).
        brain: ``(X, Y, Z)`` bool brain mask.
        tumours: the tumour parameters (empty for a tumour-free case).
        lookalikes: ``wmh``, ``vessel``, ``plexus`` -> ``(X, Y, Z)`` float32 fractions of unlabelled look-alikes.
    """

    case_id: str
    images: dict[str, np.ndarray]
    seg: np.ndarray
    affine: np.ndarray
    tissues: dict[str, np.ndarray] = field(default_factory=dict)
    brain: np.ndarray | None = None
    tumours: list[TumourSpec] = field(default_factory=list)
    lookalikes: dict[str, np.ndarray] = field(default_factory=dict)


def _check_naming(naming: str) -> str:
    naming = str(naming)
    if naming not in NAMINGS:
        raise SynthError(f"naming {naming!r} is not one of {', '.join(NAMINGS)}")
    return naming


def _check_shape(shape) -> tuple[int, int, int]:
    if shape is None:
        return DEFAULT_SHAPE
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise SynthError(f"shape must be three integers (X, Y, Z), got {shape!r}") from None
    if len(out) != 3 or min(out) < _MIN_SIDE:
        raise SynthError(
            f"shape must be three integers >= {_MIN_SIDE} (X, Y, Z), got {shape!r}; e.g. 64 64 40"
        )
    return out  # type: ignore[return-value]


def _check_seed(seed: int) -> int:
    if int(seed) != seed or seed < 0:
        raise SynthError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def case_id(naming: str, index: int) -> str:
    """The case id of case ``index`` (0-based): ``BraTS20_Training_001`` (2020 numbers from 1),
    ``BraTS2021_00000``, ``BraTS-GLI-00000-000``."""
    naming = _check_naming(naming)
    return _CASE_IDS[naming].format(index + 1 if naming == "2020" else index)


def _check_profile(profile: str | SynthProfile) -> SynthProfile:
    try:
        return get_profile(profile)
    except BratsError as exc:
        raise SynthError(str(exc)) from None


def simulate_case(
    seed: int,
    index: int,
    shape=None,
    naming: str = "2021",
    with_tissues: bool = True,
    profile: str | SynthProfile = "train",
) -> SynthCase:
    """Simulate case ``index`` of cohort ``seed``, with its tissue maps (for tests and figures).

    Args:
        seed: cohort seed (>= 0).
        index: case number (>= 0).
        shape: ``(X, Y, Z)`` grid; default ``(240, 240, 155)`` at 1 mm. Any other shape covers the same
            240x240x155 mm field of view, so its voxels are ``240/X x 240/Y x 155/Z`` mm (larger than 1 mm
            for small test grids); the anatomy is resampled (anti-aliased) to fill it.
        naming: ``2020``, ``2021`` or ``2023``: the case id and the ET label (4, or 3 for 2023).
        with_tissues: also return the tissue maps, brain mask and look-alike fractions (else empty / None).
        profile: ``train`` (default), ``stress`` or a :class:`~brats.synth.profile.SynthProfile`: the ranges.
    """
    naming = _check_naming(naming)
    prof = _check_profile(profile)
    seed = _check_seed(seed)
    shape = _check_shape(shape)
    if int(index) < 0:
        raise SynthError(f"case index must be >= 0, got {index}")
    # Independent streams: pose/tumours/contrast do not depend on the grid; noise fields do.
    r_design, r_warp, r_tumour, r_image, r_look = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, int(index)]).spawn(5)
    )
    affine = output_affine(shape)
    spacing = tuple(round(float(abs(affine[i, i])), 1) for i in range(3))
    template = load_template(spacing)
    # One BLAS thread: a multi-threaded BLAS rounds a few voxels differently with another thread count (so the
    # files would depend on the machine), and two synth workers each running two BLAS threads on 2 cores took
    # 1.3x as long as with one each (bench/synth.py; docs/performance.md).
    with threadpool_limits(limits=1, user_api="blas"):
        pose = random_pose(r_design, template)
        specs = draw_tumours(r_design, template, pose, shape, case_role(seed, int(index), prof), prof)
        params = draw_contrast(r_design, prof)
        anatomy = warp_anatomy(r_warp, shape, pose, [s.mass_effect() for s in specs])
        maps = paint_tumours(r_tumour, anatomy, specs)
        looks: LookAlikes = draw_lookalikes(r_look, anatomy, maps, prof)
        boxed = render_images(r_image, anatomy, maps, params, looks)

    def full(a: np.ndarray, dtype) -> np.ndarray:
        out = np.zeros(shape, dtype=dtype)
        out[anatomy.box] = a
        return out

    images = {m: full(boxed[m], np.float32) for m in ("t1", "t1ce", "t2", "flair")}
    seg = to_source(full(maps.classes, np.uint8), scheme_for_naming(naming))
    if not with_tissues:
        return SynthCase(case_id(naming, index), images, seg, affine, {}, None, specs)
    tissues = {k: full(getattr(anatomy, k), np.float32) for k in ("gm", "wm", "csf")}
    extra = {k: full(getattr(looks, k), np.float32) for k in ("wmh", "vessel", "plexus")}
    brain = full(anatomy.mask, bool)
    return SynthCase(case_id(naming, index), images, seg, affine, tissues, brain, specs, extra)


def generate_case(
    seed: int, index: int, shape=None, naming: str = "2021", profile: str | SynthProfile = "train"
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Case ``index`` of cohort ``seed`` as ``(images, seg, affine)``.

    ``images``: ``t1``, ``t1ce``, ``t2``, ``flair`` -> ``(X, Y, Z)`` float32 (integer values, 0 outside the
    brain); ``seg``: ``(X, Y, Z)`` uint8 source labels of ``naming`` (ET = 4, or 3 for 2023); ``affine``: 4x4.
    ``shape`` as in :func:`simulate_case` (default 240x240x155 at 1 mm; other shapes have larger voxels).
    """
    case = simulate_case(seed, index, shape, naming, with_tissues=False, profile=profile)
    return case.images, case.seg, case.affine


def _geometry(shape: tuple[int, int, int], affine: np.ndarray) -> Geometry:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_zooms(tuple(float(abs(affine[i, i])) for i in range(3)))
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    return Geometry(tuple(shape), affine, hdr)


def write_case(
    out_dir: str | Path,
    seed: int,
    index: int,
    naming: str = "2021",
    shape=None,
    profile: str | SynthProfile = "train",
) -> Path:
    """Simulate case ``index`` and write its four images (int16) and seg (uint8), each atomically.

    Returns the case folder ``out_dir/<case id>``. Files are byte-identical for the same arguments
    (gzip without time stamp or file name).
    """
    naming = _check_naming(naming)
    images, seg, affine = generate_case(seed, index, shape, naming, profile)
    cid = case_id(naming, index)
    folder = Path(out_dir) / cid
    folder.mkdir(parents=True, exist_ok=True)
    geom = _geometry(seg.shape, affine)
    sep, suffix = SEPARATOR[naming], SUFFIXES[naming]
    for mod, data in images.items():
        save_nifti(folder / f"{cid}{sep}{suffix[mod]}.nii.gz", data, geom, np.dtype(np.int16))
    save_nifti(folder / f"{cid}{sep}{suffix['seg']}.nii.gz", seg, geom, np.dtype(np.uint8))
    return folder


def _write_job(args: tuple) -> Path:
    return write_case(*args)


def generate_cohort(
    out_dir: str | Path,
    n_cases: int = 10,
    seed: int = 0,
    naming: str = "2021",
    workers: int = 1,
    shape=None,
    progress: bool = False,
    profile: str | SynthProfile = "train",
) -> list[Path]:
    """Write ``n_cases`` synthetic cases under ``out_dir`` in a BraTS naming; return the case folders.

    Args:
        out_dir: output folder (created); one sub-folder per case, e.g. ``BraTS2021_00000/``.
        n_cases: number of cases (>= 1): indices ``0 .. n_cases - 1``.
        seed: cohort seed; case ``i`` depends only on ``(seed, i)`` (and ``shape``), whatever ``workers``
            or ``n_cases``.
        naming: ``2020``, ``2021`` (labels 0, 1, 2, 4) or ``2023`` (t1n/t1c/t2w/t2f, labels 0, 1, 2, 3).
        workers: processes (each loads the template once, ~150 MB).
        shape: ``(X, Y, Z)``; default ``(240, 240, 155)`` at 1 mm. Smaller shapes cover the same field of view
            with larger voxels (for fast tests).
        progress: show a progress bar.
        profile: ``train`` (default) or ``stress`` (ranges outside the training ones; see ``docs/synthetic.md``).
    """
    naming = _check_naming(naming)
    seed = _check_seed(seed)
    shape = _check_shape(shape)
    if int(n_cases) < 1:
        raise SynthError(f"--cases must be >= 1, got {n_cases}")
    if int(workers) < 1:
        raise SynthError(f"--workers must be >= 1, got {workers}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prof = _check_profile(profile)
    jobs = [(out, seed, i, naming, shape, prof) for i in range(int(n_cases))]
    bar = None
    if progress:
        from brats.progress import Progress

        bar = Progress(total=len(jobs), desc="synth", unit="case")
    paths: list[Path] = []
    try:
        if workers == 1 or len(jobs) == 1:
            for job in jobs:
                paths.append(_write_job(job))
                if bar is not None:
                    bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=min(int(workers), len(jobs))) as pool:
                for path in pool.map(_write_job, jobs):
                    paths.append(path)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    log.info("wrote %d synthetic cases to %s", len(paths), out)
    return paths
