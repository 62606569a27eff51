"""Anatomy for the synthetic cohort: the MNI152 2009a templates that nilearn ships, warped per case.

The templates (T1, grey-matter and white-matter probability maps, 197x233x189 at 1 mm, RAS) are read from the
nilearn wheel with no network access. Each case draws a random similarity transform (per-axis scale, small
rotation, shift) plus a smooth random displacement field, optionally a radial "mass effect" around tumour centres,
and samples the tissue maps on the BraTS-like output grid with trilinear interpolation.

All geometry is computed on a coarse control grid (about 4 mm) and interpolated to the voxels, so a full
240x240x155 case costs well under a second here.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

__all__ = [
    "FOV_MM",
    "DEFAULT_SHAPE",
    "Template",
    "Anatomy",
    "load_template",
    "output_affine",
    "smooth_noise",
    "random_pose",
    "rotation",
    "upsample",
    "warp_anatomy",
]

#: Field of view of a BraTS (SRI24) volume in mm, and its default grid (1 mm isotropic).
FOV_MM: tuple[float, float, float] = (240.0, 240.0, 155.0)
DEFAULT_SHAPE: tuple[int, int, int] = (240, 240, 155)
#: Spacing of the coarse control grid on which geometry is computed (mm).
CONTROL_MM = 4.0


@dataclass(frozen=True)
class Template:
    """Tissue maps of the MNI152 template, ``(197, 233, 189)`` float32 in [0, 1], and the template's affine."""

    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray
    affine: np.ndarray
    #: template voxel (x, y, z) of the brain's bounding-box centre.
    centre_vox: np.ndarray
    #: 2 mm candidate tumour centres (template voxel coordinates) and their distance to the brain edge (mm).
    candidates: np.ndarray
    candidate_depth: np.ndarray


@dataclass
class Anatomy:
    """One case's anatomy on the output grid, restricted to the brain's bounding box ``box``.

    ``gm``, ``wm``, ``csf`` are float32 tissue fractions that sum to 1 inside ``mask`` and are 0 outside;
    ``mask`` is the (bool) brain mask. All are ``box``-shaped crops of the ``shape`` grid.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    box: tuple[slice, slice, slice]
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray


def _nilearn_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        from nilearn import datasets
    except ImportError as exc:  # pragma: no cover - nilearn is a dependency
        from brats.errors import BratsError

        raise BratsError(
            "brats synth needs nilearn (pip install nilearn): it ships the MNI152 templates"
        ) from exc
    gm_img = datasets.load_mni152_gm_template(resolution=1)
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)
    brain = datasets.load_mni152_brain_mask(resolution=1).get_fdata(dtype=np.float32)
    gm = gm_img.get_fdata(dtype=np.float32)
    return gm, wm, brain, np.asarray(gm_img.affine, dtype=np.float64)


@functools.lru_cache(maxsize=4)
def load_template(spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Template:
    """The MNI152 tissue maps, pre-smoothed against aliasing when the output voxels are larger than 1 mm.

    Cached per process (and per output spacing, rounded to 0.1 mm).
    """
    gm, wm, brain, affine = _nilearn_maps()
    nz = np.argwhere(brain > 0.5)
    centre = (nz.min(0) + nz.max(0)) / 2.0
    # Candidate tumour centres: 2 mm grid, supratentorial (template z > -20 mm), mostly white matter.
    sub = (slice(None, None, 2),) * 3
    depth = ndimage.distance_transform_edt(brain[sub] > 0.5, sampling=2.0)
    idx = np.argwhere((wm[sub] > 0.5) & (depth > 6.0))
    idx = idx * 2
    world_z = affine[2, 2] * idx[:, 2] + affine[2, 3]
    keep = world_z > -20.0
    cand = idx[keep].astype(np.float64)
    cand_depth = depth[tuple((idx[keep] // 2).T)].astype(np.float64)
    sigma = [0.42 * math.sqrt(max(s * s - 1.0, 0.0)) for s in spacing]
    if max(sigma) > 0.3:
        gm = ndimage.gaussian_filter(gm, sigma)
        wm = ndimage.gaussian_filter(wm, sigma)
        brain = ndimage.gaussian_filter(brain, sigma)
    return Template(gm, wm, brain, affine, centre, cand, cand_depth)


def output_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """BraTS-like (SRI24) affine of a ``shape`` grid covering the 240x240x155 mm field of view.

    At 1 mm this is exactly the affine of the BraTS files: ``diag(-1, -1, 1)`` with origin ``(0, 239, 0)``
    (voxel axes point left, posterior, superior). Other shapes keep the same field of view with larger voxels.
    """
    vx, vy, vz = (f / n for f, n in zip(FOV_MM, shape))
    aff = np.eye(4)
    aff[0, 0], aff[1, 1], aff[2, 2] = -vx, -vy, vz
    aff[:3, 3] = (0.5 - 0.5 * vx, FOV_MM[1] - 0.5 - 0.5 * vy, 0.5 * vz - 0.5)
    aff[0, 3] = aff[0, 3] + 0.0  # avoid a negative zero in the header
    return aff


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], corr_vox: float) -> np.ndarray:
    """A smooth random field of ``shape`` (float32, mean ~0, std ~1) with correlation length ~``corr_vox``.

    White noise on a coarse grid (spacing ``corr_vox / 3``), Gaussian-smoothed there (sigma 1.5 nodes, i.e.
    ``corr_vox / 2``), then interpolated trilinearly.
    """
    step = max(corr_vox / 3.0, 1.0)
    coarse_shape = tuple(max(int(math.ceil((n - 1) / step)) + 1, 2) for n in shape)
    coarse = rng.standard_normal(coarse_shape).astype(np.float32)
    coarse = ndimage.gaussian_filter(coarse, 1.5, mode="wrap")
    coarse -= coarse.mean()
    coarse /= max(float(coarse.std()), 1e-6)
    return upsample(coarse, shape)


def _linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` linear-interpolation matrix aligning the first and last samples."""
    w = np.zeros((n_out, n_in), dtype=np.float32)
    if n_in == 1:
        w[:, 0] = 1.0
        return w
    pos = np.arange(n_out) * ((n_in - 1) / max(n_out - 1, 1))
    i0 = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = (pos - i0).astype(np.float32)
    rows = np.arange(n_out)
    w[rows, i0] = 1.0 - frac
    w[rows, i0 + 1] += frac
    return w


def upsample(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Trilinear interpolation of ``coarse`` onto ``shape``, first and last nodes on the first and last voxels.

    Computed as three separable matrix products: much faster than ``scipy.ndimage.zoom`` on large grids.
    """
    wx, wy, wz = (_linear_weights(c, n) for c, n in zip(coarse.shape, shape))
    a = np.asarray(coarse, dtype=np.float32) @ wz.T  # (cx, cy, Z)
    a = np.matmul(wy, a)  # (cx, Y, Z)
    out = (wx @ a.reshape(a.shape[0], -1)).reshape(shape)
    return np.ascontiguousarray(out, dtype=np.float32)


@dataclass(frozen=True)
class Pose:
    """Similarity part of a case's warp: output world (mm) -> template world (mm)."""

    matrix: np.ndarray  # 3x3: template mm per output mm
    out_centre: np.ndarray  # output world point that maps onto the template's brain centre
    tmpl_centre: np.ndarray  # template world brain centre

    def to_template(self, world: np.ndarray) -> np.ndarray:
        """Map output world points ``(..., 3)`` to template world points."""
        return (world - self.out_centre) @ self.matrix.T + self.tmpl_centre

    def to_output(self, tworld: np.ndarray) -> np.ndarray:
        return (tworld - self.tmpl_centre) @ np.linalg.inv(self.matrix).T + self.out_centre


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """3x3 rotation by ``ax``, ``ay``, ``az`` radians about x, then y, then z."""
    cx, sx, cy, sy, cz, sz = (
        math.cos(ax),
        math.sin(ax),
        math.cos(ay),
        math.sin(ay),
        math.cos(az),
        math.sin(az),
    )
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_pose(rng: np.random.Generator, template: Template) -> Pose:
    """Scale 0.86-0.95 (the MNI brain is larger than the SRI24 one), +-3 % per axis, rotation up to ~8 degrees,
    shift up to 5 mm; the brain's bottom lands a few mm above the first axial slice."""
    base = rng.uniform(0.86, 0.95)
    scale = base * rng.uniform(0.97, 1.03, size=3)
    angles = np.deg2rad(rng.uniform(-1, 1, size=3) * np.array([8.0, 4.0, 6.0]))
    matrix = rotation(*angles) @ np.diag(1.0 / scale)
    fov_centre = np.array([-(FOV_MM[0] - 1) / 2, (FOV_MM[1] - 1) / 2, (FOV_MM[2] - 1) / 2])
    shift = np.array([rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(-5, 1)])
    tmpl_centre = template.affine[:3, :3] @ template.centre_vox + template.affine[:3, 3]
    return Pose(matrix, fov_centre + shift, tmpl_centre)


@dataclass(frozen=True)
class MassEffect:
    """Radial push away from ``centre`` (output voxel coordinates): a voxel at distance r samples the anatomy
    at distance ``r * (1 - strength * exp(-r^2 / (2 radius^2)))`` (monotonic for strength < 1)."""

    centre: np.ndarray
    radius_mm: float
    strength: float


def warp_anatomy(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    pose: Pose,
    masses: Sequence[MassEffect] = (),
    deform_mm: float = 2.5,
) -> Anatomy:
    """Sample the template's tissue maps on the output grid under ``pose``, a random smooth deformation
    (std ``deform_mm``, correlation ~25 mm) and the ``masses``."""
    affine = output_affine(shape)
    spacing = tuple(float(abs(affine[i, i])) for i in range(3))
    template = load_template(tuple(round(s, 1) for s in spacing))
    steps = [max(1, int(round(CONTROL_MM / s))) for s in spacing]
    nodes = [int(math.ceil((n - 1) / st)) + 1 for n, st in zip(shape, steps)]
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) * st for n, st in zip(nodes, steps)], indexing="ij")
    vox = np.stack(grids, axis=-1)  # (nx, ny, nz, 3) output voxel coordinates of the control nodes
    sp = np.asarray(spacing)
    for m in masses:
        d = (vox - m.centre) * sp
        r2 = (d * d).sum(-1, keepdims=True)
        vox = m.centre + (vox - m.centre) * (1.0 - m.strength * np.exp(-r2 / (2.0 * m.radius_mm**2)))
    world = vox @ affine[:3, :3].T + affine[:3, 3]
    tworld = pose.to_template(world)
    corr_nodes = 25.0 / CONTROL_MM  # ~25 mm
    disp = np.stack([smooth_noise(rng, tuple(nodes), corr_nodes) for _ in range(3)], axis=-1)
    tworld = tworld + deform_mm * disp
    tinv = np.linalg.inv(template.affine)
    tvox = (tworld @ tinv[:3, :3].T + tinv[:3, 3]).astype(np.float32)  # (nx, ny, nz, 3)
    coarse = np.moveaxis(tvox, -1, 0)
    # Bounding box of the brain on the control grid, one node of margin.
    brain_c = ndimage.map_coordinates(template.brain, coarse, order=1, cval=0.0)
    inside = np.argwhere(brain_c > 0.01)
    lo = np.maximum(inside.min(0) - 1, 0)
    hi = np.minimum(inside.max(0) + 1, np.asarray(nodes) - 1)
    box = tuple(slice(int(a) * st, min(int(b) * st, n - 1) + 1) for a, b, st, n in zip(lo, hi, steps, shape))
    full = tuple((int(b) - int(a)) * st + 1 for a, b, st in zip(lo, hi, steps))
    crop = tuple(s.stop - s.start for s in box)
    sub = coarse[:, lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]
    coords = np.empty((3, *crop), dtype=np.float32)
    for i in range(3):
        coords[i] = upsample(np.ascontiguousarray(sub[i]), full)[: crop[0], : crop[1], : crop[2]]
    brain = ndimage.map_coordinates(template.brain, coords, order=1, cval=0.0, output=np.float32)
    mask = brain >= 0.5
    pts = coords[:, mask]  # tissue maps only where the brain is
    del coords
    gm = np.zeros(crop, dtype=np.float32)
    wm = np.zeros(crop, dtype=np.float32)
    g = np.clip(ndimage.map_coordinates(template.gm, pts, order=1, output=np.float32), 0.0, 1.0)
    w = np.clip(ndimage.map_coordinates(template.wm, pts, order=1, output=np.float32), 0.0, 1.0)
    total = g + w
    over = total > 1.0
    g[over] /= total[over]
    w[over] /= total[over]
    gm[mask] = g
    wm[mask] = w
    csf = np.zeros(crop, dtype=np.float32)
    csf[mask] = 1.0 - np.minimum(total, 1.0)
    return Anatomy(tuple(shape), spacing, box, gm, wm, csf, mask)  # type: ignore[arg-type]
