#!/usr/bin/env python
"""Seconds per training epoch by augmentation engine, loader processes and OpenMP wait policy, same run.

Each arm trains the config for ``--epochs`` epochs (no time budget) on the patch stores of an existing run
folder (``--run``: ``brats demo`` or ``brats extract`` wrote ``RUN/patches``), in its own process calling
``run_training``, because OpenMP reads ``OMP_WAIT_POLICY`` when torch loads (the arm sets it, or unsets it for
OpenMP's default). The first epoch is left out (oneDNN builds its kernels then); the figure is the mean of the
rest, validation included, from each arm's metrics.csv. Ratios are against the first arm (the patch engine, one
loader process, passive waits: the demo recipe before the thirtieth round). Run it on a quiet machine. Prints
JSON.

    python bench/epochs.py --run runs/demo --save epochs-epyc
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from results_io import load_now, write_result  # bench/ is on sys.path when a bench script runs

#: (name, augment.engine, train.num_workers, OMP_WAIT_POLICY; None: unset, OpenMP's default)
ARMS = [
    ("patch_1worker_passive", "patch", 1, "PASSIVE"),
    ("patch_1worker_default", "patch", 1, None),
    ("patch_0workers_passive", "patch", 0, "PASSIVE"),
    ("patch_0workers_default", "patch", 0, None),
    ("batch_1worker_passive", "batch", 1, "PASSIVE"),
    ("batch_0workers_passive", "batch", 0, "PASSIVE"),
    ("batch_0workers_default", "batch", 0, None),
]

#: One arm's process: run_training itself, so that the environment's policy is the one OpenMP reads.
TRAIN = (
    "import sys; from brats.config import load_config; from brats.train import run_training; "
    "run_training(load_config(sys.argv[1], sys.argv[2:]))"
)


def run_arm(
    config: str, run: Path, engine: str, workers: int, policy: str | None, epochs: int, extra: list[str]
) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        out.mkdir()
        (out / "patches").symlink_to((run / "patches").resolve())
        sets = [
            f"output_dir={out}",
            f"train.epochs={epochs}",
            "train.max_minutes=null",
            f"augment.engine={engine}",
            f"train.num_workers={workers}",
            *extra,
        ]
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if policy is not None:
            env["OMP_WAIT_POLICY"] = policy
        cmd = [sys.executable, "-c", TRAIN, config, *sets]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"error: {engine}/{workers}/{policy}: {done.stderr.strip().splitlines()[-1:]}")
        with open(out / "metrics.csv") as f:
            seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    rest = seconds[1:] or seconds
    return {"seconds_per_epoch": round(sum(rest) / len(rest), 2), "epochs": [round(s, 2) for s in seconds]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--run", type=Path, default=Path("runs/demo"), help="a run folder with patches/train.h5")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--save", metavar="NAME", help="also write the result to bench/results/NAME.json")
    args = p.parse_args()
    if not (args.run / "patches" / "train.h5").is_file():
        raise SystemExit(
            f"error: {args.run}/patches/train.h5 not found: run `brats demo --output-dir {args.run}` first"
        )
    load_before = load_now()
    arms = {}
    for name, engine, workers, policy in ARMS:
        arms[name] = run_arm(args.config, args.run, engine, workers, policy, args.epochs, args.set)
        print(f"{name}: {arms[name]['seconds_per_epoch']} s an epoch", file=sys.stderr)
    base = arms[ARMS[0][0]]["seconds_per_epoch"]
    out = {
        "bench": "epochs",
        "config": args.config,
        "overrides": args.set,
        "run": str(args.run),
        "arms": arms,
        "epochs_per_minute_vs_first": {k: round(base / v["seconds_per_epoch"], 2) for k, v in arms.items()},
    }
    if args.save:
        write_result(args.save, out, load_before)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
