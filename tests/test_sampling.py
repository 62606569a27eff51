"""train.core_oversample: which patches hold tumour core, and how often the loader draws them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train import make_patches, tiny_config, write_store

from brats.config import ConfigError, config_from_dict
from brats.extract import StoreWriter, store_attrs
from brats.labels import get_scheme
from brats.train import Runtime, Trainer, TrainError, train_loader
from brats.train.dataset import PatchDataset
from brats.train.sampling import core_patches, core_weights

CPU = Runtime(torch.device("cpu"), None, False)


def core_store(path, n=12, et=4):
    """A store whose even patches keep their core (NCR and ET) and whose odd ones hold edema only; patch 1 also
    loses its edema (brain only)."""
    images, labels = make_patches(n, 0, et)
    labels[1::2] = np.where(labels[1::2] > 0, 2, 0)
    labels[1] = 0
    return write_store(path, images, labels, et=et)


@pytest.mark.parametrize("et", [4, 3])
def test_core_patches_are_those_holding_ncr_or_et(tmp_path, et):
    scheme = get_scheme("brats2021" if et == 4 else "brats2023")
    path = core_store(tmp_path / "train.h5", et=et)
    assert core_patches(path, scheme).tolist() == [i % 2 == 0 for i in range(12)]
    assert core_weights(path, scheme, 3.0).tolist() == [3.0 if i % 2 == 0 else 1.0 for i in range(12)]
    with pytest.raises(ValueError, match="no tumour core"):
        core_patches(path, get_scheme("binary"))


def test_core_patches_reads_in_chunks(tmp_path, monkeypatch):
    import brats.train.sampling as sampling

    path = core_store(tmp_path / "train.h5", n=10)
    whole = core_patches(path, get_scheme("brats2021"))
    monkeypatch.setattr(sampling, "_CHUNK", 3)  # 3 + 3 + 3 + 1 patches
    assert core_patches(path, get_scheme("brats2021")).tolist() == whole.tolist()


def drawn(ds, cfg, weights, epoch=0):
    loader, steps = train_loader(ds, cfg.train, CPU, seed=0, epoch=epoch, weights=weights)
    return steps, [int(i) for b in loader for i in b["index"]]


def test_weighted_loader_draws_core_patches_in_proportion(tmp_path):
    path = core_store(tmp_path / "run" / "patches" / "train.h5")
    ds = PatchDataset(path)
    cfg = tiny_config(tmp_path / "run", steps_per_epoch=250, batch_size=4)
    weights = core_weights(path, get_scheme("brats2021"), 3.0)
    steps, first = drawn(ds, cfg, weights)
    assert steps == 250 and len(first) == 1000
    core = np.isin(first, np.arange(0, 12, 2)).mean()
    # 6 patches of weight 3 against 6 of weight 1: P(core) = 18 / 24 = 0.75; 1000 draws, sd 0.014
    assert abs(core - 0.75) < 0.06
    assert len(set(first)) == 12  # every patch is still drawn
    # the draw depends only on (seed, epoch)
    assert drawn(ds, cfg, weights)[1] == first and drawn(ds, cfg, weights, epoch=1)[1] != first
    # uniform weights without oversampling are not a weighted draw: the loader keeps its permutations
    _, plain = drawn(ds, cfg, None)
    assert sorted(plain[:12]) == list(range(12))
    with pytest.raises(TrainError, match="5 sampling weights for 12 training patches"):
        drawn(ds, cfg, weights[:5])
    ds.close()


def test_trainer_uses_the_weights_only_when_oversampling(tmp_path):
    out = tmp_path / "run"
    core_store(out / "patches" / "train.h5")
    write_store(out / "patches" / "val.h5", *make_patches(4, 1))
    assert Trainer(tiny_config(out), progress=False).sample_weights is None
    trainer = Trainer(tiny_config(out, core_oversample=2.0), progress=False)
    assert trainer.sample_weights.tolist() == [2.0 if i % 2 == 0 else 1.0 for i in range(12)]


def test_core_oversample_on_a_binary_store_is_one_clear_error(tmp_path):
    out = tmp_path / "lgg"
    images, labels = make_patches(4, 0)
    for split in ("train", "val"):
        path = out / "patches" / f"{split}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        cfg = config_from_dict({"patches": {"size": [32, 32], "stride": [32, 32]}})
        with StoreWriter(path, 4, (32, 32), attrs=store_attrs(cfg, "binary")) as w:
            w.add_case("case0", images, (labels > 0).astype(np.uint8), np.zeros((4, 3), np.int32))
    with pytest.raises(TrainError, match="core_oversample=2.0: the binary label scheme has no tumour core"):
        Trainer(tiny_config(out, core_oversample=2.0), progress=False)


def test_core_oversample_is_validated():
    assert config_from_dict({"train": {"core_oversample": 2}}).train.core_oversample == 2.0
    with pytest.raises(ConfigError, match="core_oversample"):
        config_from_dict({"train": {"core_oversample": 0.5}})
