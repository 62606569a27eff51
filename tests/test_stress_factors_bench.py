"""bench/stress_factors.py: each cohort is the train profile with one group of stress settings, and the table
renders a committed result."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import stress_factors  # noqa: E402

from brats.synth import DISJOINT, SynthProfile, get_profile  # noqa: E402

TRAIN, STRESS = get_profile("train"), get_profile("stress")
FIELDS = [f.name for f in dataclasses.fields(SynthProfile) if f.name != "name"]


def test_groups_cover_every_setting_once():
    grouped = [k for keys in stress_factors.GROUPS.values() for k in keys]
    assert sorted(grouped) == sorted(FIELDS)  # every setting in exactly one group
    assert set(DISJOINT) <= set(grouped)


def test_each_cohort_takes_only_its_groups_settings_from_stress():
    for group, keys in stress_factors.GROUPS.items():
        prof = stress_factors.group_profile(group)
        for name in FIELDS:
            want = STRESS if group == "all" or name in keys else TRAIN
            assert getattr(prof, name) == getattr(want, name), (group, name)
    assert stress_factors.group_settings("bias") == {"bias_std": "0.25,0.4"}
    assert stress_factors.group_settings("slices") == {"p_thick": "0.7", "slice_mm": "5.0,7.0"}


def test_table_of_a_committed_result():
    record = stress_factors.read_result("stress-factors-v14-base")
    lines = stress_factors.table(record["result"]).splitlines()
    assert len(lines) == 2 + len(stress_factors.GROUPS)
    bias = next(line for line in lines if line.startswith("| bias |"))
    assert "| bias_std | 0.396 / 0.382 / 0.402 |" in bias
