"""Shared test settings: quiet, single-threaded torch (two spinning OpenMP threads collapse on a busy 2-core box)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass
