"""Patch extraction: window grid, arange round trip through the store, selection rules, determinism,
splits, and failure on a truncated file (no store left behind, a previous store untouched)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cohort import affine_1mm, make_case, write_nifti

from brats.cli import main as cli_main
from brats.config import config_from_dict
from brats.errors import BratsError
from brats.extract import cut_patches, read_store, run_extract, select_windows, window_grid, window_starts
from brats.preprocess import normalize

REPO = Path(__file__).resolve().parents[1]


def _cfg(root: Path, out: Path, **patches) -> object:
    p = {
        "size": [16, 16],
        "stride": [8, 8],
        "slice_stride": 1,
        "min_foreground": 1,
        "background_fraction": 0.5,
    }
    p.update(patches)
    return config_from_dict({"output_dir": str(out), "data": {"root": str(root)}, "patches": p})


def _stitch(store: dict, shape: tuple[int, ...], case: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put every patch of ``case`` back at its recorded position; return (image, labels, coverage count)."""
    dim = store["info"]["dim"]
    image = np.zeros(shape, np.float32)
    labels = np.zeros(shape[1:], np.uint8)
    cover = np.zeros(shape[1:], np.int32)
    for img, lab, ci, (x, y, z) in zip(
        store["images"], store["labels"], store["case_index"], store["position"]
    ):
        if ci != case:
            continue
        if dim == 2:
            h, w = lab.shape
            sl = (slice(x, x + h), slice(y, y + w), z)
        else:
            sl = tuple(slice(a, a + s) for a, s in zip((x, y, z), lab.shape))
        image[(slice(None), *sl)] = img
        labels[sl] = lab
        cover[sl] += 1
    return image, labels, cover


@pytest.mark.parametrize(
    "length,size,stride,expected",
    [
        (240, 128, 64, [0, 64, 112]),
        (48, 32, 16, [0, 16]),
        (50, 32, 16, [0, 16, 18]),
        (32, 32, 8, [0]),
        (20, 32, 16, [0]),
    ],
)
def test_window_starts(length, size, stride, expected):
    assert window_starts(length, size, stride) == expected


@pytest.mark.parametrize("dim", [2, 3])
def test_arange_cut_and_stitch_exact(dim):
    shape = (2, 45, 38, 7)
    vol = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    seg = (np.arange(np.prod(shape[1:])) % 5).astype(np.uint8).reshape(shape[1:])
    if dim == 2:
        p = SimpleNamespace(dim=2, size=[16, 16], stride=[12, 10], slice_stride=1)
    else:
        p = SimpleNamespace(dim=3, size=[16, 16, 4], stride=[12, 10, 3])
    starts, ext = window_grid(shape[1:], p)
    positions, n_t, n_b = select_windows(
        seg, np.ones(shape[1:], bool), starts, ext, 0, 0.0, np.random.default_rng(0)
    )
    assert n_t == len(positions) == np.prod([len(s) for s in starts]) and n_b == 0
    images, labels = cut_patches(vol, seg, positions, ext, dim)
    assert images.shape == (len(positions), 2, *p.size) and labels.shape == (len(positions), *p.size)
    store = {
        "images": images,
        "labels": labels,
        "case_index": np.zeros(len(positions)),
        "position": positions,
    }
    store["info"] = {"dim": dim}
    image, lab, cover = _stitch(store, shape)
    np.testing.assert_array_equal(image, vol)
    np.testing.assert_array_equal(lab, seg)
    assert cover.min() >= 1


def _arange_case(root: Path, cid: str, shape=(40, 36, 6)) -> tuple[np.ndarray, np.ndarray]:
    folder = root / cid
    folder.mkdir(parents=True)
    n = int(np.prod(shape))
    images = np.stack([np.arange(1, n + 1, dtype=np.float32).reshape(shape) * (c + 1) for c in range(4)])
    seg = np.array([0, 1, 2, 4], np.uint8)[np.arange(n) % 4].reshape(shape)
    for c, m in enumerate(("t1", "t1ce", "t2", "flair")):
        write_nifti(folder / f"{cid}_{m}.nii.gz", images[c], affine_1mm())
    write_nifti(folder / f"{cid}_seg.nii.gz", seg, affine_1mm())
    return images, seg


@pytest.mark.parametrize("dim", [2, 3])
def test_arange_round_trip_through_store(tmp_path, dim):
    images, seg = _arange_case(tmp_path / "cases", "BraTS2021_00001")
    size, stride = ([16, 16], [12, 10]) if dim == 2 else ([16, 16, 4], [12, 10, 3])
    cfg = config_from_dict(
        {
            "output_dir": str(tmp_path / "out"),
            "data": {"root": str(tmp_path / "cases"), "train_fraction": 1.0, "val_fraction": 0.0},
            "patches": {
                "dim": dim,
                "size": size,
                "stride": stride,
                "min_foreground": 1,
                "background_fraction": 1e6,  # with the tumour windows: every brain window
            },
        }
    )
    result = run_extract(cfg, progress=False)
    assert result["train_cases"] == 1 and result["val_patches"] == 0
    store = read_store(result["train"])
    assert store["info"]["cases"] == ["BraTS2021_00001"] and store["info"]["dim"] == dim
    image, lab, cover = _stitch(store, images.shape)
    np.testing.assert_array_equal(image, normalize(images, "zscore").astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(lab, seg)
    assert cover.min() >= 1
    assert read_store(result["val"])["images"].shape == (0, 4, *size)


def test_selection_rules_match_brute_force(tmp_path):
    root = tmp_path / "cases"
    for i in range(4):
        make_case(root, i, shape=(24, 20, 8))
    cfg = _cfg(root, tmp_path / "out", size=[8, 8], stride=[4, 4], min_foreground=4, background_fraction=0.5)
    cfg.data.train_fraction, cfg.data.val_fraction = 1.0, 0.0
    store = read_store(run_extract(cfg, progress=False)["train"])
    assert store["info"]["min_foreground"] == 4 and store["info"]["background_fraction"] == 0.5
    for ci, cid in enumerate(store["info"]["cases"]):
        from brats.data import discover_cases, load_case, load_seg

        case = next(c for c in discover_cases(root) if c.case_id == cid)
        vol, _ = load_case(case)
        seg = load_seg(case)
        brain = np.any(vol != 0, axis=0)
        tumour, background, few = set(), set(), set()
        for z in range(8):
            for x in (0, 4, 8, 12, 16):
                for y in (0, 4, 8, 12):
                    fg = int((seg[x : x + 8, y : y + 8, z] > 0).sum())
                    has_brain = bool(brain[x : x + 8, y : y + 8, z].any())
                    if fg >= 4 and has_brain:
                        tumour.add((x, y, z))
                    elif fg == 0 and has_brain:
                        background.add((x, y, z))
                    elif has_brain:
                        few.add((x, y, z))
        kept = {tuple(int(v) for v in p) for p in store["position"][store["case_index"] == ci]}
        assert tumour and tumour <= kept
        assert not kept & few
        extra = kept - tumour
        assert extra <= background and len(extra) == round(0.5 * len(tumour))


def test_tumour_free_case_keeps_tumour_free_windows(tmp_path):
    # case 1's seg is all background: by default it gives no patch; with tumour_free_windows 5 it gives 5
    # brain-only windows, and the tumour cases' windows stay exactly as they were
    root = tmp_path / "cases"
    for i in range(3):
        make_case(root, i, shape=(24, 20, 8))
    free = root / "BraTS2021_00001" / "BraTS2021_00001_seg.nii.gz"
    write_nifti(free, np.zeros((24, 20, 8), np.uint8), affine_1mm())
    stores = {}
    for n in (0, 5, 10_000):
        cfg = _cfg(
            root, tmp_path / f"out{n}", size=[8, 8], stride=[4, 4], min_foreground=4, tumour_free_windows=n
        )
        cfg.data.train_fraction, cfg.data.val_fraction = 1.0, 0.0
        stores[n] = read_store(run_extract(cfg, progress=False)["train"])
    cases = list(stores[0]["info"]["cases"])
    free_ci = cases.index("BraTS2021_00001")
    counts = {n: np.bincount(st["case_index"], minlength=3) for n, st in stores.items()}
    assert counts[0][free_ci] == 0 and counts[0].sum() > 0
    assert counts[5][free_ci] == 5
    # every window of the grid holds brain (5 x 4 in-plane starts) on the 6 slices with brain (make_case's
    # brain leaves out the first and last slice): 10,000 keeps all 120
    assert counts[10_000][free_ci] == 5 * 4 * 6
    sel = stores[5]["case_index"] == free_ci
    assert not stores[5]["labels"][sel].any() and (stores[5]["images"][sel] != 0).any()
    for n in (5, 10_000):
        other = stores[n]["case_index"] != free_ci
        np.testing.assert_array_equal(stores[n]["position"][other], stores[0]["position"])
        np.testing.assert_array_equal(stores[n]["images"][other], stores[0]["images"])


def test_determinism_across_runs_and_workers(tmp_path):
    root = tmp_path / "cases"
    for i in range(6):
        make_case(root, i, shape=(48, 48, 12))
    cfg = _cfg(
        root, tmp_path / "out", size=[32, 32], stride=[16, 16], min_foreground=1, background_fraction=0.5
    )
    first = run_extract(cfg, workers=1, progress=False)
    stores = {s: read_store(first[s]) for s in ("train", "val")}
    splits = Path(first["splits"]).read_text()
    second = run_extract(cfg, workers=2, progress=False)
    assert second == first
    assert Path(second["splits"]).read_text() == splits
    for s in ("train", "val"):
        again = read_store(second[s])
        for key in ("images", "labels", "case_index", "position"):
            np.testing.assert_array_equal(again[key], stores[s][key])
        assert again["info"] == stores[s]["info"]
    assert stores["train"]["images"].shape[0] > 0
    info = stores["train"]["info"]
    assert info["label_scheme"] == "brats2021" and info["modalities"] == ["t1", "t1ce", "t2", "flair"]
    assert info["normalization"]["method"] == "zscore" and info["version"]
    assert "min_foreground: 1" in info["config"] and info["dtype"] == "float16"


def test_splits_are_disjoint_and_unlabelled_cases_go_to_test(tmp_path):
    root = tmp_path / "cases"
    for i in range(8):
        make_case(root, i, shape=(24, 20, 8), seg=i != 3)
    result = run_extract(_cfg(root, tmp_path / "out", size=[8, 8], stride=[8, 8]), progress=False)
    doc = json.loads(Path(result["splits"]).read_text())
    sets = [set(doc[s]) for s in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set.union(*sets) == {f"BraTS2021_{i:05d}" for i in range(8)}
    assert "BraTS2021_00003" in doc["test"]
    assert doc["naming"] == "2021" and doc["label_scheme"] == "brats2021" and doc["skipped"] == []
    for s in ("train", "val"):
        assert read_store(result[s])["info"]["cases"] == doc[s]
    assert (tmp_path / "out" / "config_extract.yaml").is_file()


def test_2023_naming_keeps_et_3(tmp_path):
    root = tmp_path / "cases"
    for i in range(3):
        make_case(root, i, naming="2023", shape=(24, 20, 8))
    result = run_extract(_cfg(root, tmp_path / "out", size=[8, 8], stride=[8, 8]), progress=False)
    store = read_store(result["train"])
    assert store["info"]["label_scheme"] == "brats2023"
    assert set(np.unique(store["labels"]).tolist()) <= {0, 1, 2, 3} and 3 in store["labels"]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_truncated_file_fails_and_keeps_the_previous_store(tmp_path, capsys):
    root = tmp_path / "cases"
    for i in range(5):
        make_case(root, i, shape=(48, 48, 12))
    out = tmp_path / "out"
    sets = ["--set", f"data.root={root}", "--set", "patches.size=[32,32]", "--set", "patches.stride=[16,16]"]
    args = ["extract", "--config", str(REPO / "configs" / "demo.yaml"), *sets]
    assert cli_main([*args, "--set", f"output_dir={out}"]) == 0
    before = {s: _digest(out / "patches" / f"{s}.h5") for s in ("train", "val")}
    victim = json.loads((out / "splits.json").read_text())["train"][0]
    bad = root / victim / f"{victim}_flair.nii.gz"
    _truncate(bad)
    capsys.readouterr()
    assert cli_main([*args, "--set", f"output_dir={out}"]) == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress bars: one error line
    assert last.startswith("error: ") and str(bad) in last
    assert {s: _digest(out / "patches" / f"{s}.h5") for s in ("train", "val")} == before
    assert sorted(p.name for p in (out / "patches").iterdir()) == ["train.h5", "val.h5"]  # no temporary left
    # A fresh output folder: the tool exits non-zero and leaves no store.
    fresh = tmp_path / "fresh"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "extract_patches.py"),
            *args[1:],
            "--set",
            f"output_dir={fresh}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode != 0 and str(bad) in proc.stderr
    assert not list(fresh.rglob("*.h5*"))  # neither a store nor a temporary
    # skip_invalid: the case is skipped with a warning and recorded in splits.json.
    cfg = _cfg(root, tmp_path / "skip", size=[32, 32], stride=[16, 16])
    cfg.data.skip_invalid = True
    result = run_extract(cfg, progress=False)
    doc = json.loads(Path(result["splits"]).read_text())
    assert (
        result["skipped"] == 1
        and doc["skipped"][0]["case"] == victim
        and str(bad) in doc["skipped"][0]["problem"]
    )
    assert victim not in doc["train"] + doc["val"] + doc["test"]


def test_invalid_cases_are_listed(tmp_path):
    root = tmp_path / "cases"
    for i in range(4):
        make_case(root, i, shape=(24, 20, 8))
    (root / "BraTS2021_00001" / "BraTS2021_00001_t2.nii.gz").unlink()
    (root / "BraTS2021_00002" / "BraTS2021_00002_seg.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(BratsError, match="2 invalid case") as info:
        run_extract(_cfg(root, tmp_path / "out", size=[8, 8], stride=[8, 8]), progress=False)
    assert "BraTS2021_00001" in str(info.value) and "BraTS2021_00002_seg.nii.gz" in str(info.value)
    assert not list((tmp_path / "out").rglob("*.h5*"))
