"""Device names -> ``torch.device``, one rule for training and prediction."""

from __future__ import annotations

import torch

from brats.errors import BratsError

__all__ = ["DeviceError", "resolve_device"]


class DeviceError(BratsError, ValueError):
    """A device name is invalid or names hardware this machine does not have."""


def resolve_device(
    name: str | torch.device = "auto", local_rank: int = 0, key: str = "device"
) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``cuda`` -> ``cuda:<local_rank>``
    (the rank's GPU under torchrun); ``cpu`` and ``cuda:N`` as given.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (or a ``torch.device``).
        local_rank: the process's GPU index under torchrun (0 otherwise).
        key: the option's name for error messages (``train.device``, ``--device``).

    Raises:
        DeviceError: an unknown device name, or CUDA requested on a machine without it.
    """
    name = str(name)
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"{key}: invalid device {name!r} (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{key} is {name!r} but CUDA is not available; use {key} cpu")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device
