#!/usr/bin/env python
"""(Python 3.11+) Print constraints.txt: the installed version of every package in the dependency closure of pyproject.toml
(dependencies and the dev extra), so `pip install -c constraints.txt -e .[dev]` reproduces the tested set."""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"setuptools", "pip", "wheel"}  # build tools: not constrained


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    stack = [Requirement(r).name for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    seen: dict[str, tuple[str, str]] = {}
    while stack:
        name = stack.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen or key in SKIP:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            print(f"not installed: {name}", file=sys.stderr)
            continue
        seen[key] = (dist.metadata["Name"], dist.version)
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(req.name)
    print(
        "# Exact versions the test suite runs with (the installed dependency closure of pyproject.toml incl. the"
    )
    print("# dev extra). scripts/setup.sh installs with: pip install -c constraints.txt -e .[dev]")
    print(
        "# Regenerate after an upgrade that the suite passed with: python scripts/freeze_constraints.py > constraints.txt"
    )
    for name, version in sorted(seen.values(), key=lambda nv: nv[0].lower()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
