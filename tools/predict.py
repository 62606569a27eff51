#!/usr/bin/env python
"""Sliding-window prediction of whole cases, written as NIfTI (same as `brats predict`; run with --help for the options)."""

import sys

from brats.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
