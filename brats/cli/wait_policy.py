"""The OpenMP wait policy of a ``brats`` command, chosen before torch loads (OpenMP reads it once, then).

With passive waits an idle OpenMP thread sleeps at once; with OpenMP's default it spins a little first. On a
2-core machine spinning threads slow torch several-fold as soon as another busy process shares the cores, as a
DataLoader worker process does (``train.num_workers`` >= 1), so ``brats`` asks for passive waits. A process that
trains alone (``train.num_workers: 0``, as with ``augment.engine: batch``) is faster with the default: its
threads wake for each of the many small operations of a step without a system call (``python bench/epochs.py``
on 2 cores: 14.66 s an epoch of configs/demo.yaml with passive waits, 11.33 s with the default; docs/training.md,
"Augmentation engine and OpenMP waits").

The rule: a policy already in the environment is kept; ``brats train`` and ``brats demo`` whose config trains
with no loader process leave OpenMP's default; every other command, and a config that cannot be read (the
command itself reports that), gets ``PASSIVE``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["wait_policy", "apply_wait_policy", "trains_alone"]

#: The demo's shipped config (:data:`brats.demo.DEMO_CONFIG`; that module loads torch, so it is not imported here).
DEMO = "demo"


def trains_alone(config: str | Path | None, overrides: list[str] | None = None) -> bool:
    """Whether ``config`` (with ``--set`` ``overrides``) trains with no DataLoader worker process; False when it
    cannot be read. Imports no torch."""
    from brats.config import load_config
    from brats.errors import BratsError

    try:
        return int(load_config(config, overrides or []).train.num_workers) == 0
    except (BratsError, OSError, ValueError):
        return False


def wait_policy(args: argparse.Namespace) -> str | None:
    """``PASSIVE``, or None for OpenMP's default, for the parsed command line ``args`` (module doc)."""
    command = getattr(args, "command", None)
    if command == "train" and trains_alone(args.config, getattr(args, "overrides", None)):
        return None
    if command == "demo":
        from brats.config import shipped_config

        if trains_alone(shipped_config(DEMO)):
            return None
    return "PASSIVE"


def apply_wait_policy(args: argparse.Namespace) -> None:
    """Set ``OMP_WAIT_POLICY`` for ``args`` unless the environment already has one (or torch is loaded)."""
    import sys

    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return
    policy = wait_policy(args)
    if policy is not None:
        os.environ["OMP_WAIT_POLICY"] = policy
