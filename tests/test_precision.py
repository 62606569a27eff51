"""Precision choice by measurement (``train.amp: auto``, ``brats predict --precision``), box windows and
batch-norm folding (issue 17)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import brats.precision as precision
from brats.config import ModelConfig
from brats.networks import build_model
from brats.predict import predict_volume
from brats.predict.fuse import fold_batchnorm
from brats.synth import generate_case

torch.set_num_threads(1)

HAS_BF16 = precision.cpu_has_bf16()


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BRATS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    cfg = ModelConfig(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    model = build_model(cfg, in_channels=4, classes=4).eval()
    with torch.no_grad():  # batch-norm statistics of a trained net, so folding has something to fold
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def small_case():
    images, _, _ = generate_case(0, 0, shape=(64, 64, 24))
    image = np.stack([images[m] for m in ("t1", "t1ce", "t2", "flair")]).astype(np.float32)
    brain = image.any(0)
    mean = image[:, brain].mean(1)[:, None, None, None]
    std = image[:, brain].std(1)[:, None, None, None]
    return np.where(brain, (image - mean) / std, 0).astype(np.float32)


def test_no_bf16_instructions_picks_fp32_without_measuring(monkeypatch, cache_dir):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    calls = []
    record = precision.choose_cpu_precision(lambda: calls.append(1), "predict", {"m": 1})
    assert record["choice"] == "fp32" and "no bf16" in record["reason"] and calls == []
    assert not (cache_dir / "precision.json").exists()


@pytest.mark.parametrize("bf16_faster", [True, False])
def test_probe_picks_the_faster_and_caches_it(monkeypatch, cache_dir, bf16_faster):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    calls = []

    def fake_time(step, dtype, warmup, steps):  # the probe's figures, without timing anything
        calls.append(dtype)
        return (0.5 if bf16_faster else 2.0) if dtype is torch.bfloat16 else 1.0

    monkeypatch.setattr(precision, "_time_steps", fake_time)
    first = precision.choose_cpu_precision(lambda: None, "train", {"model": "x"})
    assert first["choice"] == ("bf16" if bf16_faster else "fp32") and not first["cached"]
    assert first["fp32_s"] == 1.0 and calls == [None, torch.bfloat16]
    again = precision.choose_cpu_precision(lambda: None, "train", {"model": "x"})
    assert again["cached"] and again["choice"] == first["choice"] and len(calls) == 2
    other = precision.choose_cpu_precision(lambda: None, "train", {"model": "y"})  # another model: measured
    assert not other["cached"] and len(calls) == 4
    cache = json.loads((cache_dir / "precision.json").read_text())
    assert len(cache) == 2 and all(k.startswith(precision.cpu_model()) for k in cache)


def test_a_busy_machines_probe_is_kept_while_busy_and_measured_again_when_quiet(monkeypatch, cache_dir):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "machine_busy", lambda: (True, 3.2))
    calls = []

    def fake_time(step, dtype, warmup, steps):  # other work slows both alike: bf16's gain hidden
        calls.append(dtype)
        return (
            (0.94 if dtype is torch.bfloat16 else 0.95)
            if precision.machine_busy()[0]
            else (0.23 if dtype is torch.bfloat16 else 0.39)
        )

    monkeypatch.setattr(precision, "_time_steps", fake_time)
    first = precision.choose_cpu_precision(lambda: None, "train", {"model": "x"})
    assert first["choice"] == "fp32" and first["busy"] and first["load"] == 3.2
    assert "busy machine (other processes used 3.2 CPUs)" in first["reason"]
    again = precision.choose_cpu_precision(
        lambda: None, "train", {"model": "x"}
    )  # still busy: the same choice
    assert again["cached"] and again["choice"] == "fp32" and len(calls) == 2
    monkeypatch.setattr(precision, "machine_busy", lambda: (False, 0.1))
    quiet = precision.choose_cpu_precision(lambda: None, "train", {"model": "x"})  # quiet: measured again
    assert not quiet["cached"] and quiet["choice"] == "bf16" and not quiet["busy"] and len(calls) == 4
    kept = precision.choose_cpu_precision(lambda: None, "train", {"model": "x"})
    assert kept["cached"] and kept["choice"] == "bf16" and len(calls) == 4

    def no_sampling():
        raise AssertionError("a quiet machine's cached probe needs no look at the load")

    monkeypatch.setattr(precision, "machine_busy", no_sampling)  # sampling sleeps BUSY_WINDOW_S
    assert precision.choose_cpu_precision(lambda: None, "train", {"model": "x"})["choice"] == "bf16"


def test_load_during_the_timed_steps_is_measured(monkeypatch):
    """Other processes' CPUs while the probe's steps ran: the CPUs' busy ticks minus this process's own time."""
    monkeypatch.delenv("BRATS_PROBE_IGNORE_LOAD", raising=False)
    monkeypatch.setattr(precision, "_affinity", lambda: {0, 1})
    times_now = os.times

    def during(busy_ticks: int, own_seconds: float):
        # 2 CPUs x 100 ticks over the run's 1 s, busy_ticks of them busy; own_seconds of this process's CPU
        ticks = iter([(0, 0), (busy_ticks, 200)])
        times = iter([os.times_result((0.0, 0.0, 0, 0, 0)), os.times_result((own_seconds, 0.0, 0, 0, 0))])
        monkeypatch.setattr(precision, "_cpu_jiffies", lambda cpus: next(ticks))
        monkeypatch.setattr(precision.os, "times", lambda: next(times))
        clock = iter([10.0, 11.0])
        return precision._timed_with_load(lambda: "ran", clock=lambda: next(clock))

    assert during(200, 2.0) == ("ran", 0.0)  # both CPUs busy with this process: nobody else
    assert during(200, 0.8) == ("ran", 1.2)  # 2 CPUs busy, 0.8 of them this process: 1.2 by others
    assert during(50, 0.5) == ("ran", 0.0)
    monkeypatch.setattr(precision.os, "times", times_now)
    monkeypatch.setattr(precision, "_cpu_jiffies", lambda cpus: None)  # no /proc/stat
    assert precision._timed_with_load(lambda: "ran") == ("ran", None)
    monkeypatch.setenv("BRATS_PROBE_IGNORE_LOAD", "1")
    assert precision._timed_with_load(lambda: "ran") == ("ran", None)


def test_a_probe_disturbed_while_it_measures_is_busy(monkeypatch, cache_dir):
    """Quiet just before the probe, but another process took 1.2 of 2 CPUs while it timed its steps (bf16 looked
    1.07x): the record is busy, so the next run on a quiet machine measures again (a bench base run took
    float32 this way on 2026-12-07 while a type check ran beside it)."""
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "machine_busy", lambda: (False, 0.1))
    monkeypatch.setattr(precision, "_affinity", lambda: {0, 1})
    loads = iter([0.3, 0.5, 1.2, 0.0])

    def timed(run, clock=None):
        load = next(loads)
        quiet = {None: 0.39, torch.bfloat16: 0.23}
        disturbed = {None: 0.30, torch.bfloat16: 0.28}
        monkeypatch.setattr(precision, "_time_steps", lambda s, d, w, n: (disturbed if load else quiet)[d])
        return run(), load

    monkeypatch.setattr(precision, "_timed_with_load", timed)
    # 2 CPUs: busy from half a CPU taken from the timed steps (a quarter of them)
    below = precision.choose_cpu_precision(lambda: None, "train", {"model": "x"}, use_cache=False)
    assert not below["busy"] and below["load"] == 0.3 and below["load_during"] == 0.3
    half = precision.choose_cpu_precision(lambda: None, "train", {"model": "x"}, use_cache=False)
    assert half["busy"] and half["load"] == 0.5
    first = precision.choose_cpu_precision(lambda: None, "train", {"model": "x"})
    assert first["choice"] == "fp32" and first["busy"] and first["load"] == 1.2
    assert "busy machine (other processes used 1.2 CPUs)" in first["reason"]
    again = precision.choose_cpu_precision(lambda: None, "train", {"model": "x"})  # quiet now: measured again
    assert not again["cached"] and again["choice"] == "bf16" and not again["busy"] and again["load"] == 0.1
    kept = precision.choose_cpu_precision(lambda: None, "train", {"model": "x"})
    assert kept["cached"] and kept["choice"] == "bf16"


STAT = """cpu  300 0 100 1000 50 0 0 40 0 0
cpu0 100 0 50 500 25 0 0 20 0 0
cpu1 200 0 50 500 25 0 0 20 0 0
intr 12345
"""


def test_cpu_jiffies_reads_the_affinity_cpus(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(STAT)
    # busy = user + nice + system (+ irq, softirq), idle = idle + iowait; steal (the 8th field: time the
    # hypervisor gave another machine) is neither
    assert precision._cpu_jiffies({0}, stat) == (150, 675)
    assert precision._cpu_jiffies({0, 1}, stat) == (400, 1450)
    assert precision._cpu_jiffies({0, 7}, stat) == (400, 1450)  # cpu7 not listed: the total line
    assert precision._cpu_jiffies({0}, tmp_path / "missing") is None


def test_machine_busy_counts_other_processes_not_its_own(monkeypatch):
    monkeypatch.delenv("BRATS_PROBE_IGNORE_LOAD", raising=False)
    monkeypatch.setattr(precision.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(precision.time, "sleep", lambda s: None)

    def sample(busy_share: float, own_cpus: float):
        # the CPUs' ticks over the window (2 CPUs x 30 ticks), of which busy_share busy; this process's own
        # CPU seconds over the 0.3 s window: own_cpus CPUs' worth
        ticks = iter([(1000, 5000), (1000 + round(60 * busy_share), 5060)])
        times = iter([os.times_result((0.0, 0.0, 0, 0, 0)), os.times_result((own_cpus * 0.3, 0.0, 0, 0, 0))])
        monkeypatch.setattr(precision, "_cpu_jiffies", lambda cpus: next(ticks))
        monkeypatch.setattr(precision.os, "times", lambda: next(times))
        return precision.machine_busy(window=0.3)

    assert sample(1.0, 2.0) == (False, 0.0)  # both CPUs busy with this process's own threads: quiet
    assert sample(1.0, 1.0) == (True, 1.0)  # one CPU's worth by others: half of 2, busy
    assert sample(0.5, 0.0) == (True, 1.0)
    assert sample(0.25, 0.0) == (False, 0.5)
    monkeypatch.setenv("BRATS_PROBE_IGNORE_LOAD", "1")  # what the suite's conftest sets
    assert precision.machine_busy() == (False, 0.0)


def test_machine_busy_falls_back_on_the_load_average(monkeypatch):
    monkeypatch.delenv("BRATS_PROBE_IGNORE_LOAD", raising=False)
    monkeypatch.setattr(precision, "_cpu_jiffies", lambda cpus: None)  # no /proc/stat
    monkeypatch.setattr(precision.os, "getloadavg", lambda: (1.0, 0.0, 0.0))
    monkeypatch.setattr(precision.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert precision.machine_busy() == (True, 1.0)  # 2 CPUs: busy from a load of 1
    monkeypatch.setattr(precision.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert precision.machine_busy() == (False, 1.0)  # 8 CPUs: busy from 4
    monkeypatch.setattr(precision.os, "getloadavg", lambda: (4.0, 0.0, 0.0))
    assert precision.machine_busy() == (True, 4.0)

    def no_load():
        raise OSError("no load average here")

    monkeypatch.setattr(precision.os, "getloadavg", no_load)
    assert precision.machine_busy() == (False, 0.0)


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="no /proc/stat")
def test_machine_busy_sees_spinning_processes_and_not_its_own_threads(monkeypatch):
    monkeypatch.delenv("BRATS_PROBE_IGNORE_LOAD", raising=False)
    n = len(os.sched_getaffinity(0))
    if n > 8:
        pytest.skip("more CPUs than this test should keep busy")
    if precision.machine_busy(window=0.5)[0]:  # its second half needs a machine no other process keeps busy
        pytest.skip("other processes keep this machine busy")
    spin = "import time\nend = time.time() + 20\nwhile time.time() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(n)]
    try:
        time.sleep(0.5)  # let them start
        busy, load = precision.machine_busy(window=0.5)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert busy and load >= n / 2
    # this process's own busy thread is not another process: quiet once the spinners are gone
    stop = threading.Event()

    def own_spin():
        while not stop.is_set():
            pass

    thread = threading.Thread(target=own_spin)
    thread.start()
    try:
        own_busy, own_load = precision.machine_busy(window=0.5)
    finally:
        stop.set()
        thread.join()
    assert not own_busy and own_load < n / 2


def test_probe_excludes_the_warm_up_step(monkeypatch):
    seen = []
    precision._time_steps(lambda: seen.append(torch.is_autocast_cpu_enabled()), torch.bfloat16, 1, 2)
    assert seen == [True, True, True]  # 1 untimed + 2 timed, all under autocast


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 instructions")
def test_bf16_labels_agree_with_fp32_inside_the_brain(unet, small_case):
    brain = small_case.any(0)
    fp32 = predict_volume(unet, small_case, [32, 32], multiple=8, windows="patch").argmax(0)
    bf16 = predict_volume(unet, small_case, [32, 32], multiple=8, windows="patch", amp_dtype=torch.bfloat16)
    assert (bf16.argmax(0) == fp32)[brain].mean() >= 0.99


@pytest.mark.skipif(HAS_BF16, reason="this CPU has bf16 instructions")
def test_auto_on_a_cpu_without_bf16_is_fp32(unet, cache_dir):
    dtype, record = precision.forward_precision(unet, "auto", torch.device("cpu"), (2, 4, 32, 32))
    assert dtype is None and record["choice"] == "fp32"


def test_forward_precision_requested_and_auto(unet, cache_dir):
    cpu = torch.device("cpu")
    assert precision.forward_precision(unet, "fp32", cpu, (1,))[0] is None
    assert precision.forward_precision(unet, "bf16", cpu, (1,))[0] is torch.bfloat16
    dtype, record = precision.forward_precision(unet, "auto", cpu, (2, 4, 32, 32), what="tiny")
    assert record["choice"] in ("fp32", "bf16") and dtype is (
        torch.bfloat16 if record["choice"] == "bf16" else None
    )


def test_box_windows_cover_every_brain_voxel_once(unet, small_case):
    """One window per slice's brain box: an identity "model" (logits = one-hot of channel 0) gives the labels
    back exactly, and a real model's probabilities sum to 1 with background outside the brain."""
    from tests.test_infer import label_volume, one_hot_of_label_channel

    labels, vol = label_volume()
    prob = predict_volume(one_hot_of_label_channel, vol, [32, 32], multiple=8, windows="box")
    np.testing.assert_array_equal(prob.argmax(0), labels)
    brain = small_case.any(0)
    box = predict_volume(unet, small_case, [32, 32], multiple=8, windows="box")
    assert np.allclose(box.sum(0), 1, atol=1e-5) and (box[0][~brain] == 1).all()


def test_fold_batchnorm_keeps_the_outputs(unet):
    folded = copy.deepcopy(unet)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in unet.modules())
    assert fold_batchnorm(folded) == n_bn
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), unet(x), atol=1e-4, rtol=1e-4)
    training = copy.deepcopy(unet).train()
    assert fold_batchnorm(training) == 0


def test_fold_batchnorm_leaves_timm_norm_act_layers_alone():
    """timm's BatchNormAct2d (a BatchNorm2d subclass) applies its activation too: folding it would drop it."""
    from timm.layers import BatchNormAct2d

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), BatchNormAct2d(3, act_layer=torch.nn.ReLU)).eval()
    model[1].running_mean.uniform_(-1, 1)
    x = torch.randn(1, 2, 8, 8)
    with torch.no_grad():
        before = model(x)
        assert fold_batchnorm(model) == 0
        torch.testing.assert_close(model(x), before)


def test_train_amp_auto_probe_leaves_the_model_alone(unet, cache_dir, monkeypatch):
    from brats.config import TrainConfig
    from brats.train.runtime import Runtime, probe_amp

    model = copy.deepcopy(unet).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    rt = Runtime(torch.device("cpu"), None, False)
    loss = torch.nn.CrossEntropyLoss()
    record = probe_amp(TrainConfig(amp="auto"), rt, model, loss, (2, 4, 32, 32), {"m": "tiny"})
    assert record is not None and record["choice"] in ("fp32", "bf16")
    assert rt.amp_dtype is (torch.bfloat16 if record["choice"] == "bf16" else None)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    assert probe_amp(TrainConfig(amp="off"), rt, model, loss, (2, 4, 32, 32), {}) is None


def test_train_amp_auto_log_line_names_only_measured_times(unet, cache_dir, monkeypatch, caplog):
    """On a CPU without bf16 nothing is timed: the log gives the reason, not 'float32 None s'."""
    import logging

    from brats.config import TrainConfig
    from brats.train.runtime import Runtime, probe_amp

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    rt = Runtime(torch.device("cpu"), None, False)
    with caplog.at_level(logging.INFO, logger="brats.train.runtime"):
        record = probe_amp(TrainConfig(amp="auto"), rt, unet, torch.nn.CrossEntropyLoss(), (2, 4, 32, 32), {})
    assert record is not None and record["fp32_s"] is None
    line = next(r.getMessage() for r in caplog.records if "train.amp=auto" in r.getMessage())
    assert line.endswith("fp32 (this CPU has no bf16 instructions)"), line
