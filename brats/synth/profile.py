"""Synth profiles: the named ranges from which every case draws its lesions, look-alikes and acquisition.

Two profiles ship. ``train`` (the default of ``brats synth`` and the demo's training cohort) randomises contrast,
bias, noise, blur and slice thickness per case widely enough that no fixed intensity rule separates tumour from
brain (the SynthSeg idea), with lesions from sub-millilitre enhancing foci to whole tumours over 100 mL, a second
focus in some cases, unlabelled white-matter hyperintensities as bright on FLAIR as edema, and enhancing vessels
and choroid plexus as bright on T1ce as enhancing tumour. ``stress`` (never trained on) draws from ranges outside
the training ones: fainter edema and enhancement, more look-alikes, stronger noise, bias and thicker slices.
:data:`DISJOINT` lists the settings whose stress range does not overlap the training range (tested).

Contrast settings are ratios to normal tissue of the same sequence in the same case (``edema_flair`` = FLAIR in
pure edema / FLAIR in normal grey matter), so they survive any per-case scaling.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from brats.errors import BratsError

__all__ = ["Range", "SynthProfile", "PROFILES", "DISJOINT", "get_profile", "with_settings"]

Range = tuple[float, float]


@dataclass(frozen=True)
class SynthProfile:
    """Ranges of one synthetic cohort; every ``Range`` is drawn uniformly per case (``_mm`` sizes log-uniformly)."""

    name: str
    #: cases per block of 20 without tumour, and with a non-enhancing primary tumour.
    no_tumour_per_20: int
    non_enhancing_per_20: int
    #: radius of the primary whole tumour (edema) in mm, log-uniform: 4 mm ~ 0.3 mL, 30 mm ~ 113 mL.
    wt_radius_mm: Range
    #: whole-tumour radius / tumour-core radius.
    core_ratio: Range
    #: probability of a second focus, and its whole-tumour radius (mm, log-uniform).
    p_second: float
    second_radius_mm: Range
    #: how strongly edema spreads along white matter (level-set shift per unit of WM fraction).
    edema_wm_follow: Range
    #: FLAIR and T2 in pure edema / the same sequence in normal grey matter.
    edema_flair: Range
    edema_t2: Range
    #: share of the cases whose edema FLAIR and T2 are drawn from ``faint_edema_flair`` / ``faint_edema_t2``
    #: instead (a mixture of faint and bright edema in one cohort; 0 in both shipped profiles: no extra draw, so
    #: their cohorts are what they were before the setting existed).
    faint_edema_share: float
    faint_edema_flair: Range
    faint_edema_t2: Range
    #: T1ce in enhancing tumour / T1ce in normal white matter.
    et_t1ce: Range
    #: unlabelled white-matter hyperintensities per case, their radius (mm).
    wmh_count: tuple[int, int]
    wmh_radius_mm: Range
    #: FLAIR and T2 of the hyperintensities, drawn on their own as the edema's are (the ratio to grey matter
    #: that pure edema on white matter would have; a hyperintensity replaces the tissue where edema keeps part of
    #: it, so it comes out brighter). Both profiles use their edema ranges: a look-alike is as bright as edema
    #: can be, not as this case's edema.
    wmh_flair: Range
    wmh_t2: Range
    #: unlabelled enhancing vessels: tube network density (0 none .. ~1 dense) and radius (mm); T1ce drawn from
    #: ``et_t1ce`` (choroid plexus too).
    vessel_density: Range
    vessel_radius_mm: Range
    #: per-case jitter of every normal-tissue signal (relative, +-).
    tissue_jitter: float
    #: per-sequence power law on the signal (scanner-dependent non-linear intensity scale).
    gamma: Range
    #: log-std of the smooth multiplicative bias field, per sequence.
    bias_std: Range
    #: Rician noise sigma relative to normal white matter, per sequence.
    noise: Range
    #: probability that a sequence was acquired with thick slices, and the slice thickness (mm) along one axis.
    p_thick: float
    slice_mm: Range


TRAIN = SynthProfile(
    name="train",
    no_tumour_per_20=2,
    non_enhancing_per_20=4,
    wt_radius_mm=(5.0, 38.0),
    core_ratio=(1.1, 2.2),
    p_second=0.3,
    second_radius_mm=(3.5, 16.0),
    edema_wm_follow=(0.2, 0.8),
    edema_flair=(1.1, 1.9),
    edema_t2=(1.1, 1.9),
    faint_edema_share=0.0,
    faint_edema_flair=(1.1, 1.9),
    faint_edema_t2=(1.1, 1.9),
    et_t1ce=(1.45, 2.6),
    wmh_count=(0, 12),
    wmh_radius_mm=(1.5, 6.0),
    wmh_flair=(1.1, 1.9),
    wmh_t2=(1.1, 1.9),
    vessel_density=(0.0, 0.6),
    vessel_radius_mm=(0.6, 1.5),
    tissue_jitter=0.08,
    gamma=(0.7, 1.4),
    bias_std=(0.0, 0.25),
    noise=(0.01, 0.06),
    p_thick=0.4,
    slice_mm=(2.0, 5.0),
)

STRESS = SynthProfile(
    name="stress",
    no_tumour_per_20=3,
    non_enhancing_per_20=5,
    wt_radius_mm=(3.5, 30.0),
    core_ratio=(1.3, 2.6),
    p_second=0.4,
    second_radius_mm=(3.0, 12.0),
    edema_wm_follow=(0.6, 1.0),
    edema_flair=(1.04, 1.1),
    edema_t2=(1.1, 1.3),
    faint_edema_share=0.0,
    faint_edema_flair=(1.04, 1.1),
    faint_edema_t2=(1.1, 1.3),
    et_t1ce=(1.3, 1.45),
    wmh_count=(13, 30),
    wmh_radius_mm=(1.5, 7.0),
    wmh_flair=(1.04, 1.1),
    wmh_t2=(1.1, 1.3),
    vessel_density=(0.6, 1.0),
    vessel_radius_mm=(0.8, 1.8),
    tissue_jitter=0.1,
    gamma=(0.6, 1.6),
    bias_std=(0.25, 0.4),
    noise=(0.06, 0.09),
    p_thick=0.7,
    slice_mm=(5.0, 7.0),
)

PROFILES: dict[str, SynthProfile] = {"train": TRAIN, "stress": STRESS}

#: Settings whose ``stress`` range lies outside the ``train`` range (they may share an end point).
DISJOINT = (
    "edema_flair",
    "et_t1ce",
    "wmh_count",
    "wmh_flair",
    "vessel_density",
    "bias_std",
    "noise",
    "slice_mm",
)


def get_profile(profile: str | SynthProfile) -> SynthProfile:
    """The profile named ``profile`` (``train`` or ``stress``), or ``profile`` itself, checked."""
    if isinstance(profile, SynthProfile):
        out = profile
    elif profile in PROFILES:
        out = PROFILES[profile]
    else:
        raise BratsError(f"synth profile {profile!r} is not one of {', '.join(PROFILES)}")
    for f in dataclasses.fields(out):
        value = getattr(out, f.name)
        if isinstance(value, tuple) and not (len(value) == 2 and 0 <= value[0] <= value[1]):
            raise BratsError(f"synth profile {out.name}: {f.name} must be (low, high) with 0 <= low <= high")
        if isinstance(value, (int, float)) and value < 0:
            raise BratsError(f"synth profile {out.name}: {f.name} must be >= 0, got {value}")
    for name in ("p_second", "p_thick", "tissue_jitter", "faint_edema_share"):
        if getattr(out, name) > 1:
            raise BratsError(f"synth profile {out.name}: {name} must be at most 1, got {getattr(out, name)}")
    if out.no_tumour_per_20 + out.non_enhancing_per_20 > 20:
        raise BratsError(
            f"synth profile {out.name}: no_tumour_per_20 + non_enhancing_per_20 must be at most 20"
        )
    return out


def _setting(name: str, default: object, text: str) -> Any:
    """``text`` read as the type of ``default``: ``LOW,HIGH`` for a range, one number otherwise."""
    kind = (
        int
        if isinstance(default, int) or (isinstance(default, tuple) and isinstance(default[0], int))
        else float
    )
    parts = [p.strip() for p in text.split(",")]
    want = 2 if isinstance(default, tuple) else 1
    try:
        if len(parts) != want:
            raise ValueError
        values = [kind(p) for p in parts]
    except ValueError:
        form = "LOW,HIGH" if want == 2 else "one number"
        raise BratsError(
            f"synth setting {name}={text!r}: expected {form} ({kind.__name__}{' values' if want == 2 else ''})"
        ) from None
    return tuple(values) if want == 2 else values[0]


def with_settings(profile: str | SynthProfile, settings: dict[str, str]) -> SynthProfile:
    """``profile`` with the named settings replaced, each given as text (``{"noise": "0.06,0.09"}``: a range as
    ``LOW,HIGH``, a count or probability as one number); the result is named ``<profile>+<keys>`` and checked.

    Raises:
        BratsError: an unknown setting (the message lists the known ones), a value of the wrong form, or a range
            with low > high.
    """
    base = get_profile(profile)
    if not settings:
        return base
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.name != "name"}
    changes: dict[str, Any] = {}
    for key, text in settings.items():
        if key not in fields:
            raise BratsError(f"synth setting {key!r} is not one of {', '.join(fields)}")
        changes[key] = _setting(key, fields[key], text)
    name = base.name + "+" + "+".join(sorted(changes))
    return get_profile(dataclasses.replace(base, name=name, **changes))
