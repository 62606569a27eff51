"""bench/cached_cohort.py: a bench cohort is generated once, reused, and refused when its profile changed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from brats.errors import BratsError
from brats.synth import with_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from cached_cohort import cached_cohort, profile_record  # noqa: E402

SHAPE = (48, 48, 32)


def test_generated_once_then_reused(tmp_path):
    root = cached_cohort(tmp_path / "c", 2, 5, "stress", shape=SHAPE)
    cases = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert len(cases) == 2
    record = json.loads((root / "done").read_text())
    assert record == profile_record("stress") and record["noise"] == [0.06, 0.09]
    stamp = {p: p.stat().st_mtime_ns for p in root.rglob("*.nii.gz")}
    assert cached_cohort(root, 2, 5, "stress", shape=SHAPE) == root  # reused: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.nii.gz")} == stamp


def test_a_changed_profile_is_refused_in_one_line(tmp_path):
    root = cached_cohort(tmp_path / "c", 1, 5, "train", shape=SHAPE)
    other = with_settings("train", {"noise": "0.0,0.02"})
    with pytest.raises(BratsError, match=r"generated with noise=\[0.01, 0.06\], not \[0.0, 0.02\]") as err:
        cached_cohort(root, 1, 5, other, shape=SHAPE)
    assert "delete the folder" in str(err.value) and "\n" not in str(err.value)
    # the same values under another name (a setting given at its own value) are the same cases: reused
    same = with_settings("train", {"noise": "0.01,0.06"})
    assert same.name != "train" and cached_cohort(root, 1, 5, same, shape=SHAPE) == root


def test_a_record_from_before_is_taken_as_the_current_profile(tmp_path):
    root = cached_cohort(tmp_path / "c", 1, 5, "train", shape=SHAPE)
    (root / "done").write_text("ok\n")
    cached_cohort(root, 1, 5, "train", shape=SHAPE)
    assert json.loads((root / "done").read_text()) == profile_record("train")
