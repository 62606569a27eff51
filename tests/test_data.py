"""PatchDataset over an HDF5 store: values, dtypes, subsets, transforms, pickling, DataLoader workers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from brats.extract import FORMAT, StoreError, StoreWriter, read_store, read_store_info
from brats.train import PatchDataset

torch.set_num_threads(1)

N_A, N_C = 7, 5  # patches of case A and case C (case B has none)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "train.h5"
    rng = np.random.default_rng(0)
    images = rng.normal(size=(N_A + N_C, 2, 8, 6)).astype(np.float16)
    labels = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(N_A + N_C, 8, 6))
    positions = np.stack([np.arange(N_A + N_C), np.zeros(N_A + N_C), np.arange(N_A + N_C) * 2], 1)
    attrs = {
        "modalities": ["t1", "flair"],
        "dim": 2,
        "patch_size": [8, 6],
        "stride": [4, 3],
        "normalization": {"method": "zscore", "percentiles": [0.5, 99.5]},
        "label_scheme": "brats2021",
        "config": "seed: 0\n",
        "version": "0.1.0",
    }
    with StoreWriter(path, 2, (8, 6), "float16", None, attrs) as w:
        w.add_case("A", images[:N_A], labels[:N_A], positions[:N_A])
        w.add_case("B", images[:0], labels[:0], positions[:0])
        w.add_case("C", images[N_A:], labels[N_A:], positions[N_A:])
    return path, images, labels, positions


def test_store_layout_and_attrs(store):
    path, images, labels, positions = store
    info = read_store_info(path)
    assert info["format"] == FORMAT
    assert info["modalities"] == ["t1", "flair"]
    assert info["patch_size"] == [8, 6] and info["stride"] == [4, 3] and info["dim"] == 2
    assert info["normalization"] == {"method": "zscore", "percentiles": [0.5, 99.5]}
    assert info["label_scheme"] == "brats2021" and info["config"] == "seed: 0\n"
    assert info["n_patches"] == N_A + N_C and info["cases"] == ["A", "B", "C"]
    assert info["image_shape"] == (2, 8, 6) and info["dtype"] == "float16" and info["compression"] is None
    data = read_store(path)
    np.testing.assert_array_equal(data["images"], images)
    np.testing.assert_array_equal(data["labels"], labels)
    assert data["labels"].dtype == np.uint8 and data["position"].dtype == np.int32
    assert data["case_index"].tolist() == [0] * N_A + [2] * N_C
    np.testing.assert_array_equal(data["position"], positions)
    import h5py

    with h5py.File(path, "r") as f:
        assert f["images"].chunks == (1, 2, 8, 6) and f["labels"].chunks == (1, 8, 6)


def test_items_are_float32_images_and_int64_source_labels(store):
    path, images, labels, _ = store
    ds = PatchDataset(path)
    assert len(ds) == N_A + N_C
    s = ds[3]
    assert s["index"] == 3
    assert s["image"].dtype == torch.float32 and s["image"].shape == (2, 8, 6)
    assert s["label"].dtype == torch.int64 and s["label"].shape == (8, 6)
    np.testing.assert_array_equal(s["image"].numpy(), images[3].astype(np.float32))
    np.testing.assert_array_equal(s["label"].numpy(), labels[3])
    assert ds.case_id(3) == "A" and ds.case_id(N_A) == "C"
    assert ds.position(N_A + 1) == (N_A + 1, 0, 2 * (N_A + 1))
    assert ds.attrs["modalities"] == ["t1", "flair"]
    np.testing.assert_array_equal(ds[-1]["label"].numpy(), labels[-1])
    with pytest.raises(IndexError):
        ds[N_A + N_C]


def test_indices_and_transform(store):
    path, images, _, _ = store
    ds = PatchDataset(path, transform=lambda s: (s["index"], float(s["image"].sum())), indices=[9, 2])
    assert len(ds) == 2 and ds.row(0) == 9
    assert ds[0] == (0, pytest.approx(float(images[9].astype(np.float32).sum()), rel=1e-5))
    assert ds.case_id(1) == "A"
    with pytest.raises(IndexError, match="out of range"):
        PatchDataset(path, indices=[0, 99])


def test_picklable_before_and_after_access(store):
    path, images, _, _ = store
    ds = PatchDataset(path)
    clone = pickle.loads(pickle.dumps(ds))
    ds[0]  # opens the file in this process
    assert ds._file is not None
    clone2 = pickle.loads(pickle.dumps(ds))
    assert clone2._file is None
    for d in (clone, clone2):
        np.testing.assert_array_equal(d[5]["image"].numpy(), images[5].astype(np.float32))
    ds.close()


def _batches(ds, **kw):
    return [
        (b["image"].clone(), b["label"].clone(), b["index"].clone())
        for b in DataLoader(ds, batch_size=3, shuffle=False, **kw)
    ]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_match_single_process(store, context):
    path = store[0]
    ds = PatchDataset(path)
    ref = _batches(ds)
    ds[0]  # a handle open in the parent must not leak into forked workers
    got = _batches(ds, num_workers=2, multiprocessing_context=context)
    assert len(got) == len(ref) == 4
    for (ri, rl, rx), (gi, gl, gx) in zip(ref, got):
        assert torch.equal(ri, gi) and torch.equal(rl, gl) and torch.equal(rx, gx)


def test_missing_or_foreign_file(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        PatchDataset(tmp_path / "nope.h5")
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not a patch store"):
        PatchDataset(tmp_path / "other.h5")
    (tmp_path / "junk.h5").write_text("hello")
    with pytest.raises(StoreError, match="cannot open"):
        read_store_info(tmp_path / "junk.h5")
