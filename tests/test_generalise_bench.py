"""bench/generalise.py's --predict settings: parsed as YAML values, unknown keys refused with the valid ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import generalise  # noqa: E402


def test_parse_predict_reads_yaml_values():
    got = generalise.parse_predict(["windows=patch", "tta=true", "overlap=0.25", "et_min_ml=0"])
    assert got == {"windows": "patch", "tta": True, "overlap": 0.25, "et_min_ml": 0}
    assert generalise.parse_predict([]) == {}


@pytest.mark.parametrize("item", ["windows", "device=cuda", "=patch"])
def test_parse_predict_refuses_unknown_keys(item):
    with pytest.raises(ValueError, match="KEY one of windows, tta"):
        generalise.parse_predict([item])


def test_every_predict_key_is_a_run_predict_keyword():
    import inspect

    from brats.predict import run_predict

    assert set(generalise.PREDICT_KEYS) <= set(inspect.signature(run_predict).parameters)
