"""``brats serve``: a local web app (FastAPI on uvicorn) that segments a case and shows it with NiiVue.

Endpoints (see ``docs/serve.md``):

* ``GET /``: the page; ``/static/...``: its script, style and the vendored NiiVue bundle (nothing external).
* ``GET /api/health``: model, label conventions and colours, queue length, limits.
* ``GET /api/cases``: the cases of ``--cases`` by id; ``GET /api/cases/{id}/images/{modality}``: one image.
* ``POST /api/predict``: multipart ``t1``, ``t1ce``, ``t2``, ``flair`` -> the segmentation (``.nii.gz``).
* ``POST /api/jobs``: the same upload, or ``?case=ID``, queued -> ``202`` and a job id;
  ``GET /api/jobs/{id}``: its state; ``GET /api/jobs/{id}/segmentation.nii.gz``: its result.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brats.serve.jobs import Job, JobStore, execute
from brats.serve.model import MODALITIES, ListedCase, Segmenter, check_images, label_legend, list_cases
from brats.serve.upload import ApiError, receive_files

__all__ = ["create_app", "serve", "DEFAULT_MAX_UPLOAD_MB"]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
#: Default upload limit: four uncompressed float32 240x240x155 BraTS images are 4 x 36 MB.
DEFAULT_MAX_UPLOAD_MB = 256.0
#: Default bound on the voxels of one image (BraTS: 240 x 240 x 155 = 8.9 M).
DEFAULT_MAX_VOXELS = 32 * 2**20
CONVENTION_ALIASES = {
    "2020": "2021",
    "2021": "2021",
    "2023": "2023",
    "brats2021": "2021",
    "brats2023": "2023",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self' blob: data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'"
)


@dataclass
class ServeState:
    """What the endpoints share: the model, the cases, the jobs, the limits and the temporary folder."""

    segmenter: Segmenter
    cases: dict[str, ListedCase]
    jobs: JobStore
    limit_bytes: int
    max_queue: int
    max_voxels: int
    tmp_root: Path


class RequestLog:
    """ASGI middleware: one log line per request (client, method, path, status, bytes received, seconds).

    Job polls (``GET /api/jobs/{id}``) are logged at DEBUG, everything else at INFO.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]
        received = [0]

        async def counting_receive() -> Message:
            message = await receive()
            received[0] += len(message.get("body", b""))
            return message

        async def status_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, counting_receive, status_send)
        finally:
            path = scope.get("path", "")
            poll = scope.get("method") == "GET" and path.startswith("/api/jobs/") and path.count("/") == 3
            client = scope.get("client") or ("-", 0)
            log.log(
                logging.DEBUG if poll else logging.INFO,
                "%s %s %s %d %dB %.3fs",
                client[0],
                scope.get("method"),
                path,
                status[0],
                received[0],
                time.perf_counter() - t0,
            )


def _convention(labels: str | None, default: str) -> str:
    if labels is None:
        return default
    if labels not in CONVENTION_ALIASES:
        raise ApiError(
            422, f"labels must be 2021 (ET = 4) or 2023 (ET = 3), got {labels!r}", [("labels", labels)]
        )
    return CONVENTION_ALIASES[labels]


def _check_busy(st: ServeState) -> None:
    q = st.segmenter.queue()
    if q["waiting"] >= st.max_queue:
        raise ApiError(
            503, f"busy: {q['running']} segmentation running and {q['waiting']} waiting; try later"
        )


def _as_nifti(path: Path) -> Path:
    """Rename a received part to ``.nii.gz`` or ``.nii`` from its first bytes (gzip magic), not its client name."""
    with path.open("rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return path.rename(path.with_suffix(".nii.gz" if gz else ".nii"))


async def _receive_case(request: Request, st: ServeState) -> tuple[dict[str, Path], Path]:
    """Receive, name and check an uploaded case in a new folder (removed here on any error)."""
    _check_busy(st)
    workdir = Path(tempfile.mkdtemp(prefix="req-", dir=st.tmp_root))
    try:
        files, problems = await receive_files(request, workdir, MODALITIES, st.limit_bytes)
        images: dict[str, Path] = {}
        for f in files.values():
            if not f.filename.lower().endswith((".nii", ".nii.gz")):
                problems.append((f.field, f"{f.filename!r} is not a NIfTI file (.nii or .nii.gz)"))
            elif f.size == 0:
                problems.append((f.field, f"{f.filename!r} is empty"))
            else:
                images[f.field] = _as_nifti(f.path)
        bad = {name for name, _ in problems}
        required = tuple(m for m in st.segmenter.modalities if m not in bad)
        problems += await run_in_threadpool(check_images, images, required, st.max_voxels)
        if problems:
            raise ApiError(422, "; ".join(f"{name}: {text}" for name, text in problems), problems)
        return images, workdir
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _submit(st: ServeState, job: Job, images: dict[str, Path], workdir: Path) -> asyncio.Future[Job]:
    """Queue ``job`` on the prediction thread; the returned future resolves when it has run.

    A client that goes away while waiting does not cancel the job (which removes ``workdir`` when it runs).
    """
    ticket, future = st.segmenter.submit(functools.partial(execute, job, st.segmenter, images, workdir))
    job.ticket = ticket
    return asyncio.shield(asyncio.wrap_future(future))


def _health(st: ServeState) -> dict[str, Any]:
    return {
        "status": "ok",
        "model": st.segmenter.info(),
        "labels": {
            "default": "2021",
            "2021": {"0": "background", **{str(e["label"]): e["name"] for e in label_legend("2021")}},
            "2023": {"0": "background", **{str(e["label"]): e["name"] for e in label_legend("2023")}},
            "colours": {e["name"]: e["rgb"] for e in label_legend("2021")},
        },
        "queue": {**st.segmenter.queue(), "max_waiting": st.max_queue},
        "limits": {"max_upload_mb": st.limit_bytes / 2**20, "max_voxels": st.max_voxels},
        "cases": len(st.cases),
    }


def _case_json(case: ListedCase) -> dict[str, Any]:
    return {
        "id": case.case_id,
        "convention": case.convention,
        "images": {
            m: {"url": f"/api/cases/{case.case_id}/images/{m}", "name": case.images[m].name}
            for m in MODALITIES
            if m in case.images
        },
    }


def _nifti_response(data: bytes, filename: str, extra: dict[str, str] | None = None) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', **(extra or {})}
    return Response(data, media_type="application/gzip", headers=headers)


def _add_api_routes(app: FastAPI, st: ServeState) -> None:
    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return _health(st)

    @app.get("/api/cases")
    def cases() -> dict[str, Any]:
        return {"cases": [_case_json(c) for c in st.cases.values()]}

    @app.get("/api/cases/{case_id}/images/{modality}")
    def case_image(case_id: str, modality: str) -> FileResponse:
        case = st.cases.get(case_id)
        if case is None or modality not in case.images:
            raise ApiError(404, f"no image {modality!r} of a listed case {case_id!r}")
        return FileResponse(case.images[modality], media_type="application/octet-stream")

    @app.post("/api/predict")
    async def predict(request: Request, labels: str | None = None) -> Response:
        convention = _convention(labels, "2021")
        images, workdir = await _receive_case(request, st)
        job = await _submit(st, Job("upload", convention, "segmentation.nii.gz"), images, workdir)
        if job.result is None:
            raise ApiError(422, job.error or "segmentation failed")
        summary = job.result.summary()
        extra = {
            "X-Brats-Seconds": str(summary["seconds"]),
            "X-Brats-Labels": ",".join(map(str, job.result.labels)),
        }
        return _nifti_response(job.result.nifti, job.download_name, extra)

    @app.post("/api/jobs", status_code=202)
    async def create_job(
        request: Request, case: str | None = None, labels: str | None = None
    ) -> JSONResponse:
        if case is not None:
            listed = st.cases.get(case)
            if listed is None:
                raise ApiError(404, f"no listed case {case!r}; see /api/cases", [("case", case)])
            job = Job(case, _convention(labels, listed.convention), f"{case}.nii.gz")
            _check_busy(st)
            images = dict(listed.images)
            workdir = Path(tempfile.mkdtemp(prefix="job-", dir=st.tmp_root))
        else:
            convention = _convention(labels, "2021")
            images, workdir = await _receive_case(request, st)
            job = Job("upload", convention, "segmentation.nii.gz")
        st.jobs.add(job)
        _submit(st, job, images, workdir)
        return JSONResponse(job.status(st.segmenter.ahead(job.ticket)), status_code=202)

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        job = st.jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r} (finished jobs are kept for a while only)")
        return job.status(st.segmenter.ahead(job.ticket))

    @app.get("/api/jobs/{job_id}/segmentation.nii.gz")
    def job_result(job_id: str) -> Response:
        job = st.jobs.get(job_id)
        if job is None or job.result is None:
            raise ApiError(404, f"no segmentation for job {job_id!r}")
        return _nifti_response(job.result.nifti, job.download_name)


def create_app(
    checkpoint: str | Path,
    cases_dir: str | Path | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    device: str = "auto",
    max_queue: int = 4,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    keep_jobs: int = 16,
) -> FastAPI:
    """The web app, with the model of ``checkpoint`` loaded once.

    Args:
        checkpoint: a checkpoint written by ``brats train``.
        cases_dir: a folder of BraTS cases offered on the page (clients pick them by id), or None.
        max_upload_mb: largest accepted upload (the whole multipart body), in MiB.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        max_queue: segmentations allowed to wait behind the running one; more get ``503``.
        max_voxels: largest accepted image, in voxels.
        keep_jobs: finished jobs whose results stay downloadable.

    Raises:
        BratsError: unreadable checkpoint, or ``cases_dir`` without cases.
    """
    segmenter = Segmenter(checkpoint, device)
    st = ServeState(
        segmenter=segmenter,
        cases=list_cases(cases_dir),
        jobs=JobStore(keep_jobs),
        limit_bytes=int(max_upload_mb * 2**20),
        max_queue=int(max_queue),
        max_voxels=int(max_voxels),
        tmp_root=Path(tempfile.mkdtemp(prefix="brats-serve-")),
    )
    atexit.register(shutil.rmtree, st.tmp_root, True)  # also when the server dies without a clean shutdown

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            segmenter.close()
            shutil.rmtree(st.tmp_root, ignore_errors=True)

    app = FastAPI(title="brats serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.serve = st
    app.add_middleware(RequestLog)
    page = (HERE / "page" / "index.html").read_text(encoding="utf-8")

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"Retry-After": "10"} if exc.status == 503 else None
        return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP})

    _add_api_routes(app, st)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    log.info("brats serve: %d listed case(s), uploads up to %g MB", len(st.cases), max_upload_mb)
    return app


def serve(
    checkpoint: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    cases: str | Path | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    device: str = "auto",
    max_queue: int = 4,
) -> None:
    """Load the model and serve the app with uvicorn until interrupted (``brats serve``).

    Args:
        checkpoint: a checkpoint written by ``brats train``.
        host: interface to listen on; the default serves this machine only (there is no authentication).
        port: TCP port.
        cases: a folder of BraTS cases to offer on the page.
        max_upload_mb, device, max_queue: see :func:`create_app`.
    """
    import uvicorn

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "listening on %s: anyone who can reach this port can upload scans (no authentication)", host
        )
    app = create_app(checkpoint, cases, max_upload_mb, device, max_queue)
    log.info("open http://%s:%d/ (Ctrl-C to stop)", host if ":" not in host else f"[{host}]", port)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=5)
