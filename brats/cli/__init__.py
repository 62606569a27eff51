"""The ``brats`` command: ``brats validate | synth | extract | train | predict | evaluate | demo | ...``.

:mod:`~brats.cli.parser` builds the argument parser (one function per sub-command), :mod:`~brats.cli.commands`
holds one ``cmd_*`` per sub-command (each calls one library function), :mod:`~brats.cli.main` dispatches.
Before a command runs, :mod:`~brats.cli.wait_policy` sets OpenMP's wait policy for it. User-facing errors (:class:`brats.errors.BratsError`) are printed on one line and exit with status 1.
``tools/*.py`` call :func:`main`.
"""

from brats.cli.main import main, setup_logging

__all__ = ["main", "setup_logging"]
