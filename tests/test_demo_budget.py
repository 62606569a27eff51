"""The demo's training budget: cut, from the first stages' seconds, so that the demo ends within its total."""

import json

import pytest
import yaml

import brats.demo
import brats.demo_budget
from brats.demo import run_demo
from brats.demo_budget import FIXED_SECONDS, MIN_MINUTES, STRESS_FACTOR, TEST_FACTOR, fit_budget


def test_fit_budget_hand_computed():
    # after training: (10 * 2.5 + 8 * 2.75) * 4 s + 8 * 2 s + 15 s = 188 + 16 + 15 = 219 s;
    # left of 15 min after 201 s: (900 - 201 - 219) / 60 = 8.0 min, under the configured 8.5
    assert (TEST_FACTOR, STRESS_FACTOR, FIXED_SECONDS) == (2.5, 2.75, 15.0)
    b = fit_budget(8.5, 201.0, 2.0, 4.0, n_test=10, n_stress=8)
    assert b.after_train_seconds == pytest.approx(219.0)
    assert b.minutes == pytest.approx(8.0) and b.cut
    assert b.to_dict()["configured_minutes"] == 8.5 and b.to_dict()["cut"] is True
    # rounded down to 0.01 min: 1 s more already costs 0.02 min
    assert fit_budget(8.5, 202.0, 2.0, 4.0, n_test=10, n_stress=8).minutes == pytest.approx(7.98)
    # no stress cohort: (900 - 201 - 25 * 4 - 15) / 60 = 9.73 min > 8.5: not cut
    b = fit_budget(8.5, 201.0, 2.0, 4.0, n_test=10, n_stress=0)
    assert b.minutes == 8.5 and not b.cut


def test_fit_budget_keeps_a_fast_machine_s_budget_and_a_floor_on_a_slow_one():
    # the bf16 EPYC of docs/quickstart.md: 24.4 s to synthesise 36 cases, 74.4 s to extract them
    fast = fit_budget(8.5, 24.4 + 74.4, 24.4 / 36, 74.4 / 36, n_test=9, n_stress=8)
    assert fast.minutes == 8.5 and not fast.cut
    # the EPYC without bf16 (67.7 s, 145.5 s), which ran 4.8 s over 15 minutes with 8.5: now cut to 7.94
    slow = fit_budget(8.5, 67.7 + 145.5, 67.7 / 36, 145.5 / 36, n_test=9, n_stress=8)
    assert slow.minutes == pytest.approx(7.94) and slow.cut
    assert fit_budget(8.5, 890.0, 2.0, 4.0, n_test=10, n_stress=8).minutes == MIN_MINUTES
    # a user's shorter budget is never lengthened
    assert fit_budget(2.0, 100.0, 1.0, 2.0, n_test=9, n_stress=8).minutes == 2.0
    assert fit_budget(8.5, 0.0, 0.0, 0.0, n_test=0, n_stress=0, total_minutes=5.0).minutes == pytest.approx(
        4.75
    )


def test_demo_cuts_its_default_budget_and_records_it(tmp_path, monkeypatch, capsys):
    # a 0.001-minute total leaves nothing after extraction: the budget falls to the floor (0.05 min here)
    monkeypatch.setattr(brats.demo, "TOTAL_MINUTES", 0.001)
    monkeypatch.setattr(brats.demo_budget, "MIN_MINUTES", 0.05)
    out = tmp_path / "demo"
    result = run_demo(
        out,
        n_cases=4,
        shape=(64, 64, 40),
        stress_cases=0,
        progress=True,
        overrides=["train.epochs=1", "train.steps_per_epoch=2", "train.val_max_batches=1"],
    )
    budget = json.loads((out / "demo.json").read_text())["train_budget"]
    assert budget == result["train_budget"]
    assert budget["minutes"] == 0.05 and budget["configured_minutes"] == 8.5 and budget["cut"] is True
    assert budget["total_minutes"] == 0.001 and budget["elapsed_seconds"] > 0
    # the run records the budget it trained with
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["max_minutes"] == 0.05
    assert "(budget 0.05 min: 8.5 cut so that the demo ends within 0.001 min)" in capsys.readouterr().out
    html = (out / "report.html").read_text()
    assert "0.05 min (8.5 configured, cut so that the demo ends within 0.001 min)" in html
