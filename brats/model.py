"""Model factory (segmentation-models-pytorch) and checkpoints.

:func:`build_model` makes any smp architecture by name from :class:`brats.config.ModelConfig`. The network maps a
batch of patches ``(B, C, H, W)`` float32 (``C`` = number of modalities, in the config's order) to logits
``(B, classes, H, W)`` over the training classes ``0 background, 1 NCR, 2 ED, 3 ET``.

A checkpoint (:func:`save_checkpoint`, :func:`load_checkpoint`) is a ``torch.save`` dict holding everything
prediction needs: ``model`` (state dict), ``config`` (the resolved config as a dict), ``label_scheme``
(``{"name", "source_labels"}``), ``normalization``, ``modalities``, ``patch_size``, ``dim``, ``in_channels``,
``classes``, ``version``; and for resuming ``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (completed epochs),
``best_score`` and ``rng``. It holds only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)``. :func:`model_from_checkpoint` rebuilds the network from it.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from brats.config import ModelConfig, config_from_dict
from brats.errors import BratsError
from brats.io import atomic_path

__all__ = [
    "ModelError",
    "CHECKPOINT_VERSION",
    "CHECKPOINT_KEYS",
    "valid_architectures",
    "valid_encoders",
    "build_model",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
]

log = logging.getLogger(__name__)

#: Format version of the checkpoint dict.
CHECKPOINT_VERSION = 1
#: Keys every checkpoint written by :mod:`brats.train` holds.
CHECKPOINT_KEYS = (
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "epoch",
    "best_score",
    "rng",
    "config",
    "label_scheme",
    "normalization",
    "modalities",
    "patch_size",
    "dim",
    "in_channels",
    "classes",
    "version",
)
# Architectures whose decoder_channels is a per-stage list (len == encoder_depth).
_PER_STAGE_DECODERS = {"unet", "unetplusplus", "manet"}


class ModelError(BratsError, ValueError):
    """A model cannot be built or a checkpoint cannot be read; the message names the value or the file."""


def valid_architectures() -> list[str]:
    """smp architecture class names, e.g. ``['DPT', 'DeepLabV3', ..., 'Unet', 'UnetPlusPlus']``."""
    import segmentation_models_pytorch as smp

    return sorted(cls.__name__ for cls in smp.MODEL_ARCHITECTURES_MAPPING.values())


def valid_encoders() -> list[str]:
    """smp encoder names (timm encoders are also accepted as ``tu-<timm name>``)."""
    import segmentation_models_pytorch as smp

    return sorted(smp.encoders.get_encoder_names())


def _resolve_arch(name: str) -> type:
    import segmentation_models_pytorch as smp

    mapping = smp.MODEL_ARCHITECTURES_MAPPING
    cls = mapping.get(str(name).lower())
    if cls is None:
        names = valid_architectures()
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelError(f"Unknown model.arch {name!r}{hint}; valid architectures: {', '.join(names)}")
    return cls


def _check_encoder(name: str) -> None:
    if name.startswith("tu-"):
        return
    names = valid_encoders()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise ModelError(
            f"Unknown model.encoder {name!r}{hint}; valid encoders: {', '.join(names)} "
            "(or any timm encoder as 'tu-<name>')"
        )


def build_model(model_cfg: ModelConfig, in_channels: int, classes: int = 4, dim: int = 2) -> nn.Module:
    """Build an smp segmentation network.

    Args:
        model_cfg: ``arch`` (any smp architecture, case-insensitive), ``encoder``, ``encoder_depth``,
            ``decoder_channels`` (Unet, UnetPlusPlus, MAnet: one per encoder stage), ``encoder_weights``
            (smp name of pretrained weights, downloads; ``None`` by default), ``weights_path`` (a local state
            dict of the whole model or of its encoder, or a brats checkpoint).
        in_channels: input channels (number of modalities).
        classes: output channels (training classes, 4 for background, NCR, ED, ET).
        dim: patch dimensionality; only 2 (axial patches) is supported.

    Returns:
        The model in training mode, mapping ``(B, in_channels, H, W)`` to logits ``(B, classes, H, W)``;
        ``H`` and ``W`` must be divisible by ``2 ** encoder_depth``. Parameters the network never uses (smp
        keeps encoder stages beyond ``encoder_depth``) have ``requires_grad=False``.

    Raises:
        ModelError: unknown architecture or encoder (the message lists the valid ones), inconsistent
            decoder channels, 3D patches, or an unreadable / mismatching weights file.
    """
    if dim != 2:
        raise ModelError(
            f"3D models are not supported yet (patches.dim={dim}); use patches.dim: 2 (axial 2D patches)"
        )
    if in_channels < 1 or classes < 1:
        raise ModelError(f"in_channels and classes must be positive, got {in_channels} and {classes}")
    cls = _resolve_arch(model_cfg.arch)
    _check_encoder(model_cfg.encoder)
    kwargs: dict[str, Any] = {
        "encoder_name": model_cfg.encoder,
        "encoder_depth": model_cfg.encoder_depth,
        "encoder_weights": model_cfg.encoder_weights,
        "in_channels": in_channels,
        "classes": classes,
    }
    if cls.__name__.lower() in _PER_STAGE_DECODERS:
        dec = list(model_cfg.decoder_channels)
        if len(dec) != model_cfg.encoder_depth:
            raise ModelError(
                f"model.decoder_channels needs one value per encoder stage (model.encoder_depth="
                f"{model_cfg.encoder_depth}), got {len(dec)}: {dec}; e.g. {dec[-model_cfg.encoder_depth :]}"
            )
        kwargs["decoder_channels"] = dec
    elif model_cfg.decoder_channels != ModelConfig().decoder_channels:
        log.warning("model.decoder_channels is ignored by %s", cls.__name__)
    try:
        model = cls(**kwargs)
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise ModelError(f"Cannot build {cls.__name__} with encoder {model_cfg.encoder!r}: {exc}") from exc
    _check_output_size(model, cls.__name__, model_cfg, in_channels)
    if model_cfg.weights_path:
        _load_weights(model, Path(model_cfg.weights_path))
    return model


def _check_output_size(model: nn.Module, arch: str, model_cfg: ModelConfig, in_channels: int) -> None:
    """One small forward and backward pass: the logits must have the input's height and width, and
    parameters that never receive a gradient are frozen (``requires_grad=False``).

    smp keeps every stage of an encoder even when ``encoder_depth`` uses fewer (a resnet18 at depth 3 carries
    an unused ``layer3`` and ``layer4``); such parameters would break DistributedDataParallel's gradient
    reduction and waste optimiser work.
    """
    size = max(64, 2 ** (model_cfg.encoder_depth + 1))
    state = torch.random.get_rng_state()
    model.eval()  # no change to BatchNorm running statistics
    try:
        out = model(torch.zeros(1, in_channels, size, size))
        out.float().square().mean().backward()
    except Exception as exc:  # noqa: BLE001 - any failure means this combination does not work
        raise ModelError(
            f"{arch} with encoder {model_cfg.encoder!r} and encoder_depth {model_cfg.encoder_depth} "
            f"fails on a {size}x{size} input: {exc}"
        ) from exc
    finally:
        model.train()
        torch.random.set_rng_state(state)
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for p in model.parameters():
        p.grad = None
    for name, p in model.named_parameters():
        if name in unused:
            p.requires_grad_(False)
    if unused:
        log.debug("%d parameters are not used by %s (frozen): %s", len(unused), arch, unused[:4])
    if tuple(out.shape[-2:]) != (size, size):
        raise ModelError(
            f"{arch} with encoder_depth {model_cfg.encoder_depth} maps a {size}x{size} input to "
            f"{tuple(out.shape[-2:])} logits; use another model.encoder_depth (5 is smp's default)"
        )


def _load_weights(model: nn.Module, path: Path) -> None:
    """Load a local state dict (whole model, encoder only, or a brats checkpoint's ``model``) into ``model``."""
    if not path.is_file():
        raise ModelError(f"model.weights_path: file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling error is a bad file
        raise ModelError(f"model.weights_path: cannot read {path}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ModelError(f"model.weights_path: {path} does not hold a state dict")
    model_keys = set(model.state_dict())
    encoder = getattr(model, "encoder", None)
    try:
        if set(state) == model_keys:
            model.load_state_dict(state)
        elif encoder is not None and set(state) == set(encoder.state_dict()):
            encoder.load_state_dict(state)
        else:
            missing = sorted(model_keys - set(state))
            unexpected = sorted(set(state) - model_keys)
            raise ModelError(
                f"model.weights_path: {path} does not match the model (nor its encoder): "
                f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
            )
    except RuntimeError as exc:  # shape mismatch
        raise ModelError(f"model.weights_path: {path} does not fit the model: {exc}") from exc
    log.info("loaded weights from %s", path)


# --------------------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------------------


def save_checkpoint(ckpt: dict, path: str | Path) -> Path:
    """``torch.save`` ``ckpt`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Read a checkpoint written by :mod:`brats.train` (``weights_only`` unpickling: tensors and plain values).

    Raises:
        ModelError: the file is missing, unreadable, or not a brats checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"Cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ModelError(f"{path} is not a brats checkpoint (expected a dict with 'model' and 'config')")
    version = ckpt.get("version", 0)
    if version > CHECKPOINT_VERSION:
        raise ModelError(
            f"{path}: checkpoint format version {version} is newer than this toolkit's ({CHECKPOINT_VERSION})"
        )
    return ckpt


def model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network of a checkpoint and load its weights.

    Returns:
        ``(model, ckpt)``: the model on ``device`` in eval mode, and the checkpoint dict (see the module doc).
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    cfg = config_from_dict(ckpt["config"], source=f"checkpoint {path}")
    model_cfg = cfg.model
    # The weights come from the checkpoint: never download or read another file.
    model_cfg.encoder_weights = None
    model_cfg.weights_path = None
    in_channels = int(ckpt.get("in_channels", len(cfg.data.modalities)))
    classes = int(ckpt.get("classes", 4))
    model = build_model(model_cfg, in_channels, classes, dim=int(ckpt.get("dim", cfg.patches.dim)))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit the model described by its config: {exc}") from exc
    model.to(device).eval()
    return model, ckpt
