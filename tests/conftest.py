"""Shared test settings: quiet, single-threaded torch (two spinning OpenMP threads collapse on a busy 2-core box)."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MPLBACKEND", "Agg")
# The bf16-vs-float32 probe cache (brats.precision) goes to a temporary folder, not the user's ~/.cache; the
# folder this session made is removed when it ends (one was left in /tmp per run before).
if "BRATS_CACHE_DIR" not in os.environ:
    os.environ["BRATS_CACHE_DIR"] = tempfile.mkdtemp(prefix="brats-cache-")
    atexit.register(shutil.rmtree, os.environ["BRATS_CACHE_DIR"], ignore_errors=True)
# One precision choice throughout the suite (and its subprocesses), whatever the suite's own load.
os.environ.setdefault("BRATS_PROBE_IGNORE_LOAD", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass
