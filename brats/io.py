"""BraTS case discovery, NIfTI loading and saving, validation and the patient-level split.

Naming schemes (``.nii.gz`` or ``.nii``; the segmentation is optional):

* ``2020``: ``BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,t2,flair,seg}.nii.gz``
* ``2021``: ``BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz``
* ``2023``: ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (ET = 3)
* ``custom``: a pattern such as ``{case}_{modality}.nii.gz`` relative to each case folder.

Arrays are channel-first ``(C, X, Y, Z)`` in nibabel's voxel order, channels in the requested modality order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from brats.errors import BratsError
from brats.labels import LabelScheme, scheme_for_naming

log = logging.getLogger(__name__)

__all__ = [
    "MODALITIES",
    "Case",
    "CaseError",
    "Geometry",
    "Problem",
    "discover_cases",
    "resolve_cases",
    "load_case",
    "load_seg",
    "load_geometry",
    "save_seg",
    "save_nifti",
    "validate_case",
    "validate_cohort",
    "split_cases",
    "patient_id",
    "atomic_path",
    "atomic_write_text",
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
AFFINE_TOL = 1e-4

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
        seg: the segmentation file, or None (validation/test data).
    """

    case_id: str
    folder: Path
    naming: str
    images: dict[str, Path] = field(default_factory=dict)
    seg: Path | None = None

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


@dataclass
class Geometry:
    """Voxel grid of a case: shape, affine and the NIfTI header of the reference (first) modality."""

    shape: tuple[int, ...]
    affine: np.ndarray
    header: nib.Nifti1Header
    source: Path | None = None

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(float(z) for z in self.header.get_zooms()[:3])


@dataclass(frozen=True)
class Problem:
    """One validation problem: the case, the file concerned and what is wrong."""

    case: str
    file: str
    problem: str

    def to_dict(self) -> dict:
        return {"case": self.case, "file": self.file, "problem": self.problem}


# ----------------------------------------------------------------------------------------------------------------
# Atomic writes
# ----------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffixes); rename it to ``path`` when the block succeeds.

    On an exception the temporary file is removed and ``path`` (if it existed) is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the final file the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


# ----------------------------------------------------------------------------------------------------------------
# Discovery
# ----------------------------------------------------------------------------------------------------------------


def _find_file(folder: Path, stem: str) -> Path | None:
    for ext in NIFTI_EXTS:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def _detect_naming(folder: Path) -> str | None:
    """The naming scheme of a case folder from its files (and name), or None if it is not a case."""
    cid = folder.name
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
            p = _find_file(folder, f"{cid}{sep}{s}")
            if p is None:
                continue
            if m == "seg":
                seg = p
            else:
                images[m] = p
    return Case(case_id=cid, folder=folder, naming=naming, images=images, seg=seg)


def discover_cases(root: str | Path, naming: str = "auto", pattern: str | None = None) -> list[Case]:
    """Find the cases under ``root`` (its sub-folders; ``root`` itself when it is a case folder).

    Args:
        root: a folder of case folders, or one case folder.
        naming: ``auto`` (detected per case), ``2020``, ``2021``, ``2023`` or ``custom``.
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
                    (folder / pattern.format(case=folder.name, modality=m)).is_file()
                    for m in (*MODALITIES, "seg")
                )
                else None
            )
        else:
            found = naming if _detect_naming(folder) is not None else None
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


# ----------------------------------------------------------------------------------------------------------------
# Loading and saving
# ----------------------------------------------------------------------------------------------------------------


def _load_nifti(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for broken files
        raise CaseError(f"{path}: cannot read NIfTI header ({exc})") from exc
    return img  # type: ignore[return-value]


def _read_data(img: nib.Nifti1Image, path: Path, dtype: type) -> np.ndarray:
    try:
        if np.issubdtype(dtype, np.floating):
            return np.asarray(img.get_fdata(dtype=dtype))
        return np.asarray(img.dataobj)
    except Exception as exc:  # truncated gzip: EOFError, zlib.error, OSError ...
        raise CaseError(f"{path}: cannot read image data ({type(exc).__name__}: {exc})") from exc


def load_geometry(path: str | Path) -> Geometry:
    """Shape, affine and header of one NIfTI file (no voxel data read)."""
    path = Path(path)
    img = _load_nifti(path)
    return Geometry(tuple(int(s) for s in img.shape[:3]), img.affine.copy(), img.header.copy(), path)


def _geometry_mismatch(a: Geometry, b: Geometry) -> str | None:
    if a.shape != b.shape:
        return f"shape {b.shape} differs from {a.source.name if a.source else 'reference'} shape {a.shape}"
    if not np.allclose(a.affine, b.affine, atol=AFFINE_TOL, rtol=0):
        diff = float(np.abs(a.affine - b.affine).max())
        return (
            f"affine differs from {a.source.name if a.source else 'reference'} by up to {diff:.4g} "
            f"(tolerance {AFFINE_TOL})"
        )
    return None


def load_case(
    case: Case, modalities: list[str] | tuple[str, ...] = MODALITIES
) -> tuple[np.ndarray, Geometry]:
    """Load the modalities of a case.

    Returns:
        ``(image, geometry)``: ``image`` is ``(C, X, Y, Z)`` float32 with channels in ``modalities`` order;
        ``geometry`` is that of the first modality.

    Raises:
        CaseError: a modality is missing or unreadable, or shapes/affines disagree (the message lists every file
            with its shape and affine).
    """
    missing = [m for m in modalities if m not in case.images]
    if missing:
        raise CaseError(
            f"case {case.case_id}: missing modality {', '.join(missing)} "
            f"(expected {', '.join(str(case.expected_path(m)) for m in missing if case.naming != 'custom')})"
        )
    geoms = [load_geometry(case.images[m]) for m in modalities]
    ref = geoms[0]
    if any(_geometry_mismatch(ref, g) for g in geoms[1:]):
        listing = "\n".join(
            f"  {g.source}: shape {g.shape}, affine {np.round(g.affine, 4).tolist()}" for g in geoms
        )
        raise CaseError(f"case {case.case_id}: modalities disagree in geometry:\n{listing}")
    out = np.empty((len(modalities), *ref.shape), dtype=np.float32)
    for i, m in enumerate(modalities):
        img = _load_nifti(case.images[m])
        data = _read_data(img, case.images[m], np.float32)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        out[i] = data
    return out, ref


def load_seg(case: Case, check: bool = True) -> np.ndarray:
    """The segmentation of a case as ``(X, Y, Z)`` uint8 source labels. Unknown labels raise when ``check``."""
    if case.seg is None:
        raise CaseError(f"case {case.case_id}: no segmentation file")
    img = _load_nifti(case.seg)
    data = _read_data(img, case.seg, np.uint8)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.mod(data, 1) == 0):
        raise CaseError(f"{case.seg}: segmentation holds non-integer values")
    if data.min() < 0 or data.max() > 255:
        raise CaseError(f"{case.seg}: segmentation values outside 0..255")
    seg = data.astype(np.uint8)
    if check:
        from brats.labels import check_labels

        check_labels(seg, case.label_scheme, where=str(case.seg))
    return seg


def _header_for(geometry: Geometry, dtype: np.dtype) -> nib.Nifti1Header:
    hdr = geometry.header.copy()
    hdr.set_data_dtype(dtype)
    hdr.set_slope_inter(1.0, 0.0)
    hdr["cal_min"] = 0
    hdr["cal_max"] = 0
    hdr["glmax"] = 0
    hdr["glmin"] = 0
    return hdr


def save_nifti(
    path: str | Path, data: np.ndarray, geometry: Geometry, dtype: np.dtype | str | None = None
) -> Path:
    """Write ``data`` on the grid of ``geometry`` (same affine, sform/qform and codes), atomically.

    ``data`` is ``(X, Y, Z)`` or ``(X, Y, Z, K)`` (e.g. one channel per class). NIfTI-1 has no float16
    datatype, so float16 data is written as float32.
    """
    path = Path(path)
    data = np.asarray(data)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if data.dtype == np.float16:  # NIfTI-1 has no half-float datatype
        data = data.astype(np.float32)
    if tuple(data.shape[:3]) != tuple(geometry.shape):
        raise CaseError(f"{path}: data shape {data.shape[:3]} does not match the input grid {geometry.shape}")
    hdr = _header_for(geometry, data.dtype)
    if data.ndim == 4:
        hdr.set_data_shape(data.shape)
        hdr.set_intent("vector")
    img = nib.Nifti1Image(data, None, header=hdr)
    # affine=None keeps the header's qform/sform (and codes) exactly as they are in the input.
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def save_seg(path: str | Path, labels: np.ndarray, geometry: Geometry) -> Path:
    """Write a label map (``(X, Y, Z)`` integer) as uint8 on exactly the input's grid, atomically."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise CaseError(f"{path}: a segmentation must be integer, got {labels.dtype}")
    return save_nifti(path, labels, geometry, np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------------


def validate_case(
    case: Case,
    modalities: list[str] | tuple[str, ...] = MODALITIES,
    read_data: bool = True,
    pattern: str | None = None,
) -> list[Problem]:
    """Every problem of one case: missing or unreadable files, geometry mismatches, unknown labels."""
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
        why = _geometry_mismatch(ref, g)  # type: ignore[arg-type]
        if why:
            add(g.source, why)  # type: ignore[arg-type]
    if case.seg is not None:
        try:
            g = load_geometry(case.seg)
            why = _geometry_mismatch(ref, g) if ref is not None else None
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
    iterator = cases
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(cases, desc="validate", unit="case")
    for case in iterator:
        problems.extend(validate_case(case, modalities, read_data=read_data, pattern=pattern))
    schemes = sorted({c.naming for c in cases})
    return {
        "root": str(root),
        "scheme": schemes[0] if len(schemes) == 1 else "mixed",
        "cases": [c.case_id for c in cases],
        "with_seg": sum(c.seg is not None for c in cases),
        "problems": [p.to_dict() for p in problems],
    }


# ----------------------------------------------------------------------------------------------------------------
# Patient-level split
# ----------------------------------------------------------------------------------------------------------------


def patient_id(case_id: str) -> str:
    """The patient of a case: 2023 ids ``BraTS-GLI-00000-000`` end in a time-point, which is dropped."""
    if _RE_2023.match(case_id):
        return case_id.rsplit("-", 1)[0]
    return case_id


def split_cases(
    cases: list[Case],
    train_fraction: float = 0.7,
    val_fraction: float = 0.15,
    seed: int = 0,
    fold: int | None = None,
    n_folds: int = 5,
) -> dict[str, list[str]]:
    """Split cases by patient into ``train``/``val``/``test`` (lists of case ids, sorted).

    Cases without a segmentation always go to ``test``. All time-points of a patient land in the same split.
    In k-fold mode (``fold`` set), fold ``fold`` of ``n_folds`` is ``val``, the other labelled patients are
    ``train`` and ``test`` holds only the unlabelled cases.
    """
    labelled = [c for c in cases if c.seg is not None]
    unlabelled = sorted(c.case_id for c in cases if c.seg is None)
    patients = sorted({patient_id(c.case_id) for c in labelled})
    rng = np.random.default_rng(seed)
    order = [patients[i] for i in rng.permutation(len(patients))]
    if fold is not None:
        if not 0 <= fold < n_folds:
            raise ValueError(f"fold must be in 0..{n_folds - 1}, got {fold}")
        val_p = set(order[fold::n_folds])
        train_p = set(order) - val_p

    else:
        n = len(order)
        n_train = int(round(train_fraction * n))
        n_val = int(round(val_fraction * n))
        if n >= 3 and train_fraction < 1:
            n_train = min(max(n_train, 1), n - 2 if val_fraction > 0 else n - 1)
            if val_fraction > 0:
                n_val = max(n_val, 1)
            n_val = min(n_val, n - n_train)
        train_p = set(order[:n_train])
        val_p = set(order[n_train : n_train + n_val])

    out: dict[str, list[str]] = {"train": [], "val": [], "test": list(unlabelled)}
    for c in labelled:
        p = patient_id(c.case_id)
        key = "train" if p in train_p else "val" if p in val_p else "test"
        out[key].append(c.case_id)
    return {k: sorted(v) for k, v in out.items()}
