"""The ``brats`` command: ``brats validate | synth | extract | train | predict | evaluate | demo | ...``.

:mod:`~brats.cli.parser` builds the argument parser (one function per sub-command), :mod:`~brats.cli.commands`
holds one ``cmd_*`` per sub-command (each calls one library function), :mod:`~brats.cli.main` dispatches.
User-facing errors (:class:`brats.errors.BratsError`) are printed on one line and exit with status 1.
``tools/*.py`` call :func:`main`.
"""

import os

# Idle OpenMP threads should sleep, not spin: with spinning threads, torch on a 2-core machine slows down
# several-fold as soon as another busy process shares it (see docs/performance.md). Must precede importing torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from brats.cli.main import main, setup_logging  # noqa: E402

__all__ = ["main", "setup_logging"]
