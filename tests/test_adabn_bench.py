"""bench/adabn.py: the adapted copy holds the batch norms' statistics of the case's own batches, averaged over
them, and leaves the checkpoint's model untouched; the table reads a saved result."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import adabn  # noqa: E402

import brats.predict  # noqa: E402


def test_adapted_copy_holds_the_average_of_the_case_batches(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU()).eval()
    model[1].running_mean.fill_(5.0)
    model[1].running_var.fill_(9.0)
    # the "case": two batches of windows, the second brighter, as predict_volume would feed them
    batches = [torch.randn(4, 2, 8, 8), torch.randn(4, 2, 8, 8) * 2 + 1]

    def fake_predict(net, case, settings, loaded=None):
        with torch.no_grad():
            for x in batches:
                net(x)

    monkeypatch.setattr(brats.predict, "predict_probabilities", fake_predict)
    out = adabn.adapted(model, "case", settings=None, loaded=None)
    with torch.no_grad():
        feats = [model[0](x) for x in batches]
    want_mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)  # momentum None: plain average
    want_var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    assert torch.allclose(out[1].running_mean, want_mean, atol=1e-5)
    assert torch.allclose(out[1].running_var, want_var, atol=1e-4)
    assert not out.training and not out[1].training
    # the checkpoint's model keeps its statistics and weights
    assert torch.all(model[1].running_mean == 5.0) and torch.all(model[1].running_var == 9.0)
    assert torch.equal(out[0].weight, model[0].weight)


def test_table_reads_a_saved_result_and_names_a_missing_one(tmp_path, monkeypatch, capsys):
    arm = {"WT": 0.5, "TC": 0.4, "ET": 0.6, "lesion_WT_f1": 0.7}
    stress = {"WT": 0.2, "TC": 0.1, "ET": 0.3, "lesion_WT_f1": 0.2}
    saved = {
        "result": {
            "cohorts": {
                "select": {"base": arm, "adabn": arm | {"WT": 0.8}},
                "select_stress": {"base": stress, "adabn": stress},
            }
        }
    }
    monkeypatch.setattr(adabn, "read_result", lambda name: saved if name == "adabn-x" else None)
    text = adabn.table(["x"])
    assert "| x | select | base | 0.500 / 0.400 / 0.600 | 0.700 | 0.500 |" in text
    assert "| x | select | adabn | 0.800 / 0.400 / 0.600 | 0.700 | 0.600 |" in text
    # (0.5 + 0.2) / 2 and (0.6 + 0.2) / 2
    assert "x: selection mean base 0.350, adabn 0.400 (+0.050)" in text
    assert adabn.main(["--table", "y"]) == 2
    assert "no saved result bench/results/adabn-y.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        adabn.main(["--name", "z"])  # --run missing


def test_a_batch_of_one_value_per_channel_leaves_the_statistics(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3)).eval()
    big, tiny = torch.randn(4, 2, 8, 8), torch.randn(1, 2, 1, 1)  # the second: one window pooled to 1 x 1

    def fake_predict(net, case, settings, loaded=None):
        with torch.no_grad():
            net(big)
            net(tiny)  # training-mode batch norm would raise here

    monkeypatch.setattr(brats.predict, "predict_probabilities", fake_predict)
    out = adabn.adapted(model, "case", settings=None, loaded=None)
    with torch.no_grad():
        want = model[0](big).mean(dim=(0, 2, 3))
    assert torch.allclose(out[1].running_mean, want, atol=1e-5) and int(out[1].num_batches_tracked) == 1
    assert not out[1]._forward_pre_hooks and not out[1]._forward_hooks
