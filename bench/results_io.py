"""Raw benchmark results: one JSON file per benchmark under ``bench/results/<name>.json``.

Every benchmark ends with::

    from results_io import write_result   # bench/ is on sys.path when a bench script runs
    write_result("synth", payload)

which wraps ``payload`` (the benchmark's own figures, JSON-serialisable) with where and when it was measured::

    {"bench": "synth", "date": "2026-12-01 22:30 UTC", "machine": {...}, "load": {...}, "result": payload}

``machine``: CPU model (``lscpu``/``/proc/cpuinfo``), logical cores, bf16/AMX flags, memory, Python, torch and its
thread count. ``load``: the 1/5/15-minute load averages before the benchmark (``before``, if the caller passes
them via :func:`load_now` at its start) and after it. ``docs/performance.md`` is generated from these files by
``bench/report.py``; nothing in the docs is typed by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
_FLAGS = re.compile(r"\b(amx_bf16|amx_int8|amx_tile|avx512_bf16|avx512f|avx2)\b")


def load_now() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded to 0.01 (``[]`` where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict:
    """Where a figure was measured: CPU model, cores, ISA flags that matter for bf16, memory, versions."""
    cpu, flags, mem_gb = platform.processor() or platform.machine(), set(), None
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        cpu = model.group(1).strip() if model else cpu
        flags = set(_FLAGS.findall(text))
    except OSError:
        pass
    try:
        mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem_gb = round(int(mem.group(1)) / 2**20, 1) if mem else None
    except OSError:
        pass
    out: dict = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "flags": sorted(flags),
        "bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
        "amx": "amx_tile" in flags,
        "memory_gb": mem_gb,
        "python": platform.python_version(),
    }
    try:
        import torch

        out.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
        out["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return out


def write_result(
    name: str, payload: dict, load_before: list[float] | None = None, folder: Path | None = None
) -> Path:
    """Write ``payload`` as ``bench/results/<name>.json`` with machine, date and load; return the path.

    The file is written to a temporary name and renamed, so a crash never leaves a half-written result.
    """
    folder = Path(folder) if folder is not None else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "bench": name,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load": {"before": load_before or [], "after": load_now()},
        "result": payload,
    }
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_result(name: str, folder: Path | None = None) -> dict | None:
    """The record written by :func:`write_result` for ``name``, or None if the benchmark has not been run."""
    path = (Path(folder) if folder is not None else RESULTS) / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def read_results(prefix: str, names: list[str], folder: Path | None = None) -> dict[str, dict]:
    """The saved records ``<prefix>-<name>`` by name, in the order given.

    Raises:
        ValueError: naming every one not saved (``no saved result a, b in <folder>``).
    """
    recs: dict[str, dict] = {}
    missing = []
    for n in names:
        rec = read_result(f"{prefix}-{n}", folder)
        if rec is None:
            missing.append(n)
        else:
            recs[n] = rec
    if missing:
        raise ValueError(f"no saved result {', '.join(missing)} in {folder or RESULTS}")
    return recs
