"""MONAI 3D networks behind the model factory (:func:`brats.networks.build_model` delegates here).

``model.arch: monai.SegResNet`` or ``monai.DynUNet`` (nnU-Net's network) with ``patches.dim: 3``. The network
maps ``(B, C, X, Y, Z)`` float32 (``C`` = modalities, in the config's order) to logits ``(B, classes, X, Y, Z)``
over the training classes. Its keyword arguments come from ``model.kwargs`` and are checked against the MONAI
class's signature: an unknown name is an error naming ``model.kwargs.<name>``. The toolkit sets
``spatial_dims``, ``in_channels`` and ``out_channels`` itself.

Defaults (when ``model.kwargs`` does not set them):

* ``monai.SegResNet``: MONAI's own (``init_filters: 8``, ``blocks_down: [1, 2, 2, 4]``, ...). Input sizes
  must be divisible by ``2 ** (len(blocks_down) - 1)`` (8 by default).
* ``monai.DynUNet``: ``model.encoder_depth`` downsamplings, nnU-Net style: ``kernel_size: [3] * (depth + 1)``,
  ``strides: [1] + [2] * depth``, ``upsample_kernel_size: strides[1:]``; ``filters`` MONAI's default
  (32, 64, ... capped at 320). Input sizes must be divisible by the product of the strides. Deep supervision
  is refused (the losses take one output).
"""

from __future__ import annotations

import difflib
import inspect
import math
from typing import Any

import torch
from torch import nn

from brats.config import ModelConfig
from brats.errors import BratsError

__all__ = [
    "MONAI_ARCHS",
    "MonaiModelError",
    "is_monai_arch",
    "monai_kwargs",
    "monai_multiple",
    "build_monai_model",
]

#: ``model.arch`` names -> MONAI class names.
MONAI_ARCHS = {"monai.segresnet": "SegResNet", "monai.dynunet": "DynUNet"}
#: Arguments the toolkit sets itself.
_RESERVED = ("spatial_dims", "in_channels", "out_channels")


class MonaiModelError(BratsError, ValueError):
    """A MONAI network cannot be built; the message names the config key and value."""


def is_monai_arch(arch: str) -> bool:
    """True for ``monai.<name>`` architecture names (any case)."""
    return str(arch).lower().startswith("monai.")


def _class(arch: str) -> type:
    name = MONAI_ARCHS.get(str(arch).lower())
    if name is None:
        valid = ["monai." + v for v in MONAI_ARCHS.values()]
        close = difflib.get_close_matches(str(arch), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise MonaiModelError(f"Unknown model.arch {arch!r}{hint}; MONAI architectures: {', '.join(valid)}")
    from monai.networks import nets

    return getattr(nets, name)


def monai_kwargs(model_cfg: ModelConfig) -> dict[str, Any]:
    """The checked keyword arguments of the network (``model.kwargs`` plus the defaults of the module doc).

    Raises:
        MonaiModelError: an unknown or reserved keyword (named as ``model.kwargs.<key>``), or deep supervision.
    """
    cls = _class(model_cfg.arch)
    params = [p for p in inspect.signature(cls).parameters if p != "self"]
    allowed = [p for p in params if p not in _RESERVED]
    user = dict(model_cfg.kwargs or {})
    for key in user:
        if key in _RESERVED:
            raise MonaiModelError(f"model.kwargs.{key}: set by the toolkit (from patches.dim and the data)")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MonaiModelError(
                f"Unknown key model.kwargs.{key}{hint} for {cls.__name__}; valid keys: {', '.join(allowed)}"
            )
    if user.get("deep_supervision"):
        raise MonaiModelError("model.kwargs.deep_supervision: not supported (the losses take one output)")
    out: dict[str, Any] = {}
    if cls.__name__ == "DynUNet":
        depth = int(model_cfg.encoder_depth)
        strides = user.get("strides", [1] + [2] * depth)
        out = {
            "kernel_size": [3] * len(strides),
            "strides": strides,
            "upsample_kernel_size": list(strides[1:]),
            "norm_name": "instance",
        }
    out.update(user)
    return out


def _axis_factors(value: Any) -> list[int]:
    """Per-axis factors of one stride entry (an int or a per-axis list)."""
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] * 3


def monai_multiple(model_cfg: ModelConfig) -> int:
    """Input sizes must be multiples of this (the network's total downsampling along its coarsest axis)."""
    kwargs = monai_kwargs(model_cfg)
    if MONAI_ARCHS[model_cfg.arch.lower()] == "DynUNet":
        per_axis = [math.prod(a) for a in zip(*(_axis_factors(s) for s in kwargs["strides"]))]
        return max(per_axis)
    blocks = kwargs.get("blocks_down", (1, 2, 2, 4))
    return 2 ** (len(blocks) - 1)


def build_monai_model(model_cfg: ModelConfig, in_channels: int, classes: int = 4) -> nn.Module:
    """Build the MONAI 3D network of ``model_cfg`` (training mode).

    Returns:
        A module mapping ``(B, in_channels, X, Y, Z)`` to logits ``(B, classes, X, Y, Z)``; ``X, Y, Z``
        multiples of :func:`monai_multiple`.

    Raises:
        MonaiModelError: unknown architecture or keyword, or MONAI refuses the values (the message names
            ``model.kwargs`` and MONAI's reason), or the network fails a small forward pass.
    """
    cls = _class(model_cfg.arch)
    kwargs = monai_kwargs(model_cfg)
    try:
        model = cls(spatial_dims=3, in_channels=int(in_channels), out_channels=int(classes), **kwargs)
    except (ValueError, KeyError, TypeError, AssertionError, AttributeError) as exc:
        raise MonaiModelError(f"Cannot build {cls.__name__} from model.kwargs {kwargs}: {exc}") from exc
    size = 2 * monai_multiple(model_cfg)  # instance norm needs more than one voxel at the coarsest level
    state = torch.random.get_rng_state()
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, int(in_channels), size, size, size))
    except Exception as exc:  # noqa: BLE001 - any failure means these arguments do not work
        raise MonaiModelError(
            f"{cls.__name__} with model.kwargs {kwargs} fails on a {size}^3 input: {exc}"
        ) from exc
    finally:
        model.train()
        torch.random.set_rng_state(state)
    if tuple(out.shape) != (1, int(classes), size, size, size):
        raise MonaiModelError(
            f"{cls.__name__} with model.kwargs {kwargs} maps a {size}^3 input to {tuple(out.shape)}"
        )
    return model
