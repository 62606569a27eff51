"""Network factory (segmentation-models-pytorch 2D/2.5D; MONAI 3D via :mod:`brats.networks_monai`), shared by
training and prediction.

:func:`build_model` makes any smp architecture by name from :class:`brats.config.ModelConfig`. The network maps a
batch of patches ``(B, C, H, W)`` float32 (``C`` = number of modalities, in the config's order) to logits
``(B, classes, H, W)`` over the training classes ``0 background, 1 NCR, 2 ED, 3 ET``.
:func:`model_from_checkpoint` rebuilds the network of a checkpoint (:mod:`brats.checkpoint`).
"""

from __future__ import annotations

import difflib
import inspect
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from brats.checkpoint import Checkpoint, CheckpointError, read_checkpoint, read_state_dict
from brats.config import ModelConfig
from brats.errors import BratsError
from brats.networks_monai import build_monai_model, is_monai_arch, monai_multiple

__all__ = [
    "ModelError",
    "valid_architectures",
    "valid_encoders",
    "build_model",
    "freeze_unused_parameters",
    "model_from_checkpoint",
    "input_multiple",
]

log = logging.getLogger(__name__)

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


#: smp keywords that model.kwargs may not set: other model.* keys set them, and the losses need plain logits.
_SMP_RESERVED = {"decoder_channels", "activation", "aux_params"}
_SMP_SET = {"in_channels", "classes"}


def _check_smp_kwargs(cls: type, user: dict[str, Any]) -> None:
    """``model.kwargs`` of a 2D network: only keywords the smp class names, none the toolkit sets.

    smp hands keywords it does not name to the encoder, where a typo can pass silently; they are refused here.
    """
    named = [p for p in inspect.signature(cls).parameters if p not in ("self", "kwargs")]
    allowed = [
        p for p in named if p not in _SMP_RESERVED and not p.startswith("encoder_") and p not in _SMP_SET
    ]
    for key in user:
        if key in named and key not in allowed:
            raise ModelError(
                f"model.kwargs.{key}: set by the toolkit (from the other model.* keys and the data)"
            )
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ModelError(
                f"Unknown key model.kwargs.{key}{hint} for {cls.__name__}; valid keys: {', '.join(allowed)}"
            )


def _check_decoder_norm(norm: Any) -> None:
    """smp 0.6 initialises every decoder norm's weight to 1, so an instance norm without affine weights (torch's
    default, and smp's for the string ``instancenorm``) fails inside smp with an AttributeError."""
    spec = {"type": norm} if isinstance(norm, str) else norm
    if (
        isinstance(spec, dict)
        and str(spec.get("type", "")).lower() == "instancenorm"
        and not spec.get("affine")
    ):
        raise ModelError(
            "model.kwargs.decoder_use_norm: smp cannot initialise an instance norm without affine weights; "
            "use {type: instancenorm, affine: true}"
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
        dim: patch dimensionality: 2 (axial patches, smp architectures) or 3 (``monai.*`` architectures,
            :mod:`brats.networks_monai`; ``(B, C, X, Y, Z)`` in and out).

    Returns:
        The model in training mode, mapping ``(B, in_channels, H, W)`` to logits ``(B, classes, H, W)``;
        ``H`` and ``W`` must be divisible by ``2 ** encoder_depth``. Parameters the network never uses (smp
        keeps encoder stages beyond ``encoder_depth``) have ``requires_grad=False``.

    Raises:
        ModelError: unknown architecture or encoder (the message lists the valid ones), inconsistent
            decoder channels, 3D patches, or an unreadable / mismatching weights file.
    """
    if in_channels < 1 or classes < 1:
        raise ModelError(f"in_channels and classes must be positive, got {in_channels} and {classes}")
    if is_monai_arch(model_cfg.arch) or dim != 2:
        return _build_3d(model_cfg, in_channels, classes, dim)
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
    _check_smp_kwargs(cls, dict(model_cfg.kwargs or {}))
    _check_decoder_norm((model_cfg.kwargs or {}).get("decoder_use_norm"))
    kwargs.update(model_cfg.kwargs)
    try:
        model = cls(**kwargs)
    except (ValueError, KeyError, TypeError, AssertionError, AttributeError) as exc:
        raise ModelError(f"Cannot build {cls.__name__} with encoder {model_cfg.encoder!r}: {exc}") from exc
    _check_output_size(model, cls.__name__, model_cfg, in_channels)
    freeze_unused_parameters(model, in_channels, max(64, 2 ** (model_cfg.encoder_depth + 1)))
    if model_cfg.weights_path:
        _load_weights(model, Path(model_cfg.weights_path))
    return model


def _build_3d(model_cfg: ModelConfig, in_channels: int, classes: int, dim: int) -> nn.Module:
    """A MONAI 3D network (:mod:`brats.networks_monai`); smp networks are 2D only."""
    if not is_monai_arch(model_cfg.arch) or dim != 3:
        raise ModelError(
            f"model.arch {model_cfg.arch!r} needs patches.dim: {3 if is_monai_arch(model_cfg.arch) else 2}, "
            f"got {dim} (3D: monai.SegResNet or monai.DynUNet; 2D and 2.5D: smp architectures)"
        )
    try:
        model = build_monai_model(model_cfg, in_channels, classes)
    except BratsError as exc:
        raise ModelError(str(exc)) from exc
    if model_cfg.weights_path:
        _load_weights(model, Path(model_cfg.weights_path))
    return model


def input_multiple(model_cfg: ModelConfig) -> int:
    """Patch and window sizes must be multiples of this: ``2 ** encoder_depth`` (smp) or the MONAI network's
    total downsampling (:func:`brats.networks_monai.monai_multiple`)."""
    if is_monai_arch(model_cfg.arch):
        try:
            return monai_multiple(model_cfg)
        except BratsError as exc:
            raise ModelError(str(exc)) from exc
    return 2 ** int(model_cfg.encoder_depth)


def _check_output_size(model: nn.Module, arch: str, model_cfg: ModelConfig, in_channels: int) -> None:
    """One small forward pass without gradients: the logits must have the input's height and width."""
    size = max(64, 2 ** (model_cfg.encoder_depth + 1))
    state = torch.random.get_rng_state()
    model.eval()  # no change to BatchNorm running statistics
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, in_channels, size, size))
    except Exception as exc:  # noqa: BLE001 - any failure means this combination does not work
        raise ModelError(
            f"{arch} with encoder {model_cfg.encoder!r} and encoder_depth {model_cfg.encoder_depth} "
            f"fails on a {size}x{size} input: {exc}"
        ) from exc
    finally:
        model.train()
        torch.random.set_rng_state(state)
    if tuple(out.shape[-2:]) != (size, size):
        raise ModelError(
            f"{arch} with encoder_depth {model_cfg.encoder_depth} maps a {size}x{size} input to "
            f"{tuple(out.shape[-2:])} logits; use another model.encoder_depth (5 is smp's default)"
        )


def freeze_unused_parameters(model: nn.Module, in_channels: int, size: int = 64) -> list[str]:
    """Set ``requires_grad=False`` on the parameters that one forward/backward pass leaves without a gradient.

    smp keeps every stage of an encoder even when ``encoder_depth`` uses fewer (a resnet18 at depth 3 carries
    an unused ``layer3`` and ``layer4``); such parameters would break DistributedDataParallel's gradient
    reduction and waste optimiser work. The pass runs in eval mode (BatchNorm statistics unchanged) and leaves
    no gradient behind.

    Returns:
        The names of the frozen parameters.
    """
    state = torch.random.get_rng_state()
    model.eval()
    try:
        model(torch.zeros(1, in_channels, size, size)).float().square().mean().backward()
    finally:
        model.train()
        torch.random.set_rng_state(state)
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for name, p in model.named_parameters():
        p.grad = None
        if name in unused:
            p.requires_grad_(False)
    if unused:
        log.debug("%d parameters are not used (frozen): %s", len(unused), unused[:4])
    return unused


def _load_weights(model: nn.Module, path: Path) -> None:
    """Load a local state dict (whole model, encoder only, or a brats checkpoint's weights) into ``model``."""
    try:
        state = read_state_dict(path)
    except CheckpointError as exc:
        raise ModelError(f"model.weights_path: {exc}") from exc
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


def model_from_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Checkpoint]:
    """Rebuild the network of a checkpoint and load its weights.

    Returns:
        ``(model, checkpoint)``: the model on ``device`` in eval mode, and the :class:`Checkpoint`.
    """
    ckpt = read_checkpoint(path)
    model_cfg = ckpt.config.model
    # The weights come from the checkpoint: never download or read another file.
    model_cfg.encoder_weights = None
    model_cfg.weights_path = None
    model = build_model(model_cfg, ckpt.in_channels, ckpt.classes, dim=ckpt.dim)
    try:
        model.load_state_dict(ckpt.weights)
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit the model described by its config: {exc}") from exc
    model.to(device).eval()
    return model, ckpt
