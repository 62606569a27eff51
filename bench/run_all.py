#!/usr/bin/env python
"""Run every benchmark (synthesis, extraction, training, prediction), keep the raw results, regenerate the doc.

Each benchmark is a script in this folder run in a fresh process, one after the other so that none slows another
down. Each writes its raw result to ``bench/results/<name>.json`` with :func:`results_io.write_result` (machine,
date, load); for a script that only prints its JSON (last object of its output), this script writes that file
for it. Finally ``docs/performance.md`` is regenerated from the results (``bench/report.py``). Usage:

    python bench/run_all.py [--only synth,extract] [--no-doc]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from results_io import RESULTS, load_now, write_result  # noqa: E402

BENCHES = ["synth", "extract", "train", "predict"]


def _last_json(text: str) -> dict | None:
    """The last JSON object printed (one line or indented over several)."""
    decoder = json.JSONDecoder()
    starts = [i for i, ch in enumerate(text) if ch == "{" and (i == 0 or text[i - 1] == "\n")]
    for i in reversed(starts):
        try:
            obj, _ = decoder.raw_decode(text[i:])
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def run_one(name: str, extra: list[str]) -> dict:
    """Run ``bench/<name>.py``; make sure ``bench/results/<name>.json`` holds its result; return a short status."""
    path = RESULTS / f"{name}.json"
    mtime = path.stat().st_mtime if path.is_file() else None
    before = load_now()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *extra], capture_output=True, text=True)
    seconds = round(time.perf_counter() - t0, 1)
    if proc.returncode != 0:
        return {
            "bench": name,
            "error": (proc.stderr.strip().splitlines() or ["failed"])[-1],
            "seconds": seconds,
        }
    wrote_itself = path.is_file() and path.stat().st_mtime != mtime
    if not wrote_itself:
        result = _last_json(proc.stdout)
        if result is None:
            return {"bench": name, "error": "printed no JSON", "seconds": seconds}
        write_result(name, result, before)
    return {"bench": name, "result": str(path), "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(BENCHES), help="comma-separated subset of " + ",".join(BENCHES)
    )
    parser.add_argument("--no-doc", action="store_true", help="do not regenerate docs/performance.md")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {BENCHES}")
    status = []
    for name in names:
        print(f"running bench/{name}.py ...", file=sys.stderr, flush=True)
        status.append(run_one(name, []))
        print(json.dumps(status[-1]), file=sys.stderr, flush=True)
    if not args.no_doc:
        report.main([])
    print(json.dumps(status, indent=2))
    return 1 if any("error" in s for s in status) else 0


if __name__ == "__main__":
    sys.exit(main())
