"""train.core_oversample: which patches hold tumour core, and how often the loader draws them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train import SIZE, make_patches, tiny_config, write_store

from brats.config import ConfigError, config_from_dict
from brats.extract import StoreWriter, store_attrs
from brats.labels import get_scheme
from brats.train import Runtime, Trainer, TrainError, train_loader
from brats.train.dataset import PatchDataset
from brats.train.sampling import case_weights, core_patches, core_weights, sample_weights

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
    # the counts under the scan, against each patch's label map read on its own
    ds = PatchDataset(path)
    labels = [ds.read_row(j)[1].numpy() for j in range(10)]
    ds.close()
    assert sampling.voxel_counts(path, lambda lab: lab == 2).tolist() == [int((x == 2).sum()) for x in labels]
    assert sampling.voxel_counts(path, lambda lab: lab > 0).tolist() == [int((x > 0).sum()) for x in labels]


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


def balance_store(path, sizes=(1, 3, 8)):
    """A store of ``len(sizes)`` cases holding ``sizes[c]`` patches each, written case by case by StoreWriter."""
    images, labels = make_patches(sum(sizes), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = config_from_dict({"patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]}})
    with StoreWriter(path, images.shape[1], (SIZE, SIZE), attrs=store_attrs(cfg, "brats2021")) as w:
        start = 0
        for c, n in enumerate(sizes):
            sl = slice(start, start + n)
            w.add_case(f"case{c}", images[sl], labels[sl], np.zeros((n, 3), np.int32))
            start += n
    return path


@pytest.mark.parametrize("b", [0.0, 0.5, 1.0])
def test_case_weights_give_each_case_its_count_to_one_minus_b(tmp_path, b):
    sizes = (1, 3, 8)
    path = balance_store(tmp_path / "train.h5", sizes)
    w = case_weights(path, b)
    assert w.shape == (12,)
    per_case = [w[:1].sum(), w[1:4].sum(), w[4:].sum()]
    np.testing.assert_allclose(per_case, [s ** (1 - b) for s in sizes])
    # within a case every patch weighs the same: 8 patches at b=1 weigh 1/8 each
    assert len(set(w[4:].tolist())) == 1


def test_sample_weights_multiply_core_and_case_weights(tmp_path):
    scheme = get_scheme("brats2021")
    path = core_store(tmp_path / "train.h5")
    assert sample_weights(path, scheme, 1.0, 0.0) is None
    both = sample_weights(path, scheme, 3.0, 0.5)
    np.testing.assert_allclose(both, core_weights(path, scheme, 3.0) * case_weights(path, 0.5))
    # case balance alone is allowed for a binary scheme (it reads no labels)
    np.testing.assert_allclose(sample_weights(path, get_scheme("binary"), 1.0, 1.0), case_weights(path, 1.0))


def test_balanced_loader_draws_cases_equally(tmp_path):
    path = balance_store(tmp_path / "run" / "patches" / "train.h5", (1, 3, 8))
    ds = PatchDataset(path)
    cfg = tiny_config(tmp_path / "run", steps_per_epoch=300, batch_size=4)
    _, first = drawn(ds, cfg, case_weights(path, 1.0))
    case = np.repeat(np.arange(3), (1, 3, 8))[first]
    # 1200 draws, each case with probability 1/3 (sd 0.014); uniformly the 1-patch case gets 1/12
    np.testing.assert_allclose(np.bincount(case, minlength=3) / len(case), [1 / 3] * 3, atol=0.06)
    ds.close()


def test_trainer_passes_case_balance(tmp_path):
    out = tmp_path / "run"
    balance_store(out / "patches" / "train.h5", (4, 8))
    write_store(out / "patches" / "val.h5", *make_patches(4, 1))
    trainer = Trainer(tiny_config(out, case_balance=1.0), progress=False)
    np.testing.assert_allclose(trainer.sample_weights, [0.25] * 4 + [0.125] * 8)
    with pytest.raises(ConfigError, match="case_balance"):
        config_from_dict({"train": {"case_balance": 1.5}})


def test_case_balance_on_an_empty_store_leaves_the_error_to_the_loader(tmp_path):
    path = balance_store(tmp_path / "train.h5", ())
    assert sample_weights(path, get_scheme("brats2021"), 1.0, 0.5).shape == (0,)
