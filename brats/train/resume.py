"""A trainer's state in a checkpoint and back: what ``checkpoints/last.pt`` holds so that ``--resume`` continues
a run exactly (weights, optimizer, scheduler, GradScaler, epoch, best score, history, RNG states; with
``train.swa_start`` the weight average as the weights and the optimiser's own weights beside it; with
``loss.deep_supervision`` the auxiliary heads)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from brats.checkpoint import Checkpoint, TrainingState, new_checkpoint, read_checkpoint
from brats.config import config_to_dict
from brats.preprocess import Normalization
from brats.train.deep_supervision import DeepSupervised
from brats.train.runtime import TrainError, rng_state, set_rng_state
from brats.train.swa import averaged_steps, load_average

if TYPE_CHECKING:  # pragma: no cover
    from brats.train.engine import Trainer

__all__ = ["restore", "trainer_checkpoint"]

log = logging.getLogger(__name__)


def trainer_checkpoint(t: Trainer) -> Checkpoint:
    """The checkpoint of ``t``'s current state (:mod:`brats.checkpoint`), normalisation from the store's record."""
    cfg, heads = t.cfg, _heads(t)
    training = TrainingState(
        optimizer=t.optimizer.state_dict(),
        scheduler=t.scheduler.state_dict(),
        scaler=t.scaler.state_dict(),
        epoch=t.epoch,
        best_score=t.best_score,
        best_metric=cfg.train.best_metric,
        rng=rng_state(),
        raw_model=None if t.average is None else t.model.state_dict(),
        averaged_steps=averaged_steps(t.average),
        aux_heads=None if heads is None else heads.state_dict(),
    )
    return new_checkpoint(
        t.eval_model.state_dict(),
        cfg,
        classes=t.out_channels,
        modalities=list(t.info["modalities"]),
        normalization=Normalization.from_dict(t.info.get("normalization"), where="train.h5 normalization"),
        label_scheme=t.scheme,
        history=[dict(r) for r in t.history],
        training=training,
    )


def _heads(t: Trainer) -> nn.Module | None:
    """The deep-supervision heads being trained (``loss.deep_supervision``), or None."""
    return t.train_net.heads if isinstance(t.train_net, DeepSupervised) else None


def restore(t: Trainer, path: Path) -> None:
    """Load the checkpoint at ``path`` into ``t`` to continue after its epoch.

    Raises:
        TrainError: no checkpoint at ``path``, one without training state, or one of another model section.
    """
    if not path.is_file():
        raise TrainError(f"--resume: no checkpoint at {path} (train without --resume first)")
    ckpt = read_checkpoint(path, map_location=t.rt.device)
    if ckpt.config.model != t.cfg.model:
        raise TrainError(
            f"--resume: the model section differs from the checkpoint's ({config_to_dict(ckpt.config.model)} "
            f"vs {config_to_dict(t.cfg.model)}); resume with the same model settings"
        )
    state = ckpt.training
    if state is None:
        raise TrainError(f"--resume: {path} holds no training state (optimizer, epoch) to resume from")
    # the optimiser's weights; with train.swa_start the average goes on from the saved one
    t.model.load_state_dict(ckpt.weights if state.raw_model is None else state.raw_model)
    if t.average is not None and state.raw_model is not None:
        load_average(t.average, ckpt.weights, state.averaged_steps)
    heads, saved = _heads(t), state.aux_heads
    if (heads is None) != (saved is None):
        raise TrainError(
            f"--resume: loss.deep_supervision is {t.cfg.loss.deep_supervision} but the checkpoint was trained "
            f"{'with' if saved is not None else 'without'} deep supervision; resume with its setting"
        )
    if heads is not None and saved is not None:
        try:
            heads.load_state_dict(saved)
        except RuntimeError as exc:
            raise TrainError(
                f"--resume: loss.deep_supervision={t.cfg.loss.deep_supervision} does not match the checkpoint's "
                f"heads ({len(saved) // 2} stages); resume with its setting"
            ) from exc
    t.optimizer.load_state_dict(state.optimizer)
    t.scheduler.load_state_dict(state.scheduler)
    if state.scaler:
        t.scaler.load_state_dict(state.scaler)
    t.epoch = state.epoch
    t.best_score = state.best_score
    if state.best_metric != t.cfg.train.best_metric:
        log.warning("train.best_metric changed since the checkpoint: the best score starts afresh")
        t.best_score = None
    t.history = [dict(r) for r in ckpt.history][: t.epoch]
    if state.rng:
        set_rng_state(state.rng)
    log.info("resumed from %s after epoch %d", path, t.epoch)
