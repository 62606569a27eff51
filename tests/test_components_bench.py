"""bench/components.py (predicted tumour components, true or false, cored or coreless) and
bench/raw_predictions.py (raw predictions cached per case list)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import components  # noqa: E402
import raw_predictions  # noqa: E402


def _blob(shape, lo, hi, value, out=None):
    out = np.zeros(shape, np.uint8) if out is None else out
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    return out


def test_components_hand_computed():
    # three components on a 2 mm grid (8 uL per voxel): a 4x4x4 edema blob (0.512 mL, half of it inside the
    # reference), a 5x5x5 blob with a 2x2x2 ET core (1.0 mL, 0.064 mL core), a single voxel (under min_ml)
    shape = (20, 20, 20)
    pred = _blob(shape, (0, 0, 0), (4, 4, 4), 2)
    _blob(shape, (10, 10, 10), (15, 15, 15), 2, pred)
    _blob(shape, (11, 11, 11), (13, 13, 13), 3, pred)
    pred[19, 19, 19] = 2
    ref = _blob(shape, (0, 0, 0), (2, 4, 4), 1)
    rows = components.components(pred, ref, (2, 2, 2), min_ml=0.01)
    assert rows == [
        {"ml": 0.512, "core_ml": 0.0, "et_ml": 0.0, "in_ref": 0.5},
        {"ml": 1.0, "core_ml": 0.064, "et_ml": 0.064, "in_ref": 0.0},
    ]
    assert len(components.components(pred, ref, (2, 2, 2), min_ml=0)) == 3


def test_summarise_bins_kinds():
    rows = [
        {"ml": 1.5, "core_ml": 0.0, "et_ml": 0.0, "in_ref": 0.9},  # coreless, true, 0-2 mL
        {"ml": 12.0, "core_ml": 0.0, "et_ml": 0.0, "in_ref": 0.49},  # coreless, false, 10-20 mL
        {"ml": 30.0, "core_ml": 5.0, "et_ml": 2.0, "in_ref": 0.8},  # cored, true, >= 20 mL
        {"ml": 2.0, "core_ml": 0.001, "et_ml": 0.0, "in_ref": 0.5},  # cored (core == threshold), true, 2-5 mL
    ]
    s = components.summarise(rows, core_min_ml=0.001)
    assert s["coreless_true"] == {"count": [1, 0, 0, 0, 0], "ml": [1.5, 0, 0, 0, 0]}
    assert s["coreless_false"]["count"] == [0, 0, 0, 1, 0]
    assert s["cored_true"]["count"] == [0, 1, 0, 0, 1] and s["cored_true"]["ml"] == [0, 2.0, 0, 0, 30.0]
    assert s["cored_false"]["count"] == [0] * 5
    text = components.table({"r": {"result": {"summary": {"select": s}}}})
    assert "| r | select | coreless true | 1 (1.5) | 0 | 0 | 0 | 0 |" in text


def test_load_raw_predicts_again_for_other_cases(tmp_path, monkeypatch):
    """The cache is keyed by the case list: the same cases are read back, a larger cohort is predicted again."""
    from brats.synth import generate_cohort

    cases = generate_cohort(tmp_path / "all", 2, seed=0, shape=(48, 48, 32))
    one = tmp_path / "one"
    one.mkdir()
    shutil.copytree(cases[0], one / cases[0].name)
    calls = []

    def fake_predict(checkpoint, root, out, postprocess):
        # "predicts" each case's reference segmentation, so the loaded prediction equals the reference
        calls.append(Path(root))
        Path(out).mkdir(parents=True, exist_ok=True)
        for folder in sorted(Path(root).iterdir()):
            shutil.copy(folder / f"{folder.name}_seg.nii.gz", Path(out) / f"{folder.name}.nii.gz")

    monkeypatch.setattr(raw_predictions, "run_predict", fake_predict)
    run = tmp_path / "run"
    ids, preds, refs, _ = raw_predictions.load_raw(run, one, "select-x")
    assert ids == [cases[0].name] and np.array_equal(preds[0], refs[0]) and len(calls) == 1
    raw_predictions.load_raw(run, one, "select-x")
    assert len(calls) == 1  # same cases: read back
    ids, preds, _, _ = raw_predictions.load_raw(run, tmp_path / "all", "select-x")
    assert len(calls) == 2 and ids == [c.name for c in cases] and len(preds) == 2
