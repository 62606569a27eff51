"""bench/postprocess_select.py --combine: selection means and the select objective over models, by hand."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import postprocess_select  # noqa: E402


def _row(triple, select, stress):
    return {
        "min_component_ml": triple[0],
        "et_min_ml": triple[1],
        "core_min_ml": triple[2],
        "select": {"objective": select},
        "select_stress": {"objective": stress},
        "selection_mean": round((select + stress) / 2, 4),
    }


def _record(rows):
    return {"result": {"rows": [_row(*r) for r in rows]}}


def test_combine_prints_the_config_row_and_its_select_objective(tmp_path):
    config = tmp_path / "pp.yaml"
    config.write_text("predict:\n  postprocess: {min_component_ml: 1.0, et_min_ml: 0.2, core_min_ml: 0.05}\n")
    records = {
        "a": _record([((0, 0, 0), 0.6, 0.2), ((1, 0.2, 0.05), 0.8, 0.4), ((0.5, 0, 0), 0.9, 0.5)]),
        "b": _record([((0, 0, 0), 0.7, 0.1), ((1, 0.2, 0.05), 0.6, 0.2), ((0.5, 0, 0), 0.5, 0.1)]),
    }
    text = postprocess_select.combine(records, config)
    lines = text.splitlines()
    # selection means: config row (0.6, 0.4) -> 0.5; best mean is 0.5 / 0 / 0 (0.7, 0.3) -> 0.5 as well, and the
    # tie goes to the weaker rules (smaller core_min_ml first)
    assert "| pp.yaml | 1 / 0.2 / 0.05 | 0.600 | 0.400 | 0.500 |" in lines
    assert "| best mean | 0.5 / 0 / 0 | 0.700 | 0.300 | 0.500 |" in lines
    assert lines[-1] == "pp.yaml (1 / 0.2 / 0.05): select objective 0.800 / 0.600, mean 0.700"
