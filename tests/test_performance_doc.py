"""docs/performance.md is generated from bench/results/*.json (bench/report.py); raw results carry their machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
import results_io  # noqa: E402


def test_performance_doc_is_generated_from_results():
    assert report.DOC.read_text() == report.render(), "run: python bench/report.py"


def test_every_committed_result_has_machine_date_and_load():
    for path in sorted(results_io.RESULTS.glob("*.json")):
        rec = json.loads(path.read_text())
        assert rec["bench"] == path.stem
        assert {"cpu", "cores", "bf16", "amx", "flags"} <= set(rec["machine"]), path
        assert rec["date"].endswith("UTC") and len(rec["load"]["after"]) == 3, path
        assert isinstance(rec["result"], dict), path


def test_write_result_and_render(tmp_path):
    results_io.write_result(
        "synth",
        {
            "cases": 4,
            "results": [
                {"workers": 1, "seconds": 20.0, "seconds_per_case": 5.0},
                {"workers": 2, "seconds": 12.5, "seconds_per_case": 3.12},
            ],
        },
        load_before=[0.5, 0.4, 0.3],
        folder=tmp_path,
    )
    rec = results_io.read_result("synth", tmp_path)
    assert rec["load"]["before"] == [0.5, 0.4, 0.3] and rec["result"]["cases"] == 4
    assert not list(tmp_path.glob("*.tmp"))
    text = report.render(tmp_path)
    assert "| 1 | 20.00 | 5.00 |" in text and "| 2 | 12.50 | 3.12 |" in text
    assert "Two workers: 1.60x the speed of one." in text  # 20.0 / 12.5
    assert "load average (1 min) 0.50 before" in text
    for name in ("extract", "train", "predict"):
        assert f"Not measured yet: run `python bench/{name}.py`" in text


@pytest.mark.parametrize("payload", [{"a": 1, "b": {"c": [1, 2]}}])
def test_unknown_payload_renders_as_key_value_rows(tmp_path, payload):
    results_io.write_result("predict", payload, folder=tmp_path)
    text = report.render(tmp_path)
    assert "| `a` | 1 |" in text and "| `b.c` | [1, 2] |" in text
