"""Reading cases: discovery in every naming, NIfTI loading and saving with geometry, validation, patient split.

kaggle_3m (LGG TIFF slices, binary masks): :mod:`brats.data.kaggle` (reading, writing, the documented affine)
and :mod:`brats.data.kaggle_validate` (named problems); ``load_case``/``load_seg``/``validate_case`` dispatch
to them for ``Case.naming == "kaggle_3m"`` (docs/lgg.md).

Arrays are channel-first ``(C, X, Y, Z)`` in nibabel's voxel order, channels in the requested modality order.
"""

from brats.data.naming import (
    MODALITIES,
    NIFTI_EXTS,
    SEPARATOR,
    SUFFIXES,
    Case,
    CaseError,
    discover_cases,
    resolve_cases,
)
from brats.data.nifti import (
    AFFINE_TOL,
    Geometry,
    geometry_mismatch,
    load_case,
    load_geometry,
    load_label_file,
    load_seg,
    save_nifti,
    save_seg,
)
from brats.data.split import patient_id, split_cases
from brats.data.validate import Problem, validate_case, validate_cohort

__all__ = [
    "AFFINE_TOL",
    "MODALITIES",
    "NIFTI_EXTS",
    "SEPARATOR",
    "SUFFIXES",
    "Case",
    "CaseError",
    "Geometry",
    "Problem",
    "discover_cases",
    "geometry_mismatch",
    "load_case",
    "load_geometry",
    "load_label_file",
    "load_seg",
    "patient_id",
    "resolve_cases",
    "save_nifti",
    "save_seg",
    "split_cases",
    "validate_case",
    "validate_cohort",
]
