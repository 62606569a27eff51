"""Choosing float32 or bfloat16 on the CPU by measuring (``train.amp: auto``, ``brats predict --precision auto``).

bf16 autocast is 1.5-1.7x faster than float32 on CPUs with bf16 instructions (AVX-512 BF16, AMX) and 8-28x
*slower* on CPUs without them (see docs/performance.md). So ``auto`` on a CPU:

1. no bf16 instructions (``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is false): float32, nothing measured;
2. otherwise a short probe: ``warmup`` + ``steps`` calls of the actual step (a training step or a forward pass
   of the actual model on an input of the actual shape), once in float32 and once under bf16 autocast; the
   warm-up calls (oneDNN builds its kernels) are not timed. bf16 is chosen when its median step is at least
   ``MIN_SPEEDUP`` times faster.

The result is cached per machine in ``~/.cache/brats/precision.json`` (``BRATS_CACHE_DIR`` moves it), keyed by
the CPU model string, the torch version, the thread count and a hash of what was probed (model config, input
shape, kind), so the probe runs once per machine and model. A probe measured on a busy machine (other
processes using at least half the CPUs just before it, :func:`machine_busy`, or a quarter of them during its
own timed steps, which use them all) is marked ``busy``: other work slows both precisions alike and hides
bf16's gain, so the mark makes the next run that finds the machine quiet measure again and replace it, while
runs on a still-busy machine keep its choice (the same precision, the same outputs). The returned record says
what was chosen and why, with the probe's figures and the load; callers log it and keep it with their outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from brats.fs import atomic_write_text

__all__ = [
    "MIN_SPEEDUP",
    "cpu_has_bf16",
    "cpu_model",
    "cache_file",
    "probe_key",
    "BUSY_WINDOW_S",
    "machine_busy",
    "choose_cpu_precision",
    "autocast",
    "forward_precision",
]

log = logging.getLogger(__name__)

#: bf16 must be at least this much faster than float32 to be chosen (probe noise stays on the float32 side).
MIN_SPEEDUP = 1.1


def cpu_has_bf16() -> bool:
    """Whether oneDNN can run bf16 on this CPU (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - private API may move
        return False


def cpu_model() -> str:
    """The CPU model string (``/proc/cpuinfo`` "model name", else :func:`platform.processor`)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cache_file() -> Path:
    """``$BRATS_CACHE_DIR/precision.json`` (default ``~/.cache/brats/precision.json``)."""
    root = os.environ.get("BRATS_CACHE_DIR") or Path.home() / ".cache" / "brats"
    return Path(root) / "precision.json"


def probe_key(kind: str, what: Any) -> str:
    """Cache key: CPU model, torch version, threads, and a hash of ``(kind, what)`` (JSON-serialisable)."""
    digest = hashlib.sha256(json.dumps([kind, what], sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{cpu_model()}|torch {torch.__version__}|{torch.get_num_threads()} threads|{kind}|{digest}"


#: Seconds over which :func:`machine_busy` samples the CPUs' use.
BUSY_WINDOW_S = 0.3


def _cpu_jiffies(cpus: set[int], stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """``(busy, total)`` clock ticks of ``cpus`` since boot (``/proc/stat``'s per-CPU lines; the ``cpu`` total
    line where those do not cover ``cpus``); None where the file cannot be read."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    rows: dict[str, list[int]] = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and len(fields) >= 4:
            rows[name] = [int(f) for f in fields[:7]]  # user .. softirq; not steal (another VM's), guest
    picked = [rows[f"cpu{c}"] for c in cpus if f"cpu{c}" in rows]
    if len(picked) < len(cpus):
        picked = [rows["cpu"]] if "cpu" in rows else []
    if not picked:
        return None
    total = sum(sum(r) for r in picked)
    idle = sum(r[3] + (r[4] if len(r) > 4 else 0) for r in picked)  # idle + iowait
    return total - idle, total


def _affinity() -> set[int]:
    """The CPUs this process may run on."""
    return (
        set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    )


def _other_load(
    cpus: set[int],
    before: tuple[int, int] | None,
    after: tuple[int, int] | None,
    own_before: os.times_result,
    own_after: os.times_result,
    seconds: float,
) -> float | None:
    """CPUs' worth of work that processes other than this one did on ``cpus`` between two :func:`_cpu_jiffies`
    and :func:`os.times` readings ``seconds`` apart; None where a reading is missing or no tick passed."""
    if before is None or after is None or after[1] <= before[1] or seconds <= 0:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])  # of the CPUs' time, busy
    own = (own_after.user + own_after.system - own_before.user - own_before.system) / seconds
    return round(max(0.0, share * len(cpus) - own), 2)


def _timed_with_load(
    run: Callable[[], Any], clock: Callable[[], float] = time.monotonic
) -> tuple[Any, float | None]:
    """``run()``'s result and the CPUs' worth of work other processes did while it ran (:func:`_other_load`;
    None where ``/proc/stat`` cannot be read or ``BRATS_PROBE_IGNORE_LOAD=1``)."""
    if os.environ.get("BRATS_PROBE_IGNORE_LOAD") == "1":
        return run(), None
    cpus = _affinity()
    before, own_before, t0 = _cpu_jiffies(cpus), os.times(), clock()
    result = run()
    seconds = clock() - t0
    return result, _other_load(cpus, before, _cpu_jiffies(cpus), own_before, os.times(), seconds)


def machine_busy(window: float = BUSY_WINDOW_S) -> tuple[bool, float]:
    """``(busy, load)``: how many CPUs' worth of work other processes did over ``window`` seconds, and whether
    it is at least half the CPUs this process may use.

    Sampled from ``/proc/stat`` over the CPUs of this process's affinity while it sleeps, minus its own CPU
    time (:func:`os.times`; idle OpenMP threads may spin meanwhile). The 1-minute load average that this used to
    read counts the caller's own recent work, so on 2 cores a demo's probe, right after its own extraction, was
    always "busy". Where ``/proc/stat`` cannot be read, the load average stands in (the caller included), and
    where the OS has neither: ``(False, 0.0)``. ``BRATS_PROBE_IGNORE_LOAD=1`` makes every machine quiet (a test
    suite that needs one choice throughout, whatever its own load).
    """
    if os.environ.get("BRATS_PROBE_IGNORE_LOAD") == "1":
        return False, 0.0
    cpus = _affinity()
    before, own_before = _cpu_jiffies(cpus), os.times()
    if before is not None:
        time.sleep(window)
        load = _other_load(cpus, before, _cpu_jiffies(cpus), own_before, os.times(), window)
        if load is not None:
            return load >= len(cpus) / 2, load
    try:
        load = round(float(os.getloadavg()[0]), 2)
    except (OSError, AttributeError):
        return False, 0.0
    return load >= max(1.0, len(cpus) / 2), load


def autocast(dtype: torch.dtype | None, device_type: str = "cpu") -> Any:
    """``torch.autocast`` for ``dtype``, or a no-op context for float32 (``None``)."""
    return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)


def _time_steps(step: Callable[[], Any], dtype: torch.dtype | None, warmup: int, steps: int) -> float:
    with autocast(dtype):
        for _ in range(warmup):
            step()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def choose_cpu_precision(
    step: Callable[[], Any],
    kind: str,
    what: Any,
    warmup: int = 1,
    steps: int = 2,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Measure ``step`` in float32 and bf16 autocast on the CPU; return the choice and the figures.

    Args:
        step: one call of the work to compare (it must not change anything the caller keeps, e.g. it runs
            on a copy of the model).
        kind: ``train`` or ``predict`` (part of the cache key).
        what: what identifies the work besides the machine (model config, input shape), JSON-serialisable.
        warmup, steps: untimed and timed calls per precision (the median of the timed ones counts).
        use_cache: read and write the per-machine cache (a ``busy`` record is measured again on a quiet machine).

    Returns:
        ``{"choice": "bf16" | "fp32", "reason", "cpu", "key", "fp32_s", "bf16_s", "speedup", "load",
        "load_during", "busy", "cached"}`` (the seconds and speed-up are None when nothing was measured;
        ``load``: the CPUs other processes used just before or, if more, during the timed steps;
        ``load_during``: during them, None where not measured; ``busy``: at least half the CPUs before or a
        quarter during).
    """
    record: dict[str, Any] = {"cpu": cpu_model(), "fp32_s": None, "bf16_s": None, "speedup": None}
    if not cpu_has_bf16():
        return record | {"choice": "fp32", "reason": "this CPU has no bf16 instructions", "cached": False}
    key = probe_key(kind, what)
    path = cache_file()
    hit = _read_cache(path).get(key) if use_cache else None
    if not (isinstance(hit, dict) and hit.get("choice") in ("fp32", "bf16")):
        hit = None
    if hit is not None and not hit.get("busy"):
        return hit | {"cached": True, "key": key}  # a quiet machine's probe: the load is not even sampled
    busy, load = machine_busy()
    if hit is not None and busy:
        return hit | {"cached": True, "key": key}  # a busy machine's probe, and the machine is still busy
    (fp32, bf16), during = _timed_with_load(
        lambda: (_time_steps(step, None, warmup, steps), _time_steps(step, torch.bfloat16, warmup, steps))
    )
    # the timed steps use every CPU: a quarter of them taken by others can move the ratio past the 1.1x margin
    if during is not None:
        busy, load = busy or during >= len(_affinity()) / 4, max(load, during)
    speedup = fp32 / bf16 if bf16 > 0 else 0.0
    choice = "bf16" if speedup >= MIN_SPEEDUP else "fp32"
    record |= {
        "choice": choice,
        "reason": f"probe: bf16 {speedup:.2f}x float32 (chosen when >= {MIN_SPEEDUP}x)"
        + (
            f"; measured on a busy machine (other processes used {load} CPUs), so measured again once it is quiet"
            if busy
            else ""
        ),
        "fp32_s": round(fp32, 4),
        "bf16_s": round(bf16, 4),
        "speedup": round(speedup, 3),
        "key": key,
        "load": load,
        "load_during": during,
        "busy": busy,
    }
    if use_cache:
        try:
            cache = _read_cache(path)
            cache[key] = record
            atomic_write_text(path, json.dumps(cache, indent=1, sort_keys=True))
        except OSError as exc:  # a read-only home: the choice still holds for this run
            log.debug("cannot write the precision cache %s: %s", path, exc)
    return record | {"cached": False}


def forward_precision(
    model: Callable[[torch.Tensor], torch.Tensor],
    precision: str,
    device: torch.device,
    input_shape: tuple[int, ...],
    what: Any = None,
) -> tuple[torch.dtype | None, dict[str, Any]]:
    """Autocast dtype of a model's forward passes (prediction) for ``precision`` on ``device``, and why.

    ``fp32``: float32 (None). ``bf16``: bfloat16 (on a CPU without bf16 instructions much slower: a warning
    says so). ``auto``: float16 on CUDA; on a CPU, bf16 when :func:`choose_cpu_precision` measures forward
    passes of ``model`` on a random batch of ``input_shape`` faster in bf16 (cached per machine and ``what``).
    """
    if precision == "auto" and device.type == "cuda":
        record: dict[str, Any] = {"choice": "fp16", "reason": "CUDA device"}
    elif precision == "auto":
        x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0)).to(device)
        if x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)

        def step() -> None:
            with torch.inference_mode():
                model(x)

        record = choose_cpu_precision(step, "predict", {"model": what, "input": list(input_shape)})
    else:
        record = {"choice": precision, "reason": "requested"}
        if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
            log.warning("bf16 on a CPU without bf16 instructions is much slower than float32")
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    log.info("precision %s -> %s (%s)", precision, record["choice"], record["reason"])
    return dtypes[record["choice"]], record
