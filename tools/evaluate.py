#!/usr/bin/env python
"""Per-class and per-region Dice, IoU and HD95 of predictions (same as `brats evaluate`; run with --help for the options)."""

import sys

from brats.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
