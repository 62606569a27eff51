"""augment.tumour_paste: a store tumour pasted into tumour-free training patches (TumorCP)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train import SIZE, make_patches, make_run, tiny_config, write_store

from brats.config import ConfigError, config_from_dict
from brats.train import Trainer
from brats.train.augment import AugmentError
from brats.train.dataset import PatchDataset
from brats.train.tumour_paste import TumourPaste, build_paste, tumour_rows


def _store(tmp_path, n=6):
    """Patches of make_patches (a disc tumour each) whose even ones lose their tumour (brain only)."""
    images, labels = make_patches(n, 0)
    labels[0::2] = 0
    return write_store(tmp_path / "train.h5", images, labels)


def _flips(image: torch.Tensor, label: torch.Tensor):
    for fx in (False, True):
        for fy in (False, True):
            im, lb = image, label
            if fx:
                im, lb = im.flip(1), lb.flip(0)
            if fy:
                im, lb = im.flip(2), lb.flip(1)
            yield im, lb


def test_tumour_rows_are_those_with_enough_tumour(tmp_path, monkeypatch):
    import brats.train.sampling as sampling

    path = _store(tmp_path, n=7)
    assert tumour_rows(path).tolist() == [1, 3, 5]
    labels = PatchDataset(path)
    smallest = min(int((labels.read_row(j)[1] > 0).sum()) for j in (1, 3, 5))
    assert tumour_rows(path, min_voxels=smallest + 1).tolist() == [
        j for j in (1, 3, 5) if int((labels.read_row(j)[1] > 0).sum()) > smallest
    ]
    monkeypatch.setattr(sampling, "_CHUNK", 2)  # chunked scan (brats.train.sampling.voxel_counts)
    assert tumour_rows(path).tolist() == [1, 3, 5]


def test_a_hard_edged_paste_copies_the_source_tumour_exactly(tmp_path):
    ds = PatchDataset(_store(tmp_path))
    paste = TumourPaste(np.array([3]), p=1.0, sigma=0.0)
    src_image, src_label = ds.read_row(3)
    for seed in range(4):
        torch.manual_seed(seed)
        out = paste(ds[0], ds.read_row)
        dst = ds[0]
        brain = (dst["image"] != 0).any(dim=0)
        matches = 0
        for im, lb in _flips(src_image, src_label):
            mask = (lb != 0) & brain
            if not torch.equal(out["label"], torch.where(mask, lb, 0)):
                continue
            expected = torch.where(
                mask, im, dst["image"]
            )  # inside the tumour: the source; elsewhere unchanged
            torch.testing.assert_close(out["image"], expected)
            matches += 1
        assert matches >= 1 and int((out["label"] > 0).sum()) >= 16
        assert set(out["label"].unique().tolist()) <= {0, 1, 2, 4}
    torch.testing.assert_close(
        paste(ds[1], ds.read_row)["image"], ds[1]["image"]
    )  # a tumour patch: untouched
    torch.manual_seed(0)
    untouched = TumourPaste(np.array([3]), p=0.0)(ds[0], ds.read_row)
    assert torch.equal(untouched["image"], ds[0]["image"]) and not untouched["label"].any()


def test_a_soft_edge_blends_and_the_asymmetry_follows_the_modalities(tmp_path):
    images, labels = make_patches(4, 0)
    labels[0] = 0
    mirror = images[:, :, :, ::-1]
    asym = np.where((images != 0) & (mirror != 0), images - mirror, 0)
    ds = PatchDataset(write_store(tmp_path / "asym.h5", np.concatenate([images, asym], axis=1), labels))
    torch.manual_seed(0)
    out = TumourPaste(np.array([1, 2, 3]), p=1.0, sigma=1.5, channels=4)(ds[0], ds.read_row)
    before = ds[0]["image"]
    delta = out["image"][:4] - before[:4]
    assert out["label"].any() and delta.abs().max() > 0.2
    edge = (delta.abs() > 1e-6).any(dim=0) & (out["label"] == 0)
    assert edge.sum() > 0  # the soft edge reaches past the labelled voxels
    both = (before[4:] != 0).any(dim=0)
    torch.testing.assert_close(out["image"][4:], torch.where(both, before[4:] + delta, before[4:]))
    assert torch.equal(
        out["image"][:, ~(before[:4] != 0).any(dim=0)], before[:, ~(before[:4] != 0).any(dim=0)]
    )


def test_a_source_outside_the_brain_is_drawn_again_then_given_up(tmp_path):
    images, labels = make_patches(2, 0)
    labels[0] = 0
    images[0, :, :, SIZE // 2 :] = 0  # the destination's brain is its left half
    labels[1, :, : SIZE // 2] = 0  # the source's tumour lies in the right half
    ds = PatchDataset(write_store(tmp_path / "half.h5", images, labels))
    if (ds.read_row(1)[1] > 0).sum() < 16:
        pytest.skip("the generated tumour lies in the left half")
    hits = []
    for seed in range(8):
        torch.manual_seed(seed)
        out = TumourPaste(np.array([1]), p=1.0, tries=1)(ds[0], ds.read_row)
        hits.append(bool(out["label"].any()))
        assert not out["label"][:, SIZE // 2 :].any()
    assert any(hits) and not all(hits)  # only a left-right flip brings it into the brain


def test_trainer_wires_it_and_the_config_checks_it(tmp_path):
    out = make_run(tmp_path / "run")
    cfg = tiny_config(out)
    cfg.augment.tumour_paste.enabled = True
    trainer = Trainer(cfg)
    assert isinstance(trainer.train_ds.paste, TumourPaste) and trainer.val_ds.paste is None
    assert trainer.train_ds.paste.rows.tolist() == tumour_rows(out / "patches" / "train.h5").tolist()
    cfg.augment.enabled = False
    assert build_paste(cfg, out / "patches" / "train.h5") is None
    for key, value in (("p", 1.5), ("sigma", -1.0)):
        with pytest.raises(ConfigError, match=f"augment.tumour_paste.{key}"):
            config_from_dict({"augment": {"tumour_paste": {"enabled": True, key: value}}})
    volumetric = config_from_dict(
        {
            "patches": {"dim": 3, "size": [8, 8, 8], "stride": [8, 8, 8]},
            "augment": {"tumour_paste": {"enabled": True}},
        }
    )
    with pytest.raises(AugmentError, match="augment.tumour_paste is for 2D patches only"):
        build_paste(volumetric, out / "patches" / "train.h5")
