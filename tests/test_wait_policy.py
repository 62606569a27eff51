"""brats/cli/wait_policy.py: which commands get passive OpenMP waits, and that choosing loads no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from brats.cli.parser import build_parser
from brats.cli.wait_policy import DEMO, apply_wait_policy, trains_alone, wait_policy
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


@pytest.mark.parametrize("present", ["ACTIVE", "PASSIVE"])
def test_a_policy_in_the_environment_is_kept(tmp_path, monkeypatch, present):
    monkeypatch.setenv("OMP_WAIT_POLICY", present)
    apply_wait_policy(build_parser().parse_args(["train", "--config", _config(tmp_path, 0)]))
    import os

    assert os.environ["OMP_WAIT_POLICY"] == present


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
