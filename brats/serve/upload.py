"""Streaming ``multipart/form-data`` upload into a server-chosen folder, with a byte limit enforced while reading.

FastAPI's ``UploadFile`` parameters spool the whole body to the system's temporary folder before the endpoint
runs, so a size limit checked there comes too late. :func:`receive_files` instead refuses a declared
``Content-Length`` over the limit before reading anything, counts the bytes of the body as they arrive (for
chunked uploads that declare no length) and stops at the first byte past the limit. Each file part is written to
``FOLDER/<field>.part``: the client's file name is kept for messages only and never touches the disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

__all__ = ["ApiError", "UploadedFile", "receive_files"]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A request the server refuses (any endpoint): HTTP ``status`` and a message; ``problems`` are ``(field, problem)`` pairs."""

    def __init__(self, status: int, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []

    def to_json(self) -> dict[str, Any]:
        """``{"error": message, "problems": [{"field", "problem"}, ...]}``."""
        return {"error": self.message, "problems": [{"field": f, "problem": p} for f, p in self.problems]}


@dataclass
class UploadedFile:
    """One received file part: its field, the client's file name (for messages only), where it is, its size."""

    field: str
    filename: str
    path: Path
    size: int = 0


@dataclass
class _Parse:
    folder: Path
    allowed: tuple[str, ...]
    files: dict[str, UploadedFile] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    header_name: bytes = b""
    header_value: bytes = b""
    disposition: bytes = b""
    current: UploadedFile | None = None
    handle: IO[bytes] | None = None

    def on_part_begin(self) -> None:
        self.disposition = b""
        self.current = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.strip().lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if name not in self.allowed:
            self.problems.append((name, f"unknown field {name!r}; expected {', '.join(self.allowed)}"))
        elif filename is None:
            self.problems.append((name, "must be a file (multipart file part with a file name)"))
        elif name in self.files:
            self.problems.append((name, "sent more than once"))
        else:
            path = self.folder / f"{name}.part"  # server-chosen name: the client's file name is never used
            self.current = UploadedFile(name, filename.decode("utf-8", "replace"), path)
            self.files[name] = self.current
            self.handle = path.open("wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.handle is not None and self.current is not None:
            self.handle.write(data[start:end])
            self.current.size += end - start

    def on_part_end(self) -> None:
        self.close()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def callbacks(self) -> dict[str, Any]:
        names = (
            "part_begin",
            "header_field",
            "header_value",
            "header_end",
            "headers_finished",
            "part_data",
            "part_end",
        )
        return {f"on_{n}": getattr(self, f"on_{n}") for n in names}


def _boundary(request: Request) -> bytes:
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(415, "send the files as multipart/form-data (e.g. curl -F flair=@case_flair.nii.gz)")
    return options[b"boundary"]


def _declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise ApiError(400, f"invalid Content-Length {declared!r}") from None
    if length > limit:
        raise ApiError(
            413, f"upload of {length / 2**20:.1f} MB is larger than the limit of {limit / 2**20:g} MB"
        )


async def receive_files(
    request: Request, folder: Path, allowed: tuple[str, ...], limit: int
) -> tuple[dict[str, UploadedFile], list[tuple[str, str]]]:
    """Read a multipart body into ``folder``, one file per allowed field.

    Args:
        request: the incoming request (its body is consumed).
        folder: an existing folder owned by this request (the caller removes it).
        allowed: the accepted field names.
        limit: the largest accepted body, in bytes.

    Returns:
        ``(files, problems)``: the received files by field, and ``(field, problem)`` pairs for unknown, repeated
        or non-file fields (their data is dropped).

    Raises:
        ApiError: 415 (not multipart), 413 (over ``limit``, declared or counted), 400 (malformed body).
    """
    boundary = _boundary(request)
    _declared_length(request, limit)
    state = _Parse(folder, allowed)
    parser = MultipartParser(boundary, state.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise ApiError(413, f"upload is larger than the limit of {limit / 2**20:g} MB")
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise ApiError(400, f"malformed multipart body: {exc}") from exc
    finally:
        state.close()
    return state.files, state.problems
