#!/usr/bin/env python
"""Extract normalised training/validation patches to HDF5 (same as `brats extract`; run with --help for the options)."""

import sys

from brats.cli import main

if __name__ == "__main__":
    sys.exit(main(["extract", *sys.argv[1:]]))
