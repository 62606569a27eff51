"""brats/cli/wait_policy.py: which commands get passive OpenMP waits, and that choosing loads no torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from brats.cli.parser import build_parser
from brats.cli.wait_policy import DEMO, trains_alone, wait_policy
from brats.config import config_to_yaml, load_config, shipped_config

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path, workers: int) -> str:
    cfg = load_config(None)
    cfg.train.num_workers = workers
    path = tmp_path / f"w{workers}.yaml"
    path.write_text(config_to_yaml(cfg))
    return str(path)


def test_training_alone_keeps_openmp_default_and_the_rest_is_passive(tmp_path):
    parse = build_parser().parse_args
    alone, loader = _config(tmp_path, 0), _config(tmp_path, 1)
    assert wait_policy(parse(["train", "--config", alone])) is None
    assert wait_policy(parse(["train", "--config", loader])) == "PASSIVE"
    assert wait_policy(parse(["train", "--config", loader, "--set", "train.num_workers=0"])) is None
    assert wait_policy(parse(["train", "--config", str(tmp_path / "missing.yaml")])) == "PASSIVE"
    assert wait_policy(parse(["train", "--config", alone, "--set", "train.nope=1"])) == "PASSIVE"
    assert wait_policy(parse(["evaluate", "--pred", "p"])) == "PASSIVE"
    demo = wait_policy(parse(["demo"]))
    assert demo == (None if trains_alone(shipped_config(DEMO)) else "PASSIVE")


def test_the_demo_name_is_the_demo_module_s():
    from brats.demo import DEMO_CONFIG

    assert DEMO == DEMO_CONFIG


@pytest.mark.parametrize("present", [None, "ACTIVE", "PASSIVE"])
def test_apply_sets_the_policy_unless_the_environment_has_one(tmp_path, present):
    """In a fresh interpreter (this one has torch loaded, and then nothing is set): a config with a loader
    process gets PASSIVE, and a policy already in the environment is kept."""
    code = (
        "import os, sys\n"
        "from brats.cli.parser import build_parser\n"
        "from brats.cli.wait_policy import apply_wait_policy\n"
        "apply_wait_policy(build_parser().parse_args(['train', '--config', sys.argv[1]]))\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if present is not None:
        env["OMP_WAIT_POLICY"] = present
    cmd = [sys.executable, "-c", code, _config(tmp_path, 1)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (present or "PASSIVE")


def test_choosing_the_policy_loads_no_torch():
    code = (
        "import sys\n"
        "from brats.cli import main\n"
        "from brats.cli.parser import build_parser\n"
        "from brats.cli.wait_policy import wait_policy\n"
        "wait_policy(build_parser().parse_args(['demo']))\n"
        "wait_policy(build_parser().parse_args(['train', '--config', 'configs/demo.yaml']))\n"
        "assert 'torch' not in sys.modules, 'torch loaded'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
