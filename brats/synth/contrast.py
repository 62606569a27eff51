"""MR contrast for the synthetic cohort: tissue, tumour and look-alike fractions -> four skull-stripped MR images.

Each voxel's signal is the fraction-weighted mean of the signals of its tissues (partial-volume model). The table
below holds the relative signal of each normal tissue and tumour compartment per sequence (white matter of T1 = 1
is arbitrary: each sequence is scaled on its own). Per case (ranges from the :class:`~brats.synth.profile.SynthProfile`):
every normal-tissue entry is jittered; edema on FLAIR and T2, enhancing tumour on T1ce, and the look-alikes
(white-matter hyperintensities, vessels, choroid plexus) get signals drawn as ratios to normal tissue, so the
look-alikes are as bright as the tumour compartment they imitate (hyperintensities from their own ranges,
``wmh_flair`` and ``wmh_t2``; vessels and plexus from ``et_t1ce``). Then each sequence gets a power law
(gamma), an offset, thick slices along one axis (with the profile's probability), a smooth multiplicative bias
field, Rician noise, a scale, and is rounded to integers like the int16 BraTS files. Outside the brain mask every
image is exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brats.synth.anatomy import Anatomy, _linear_weights, smooth_noise
from brats.synth.lookalike import LookAlikes
from brats.synth.profile import SynthProfile
from brats.synth.tumour import TumourMaps

__all__ = ["CONTRAST", "ContrastParams", "draw_contrast", "render_images"]

#: Relative signal of each tissue per sequence. ``ncr``: necrosis; ``net``: non-enhancing solid tumour (core of
#: the tumours that do not enhance); ``ed``: edema; ``et``: enhancing tumour.
CONTRAST: dict[str, dict[str, float]] = {
    #          WM    GM    CSF   edema necrosis ET    NET
    "t1": dict(wm=1.00, gm=0.78, csf=0.32, ed=0.80, ncr=0.42, et=0.80, net=0.62),
    "t1ce": dict(wm=1.00, gm=0.80, csf=0.33, ed=0.84, ncr=0.40, et=2.20, net=0.64),
    "t2": dict(wm=0.55, gm=0.78, csf=1.70, ed=1.30, ncr=1.55, et=1.00, net=1.35),
    "flair": dict(wm=0.60, gm=0.80, csf=0.22, ed=1.35, ncr=0.75, et=1.05, net=1.10),
}
#: Part of the normal tissue signal that survives inside edema (edema is water added to tissue, not a new tissue).
EDEMA_KEEP = 0.25


@dataclass(frozen=True)
class ContrastParams:
    """Per-case, per-sequence acquisition parameters (drawn by :func:`draw_contrast`)."""

    values: dict[str, float]  # signal of each tissue: CONTRAST keys plus wmh, vessel, plexus
    offset: float  # added inside the brain, in relative units
    scale: float  # relative units -> stored integer units
    noise: float  # Rician noise sigma, relative units
    bias_std: float  # std of the log bias field
    gamma: float = 1.0  # power law applied to signal / white matter
    thick_axis: int = -1  # axis acquired with thick slices (-1: none)
    slice_mm: float = 1.0  # their thickness


def _tumour_values(rng: np.random.Generator, values: dict[str, dict[str, float]], prof: SynthProfile) -> None:
    """Edema, ET and look-alike signals as ratios to normal tissue (in place)."""
    t1, t1ce, t2, fl = values["t1"], values["t1ce"], values["t2"], values["flair"]

    def edema_like(key: str, flair: tuple[float, float], t2_range: tuple[float, float]) -> None:
        # pure edema on white matter keeps EDEMA_KEEP of the WM signal: solve for the edema signal itself.
        fl_ratio, t2_ratio = rng.uniform(*flair), rng.uniform(*t2_range)
        fl[key] = (fl_ratio * fl["gm"] - EDEMA_KEEP * fl["wm"]) / (1.0 - EDEMA_KEEP)
        t2[key] = (t2_ratio * t2["gm"] - EDEMA_KEEP * t2["wm"]) / (1.0 - EDEMA_KEEP)
        t1_ratio = rng.uniform(0.72, 0.92)
        t1[key] = t1_ratio * t1["wm"]
        t1ce[key] = t1_ratio * t1ce["wm"]

    edema = (prof.edema_flair, prof.edema_t2)
    # drawn only when asked for, so that a profile without faint edema draws the random stream it always drew
    if prof.faint_edema_share > 0 and rng.random() < prof.faint_edema_share:
        edema = (prof.faint_edema_flair, prof.faint_edema_t2)
    edema_like("ed", *edema)
    edema_like("wmh", prof.wmh_flair, prof.wmh_t2)
    t1ce["et"] = rng.uniform(*prof.et_t1ce) * t1ce["wm"]
    for key, t1_rel, t2_rel, fl_rel in (("vessel", 0.85, 0.45, 0.7), ("plexus", 0.7, 1.1, 0.95)):
        t1ce[key] = rng.uniform(*prof.et_t1ce) * t1ce["wm"]
        t1[key] = t1_rel * t1["wm"]
        t2[key] = t2_rel * t2["gm"]
        fl[key] = fl_rel * fl["gm"]


def draw_contrast(rng: np.random.Generator, prof: SynthProfile) -> dict[str, ContrastParams]:
    """Per-sequence parameters of one case, drawn from ``prof``'s ranges."""
    j = prof.tissue_jitter
    values = {
        mod: {k: v * float(rng.uniform(1 - j, 1 + j)) for k, v in row.items()}
        for mod, row in CONTRAST.items()
    }
    _tumour_values(rng, values, prof)
    out: dict[str, ContrastParams] = {}
    for mod in CONTRAST:
        thick = rng.random() < prof.p_thick
        axis = int(rng.choice(3, p=[0.2, 0.2, 0.6]))
        slice_mm = float(rng.uniform(*prof.slice_mm))
        out[mod] = ContrastParams(
            values={k: float(v) for k, v in values[mod].items()},
            offset=float(rng.uniform(0.0, 0.12)),
            scale=float(rng.uniform(150.0, 1500.0)),
            noise=float(rng.uniform(*prof.noise)) * values[mod]["wm"],
            bias_std=float(rng.uniform(*prof.bias_std)),
            gamma=float(rng.uniform(*prof.gamma)),
            thick_axis=axis if thick else -1,
            slice_mm=slice_mm if thick else 1.0,
        )
    return out


def thick_slices(volume: np.ndarray, axis: int, slice_mm: float, spacing: float) -> np.ndarray:
    """``volume`` as if acquired with ``slice_mm`` slices along ``axis`` and interpolated back to its grid:
    a Gaussian slice profile (FWHM = ``slice_mm``), sampled every ``slice_mm``, linear interpolation."""
    n = volume.shape[axis]
    step = slice_mm / spacing
    if step <= 1.05 or n < 3:
        return volume
    blurred = ndimage.gaussian_filter1d(volume, step / 2.355, axis=axis, mode="nearest")
    n_coarse = max(int(np.ceil((n - 1) / step)) + 1, 2)
    idx = np.rint(np.linspace(0, n - 1, n_coarse)).astype(int)
    coarse = np.take(blurred, idx, axis=axis)
    w = _linear_weights(n_coarse, n)  # (n, n_coarse)
    moved = np.moveaxis(coarse, axis, -1) @ w.T
    return np.ascontiguousarray(np.moveaxis(moved, -1, axis), dtype=np.float32)


def render_images(
    rng: np.random.Generator,
    anatomy: Anatomy,
    tumours: TumourMaps,
    params: dict[str, ContrastParams],
    looks: LookAlikes | None = None,
) -> dict[str, np.ndarray]:
    """The four images on the anatomy's box, float32 holding non-negative integers, 0 outside the brain mask."""
    mask = anatomy.mask
    gm, wm, csf = anatomy.gm[mask], anatomy.wm[mask], anatomy.csf[mask]
    core = tumours.core[mask]
    f_et = tumours.et[mask]
    f_net = tumours.net[mask]
    f_ncr = np.maximum(core - f_et - f_net, 0.0)
    f_ed = (1.0 - core) * tumours.edema[mask]
    f_normal = 1.0 - core - f_ed
    extra: dict[str, np.ndarray] = {}
    if looks is not None:
        left = f_normal.copy()
        for key in ("plexus", "vessel", "wmh"):
            frac = np.minimum(getattr(looks, key)[mask], left)
            left -= frac
            extra[key] = frac
        f_normal = left
    hetero = tumours.hetero[mask]
    spacing = float(np.mean(anatomy.spacing))
    images: dict[str, np.ndarray] = {}
    for mod, p in params.items():
        v = p.values
        normal = gm * v["gm"] + wm * v["wm"] + csf * v["csf"]
        tumour = f_ed * ((1.0 - EDEMA_KEEP) * v["ed"] + EDEMA_KEEP * normal)
        tumour += f_ncr * v["ncr"] + f_et * v["et"] + f_net * v["net"]
        signal = f_normal * normal + hetero * tumour
        for key, frac in extra.items():
            signal += frac * v[key]
        signal = v["wm"] * (np.maximum(signal, 0.0) / v["wm"]) ** p.gamma + p.offset
        if p.thick_axis >= 0:
            vol = np.zeros(mask.shape, np.float32)
            vol[mask] = signal
            axis_mm = float(anatomy.spacing[p.thick_axis])
            signal = thick_slices(vol, p.thick_axis, p.slice_mm, axis_mm)[mask]
        bias = np.exp(p.bias_std * smooth_noise(rng, mask.shape, 70.0 / spacing))[mask]
        signal *= bias
        n1 = rng.standard_normal(signal.shape, dtype=np.float32)
        n2 = rng.standard_normal(signal.shape, dtype=np.float32)
        signal = np.sqrt((signal + p.noise * n1) ** 2 + (p.noise * n2) ** 2)
        out = np.zeros(mask.shape, np.float32)
        out[mask] = np.maximum(np.minimum(np.rint(signal * p.scale), 32767.0), 1.0)
        images[mod] = out
    return images
