"""``brats`` entry point: logging set-up, dispatch, one-line errors."""

from __future__ import annotations

import argparse
import logging
import sys

from brats.cli.parser import build_parser
from brats.cli.wait_policy import apply_wait_policy
from brats.errors import BratsError

__all__ = ["main", "setup_logging"]


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    apply_wait_policy(args)  # before any command loads torch
    setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except BratsError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(_one_line(exc) or _interrupted(args), file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk or a vanished folder outside the places that name their file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    """The message on one line (multi-line listings joined with ``; ``)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _interrupted(args: argparse.Namespace) -> str:
    """``interrupted`` plus the output the command was writing (outputs are written atomically)."""
    out = next(
        (
            getattr(args, k)
            for k in ("output", "output_dir", "out", "out_dir", "pred")
            if getattr(args, k, None)
        ),
        None,
    )
    return f"interrupted: no partial file left in {out}" if out else "interrupted"
