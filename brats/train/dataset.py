"""PyTorch ``Dataset`` over an HDF5 patch store (:mod:`brats.extract.store`), safe with DataLoader workers.

The file is opened lazily, once per process, on first access: a dataset built in the parent is picklable
(no open HDF5 handle travels to the workers), and a worker started by ``fork`` notices the process id has
changed and opens its own handle. Works with ``num_workers > 0`` under both ``fork`` and ``spawn``.

Example::

    ds = PatchDataset("runs/demo/patches/train.h5")
    sample = ds[0]    # {"image": (C, H, W) float32, "label": (H, W) int64 source labels, "index": 0}
    loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, num_workers=2)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from brats.extract.store import StoreError, open_store, read_store_info

__all__ = ["PatchDataset", "read_store_info", "StoreError"]


class PatchDataset(Dataset):
    """Patches of one store as tensors.

    Args:
        path: an HDF5 patch store (``OUTPUT_DIR/patches/train.h5``).
        transform: optional callable applied to each sample dict; its result is returned as is
            (e.g. a TorchIO pipeline that also remaps source labels to training classes).
        indices: optional subset (store rows) to expose, in this order; ``len(self) == len(indices)``.
        paste: optional callable ``paste(sample, read)`` applied before ``transform``; ``read(row)`` gives the
            ``(image, label)`` tensors of any store row (e.g. :class:`brats.train.tumour_paste.TumourPaste`).

    Each item is ``{"image": FloatTensor (C, *spatial), "label": LongTensor (*spatial), "index": i}``:
    ``image`` is float32 (converted from the store's float16), channels in ``attrs["modalities"]`` order;
    ``label`` holds the **source** labels of ``attrs["label_scheme"]`` (0, 1, 2, 4 or 0, 1, 2, 3);
    ``index`` is the dataset index ``i`` (not the store row: see :meth:`row`).

    Attributes:
        attrs: the store attributes (:func:`brats.extract.read_store_info`): modalities, patch_size, stride,
            dim, normalization (dict), label_scheme, config (YAML text), version, n_patches, cases, ...
    """

    def __init__(
        self,
        path: str | Path,
        transform: Callable[[dict[str, Any]], Any] | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        paste: Callable[[dict[str, Any], Callable[[int], tuple[torch.Tensor, torch.Tensor]]], Any]
        | None = None,
    ) -> None:
        self.path = Path(path)
        self.attrs: dict[str, Any] = read_store_info(self.path)
        self.transform = transform
        self.paste = paste
        n = int(self.attrs["n_patches"])
        if indices is None:
            self.indices = np.arange(n, dtype=np.int64)
        else:
            self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
            bad = self.indices[(self.indices < 0) | (self.indices >= n)]
            if bad.size:
                raise IndexError(f"{self.path}: indices {bad[:5].tolist()} out of range for {n} patches")
        self._file = None
        self._pid: int | None = None
        self._images: Any = None
        self._labels: Any = None
        self._case_index: np.ndarray | None = None
        self._position: np.ndarray | None = None

    # -- lazy, per-process file handle ------------------------------------------------------------------------

    def _h5(self):
        pid = os.getpid()
        if self._file is None or self._pid != pid:
            # A handle inherited through fork is not used (nor closed) here; each process opens its own.
            self._file = open_store(self.path)
            self._pid = pid
            self._images = self._file["images"]
            self._labels = self._file["labels"]
        return self._file

    def close(self) -> None:
        """Close this process's handle (it reopens on the next access)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = self._images = self._labels = None
        self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_file=None, _pid=None, _images=None, _labels=None)
        return state

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # -- Dataset API ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def row(self, i: int) -> int:
        """The store row of dataset index ``i``."""
        return int(self.indices[i])

    def __getitem__(self, i: int) -> Any:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} patches")
        i = int(i) % len(self)
        image, label = self.read_row(int(self.indices[i]))
        sample = {"image": image, "label": label, "index": i}
        if self.paste is not None:
            sample = self.paste(sample, self.read_row)
        if self.transform is not None:
            return self.transform(sample)
        return sample

    def read_row(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(image, label)`` tensors of store row ``j`` (float32, int64 source labels), untransformed."""
        self._h5()
        image = torch.from_numpy(np.asarray(self._images[j], dtype=np.float32))
        return image, torch.from_numpy(np.asarray(self._labels[j], dtype=np.int64))

    # -- provenance -------------------------------------------------------------------------------------------

    def _meta(self) -> tuple[np.ndarray, np.ndarray]:
        if self._case_index is None or self._position is None:
            with open_store(self.path) as f:
                self._case_index = f["case_index"][()]
                self._position = f["position"][()]
        return self._case_index, self._position

    def case_id(self, i: int) -> str:
        """The case id of dataset index ``i``."""
        case_index, _ = self._meta()
        return self.attrs["cases"][int(case_index[self.row(i)])]

    def position(self, i: int) -> tuple[int, int, int]:
        """The ``(x, y, z)`` start of dataset index ``i`` in its volume."""
        _, position = self._meta()
        return tuple(int(v) for v in position[self.row(i)])  # type: ignore[return-value]

    def __repr__(self) -> str:
        a = self.attrs
        return (
            f"PatchDataset({str(self.path)!r}, n={len(self)}, image_shape={a.get('image_shape')}, "
            f"modalities={a.get('modalities')}, label_scheme={a.get('label_scheme')!r})"
        )
