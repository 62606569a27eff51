"""MR contrast for the synthetic cohort: tissue and tumour fractions -> four skull-stripped MR images.

Each voxel's signal is the fraction-weighted mean of the signals of its tissues (partial-volume model). The table
below holds the relative signal of each tissue per sequence (white matter of T1 = 1 is arbitrary: each sequence
is scaled on its own). Per case, every entry is jittered by up to +-5 %, each sequence gets an offset, a scale,
a smooth multiplicative bias field and Rician noise, and the result is rounded to integers like the int16 BraTS
files. Outside the brain mask every image is exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brats.synth.anatomy import Anatomy, smooth_noise
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

    values: dict[str, float]  # jittered CONTRAST row
    offset: float  # added inside the brain, in relative units
    scale: float  # relative units -> stored integer units
    noise: float  # Rician noise sigma, relative units
    bias_std: float  # std of the log bias field


def draw_contrast(rng: np.random.Generator) -> dict[str, ContrastParams]:
    out: dict[str, ContrastParams] = {}
    for mod, row in CONTRAST.items():
        values = {k: v * float(rng.uniform(0.95, 1.05)) for k, v in row.items()}
        out[mod] = ContrastParams(
            values=values,
            offset=float(rng.uniform(0.0, 0.12)),
            scale=float(rng.uniform(250.0, 1000.0)),
            noise=float(rng.uniform(0.015, 0.035)),
            bias_std=float(rng.uniform(0.03, 0.08)),
        )
    return out


def render_images(
    rng: np.random.Generator,
    anatomy: Anatomy,
    tumours: TumourMaps,
    params: dict[str, ContrastParams],
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
    hetero = tumours.hetero[mask]
    spacing = float(np.mean(anatomy.spacing))
    images: dict[str, np.ndarray] = {}
    for mod, p in params.items():
        v = p.values
        normal = gm * v["gm"] + wm * v["wm"] + csf * v["csf"]
        tumour = f_ed * ((1.0 - EDEMA_KEEP) * v["ed"] + EDEMA_KEEP * normal)
        tumour += f_ncr * v["ncr"] + f_et * v["et"] + f_net * v["net"]
        signal = f_normal * normal + hetero * tumour + p.offset
        bias = np.exp(p.bias_std * smooth_noise(rng, mask.shape, 70.0 / spacing))[mask]
        signal *= bias
        n1 = rng.standard_normal(signal.shape, dtype=np.float32)
        n2 = rng.standard_normal(signal.shape, dtype=np.float32)
        signal = np.sqrt((signal + p.noise * n1) ** 2 + (p.noise * n2) ** 2)
        out = np.zeros(mask.shape, np.float32)
        out[mask] = np.minimum(np.rint(signal * p.scale), 32767.0)
        images[mod] = out
    return images
