"""``brats synth``: a synthetic BraTS-like cohort on real brain anatomy (MNI152), for the demo and the tests.

Modules: :mod:`~brats.synth.anatomy` (template, pose, warps), :mod:`~brats.synth.tumour` (lesion geometry and
labels), :mod:`~brats.synth.contrast` (MRI contrasts and artefacts), :mod:`~brats.synth.cohort` (cases and files),
:mod:`~brats.synth.kaggle` (the same cases in the LGG kaggle_3m TIFF-slice layout).
"""

from brats.synth.cohort import (
    NAMINGS,
    SynthCase,
    SynthError,
    case_id,
    generate_case,
    generate_cohort,
    simulate_case,
    write_case,
)
from brats.synth.profile import DISJOINT, PROFILES, SynthProfile, get_profile, with_settings

__all__ = [
    "DISJOINT",
    "PROFILES",
    "SynthProfile",
    "get_profile",
    "with_settings",
    "NAMINGS",
    "SynthCase",
    "SynthError",
    "case_id",
    "generate_case",
    "generate_cohort",
    "simulate_case",
    "write_case",
]
