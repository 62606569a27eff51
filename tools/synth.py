#!/usr/bin/env python
"""Write a synthetic BraTS-like cohort (same as `brats synth`; run with --help for the options)."""

import sys

from brats.cli import main

if __name__ == "__main__":
    sys.exit(main(["synth", *sys.argv[1:]]))
