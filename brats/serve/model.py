"""The adapter between ``brats serve`` and the rest of the toolkit: every ``brats.*`` import of the web app is here.

It holds the one model the server keeps in memory (:class:`Segmenter`), runs predictions one at a time on a
single worker thread (a FIFO queue: a second request waits for the first), checks uploads as ``brats validate``
does, lists the cases of ``--cases`` and knows the toolkit's label colours. If the toolkit's modules move, only
the imports of this file change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from brats.data import MODALITIES, Case, discover_cases, load_geometry, load_label_file, validate_case
from brats.errors import BratsError
from brats.labels import CLASS_NAMES, get_scheme, to_classes
from brats.predict import load_predictor, predict_case
from brats.report import CLASS_COLOURS, tumour_center

__all__ = [
    "MODALITIES",
    "BratsError",
    "ListedCase",
    "Prediction",
    "Segmenter",
    "label_legend",
    "list_cases",
    "check_images",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Label conventions the API accepts (``?labels=``): 2021 (ET = 4, also 2020) and 2023 (ET = 3).
CONVENTIONS = ("2021", "2023")


def _scheme(convention: str) -> Any:
    return get_scheme("brats2023" if str(convention) == "2023" else "brats2021")


def label_legend(convention: str = "2021") -> list[dict[str, Any]]:
    """The tumour labels of a convention with the toolkit's overlay colours (those of ``brats.report``).

    Returns:
        ``[{"label": 1, "name": "NCR", "rgb": [230, 26, 26]}, ...]`` for NCR, ED and ET.
    """
    scheme = _scheme(convention)
    return [
        {
            "label": int(scheme.source_labels[c]),
            "name": name,
            "rgb": [int(round(255 * v)) for v in CLASS_COLOURS[c]],
        }
        for c, name in enumerate(CLASS_NAMES, start=1)
    ]


@dataclass(frozen=True)
class ListedCase:
    """A case of the server's ``--cases`` folder, referenced by the client only through ``case_id``."""

    case_id: str
    images: dict[str, Path]
    convention: str


def list_cases(root: str | Path | None) -> dict[str, ListedCase]:
    """The cases under ``root`` (any BraTS naming), by id; empty when ``root`` is None.

    Raises:
        BratsError: ``root`` is not a folder or holds no case.
    """
    if root is None:
        return {}
    cases = discover_cases(root)
    return {
        c.case_id: ListedCase(c.case_id, dict(c.images), "2023" if c.naming == "2023" else "2021")
        for c in cases
    }


def check_images(
    images: dict[str, Path], modalities: tuple[str, ...], max_voxels: int
) -> list[tuple[str, str]]:
    """The checks of ``brats validate`` on one case's files, plus a size bound.

    Args:
        images: modality -> file (named by the server, e.g. ``flair.nii.gz``).
        modalities: the modalities that must be there (every file given is checked).
        max_voxels: largest accepted number of voxels per image.

    Returns:
        ``[(modality, problem), ...]``: missing, unreadable, not 3D, too large, or shape/affine differing from
        the first modality; empty when the case can be predicted.
    """
    missing = [(m, f"missing modality {m}") for m in modalities if m not in images]
    bad_size: list[tuple[str, str]] = []
    for m, path in images.items():
        try:
            shape = tuple(int(s) for s in load_geometry(path).shape)
        except Exception:  # noqa: BLE001 - validate_case below names the problem
            continue
        if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] != 1):
            bad_size.append((m, f"expected a 3D image, got shape {shape}"))
        elif int(np.prod(shape)) > max_voxels:
            bad_size.append((m, f"{int(np.prod(shape))} voxels, more than the limit of {max_voxels}"))
    if bad_size or not images:
        return missing + bad_size  # do not read the data of an image too large or of the wrong kind
    folder = next(iter(images.values())).parent
    by_path = {str(p): m for m, p in images.items()}
    case = Case(case_id="upload", folder=folder, naming="2021", images=dict(images))
    problems = [
        (by_path.get(p.file, Path(p.file).name), p.problem.replace(f"{folder}/", ""))
        for p in validate_case(case, [m for m in MODALITIES if m in images], read_data=True)
    ]
    return missing + problems


@dataclass
class Prediction:
    """One segmentation: the NIfTI (gzipped bytes, on the input grid) and what the page shows about it.

    Attributes:
        nifti: ``.nii.gz`` bytes, uint8 labels of ``convention`` (ET = 4 for 2021, 3 for 2023).
        convention: ``2021`` or ``2023``.
        shape: voxel grid.
        volumes_ml: ``NCR``, ``ED``, ``ET`` and ``WT`` (their union) in millilitres.
        centre_voxel: voxel through the tumour's centre (the volume's centre when nothing is predicted).
        centre_mm: the same point in world (scanner) millimetres.
        labels: labels present.
        seconds: time of the prediction alone (not the wait).
    """

    nifti: bytes
    convention: str
    shape: tuple[int, ...]
    volumes_ml: dict[str, float]
    centre_voxel: tuple[int, int, int]
    centre_mm: tuple[float, float, float]
    labels: list[int]
    seconds: float

    def summary(self) -> dict[str, Any]:
        """Everything but the NIfTI bytes, JSON-ready."""
        return {
            "convention": self.convention,
            "shape": list(self.shape),
            "volumes_ml": self.volumes_ml,
            "centre_voxel": list(self.centre_voxel),
            "centre_mm": list(self.centre_mm),
            "labels": self.labels,
            "legend": label_legend(self.convention),
            "seconds": round(self.seconds, 3),
        }


def _describe(path: Path, convention: str, seconds: float) -> Prediction:
    affine = load_geometry(path).affine
    labels = load_label_file(path)
    classes = to_classes(labels, _scheme(convention))
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    counts = np.bincount(classes.ravel(), minlength=4)
    volumes = {name: round(float(counts[c]) * voxel_ml, 3) for c, name in enumerate(CLASS_NAMES, start=1)}
    volumes["WT"] = round(float(counts[1:].sum()) * voxel_ml, 3)
    centre = tumour_center(classes)
    mm = affine @ np.array([*centre, 1.0])
    return Prediction(
        nifti=path.read_bytes(),
        convention=convention,
        shape=tuple(int(s) for s in labels.shape),
        volumes_ml=volumes,
        centre_voxel=tuple(int(v) for v in centre),  # type: ignore[arg-type]
        centre_mm=tuple(round(float(v), 3) for v in mm[:3]),  # type: ignore[arg-type]
        labels=sorted(int(v) for v in np.unique(labels)),
        seconds=seconds,
    )


@dataclass
class _QueueState:
    submitted: int = 0
    finished: int = 0
    running: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Segmenter:
    """One model in memory and a single worker thread that runs its predictions one after another.

    Args:
        checkpoint: a checkpoint written by ``brats train``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """

    def __init__(self, checkpoint: str | Path, device: str = "auto") -> None:
        self.checkpoint = Path(checkpoint)
        t0 = time.perf_counter()
        self.model, self.settings = load_predictor(checkpoint, device)
        self.device = str(next(self.model.parameters()).device)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="brats-serve-predict")
        self._queue = _QueueState()
        log.info("loaded %s on %s in %.1f s", self.checkpoint.name, self.device, time.perf_counter() - t0)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the model reads, in channel order."""
        return tuple(self.settings.modalities)

    def info(self) -> dict[str, Any]:
        """What ``/api/health`` says about the model."""
        return {
            "checkpoint": self.checkpoint.name,
            "architecture": type(self.model).__name__,
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "modalities": list(self.modalities),
            "patch_size": list(self.settings.patch_size),
            "device": self.device,
        }

    def queue(self) -> dict[str, int]:
        """``{"running": 0 or 1, "waiting": n}``: predictions in progress and queued behind it."""
        q = self._queue
        with q.lock:
            pending = q.submitted - q.finished
            return {"running": int(q.running), "waiting": pending - int(q.running)}

    def ahead(self, ticket: int) -> int:
        """How many earlier predictions have not finished yet (0: this one runs or is next)."""
        with self._queue.lock:
            return max(0, ticket - self._queue.finished)

    def submit(self, fn: Callable[[], T]) -> tuple[int, Future[T]]:
        """Queue ``fn`` on the prediction thread; returns its ticket (see :meth:`ahead`) and its future."""
        q = self._queue

        def run() -> T:
            with q.lock:
                q.running = True
            try:
                return fn()
            finally:
                with q.lock:
                    q.running = False

        def done(_: Future[T]) -> None:  # also for a future cancelled before it ran
            with q.lock:
                q.finished += 1

        with q.lock:
            ticket = q.submitted
            q.submitted += 1
        future = self._pool.submit(run)
        future.add_done_callback(done)
        return ticket, future

    def predict(self, case_id: str, images: dict[str, Path], convention: str, out_dir: Path) -> Prediction:
        """Segment one case (call it on the prediction thread, through :meth:`submit`).

        Args:
            case_id: name of the output file ``out_dir/<case_id>.nii.gz``.
            images: modality -> file; every modality of the model must be there.
            convention: ``2021`` (ET = 4) or ``2023`` (ET = 3).
            out_dir: a folder for the output (the caller removes it).

        Raises:
            BratsError: a file cannot be read (the message names it).
        """
        t0 = time.perf_counter()
        naming = "2023" if convention == "2023" else "2021"
        case = Case(case_id=case_id, folder=out_dir, naming=naming, images=dict(images))
        result = predict_case(self.model, case, self.settings, out_dir)
        return _describe(Path(result["seg"]), naming, time.perf_counter() - t0)

    def close(self) -> None:
        """Stop the prediction thread (queued predictions are cancelled)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
