"""Segmentation jobs: what the page polls while a case waits in the queue or is being segmented.

A job's input files live in its own temporary folder, which is removed when the job ends, whatever the outcome;
the result (the gzipped NIfTI, a few hundred kB, and its summary) is kept in memory for the last ``keep`` jobs.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brats.serve.model import BratsError, Prediction, Segmenter

__all__ = ["Job", "JobStore", "execute"]

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One segmentation request.

    Attributes:
        name: the case id (listed cases) or ``upload``.
        convention: label convention of the output, ``2021`` (ET = 4) or ``2023`` (ET = 3).
        download_name: file name offered for the segmentation.
        id: random identifier.
        ticket: place in the prediction queue (see :meth:`Segmenter.ahead`).
        state: ``queued``, ``running``, ``done`` or ``error``.
        error: what went wrong (``error`` state).
        result: the segmentation (``done`` state).
    """

    name: str
    convention: str
    download_name: str
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    ticket: int = -1
    state: str = "queued"
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    result: Prediction | None = None

    def status(self, ahead: int) -> dict[str, Any]:
        """The JSON the page polls: state, queue position, elapsed seconds, and the result's summary when done."""
        now = time.monotonic()
        end = self.finished if self.finished is not None else now
        return {
            "id": self.id,
            "case": self.name,
            "state": self.state,
            "ahead": ahead if self.state == "queued" else 0,
            "elapsed_s": round(end - self.created, 1),
            "running_s": round(end - self.started, 1) if self.started is not None else 0.0,
            "error": self.error,
            "result": self.result.summary() if self.result is not None else None,
            "download": f"/api/jobs/{self.id}/segmentation.nii.gz" if self.result is not None else None,
            "download_name": self.download_name,
        }


class JobStore:
    """The jobs of this server, by id; finished jobs beyond the newest ``keep`` are forgotten."""

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            finished = [j.id for j in self._jobs.values() if j.finished is not None]
            for job_id in finished[: max(0, len(finished) - self.keep)]:
                del self._jobs[job_id]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)


def execute(job: Job, segmenter: Segmenter, images: dict[str, Path], workdir: Path) -> Job:
    """Run ``job`` (on the prediction thread) and remove ``workdir`` afterwards, whatever happens.

    Errors do not propagate: they leave the job in the ``error`` state with a message.
    """
    job.state = "running"
    job.started = time.monotonic()
    try:
        out = workdir / "output"
        out.mkdir(exist_ok=True)
        case_id = job.name if job.name != "upload" else "segmentation"
        job.result = segmenter.predict(case_id, images, job.convention, out)
        job.state = "done"
    except BratsError as exc:
        job.error = str(exc).replace(f"{workdir}/", "")
        job.state = "error"
    except Exception as exc:  # noqa: BLE001 - reported to the client, logged with its traceback
        log.exception("job %s failed", job.id)
        job.error = f"internal error: {type(exc).__name__}: {exc}"
        job.state = "error"
    finally:
        job.finished = time.monotonic()
        shutil.rmtree(workdir, ignore_errors=True)
    log.info(
        "job %s (%s): %s in %.1f s (waited %.1f s)",
        job.id,
        job.name,
        job.state,
        job.finished - job.started,
        job.started - job.created,
    )
    return job
