"""Validation of a cohort: every missing or unreadable file, geometry mismatch and unknown label, as a list."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brats.data.naming import MODALITIES, Case, CaseError, discover_cases
from brats.data.nifti import Geometry, _load_nifti, _read_data, geometry_mismatch, load_geometry, load_seg

__all__ = ["Problem", "validate_case", "validate_cohort"]


@dataclass(frozen=True)
class Problem:
    """One validation problem: the case, the file concerned and what is wrong."""

    case: str
    file: str
    problem: str
    code: str = ""  # a stable name of the problem kind where one is defined (kaggle_3m: docs/lgg.md)

    def to_dict(self) -> dict:
        out = {"case": self.case, "file": self.file, "problem": self.problem}
        if self.code:
            out["code"] = self.code
        return out


def validate_case(
    case: Case,
    modalities: list[str] | tuple[str, ...] = MODALITIES,
    read_data: bool = True,
    pattern: str | None = None,
) -> list[Problem]:
    """Every problem of one case: missing or unreadable files, geometry mismatches, unknown labels."""
    if case.naming == "kaggle_3m":
        from brats.data.kaggle_validate import validate_kaggle_case

        return validate_kaggle_case(case, modalities, read_data)
    problems: list[Problem] = []
    cid = case.case_id

    def add(file: Path | str, text: str) -> None:
        problems.append(Problem(cid, str(file), text))

    geoms: list[Geometry] = []
    for m in modalities:
        if m not in case.images:
            add(case.expected_path(m, pattern), f"missing modality {m}")
            continue
        try:
            g = load_geometry(case.images[m])
            if read_data:
                _read_data(_load_nifti(case.images[m]), case.images[m], np.float32)
            geoms.append(g)
        except CaseError as exc:
            add(case.images[m], str(exc).split(": ", 1)[-1])
    ref = geoms[0] if geoms else None
    for g in geoms[1:]:
        why = geometry_mismatch(ref, g)  # type: ignore[arg-type]
        if why:
            add(g.source, why)  # type: ignore[arg-type]
    if case.seg is not None:
        try:
            g = load_geometry(case.seg)
            why = geometry_mismatch(ref, g) if ref is not None else None
            if why:
                add(case.seg, why)
            seg = load_seg(case, check=False)
            allowed = set(case.label_scheme.source_labels)
            bad = sorted(int(v) for v in np.unique(seg) if int(v) not in allowed)
            if bad:
                add(
                    case.seg,
                    f"unexpected label value(s) {bad}; {case.naming} naming allows {sorted(allowed)}",
                )
        except CaseError as exc:
            add(case.seg, str(exc).split(": ", 1)[-1])
    return problems


def validate_cohort(
    root: str | Path,
    naming: str = "auto",
    pattern: str | None = None,
    modalities: list[str] | tuple[str, ...] = MODALITIES,
    read_data: bool = True,
    progress: bool = False,
) -> dict:
    """Validate every case under ``root``.

    Returns:
        ``{"root", "scheme", "cases": [ids], "with_seg": n, "problems": [{"case", "file", "problem"}, ...]}``;
        ``scheme`` is the naming found (``mixed`` if several).
    """
    cases = discover_cases(root, naming, pattern)
    problems: list[Problem] = []
    from brats.progress import track

    for case in track(cases, desc="validate", unit="case", enabled=progress):
        problems.extend(validate_case(case, modalities, read_data=read_data, pattern=pattern))
    schemes = sorted({c.naming for c in cases})
    return {
        "root": str(root),
        "scheme": schemes[0] if len(schemes) == 1 else "mixed",
        "cases": [c.case_id for c in cases],
        "with_seg": sum(c.seg is not None for c in cases),
        "problems": [p.to_dict() for p in problems],
    }
