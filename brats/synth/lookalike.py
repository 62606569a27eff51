"""Unlabelled look-alikes for the synthetic cohort: tissue that shares a tumour compartment's brightness.

* **White-matter hyperintensities** (small-vessel disease, demyelination): small lobulated blobs in white matter,
  as bright on FLAIR and T2 as the case's edema, label 0.
* **Enhancing vessels**: a network of thin tubes (where two smooth random fields are both near zero), densest
  near the cortex, as bright on T1ce as the case's enhancing tumour, label 0.
* **Choroid plexus**: enhancing tufts inside the deep ventricles, label 0.

All three are soft fractions on the anatomy's box (float32 in [0, 1]), zero inside and around the tumours, so the
segmentation is unchanged by them; :mod:`brats.synth.contrast` gives them their signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import expit

from brats.synth.anatomy import Anatomy, smooth_noise
from brats.synth.profile import SynthProfile
from brats.synth.tumour import TumourMaps, log_uniform

__all__ = ["LookAlikes", "draw_lookalikes"]


@dataclass
class LookAlikes:
    """Fractions of unlabelled look-alike tissue on the anatomy's box (float32, 0..1)."""

    wmh: np.ndarray
    vessel: np.ndarray
    plexus: np.ndarray


def _wmh(rng: np.random.Generator, anatomy: Anatomy, free: np.ndarray, prof: SynthProfile) -> np.ndarray:
    out = np.zeros(anatomy.mask.shape, np.float32)
    n = int(rng.integers(prof.wmh_count[0], prof.wmh_count[1] + 1))
    sp = np.asarray(anatomy.spacing)
    cand = np.argwhere((anatomy.wm > 0.7) & (free > 0.99))
    if n == 0 or len(cand) == 0:
        return out
    for _ in range(n):
        c = cand[rng.integers(len(cand))].astype(np.float64) + rng.uniform(-0.5, 0.5, size=3)
        r = log_uniform(rng, prof.wmh_radius_mm)
        elong = np.exp(rng.normal(0.0, 0.3, size=3))
        half = np.ceil(2.5 * r * elong.max() / sp).astype(int) + 1
        lo = np.maximum(np.floor(c).astype(int) - half, 0)
        hi = np.minimum(np.floor(c).astype(int) + half + 1, np.asarray(out.shape))
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        q = [((np.arange(lo[i], hi[i]) - c[i]) * sp[i] / elong[i]) for i in range(3)]
        dist = np.sqrt(q[0][:, None, None] ** 2 + q[1][None, :, None] ** 2 + q[2][None, None, :] ** 2)
        crop = tuple(int(b - a) for a, b in zip(lo, hi))
        lobes = 0.25 * r * np.clip(smooth_noise(rng, crop, max(r / sp.mean(), 1.0)), -2, 2)
        width = math.sqrt(0.6**2 + (0.3 * sp.mean()) ** 2)
        blob = expit((r + lobes - dist) / width).astype(np.float32)
        np.maximum(out[sl], blob * anatomy.wm[sl], out=out[sl])
    return out


def _vessels(rng: np.random.Generator, anatomy: Anatomy, prof: SynthProfile) -> np.ndarray:
    shape = anatomy.mask.shape
    s_mean = float(np.mean(anatomy.spacing))
    density = rng.uniform(*prof.vessel_density)
    radius = rng.uniform(*prof.vessel_radius_mm)
    if density <= 0.0:
        return np.zeros(shape, np.float32)
    corr_mm = 24.0
    n1 = smooth_noise(rng, shape, corr_mm / s_mean)
    n2 = smooth_noise(rng, shape, corr_mm / s_mean)
    region = smooth_noise(rng, shape, 40.0 / s_mean)
    # A unit-std field with correlation ~L mm changes by ~1 over ~L/2.5 mm: a tube of radius r mm is where both
    # fields are within ~2.5 r / L of zero. Partial volume: a voxel never holds more than its share of tube.
    half_width = 2.5 * radius / corr_mm
    soft = max(half_width, 0.5 * 2.5 * s_mean / corr_mm)
    tube = np.exp(-(n1 * n1 + n2 * n2) / (2.0 * soft * soft)) * min(half_width / soft, 1.0) ** 2
    keep = expit((region - (1.5 - 3.0 * density)) / 0.3)
    cortex = np.clip(anatomy.gm + 1.5 * anatomy.csf, 0.0, 1.0) * 0.8 + 0.2
    return (tube * keep * cortex * anatomy.mask).astype(np.float32)


def _plexus(rng: np.random.Generator, anatomy: Anatomy) -> np.ndarray:
    sp = anatomy.spacing
    # depth below the brain surface on a grid of ~4 mm (exact enough for an 18 mm threshold, 60x cheaper)
    step = [max(1, int(round(4.0 / s))) for s in sp]
    coarse = anatomy.mask[:: step[0], :: step[1], :: step[2]]
    depth_c = ndimage.distance_transform_edt(coarse, sampling=[a * b for a, b in zip(sp, step)])
    idx = np.ix_(
        *[np.minimum(np.arange(n) // st, m - 1) for n, st, m in zip(anatomy.mask.shape, step, coarse.shape)]
    )
    ventricle = (anatomy.csf > 0.6) & (depth_c[idx] > 18.0)
    if not ventricle.any():
        return np.zeros(anatomy.mask.shape, np.float32)
    tuft = smooth_noise(rng, anatomy.mask.shape, 6.0 / float(np.mean(sp)))
    frac = expit((tuft - 0.6) / 0.2) * ndimage.binary_dilation(ventricle) * anatomy.csf
    return np.clip(frac, 0.0, 0.9).astype(np.float32)


def draw_lookalikes(
    rng: np.random.Generator, anatomy: Anatomy, tumours: TumourMaps, profile: SynthProfile
) -> LookAlikes:
    """The look-alike fractions of one case; zero wherever a tumour compartment (soft fraction > 0.02) lies,
    and within two voxels of it."""
    tumour = np.maximum(tumours.core, tumours.edema) > 0.02
    free = (~ndimage.binary_dilation(tumour, iterations=2)).astype(np.float32)
    wmh = _wmh(rng, anatomy, free, profile) * free
    vessel = _vessels(rng, anatomy, profile) * free
    plexus = _plexus(rng, anatomy) * free
    return LookAlikes(wmh, vessel, plexus)
