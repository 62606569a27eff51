#!/usr/bin/env python
"""Train a segmentation model on the HDF5 patches (same as `brats train`; run with --help for the options)."""

import sys

from brats.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
