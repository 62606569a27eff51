"""Label conventions: source labels <-> training classes, and the BraTS regions.

Source labels are what the segmentation files hold:

========== ======================== =========================
label      BraTS 2020 / 2021        BraTS 2023 and later
========== ======================== =========================
0          background               background
1          NCR (necrotic / non-enh.) NCR
2          ED (peritumoural edema)  ED
4 / 3      ET (enhancing tumour) = 4 ET = 3
========== ======================== =========================

BraTS training classes are ``0 background, 1 NCR, 2 ED, 3 ET``. The regions BraTS ranks are
``WT = NCR | ED | ET``, ``TC = NCR | ET`` and ``ET``.

The ``binary`` scheme (LGG kaggle_3m FLAIR-abnormality masks, docs/lgg.md) has two training classes,
``0 background, 1 tumour``; its readers map the source mask value 255 to 1. The number of training classes
always comes from the scheme (:attr:`LabelScheme.num_classes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brats.errors import BratsError

__all__ = [
    "LabelScheme",
    "LabelError",
    "SCHEMES",
    "CLASS_NAMES",
    "REGION_NAMES",
    "scheme_for_naming",
    "get_scheme",
    "check_labels",
    "to_classes",
    "to_source",
    "class_masks",
    "region_masks",
    "BINARY_STRUCTURE",
]

CLASS_NAMES: tuple[str, ...] = ("NCR", "ED", "ET")  # training classes 1, 2, 3
REGION_NAMES: tuple[str, ...] = ("WT", "TC", "ET")
#: Regions as sets of training classes.
REGION_CLASSES: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
NUM_CLASSES = 4  # BraTS schemes; a scheme's own count is LabelScheme.num_classes
#: The one structure scored for the binary scheme (training class 1).
BINARY_STRUCTURE = "tumour"


class LabelError(BratsError, ValueError):
    """A label map holds values that its scheme does not know."""


@dataclass(frozen=True)
class LabelScheme:
    """A source label convention.

    Attributes:
        name: ``"brats2021"`` (ET = 4; used by 2020 and 2021 data) or ``"brats2023"`` (ET = 3).
        source_labels: source label of each training class, index = class: ``(0, 1, 2, 4)`` or ``(0, 1, 2, 3)``.
    """

    name: str
    source_labels: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        """Training classes including background: 4 for BraTS, 2 for ``binary``."""
        return len(self.source_labels)

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 2

    @property
    def et_label(self) -> int:
        return self.source_labels[3]

    @property
    def mapping(self) -> dict[int, int]:
        """Source label -> training class, e.g. ``{0: 0, 1: 1, 2: 2, 4: 3}``."""
        return {s: c for c, s in enumerate(self.source_labels)}

    @property
    def inverse_mapping(self) -> dict[int, int]:
        """Training class -> source label, e.g. ``{0: 0, 1: 1, 2: 2, 3: 4}``."""
        return dict(enumerate(self.source_labels))

    def to_dict(self) -> dict:
        return {"name": self.name, "source_labels": list(self.source_labels)}


SCHEMES: dict[str, LabelScheme] = {
    "brats2021": LabelScheme("brats2021", (0, 1, 2, 4)),
    "brats2023": LabelScheme("brats2023", (0, 1, 2, 3)),
    "binary": LabelScheme("binary", (0, 1)),
}


def get_scheme(name: str | LabelScheme) -> LabelScheme:
    """A scheme by name (``brats2021`` / ``brats2023``, or a naming year ``2020``/``2021``/``2023``)."""
    if isinstance(name, LabelScheme):
        return name
    key = str(name)
    if key in SCHEMES:
        return SCHEMES[key]
    if key in {"2020", "2021", "2023", "custom", "kaggle_3m"}:
        return scheme_for_naming(key)
    raise LabelError(f"Unknown label scheme {name!r}; known: {', '.join(SCHEMES)} (or 2020, 2021, 2023)")


def scheme_for_naming(naming: str) -> LabelScheme:
    """The label scheme of a file-naming scheme: 2023 naming -> ET = 3, kaggle_3m -> binary, otherwise ET = 4."""
    if str(naming) == "kaggle_3m":
        return SCHEMES["binary"]
    return SCHEMES["brats2023"] if str(naming) == "2023" else SCHEMES["brats2021"]


def check_labels(labels: np.ndarray, scheme: LabelScheme | str, where: str = "label map") -> None:
    """Raise :class:`LabelError` naming the unexpected values when ``labels`` holds values outside the scheme."""
    scheme = get_scheme(scheme)
    values = np.unique(labels)
    bad = sorted(int(v) for v in values if int(v) not in scheme.mapping)
    if bad:
        raise LabelError(
            f"{where}: unexpected label value(s) {bad}; the {scheme.name} scheme allows {list(scheme.source_labels)}"
        )


def _lut(mapping: dict[int, int], size: int = 256) -> np.ndarray:
    lut = np.full(size, 255, dtype=np.uint8)
    for k, v in mapping.items():
        lut[k] = v
    return lut


def to_classes(labels: np.ndarray, scheme: LabelScheme | str, where: str = "label map") -> np.ndarray:
    """Map source labels to training classes 0..K-1 (``uint8``, same shape). Unknown values raise."""
    scheme = get_scheme(scheme)
    labels = np.asarray(labels)
    check_labels(labels, scheme, where)
    return _lut(scheme.mapping)[labels.astype(np.int64)]


def to_source(classes: np.ndarray, scheme: LabelScheme | str) -> np.ndarray:
    """Map training classes 0..K-1 back to the scheme's source labels (``uint8``)."""
    scheme = get_scheme(scheme)
    classes = np.asarray(classes)
    values = np.unique(classes)
    k = scheme.num_classes
    bad = sorted(int(v) for v in values if not 0 <= int(v) < k)
    if bad:
        raise LabelError(f"training classes must be in 0..{k - 1}, got {bad}")
    return _lut(scheme.inverse_mapping)[classes.astype(np.int64)]


def class_masks(classes: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the tumour classes NCR, ED, ET from a training-class map (0..3)."""
    classes = np.asarray(classes)
    return {name: classes == c for c, name in enumerate(CLASS_NAMES, start=1)}


def region_masks(classes: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the BraTS regions WT, TC, ET from a training-class map (0..3)."""
    classes = np.asarray(classes)
    return {name: np.isin(classes, cls) for name, cls in REGION_CLASSES.items()}
