"""Synthetic gliomas for the synthetic cohort: placement, irregular shape, compartments and their fractions.

A tumour is a tumour core (TC) level set ``L(x) = |E R (x - c)| / r_core + a * noise(x)`` (``E`` elongation,
``R`` rotation, ``noise`` a smooth random field), so its surface is lobulated rather than a sphere. Inside the core,
the enhancing tumour (ET) is a rim of random, irregular thickness along the core surface; what is deeper is
necrosis (NCR). A quarter of tumours do not enhance: their whole core is non-enhancing tumour (NET, label 1
like NCR, but with a solid-tumour appearance). Around the core, peritumoural edema (ED) is a second, larger level
set that reaches further along white matter and stays out of the ventricles.

Each compartment is a soft fraction (a logistic function of the level set, a little wider than a voxel), which
gives partial volume in the images; the label map thresholds the same fractions at 0.5, so labels and image
contrast agree by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import expit

from brats.synth.anatomy import Anatomy, MassEffect, Pose, Template, output_affine, rotation, smooth_noise
from brats.synth.profile import SynthProfile, get_profile

__all__ = ["TumourSpec", "TumourMaps", "case_role", "log_uniform", "draw_tumours", "paint_tumours"]

#: Cases come in blocks of 20 consecutive indices; in each block, a seeded permutation gives the profile's
#: number of tumour-free cases and of non-enhancing primary tumours, the others an enhancing one.
BLOCK = 20
#: Probability that a second tumour does not enhance.
P_NON_ENHANCING = 0.25
#: Whole-tumour islands smaller than this (mm^3; the BraTS 2023 minimum lesion volume) are not labelled.
MIN_ISLAND_MM3 = 50.0


def case_role(seed: int, index: int, profile: str | SynthProfile = "train") -> str:
    """``none``, ``non-enhancing`` or ``enhancing``: the primary tumour of case ``index`` (stratified per block)."""
    prof = get_profile(profile)
    block, pos = divmod(int(index), BLOCK)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), block, 0x5EED]))
    rank = int(rng.permutation(BLOCK)[pos])
    if rank < prof.no_tumour_per_20:
        return "none"
    return "non-enhancing" if rank < prof.no_tumour_per_20 + prof.non_enhancing_per_20 else "enhancing"


def log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A draw whose logarithm is uniform between the logarithms of ``bounds`` (both > 0)."""
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


@dataclass(frozen=True)
class TumourSpec:
    """One tumour, in output voxel coordinates (``centre``) and mm (radii, rim)."""

    centre: np.ndarray
    core_mm: float  # tumour-core radius
    edema_mm: float  # whole-tumour (edema) radius, > core_mm
    enhancing: bool
    rim_mm: float  # thickness of the enhancing rim (>= core_mm: solid enhancing tumour)
    mass: float  # strength of the mass effect, 0..0.45
    elong: tuple[float, float, float]
    angles: tuple[float, float, float]
    edema_offset: tuple[float, float, float]  # mm, edema centre relative to the core centre
    wm_follow: float = 0.25  # how far edema reaches along white matter (level-set shift per unit WM fraction)

    def mass_effect(self) -> MassEffect:
        return MassEffect(self.centre, self.core_mm, self.mass)


@dataclass
class TumourMaps:
    """Tumour fractions on the anatomy's box (float32, 0..1) and the label map (uint8 training classes).

    ``core`` = TC fraction; ``et`` and ``net`` are parts of it (enhancing; non-enhancing solid tumour), the rest of
    the core is necrosis; ``edema`` is the edema fraction of the non-core part. ``classes``: 0 background,
    1 NCR/NET, 2 ED, 3 ET.
    """

    core: np.ndarray
    et: np.ndarray
    net: np.ndarray
    edema: np.ndarray
    hetero: np.ndarray  # multiplicative texture of tumour tissue (around 1)
    classes: np.ndarray


def _draw_one(
    rng: np.random.Generator,
    template: Template,
    pose: Pose,
    shape,
    primary: bool,
    enhancing: bool,
    prof: SynthProfile,
) -> TumourSpec:
    wt = log_uniform(rng, prof.wt_radius_mm if primary else prof.second_radius_mm)
    ratio = rng.uniform(*prof.core_ratio)
    core = max(wt / ratio, 1.5)
    need = min(0.5 * core + 5.0, 25.0)
    ok = np.flatnonzero(template.candidate_depth >= need)
    tvox = template.candidates[ok[rng.integers(len(ok))]] + rng.uniform(-1, 1, size=3)
    tworld = template.affine[:3, :3] @ tvox + template.affine[:3, 3]
    world = pose.to_output(tworld)
    aff = output_affine(shape)
    centre = np.linalg.solve(aff[:3, :3], world - aff[:3, 3])
    rim = rng.uniform(2.5, 7.0)
    if enhancing and core < 18.0 and (rng.random() < 0.25 or core < 6.0):
        rim = core  # solid enhancing tumour without necrosis (smaller tumours only)
    elong = tuple(float(e) for e in np.exp(rng.normal(0.0, 0.15, size=3)))
    angles = tuple(float(a) for a in rng.uniform(-math.pi, math.pi, size=3))
    offset = tuple(float(o) for o in rng.normal(0.0, 0.15 * core, size=3))
    mass = rng.uniform(0.1, 0.4) * min(core / 12.0, 1.0) if primary else rng.uniform(0.0, 0.2)
    follow = rng.uniform(*prof.edema_wm_follow)
    return TumourSpec(
        centre,
        float(core),
        float(wt),
        bool(enhancing),
        float(rim),
        float(mass),
        elong,  # type: ignore[arg-type]
        angles,  # type: ignore[arg-type]
        offset,  # type: ignore[arg-type]
        float(follow),
    )


def draw_tumours(
    rng: np.random.Generator,
    template: Template,
    pose: Pose,
    shape,
    role: str,
    profile: str | SynthProfile = "train",
) -> list[TumourSpec]:
    """The tumours of one case: none (``role`` ``none``), or a primary tumour (enhancing or not, as ``role``
    says) and, with the profile's ``p_second``, a second one (non-enhancing with probability 0.25).

    Centres are drawn among supratentorial white-matter points of the template deep enough for the core.
    """
    prof = get_profile(profile)
    if role == "none":
        return []
    specs = [_draw_one(rng, template, pose, shape, True, role == "enhancing", prof)]
    if rng.random() < prof.p_second:
        specs.append(_draw_one(rng, template, pose, shape, False, rng.random() >= P_NON_ENHANCING, prof))
    return specs


def _level(q: tuple[np.ndarray, ...], matrix: np.ndarray, radius: float) -> np.ndarray:
    """``|matrix @ q| / radius`` for broadcast coordinate arrays ``q`` (mm)."""
    acc = None
    for row in matrix:
        comp = float(row[0]) * q[0] + float(row[1]) * q[1] + float(row[2]) * q[2]
        acc = comp * comp if acc is None else acc + comp * comp
    assert acc is not None
    return np.sqrt(acc) / np.float32(radius)


def paint_tumours(rng: np.random.Generator, anatomy: Anatomy, specs: list[TumourSpec]) -> TumourMaps:
    """Tumour fractions and labels on the anatomy's box; nothing outside the brain mask."""
    box_shape = anatomy.mask.shape
    core = np.zeros(box_shape, np.float32)
    et = np.zeros(box_shape, np.float32)
    net = np.zeros(box_shape, np.float32)
    edema = np.zeros(box_shape, np.float32)
    hetero = np.ones(box_shape, np.float32)
    sp = np.asarray(anatomy.spacing)
    s_mean = float(sp.mean())
    origin = np.array([s.start for s in anatomy.box], dtype=np.float64)
    for spec in specs:
        c = spec.centre - origin  # box voxel coordinates
        half = np.ceil(spec.edema_mm * 1.9 / sp).astype(int) + 2
        lo = np.maximum(np.floor(c).astype(int) - half, 0)
        hi = np.minimum(np.floor(c).astype(int) + half + 1, np.asarray(box_shape))
        if np.any(hi - lo < 2):
            continue  # centre outside the brain box (cannot happen for template candidates; safe anyway)
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        crop = tuple(int(b - a) for a, b in zip(lo, hi))
        q = tuple(
            ((np.arange(lo[i], hi[i]) - c[i]) * sp[i])
            .astype(np.float32)
            .reshape([-1 if j == i else 1 for j in range(3)])
            for i in range(3)
        )
        wm = anatomy.wm[sl]
        csf = anatomy.csf[sl]
        inside = anatomy.mask[sl]
        rot = rotation(*spec.angles)
        m_core = np.diag(1.0 / np.asarray(spec.elong)) @ rot
        lev = _level(q, m_core, spec.core_mm)
        lev += 0.22 * np.clip(smooth_noise(rng, crop, 0.6 * spec.core_mm / s_mean), -2.5, 2.5)
        w_core = math.sqrt(0.5**2 + (0.3 * s_mean) ** 2)
        depth = (1.0 - lev) * spec.core_mm
        p_core = expit(depth / w_core).astype(np.float32) * inside
        if spec.enhancing:
            rim = spec.rim_mm * (1.0 + 0.35 * smooth_noise(rng, crop, 0.4 * spec.core_mm / s_mean))
            rim = np.maximum(rim, 1.0)
            p_et = expit((rim - depth) / w_core).astype(np.float32) * p_core
            p_net = np.zeros_like(p_core)
        else:
            p_et = np.zeros_like(p_core)
            p_net = p_core
        q_ed = tuple(q[i] - spec.edema_offset[i] for i in range(3))
        m_ed = np.diag(1.0 / np.sqrt(np.asarray(spec.elong))) @ rotation(*spec.angles[::-1])
        lev_ed = _level(q_ed, m_ed, spec.edema_mm)
        lev_ed += 0.25 * np.clip(smooth_noise(rng, crop, 0.35 * spec.edema_mm / s_mean), -2.5, 2.5)
        lev_ed -= spec.wm_follow * (wm - 0.5)  # edema spreads along white matter
        w_ed = math.sqrt(rng.uniform(1.0, 2.2) ** 2 + (0.3 * s_mean) ** 2)
        p_ed = expit((1.0 - lev_ed) * spec.edema_mm / w_ed).astype(np.float32) * (1.0 - csf) * inside
        np.maximum(core[sl], p_core, out=core[sl])
        np.maximum(et[sl], p_et, out=et[sl])
        np.maximum(net[sl], p_net, out=net[sl])
        np.maximum(edema[sl], p_ed, out=edema[sl])
        tex = 1.0 + 0.07 * smooth_noise(rng, crop, 3.0 / s_mean)
        hetero[sl] = np.where((p_ed > 0.01) | (p_core > 0.01), tex, hetero[sl])
    # Keep et + net within the core where tumours overlap.
    part = et + net
    over = part > core
    if over.any():
        scale = np.where(over, core / np.maximum(part, 1e-6), 1.0).astype(np.float32)
        et *= scale
        net *= scale
    _drop_islands(core, et, net, edema, anatomy, float(np.prod(sp)))
    classes = np.zeros(box_shape, np.uint8)
    tc = core > 0.5
    classes[(edema > 0.5) & ~tc] = 2
    classes[tc] = 1
    classes[tc & (et > 0.5 * core)] = 3
    classes[~anatomy.mask] = 0
    return TumourMaps(core, et, net, edema, hetero, classes)


def _drop_islands(
    core: np.ndarray, et: np.ndarray, net: np.ndarray, edema: np.ndarray, anatomy: Anatomy, voxel_mm3: float
) -> None:
    """Keep no tumour island under :data:`MIN_ISLAND_MM3`, in place.

    Thresholding soft fractions leaves specks of a few voxels where edema that follows white matter barely
    crosses 0.5; manual reference segmentations do not contain them, and each would count as a lesion in the
    lesion-wise metrics. Inside such a 26-connected whole-tumour component every fraction is capped just below the
    labelling threshold, so the images keep a faint partial-volume trace and labels and images still agree.
    """
    wt = ((edema > 0.5) | (core > 0.5)) & anatomy.mask
    lab, n = ndimage.label(wt, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return
    small = np.flatnonzero(np.bincount(lab.ravel())[1:] * voxel_mm3 < MIN_ISLAND_MM3) + 1
    if small.size == 0:
        return
    speck = np.isin(lab, small)
    cap = np.float32(0.49)
    ratio = np.where(speck & (core > cap), cap / np.maximum(core, 1e-6), 1.0).astype(np.float32)
    for frac in (core, et, net):
        frac *= ratio
    np.minimum(edema, cap, out=edema, where=speck)
