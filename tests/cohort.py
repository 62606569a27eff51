"""Tiny hand-made BraTS cohorts for tests (no synthetic generator needed)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from brats.data import SEPARATOR, SUFFIXES

CASE_IDS = {
    "2020": "BraTS20_Training_{:03d}",
    "2021": "BraTS2021_{:05d}",
    "2023": "BraTS-GLI-{:05d}-000",
}


def affine_1mm() -> np.ndarray:
    return np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


def make_case(
    root: Path,
    index: int,
    naming: str = "2021",
    shape: tuple[int, int, int] = (24, 20, 8),
    seg: bool = True,
    et: int | None = None,
    modalities: tuple[str, ...] = ("t1", "t1ce", "t2", "flair"),
    affine: np.ndarray | None = None,
) -> Path:
    """Write one case: images with a brain box of random intensities, a seg with labels 1, 2 and ET."""
    cid = CASE_IDS[naming].format(index)
    folder = Path(root) / cid
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(index)
    aff = affine_1mm() if affine is None else affine
    brain = np.zeros(shape, bool)
    brain[2:-2, 2:-2, 1:-1] = True
    sep = SEPARATOR[naming]
    for m in modalities:
        data = (rng.random(shape, dtype=np.float32) * 100 + 50) * brain
        write_nifti(folder / f"{cid}{sep}{SUFFIXES[naming][m]}.nii.gz", data.astype(np.float32), aff)
    if seg:
        lab = np.zeros(shape, np.uint8)
        c = [s // 2 for s in shape]
        lab[c[0] - 4 : c[0] + 4, c[1] - 4 : c[1] + 4, c[2] - 2 : c[2] + 2] = 2
        lab[c[0] - 2 : c[0] + 2, c[1] - 2 : c[1] + 2, c[2] - 1 : c[2] + 1] = 1
        lab[c[0] - 2, c[1] - 2 : c[1] + 2, c[2] - 1 : c[2] + 1] = (
            et if et is not None else (3 if naming == "2023" else 4)
        )
        write_nifti(folder / f"{cid}{sep}seg.nii.gz", lab, aff)
    return folder


def tiny_unet_checkpoint(path: Path, preprocess: dict) -> Path:
    """A tiny random smp U-Net checkpoint (resnet18, depth 3, 16 x 16 patches, 4 classes) made with the given
    ``preprocess`` settings; its input channels are the checkpoint's own count (production code decides)."""
    import torch

    from brats.checkpoint import new_checkpoint, write_checkpoint
    from brats.config import config_from_dict
    from brats.networks import build_model

    cfg = config_from_dict(
        {
            "preprocess": preprocess,
            "model": {"encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 8]},
            "patches": {"size": [16, 16], "stride": [8, 8]},
        }
    )
    channels = new_checkpoint({}, cfg, classes=4).in_channels
    torch.manual_seed(0)
    model = build_model(cfg.model, in_channels=channels, classes=4)
    return write_checkpoint(new_checkpoint(model.state_dict(), cfg, classes=4), path)
