"""A slice classifier ("is there tumour in this axial slice?") for the two-stage LGG option (docs/lgg.md).

:class:`SliceClassifier` is an smp encoder (the same family as the segmenter's, randomly initialised), global
average pooling of its deepest features and one linear unit: ``(B, C, H, W)`` -> ``(B,)`` logits.
:func:`train_slice_classifier` trains it with binary cross-entropy on the segmenter's training store
(``OUTPUT_DIR/patches/train.h5``), target = "the patch holds at least one tumour voxel", with the same
augmentation pipeline as the segmenter. With whole-slice patches (``patches.size: [256, 256]`` in
configs/lgg.yaml) a patch is a slice. :func:`brats.predict.gate.gate_labels` applies it at prediction.

Scope (honest): the classifier lives in memory (``bench/lgg.py`` trains and applies it in one process); it
has no CLI stage and no checkpoint file yet.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import nn

from brats.config import Config
from brats.errors import BratsError
from brats.train.augment import build_transform
from brats.train.dataset import PatchDataset
from brats.train.runtime import seed_everything

__all__ = ["SliceClassifier", "train_slice_classifier"]

log = logging.getLogger(__name__)


class SliceClassifier(nn.Module):
    """smp encoder + global average pooling + linear: ``(B, C, H, W)`` float -> ``(B,)`` tumour logits."""

    def __init__(self, in_channels: int, encoder: str = "resnet18", depth: int = 5):
        super().__init__()
        from segmentation_models_pytorch.encoders import get_encoder

        self.encoder = get_encoder(encoder, in_channels=in_channels, depth=depth, weights=None)
        self.head = nn.Linear(self.encoder.out_channels[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)[-1]
        return self.head(feats.mean(dim=(2, 3)))[:, 0]


def train_slice_classifier(
    cfg: Config, steps: int = 100, batch_size: int = 8, lr: float = 1e-3, encoder: str = "resnet18"
) -> tuple[SliceClassifier, dict[str, float]]:
    """Train a :class:`SliceClassifier` on ``OUTPUT_DIR/patches/train.h5`` of ``cfg`` (CPU/GPU per
    ``train.device``); returns the model (eval mode) and ``{"steps", "final_loss", "seconds"}``.

    Raises:
        BratsError: no store, or a store without both tumour and tumour-free patches.
    """
    from brats.devices import resolve_device

    store = Path(cfg.output_dir) / "patches" / "train.h5"
    if not store.is_file():
        raise BratsError(f"{store}: no training store; run `brats extract` first")
    seed_everything(cfg.seed)
    ds = PatchDataset(store, build_transform(cfg, "train", "binary"))
    device = resolve_device(cfg.train.device, key="train.device")
    model = SliceClassifier(len(cfg.data.modalities), encoder).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    sampler = torch.utils.data.RandomSampler(ds, num_samples=steps * batch_size, generator=gen)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=0)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    t0, loss = time.monotonic(), torch.zeros(())
    for step, batch in enumerate(loader):
        x = batch["image"].to(device)
        y = (batch["label"].flatten(1) > 0).any(dim=1).float().to(device)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 20 == 0:
            log.info("slice classifier step %d/%d: loss %.4f", step + 1, steps, float(loss))
    model.eval()
    return model, {"steps": steps, "final_loss": float(loss), "seconds": time.monotonic() - t0}
