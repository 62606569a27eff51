"""Finding BraTS cases: naming schemes, discovery and case lists.

Naming schemes (``.nii.gz`` or ``.nii``; the segmentation is optional):

* ``2020``: ``BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,t2,flair,seg}.nii.gz``
* ``2021``: ``BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz``
* ``2023``: ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (ET = 3)
* ``custom``: a pattern such as ``{case}_{modality}.nii.gz`` relative to each case folder.
* ``kaggle_3m``: LGG TIFF slices ``TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_{k}[_mask].tif``
  (:mod:`brats.data.kaggle`, docs/lgg.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brats.errors import BratsError
from brats.labels import LabelScheme, scheme_for_naming

__all__ = [
    "MODALITIES",
    "SUFFIXES",
    "SEPARATOR",
    "NIFTI_EXTS",
    "Case",
    "CaseError",
    "discover_cases",
    "resolve_cases",
    "is_2023_id",
]

#: Canonical modality names, in the default channel order.
MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
#: File suffix of each canonical modality (and the segmentation) per naming scheme.
SUFFIXES: dict[str, dict[str, str]] = {
    "2020": {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": "seg"},
    "2021": {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": "seg"},
    "2023": {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f", "seg": "seg"},
}
SEPARATOR = {"2020": "_", "2021": "_", "2023": "-"}
NIFTI_EXTS = (".nii.gz", ".nii")

_RE_2020 = re.compile(r"^BraTS20_[A-Za-z]+_\d+$")
_RE_2023 = re.compile(r"^BraTS-[A-Za-z]+-\d+-\d+$")


class CaseError(BratsError, ValueError):
    """A case cannot be read: a file is missing, unreadable, or the geometry disagrees."""


@dataclass(frozen=True)
class Case:
    """One patient's files.

    Attributes:
        case_id: folder name, e.g. ``BraTS2021_00000``.
        folder: the case folder.
        naming: ``2020``, ``2021``, ``2023`` or ``custom``.
        images: canonical modality name -> file, for the modalities found.
        seg: the segmentation file, or None (validation/test data); for kaggle_3m the patient folder.
        metadata: extra per-case facts (kaggle_3m: the patient's ``data.csv`` row).
    """

    case_id: str
    folder: Path
    naming: str
    images: dict[str, Path] = field(default_factory=dict)
    seg: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def label_scheme(self) -> LabelScheme:
        return scheme_for_naming(self.naming)

    def expected_path(self, modality: str, pattern: str | None = None) -> Path:
        """Where the file of ``modality`` (or ``seg``) should be under this case's naming."""
        if self.naming == "custom":
            assert pattern is not None
            return self.folder / pattern.format(case=self.case_id, modality=modality)
        sep = SEPARATOR[self.naming]
        return self.folder / f"{self.case_id}{sep}{SUFFIXES[self.naming][modality]}.nii.gz"


def is_2023_id(case_id: str) -> bool:
    """Whether ``case_id`` is a BraTS 2023 id (``BraTS-GLI-00000-000``: patient, then time-point)."""
    return bool(_RE_2023.match(case_id))


def _find_file(folder: Path, stem: str) -> Path | None:
    for ext in NIFTI_EXTS:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def _detect_naming(folder: Path) -> str | None:
    """The naming scheme of a case folder from its files (and name), or None if it is not a case."""
    cid = folder.name
    from brats.data.kaggle import KAGGLE_NAMING, is_kaggle_folder

    if is_kaggle_folder(folder):
        return KAGGLE_NAMING
    for naming in ("2023", "2021"):
        sep = SEPARATOR[naming]
        suffixes = SUFFIXES[naming]
        hits = [m for m, s in suffixes.items() if _find_file(folder, f"{cid}{sep}{s}")]
        if naming == "2021" and hits == ["seg"] and _RE_2023.match(cid):
            continue
        if hits:
            if naming == "2021" and _RE_2020.match(cid):
                return "2020"
            return naming
    return None


def _case_from_folder(folder: Path, naming: str, pattern: str | None = None) -> Case:
    cid = folder.name
    images: dict[str, Path] = {}
    seg: Path | None = None
    if naming == "kaggle_3m":
        from brats.data.kaggle import kaggle_case

        return kaggle_case(folder)
    if naming == "custom":
        assert pattern is not None
        for m in (*MODALITIES, "seg"):
            p = folder / pattern.format(case=cid, modality=m)
            if p.is_file():
                if m == "seg":
                    seg = p
                else:
                    images[m] = p
    else:
        sep = SEPARATOR[naming]
        for m, s in SUFFIXES[naming].items():
            found = _find_file(folder, f"{cid}{sep}{s}")
            if found is None:
                continue
            if m == "seg":
                seg = found
            else:
                images[m] = found
    return Case(case_id=cid, folder=folder, naming=naming, images=images, seg=seg)


def discover_cases(root: str | Path, naming: str = "auto", pattern: str | None = None) -> list[Case]:
    """Find the cases under ``root`` (its sub-folders; ``root`` itself when it is a case folder).

    Args:
        root: a folder of case folders, or one case folder.
        naming: ``auto`` (detected per case), ``2020``, ``2021``, ``2023``, ``kaggle_3m`` or ``custom``.
        pattern: for ``custom``: file pattern relative to the case folder with ``{case}`` and ``{modality}``.

    Returns:
        The cases sorted by id. A folder is a case when at least one of its files follows the naming.

    Raises:
        CaseError: when ``root`` does not exist or holds no case.
    """
    root = Path(root)
    if not root.is_dir():
        raise CaseError(f"{root}: not a folder")
    if naming == "custom" and not pattern:
        raise CaseError("naming 'custom' needs a pattern such as '{case}_{modality}.nii.gz'")
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    cases: list[Case] = []
    for folder in candidates:
        if naming == "auto":
            found = _detect_naming(folder)
        elif naming == "custom":
            found = (
                "custom"
                if any(
                    (folder / str(pattern).format(case=folder.name, modality=m)).is_file()
                    for m in (*MODALITIES, "seg")
                )
                else None
            )
        elif naming == "kaggle_3m":
            found = naming if _detect_naming(folder) == naming else None
        else:
            found = naming if _detect_naming(folder) not in (None, "kaggle_3m") else None
        if found is None:
            continue
        cases.append(_case_from_folder(folder, found, pattern))
        if folder == root:
            return cases  # root itself is a case folder
    if not cases:
        raise CaseError(
            f"{root}: no BraTS case found (expected sub-folders such as BraTS2021_00000/ holding "
            f"BraTS2021_00000_flair.nii.gz, or 2020/2023 naming; see docs/data.md)"
        )
    return sorted(cases, key=lambda c: c.case_id)


def resolve_cases(path: str | Path, naming: str = "auto", pattern: str | None = None) -> list[Case]:
    """Cases from a case folder, a folder of cases, or a text file listing case folders (one per line)."""
    path = Path(path)
    if path.is_file():
        cases: list[Case] = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            folder = Path(line)
            if not folder.is_absolute():
                folder = (path.parent / folder) if not folder.is_dir() else folder
            found = discover_cases(folder, naming, pattern)
            cases.extend(found)
        if not cases:
            raise CaseError(f"{path}: the list names no case folder")
        return cases
    return discover_cases(path, naming, pattern)
