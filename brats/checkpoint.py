"""The one place that writes and reads a checkpoint.

A checkpoint is a ``torch.save`` dict of tensors and plain Python values (it loads with
``torch.load(weights_only=True)``), read into a typed :class:`Checkpoint`:

=====================  ==========================================================================================
key                    holds
=====================  ==========================================================================================
``model``              the network's state dict (:attr:`Checkpoint.weights`)
``config``             the resolved config as a dict (read back into :class:`brats.config.Config`)
``label_scheme``       ``{"name", "source_labels"}`` of the training data
``normalization``      the patch store's own record of how its patches were normalised (``{method, percentiles,
                       mask, scope, dtype, bias_correction, downsample, asymmetry}``,
                       :class:`brats.preprocess.Normalization`); prediction repeats it
``modalities``         input channels in order
``patch_size``, ``dim``  training patch geometry
``in_channels``,       network input and output channels
``classes``
``postprocess``        post-processing prediction applies by default: ``min_component_ml``, ``et_min_ml`` (mL)
                       and ``source`` (``config``: the training config's ``predict.postprocess``;
                       ``validation``: chosen by ``brats tune-postprocess``, which adds ``objective``,
                       ``val_cases`` and the ``sweep`` table, see :mod:`brats.evaluate.tune`)
``history``            one dict per completed epoch (the rows of ``metrics.csv``)
``optimizer``,         resume state (:class:`TrainingState`); absent from exported, prediction-only files
``scheduler``,
``scaler``, ``epoch``,
``best_score``,
``best_metric``, ``rng``,
``raw_model``,         only with ``train.swa_start``: the optimiser's own weights (``model`` is their average once
``averaged_steps``     averaging has begun) and the number of steps averaged
``version``            format version (:data:`CHECKPOINT_VERSION`), ``toolkit_version``
=====================  ==========================================================================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from brats import __version__
from brats.asymmetry import input_channels
from brats.config import Config, config_from_dict, config_to_dict
from brats.errors import BratsError
from brats.fs import atomic_path
from brats.labels import LabelScheme, get_scheme
from brats.preprocess import Normalization

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "Checkpoint",
    "TrainingState",
    "write_checkpoint",
    "read_checkpoint",
    "read_state_dict",
    "new_checkpoint",
    "config_input_channels",
    "postprocess_settings",
]

#: Format version written by this toolkit. Version 1 (brats 0.1) kept the config's ``preprocess`` section as
#: ``normalization``; version 2 keeps the patch store's own record and the post-processing settings.
CHECKPOINT_VERSION = 2


class CheckpointError(BratsError, ValueError):
    """A checkpoint is missing, unreadable, foreign, of another format version or inconsistent."""


@dataclass
class TrainingState:
    """What resuming needs besides the weights: optimiser, scheduler, AMP scaler, progress and RNG states."""

    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    epoch: int
    best_score: float | None
    best_metric: str
    rng: dict[str, Any]
    #: with ``train.swa_start``: the optimiser's own weights (``model`` is the average once it has begun) and the
    #: number of steps averaged so far
    raw_model: dict[str, torch.Tensor] | None = None
    averaged_steps: int = 0
    #: with ``loss.deep_supervision``: the auxiliary heads' weights (:mod:`brats.train.deep_supervision`)
    aux_heads: dict[str, torch.Tensor] | None = None


@dataclass
class Checkpoint:
    """Everything prediction needs (and, with :attr:`training`, everything resuming needs). See the module doc."""

    weights: dict[str, torch.Tensor]
    config: Config
    label_scheme: LabelScheme
    normalization: Normalization
    modalities: list[str]
    patch_size: list[int]
    dim: int
    in_channels: int
    classes: int
    postprocess: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    training: TrainingState | None = None
    version: int = CHECKPOINT_VERSION
    toolkit_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        """The plain dict that is saved (tensors and Python values only)."""
        out: dict[str, Any] = {
            "model": self.weights,
            "config": config_to_dict(self.config),
            "label_scheme": self.label_scheme.to_dict(),
            "normalization": self.normalization.to_dict(),
            "modalities": list(self.modalities),
            "patch_size": [int(s) for s in self.patch_size],
            "dim": int(self.dim),
            "in_channels": int(self.in_channels),
            "classes": int(self.classes),
            "postprocess": dict(self.postprocess),
            "history": [dict(r) for r in self.history],
            "version": CHECKPOINT_VERSION,
            "toolkit_version": self.toolkit_version,
        }
        if self.training is not None:
            state = dataclasses.asdict(self.training)
            if state["raw_model"] is None:
                del state["raw_model"], state["averaged_steps"]
            if state["aux_heads"] is None:
                del state["aux_heads"]
            out.update(state)
        return out


def write_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    """``torch.save`` the checkpoint to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(ckpt.to_dict(), tmp)
    return path


def _load(path: Path, map_location: Any) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling error is a bad file
        raise CheckpointError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a file holding one, or the weights of a brats checkpoint (``model.weights_path``)."""
    path = Path(path)
    state = _load(path, "cpu")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return state


def _training_state(raw: dict[str, Any], cfg: Config) -> TrainingState | None:
    if "optimizer" not in raw:
        return None
    return TrainingState(
        optimizer=raw["optimizer"],
        scheduler=raw.get("scheduler") or {},
        scaler=raw.get("scaler") or {},
        epoch=int(raw.get("epoch", 0)),
        best_score=raw.get("best_score"),
        best_metric=str(raw.get("best_metric", cfg.train.best_metric)),
        rng=raw.get("rng") or {},
        raw_model=raw.get("raw_model"),
        averaged_steps=int(raw.get("averaged_steps", 0)),
        aux_heads=raw.get("aux_heads"),
    )


def _check_version(raw: dict[str, Any], path: Path) -> None:
    version = raw.get("version", 0)
    if version == CHECKPOINT_VERSION:
        return
    if isinstance(version, int) and version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this toolkit's ({CHECKPOINT_VERSION}); "
            "upgrade brats"
        )
    raise CheckpointError(
        f"{path}: checkpoint format version {version} was written by an older brats (this one reads version "
        f"{CHECKPOINT_VERSION}, which records the patch store's normalisation); retrain with this version"
    )


_VOXEL_KEYS = {"min_component": "min_component_ml", "et_min_voxels": "et_min_ml"}


def _migrate_postprocess(raw: dict[str, Any]) -> None:
    """Checkpoints written before thresholds were in mL held voxel counts (``min_component``, ``et_min_voxels``)
    that assumed BraTS's 1 mm grid: convert them to mL at 1 mm^3 per voxel, in the config and the settings."""
    sections = [raw.get("postprocess")]
    predict = raw["config"].get("predict") if isinstance(raw.get("config"), dict) else None
    if isinstance(predict, dict):
        sections.append(predict.get("postprocess"))
    for section in sections:
        if not isinstance(section, dict):
            continue
        for old, new in _VOXEL_KEYS.items():
            if old in section:
                section.setdefault(new, float(section.pop(old)) / 1000.0)


def postprocess_settings(cfg: Config) -> dict[str, Any]:
    """The :attr:`Checkpoint.postprocess` of a freshly trained model: the config's thresholds, ``source: config``."""
    thresholds = {k: v for k, v in config_to_dict(cfg.predict.postprocess).items() if k != "tune"}
    return {**thresholds, "source": "config"}


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> Checkpoint:
    """Read and check a checkpoint written by :func:`write_checkpoint`.

    Raises:
        CheckpointError: the file is missing, unreadable, not a brats checkpoint, of another format version,
            or its normalisation record is missing or contradicts its config.
    """
    path = Path(path)
    raw = _load(path, map_location)
    if not isinstance(raw, dict) or "model" not in raw or "config" not in raw:
        raise CheckpointError(f"{path} is not a brats checkpoint (expected a dict with 'model' and 'config')")
    _check_version(raw, path)
    _migrate_postprocess(raw)
    try:
        cfg = config_from_dict(raw["config"], source=f"checkpoint {path}")
        scheme = get_scheme(raw["label_scheme"]["name"])
        norm = Normalization.from_dict(raw.get("normalization"), where="normalization")
    except (BratsError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    conflicts = norm.conflicts(Normalization.from_config(cfg.preprocess))
    if conflicts:
        raise CheckpointError(
            f"{path}: the patch store's normalisation contradicts the checkpoint's config ({'; '.join(conflicts)})"
        )
    return Checkpoint(
        weights=raw["model"],
        config=cfg,
        label_scheme=scheme,
        normalization=norm,
        modalities=[str(m) for m in raw["modalities"]],
        patch_size=[int(s) for s in raw["patch_size"]],
        dim=int(raw["dim"]),
        in_channels=int(raw["in_channels"]),
        classes=int(raw["classes"]),
        postprocess=dict(raw.get("postprocess") or postprocess_settings(cfg)),
        history=[dict(r) for r in raw.get("history", [])],
        training=_training_state(raw, cfg),
        version=int(raw["version"]),
        toolkit_version=str(raw.get("toolkit_version", "")),
    )


def config_input_channels(cfg: Config) -> int:
    """Input channels of the network ``cfg`` trains: its modalities, their asymmetries with
    ``preprocess.asymmetry``, x (2k + 1) in 2.5D (:func:`brats.asymmetry.input_channels`); the ``in_channels``
    of its checkpoints."""
    return input_channels(len(cfg.data.modalities), cfg.preprocess.asymmetry, int(cfg.patches.context_slices))


def new_checkpoint(
    weights: dict[str, torch.Tensor],
    cfg: Config,
    *,
    classes: int,
    modalities: list[str] | None = None,
    normalization: Normalization | None = None,
    label_scheme: LabelScheme | str = "brats2021",
    history: list[dict[str, Any]] | None = None,
    training: TrainingState | None = None,
) -> Checkpoint:
    """A :class:`Checkpoint` for ``weights`` trained with ``cfg`` (training and the tests build them this way).

    ``modalities`` and ``normalization`` default to the config's; training passes the patch store's record.
    """
    mods = list(modalities if modalities is not None else cfg.data.modalities)
    norm = normalization or Normalization.from_config(cfg.preprocess)
    return Checkpoint(
        weights=weights,
        config=cfg,
        label_scheme=get_scheme(label_scheme) if isinstance(label_scheme, str) else label_scheme,
        normalization=norm,
        modalities=mods,
        patch_size=[int(s) for s in cfg.patches.size],
        dim=int(cfg.patches.dim),
        in_channels=input_channels(len(mods), norm.asymmetry, int(cfg.patches.context_slices)),
        classes=int(classes),
        postprocess=postprocess_settings(cfg),
        history=list(history or []),
        training=training,
    )
