#!/usr/bin/env python
"""Check a folder of BraTS cases (same as `brats validate`; run with --help for the options)."""

import sys

from brats.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", *sys.argv[1:]]))
