"""The HDF5 patch store: one file per split (``OUTPUT_DIR/patches/{train,val}.h5``).

Layout (``N`` patches, ``C`` channels in the ``modalities`` order; see ``docs/formats.md``):

=============== ============================= ========= ==================================================
dataset         shape                         dtype     meaning
=============== ============================= ========= ==================================================
``images``      ``(N, C, H, W)`` 2D           float16   normalised intensities (``preprocess.dtype``)
                ``(N, C, SX, SY, SZ)`` 3D     (float32)
``labels``      ``(N, H, W)`` / ``(N, SX,     uint8     **source** labels (0, 1, 2, 4 or 0, 1, 2, 3 for
                SY, SZ)``                               ``label_scheme`` brats2021 / brats2023)
``case_index``  ``(N,)``                      int32     row of ``cases`` the patch comes from
``position``    ``(N, 3)``                    int32     ``(x, y, z)`` start of the patch in the volume
``cases``       ``(n_cases,)``                str       case ids (index = ``case_index``)
=============== ============================= ========= ==================================================

2D patches are axial: ``images[i] == volume[:, x:x+H, y:y+W, z]``. 3D patches keep the volume's axis order:
``images[i] == volume[:, x:x+SX, y:y+SY, z:z+SZ]`` with ``patch_size = [SX, SY, SZ]``. Every dataset is
chunked one patch per chunk (fast random reads). File attributes: see :data:`ATTRS`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from brats.errors import BratsError

__all__ = ["ATTRS", "FORMAT", "StoreError", "StoreWriter", "open_store", "read_store_info", "read_store"]

#: Identifies the layout; bump when it changes incompatibly.
FORMAT = "brats-patches/1"

#: Attribute name -> meaning (the reference for ``docs/formats.md``).
ATTRS: dict[str, str] = {
    "format": f"layout identifier, `{FORMAT}`",
    "modalities": "channel order of `images`, e.g. `[t1, t1ce, t2, flair]`",
    "dim": "2 (axial patches) or 3",
    "patch_size": "`[H, W]` (2D) or `[SX, SY, SZ]` (3D), voxels",
    "stride": "window stride, same length as `patch_size`; the last window is flush with the border",
    "slice_stride": "2D: every n-th axial slice was used",
    "context_slices": "2.5D: `k` neighbouring slices on each side stacked per modality (`C` = modalities x "
    "(2k + 1), modality-major, zeros beyond the volume; `brats.extract.context`); 0 = plain 2D",
    "normalization": "JSON text: `{method, percentiles, mask, scope, dtype, bias_correction, downsample, "
    "asymmetry}` (see `brats.preprocess`)",
    "label_scheme": "`brats2021` (ET = 4) or `brats2023` (ET = 3): the convention of `labels`",
    "config": "the resolved config (YAML text) that made the store",
    "version": "`brats.__version__` of the writer",
    "n_patches": "number of patches `N` (set when the file is complete)",
    "n_cases": "number of rows of `cases`",
}


class StoreError(BratsError, OSError):
    """A patch store is missing, unreadable or not in the expected layout."""


def _encode(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype("utf-8"))
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


class StoreWriter:
    """Append patches to a new HDF5 store (one patch per chunk).

    Use as a context manager on a temporary path and rename when complete (``brats.io.atomic_path``)::

        with atomic_path(out) as tmp, StoreWriter(tmp, n_channels=4, patch_size=(128, 128), ...) as w:
            w.add_case("BraTS2021_00000", images, labels, positions)

    Args:
        path: file to create (overwritten).
        n_channels: ``C``.
        patch_size: spatial patch shape, ``(H, W)`` or ``(SX, SY, SZ)``.
        dtype: storage dtype of ``images`` (``float16`` or ``float32``).
        compression: ``None`` (default, fastest reads), ``"lzf"`` or ``"gzip"``.
        attrs: file attributes (lists, numbers, strings; dicts are stored as JSON text).
    """

    def __init__(
        self,
        path: str | Path,
        n_channels: int,
        patch_size: tuple[int, ...] | list[int],
        dtype: str = "float16",
        compression: str | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.patch_size = tuple(int(s) for s in patch_size)
        self.n_channels = int(n_channels)
        self.n = 0
        self.cases: list[str] = []
        self._file = h5py.File(self.path, "w", track_order=True)
        kw: dict[str, Any] = {"compression": compression} if compression else {}
        f = self._file
        sp = self.patch_size
        self._images = f.create_dataset(
            "images", (0, self.n_channels, *sp), dtype=np.dtype(dtype), maxshape=(None, self.n_channels, *sp),
            chunks=(1, self.n_channels, *sp), **kw,
        )  # fmt: skip
        self._labels = f.create_dataset(
            "labels", (0, *sp), dtype=np.uint8, maxshape=(None, *sp), chunks=(1, *sp), **kw
        )
        self._case_index = f.create_dataset(
            "case_index", (0,), dtype=np.int32, maxshape=(None,), chunks=(4096,)
        )
        self._position = f.create_dataset(
            "position", (0, 3), dtype=np.int32, maxshape=(None, 3), chunks=(4096, 3)
        )
        f.attrs["format"] = FORMAT
        for key, value in (attrs or {}).items():
            f.attrs[key] = _encode(value)
        f.attrs["n_patches"] = 0

    def add_case(self, case_id: str, images: np.ndarray, labels: np.ndarray, positions: np.ndarray) -> None:
        """Append the patches of one case.

        Args:
            case_id: the case the patches come from (appended to ``cases``).
            images: ``(n, C, *patch_size)``, cast to the store dtype.
            labels: ``(n, *patch_size)`` source labels, cast to uint8.
            positions: ``(n, 3)`` ``(x, y, z)`` starts.
        """
        n = int(images.shape[0])
        if images.shape[1:] != (self.n_channels, *self.patch_size) or labels.shape != (n, *self.patch_size):
            raise StoreError(
                f"{self.path}: case {case_id}: patches of shape {images.shape} / labels {labels.shape} do not "
                f"match the store ({self.n_channels}, {self.patch_size})"
            )
        ci = len(self.cases)
        self.cases.append(case_id)
        if n == 0:
            return
        a, b = self.n, self.n + n
        for ds in (self._images, self._labels, self._case_index, self._position):
            ds.resize(b, axis=0)
        self._images[a:b] = images.astype(self._images.dtype, copy=False)
        self._labels[a:b] = labels.astype(np.uint8, copy=False)
        self._case_index[a:b] = ci
        self._position[a:b] = np.asarray(positions, dtype=np.int32).reshape(n, 3)
        self.n = b

    def close(self) -> None:
        """Write the ``cases`` table and ``n_patches`` and close the file."""
        if not self._file:
            return
        f = self._file
        f.create_dataset("cases", data=np.array(self.cases, dtype=object), dtype=h5py.string_dtype("utf-8"))
        f.attrs["n_patches"] = self.n
        f.attrs["n_cases"] = len(self.cases)
        f.close()

    def abort(self) -> None:
        if self._file:
            self._file.close()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def open_store(path: str | Path) -> h5py.File:
    """Open a store read-only, checking its datasets; raises :class:`StoreError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: patch store not found (run `brats extract --config CFG` first)")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"{path}: cannot open as HDF5 ({exc})") from exc
    missing = [k for k in ("images", "labels", "case_index", "position", "cases") if k not in f]
    if missing:
        f.close()
        raise StoreError(f"{path}: not a patch store (missing dataset(s) {', '.join(missing)})")
    return f


def read_store_info(path: str | Path) -> dict[str, Any]:
    """The attributes of a store, decoded.

    Returns:
        A dict with every attribute of :data:`ATTRS` present in the file (``normalization`` parsed from JSON
        into a dict; ``modalities`` a list of str; ``patch_size``/``stride`` lists of int), plus ``path``,
        ``cases`` (list of case ids), ``image_shape`` (``(C, *patch_size)``), ``dtype`` and ``compression``.

    Raises:
        StoreError: the file is missing or not a patch store.
    """
    with open_store(path) as f:
        info: dict[str, Any] = {k: _decode(v) for k, v in f.attrs.items()}
        if isinstance(info.get("normalization"), str):
            info["normalization"] = json.loads(info["normalization"])
        info["path"] = str(path)
        info["cases"] = [_decode(c) for c in f["cases"][()]]
        info["n_patches"] = int(f["images"].shape[0])
        info["image_shape"] = tuple(int(s) for s in f["images"].shape[1:])
        info["dtype"] = str(f["images"].dtype)
        info["compression"] = f["images"].compression
    return info


def read_store(path: str | Path) -> dict[str, Any]:
    """The whole store in memory (small stores, tests): ``images``, ``labels``, ``case_index``, ``position``
    arrays and ``info`` (:func:`read_store_info`)."""
    info = read_store_info(path)
    with open_store(path) as f:
        out = {k: f[k][()] for k in ("images", "labels", "case_index", "position")}
    out["info"] = info
    return out
