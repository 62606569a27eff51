#!/usr/bin/env python
"""Run the whole pipeline on a synthetic cohort and write a report (same as `brats demo`; run with --help for the options)."""

import sys

from brats.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
