"""kaggle_3m layout: TIFF round trip, the documented affine, discovery, data.csv, named validation problems, split."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from brats.cli import main
from brats.data import discover_cases, load_case, load_seg, save_seg, split_cases, validate_cohort
from brats.data.kaggle import kaggle_affine, kaggle_geometry, write_kaggle_patient
from brats.labels import get_scheme, scheme_for_naming, to_classes, to_source
from brats.synth.kaggle import _slab, generate_kaggle_cohort, kaggle_patient_id

FOLDER = "TCGA_CS_4941_19960909"


def _patient(root, name=FOLDER, n=5, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(3, 256, 256, n), dtype=np.uint8)
    mask = np.zeros((256, 256, n), dtype=np.uint8)
    mask[100:140, 30:60, 1:3] = 1  # rows 100..139, columns 30..59 of slices k = 2, 3
    write_kaggle_patient(root / name, image, mask)
    return image, mask


def test_tiff_round_trip_voxel_for_voxel(tmp_path):
    image, mask = _patient(tmp_path)
    (tmp_path / "data.csv").write_text(
        "Patient,neoplasm_histologic_grade,age_at_initial_pathologic\nTCGA_CS_4941,2,67\n"
    )
    names = sorted(p.name for p in (tmp_path / FOLDER).iterdir())
    assert names[:3] == [f"{FOLDER}_1.tif", f"{FOLDER}_1_mask.tif", f"{FOLDER}_2.tif"]
    assert len(names) == 10
    raw = np.asarray(Image.open(tmp_path / FOLDER / f"{FOLDER}_2_mask.tif"))
    assert raw.dtype == np.uint8 and set(np.unique(raw)) == {0, 255}
    (case,) = discover_cases(tmp_path)  # auto-detected
    assert case.naming == "kaggle_3m" and case.case_id == FOLDER
    assert case.label_scheme.name == "binary" and case.label_scheme.num_classes == 2
    assert case.metadata == {
        "Patient": "TCGA_CS_4941",
        "neoplasm_histologic_grade": "2",
        "age_at_initial_pathologic": "67",
    }
    vol, geom = load_case(case, ["t1", "flair", "t1ce"])
    assert vol.shape == (3, 256, 256, 5) and vol.dtype == np.float32
    np.testing.assert_array_equal(vol, image.astype(np.float32))
    # voxel [i, j, k - 1] is pixel (row i, column j) of slice k
    pixel = np.asarray(Image.open(tmp_path / FOLDER / f"{FOLDER}_4.tif"))
    assert tuple(vol[:, 17, 200, 3]) == tuple(pixel[17, 200])
    reordered, _ = load_case(case, ["flair", "t1ce"])
    np.testing.assert_array_equal(reordered, image[[1, 2]].astype(np.float32))
    seg = load_seg(case)
    np.testing.assert_array_equal(seg, mask)
    assert geom.shape == (256, 256, 5)
    np.testing.assert_array_equal(geom.affine, kaggle_affine(5, 1.0))


def test_documented_affine_and_nifti_round_trip(tmp_path):
    geom = kaggle_geometry(4, slice_spacing_mm=3.0)
    expected = np.array([[0, -1, 0, 127.5], [-1, 0, 0, 127.5], [0, 0, 3.0, -4.5], [0, 0, 0, 1]], dtype=float)
    np.testing.assert_array_equal(geom.affine, expected)
    labels = np.zeros((256, 256, 4), dtype=np.uint8)
    labels[10:20, 200:210, 2] = 1
    save_seg(tmp_path / "p.nii.gz", labels, geom)
    img = nib.load(str(tmp_path / "p.nii.gz"))
    np.testing.assert_array_equal(np.asarray(img.dataobj), labels)
    np.testing.assert_allclose(img.affine, expected)
    assert nib.aff2axcodes(img.affine) == (
        "P",
        "L",
        "S",
    )  # rows posterior-ward, columns to the left, slices up
    assert img.header.get_zooms() == (1.0, 1.0, 3.0)
    # top-left pixel is anterior and to the patient's right of the bottom-right one
    x0, y0, _ = img.affine[:3, :3] @ [0, 0, 0] + img.affine[:3, 3]
    x1, y1, _ = img.affine[:3, :3] @ [255, 255, 0] + img.affine[:3, 3]
    assert x0 > x1 and y0 > y1


def test_binary_scheme_round_trip():
    scheme = get_scheme("binary")
    assert scheme is scheme_for_naming("kaggle_3m") is get_scheme("kaggle_3m")
    labels = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(to_source(to_classes(labels, scheme), scheme), labels)
    with pytest.raises(ValueError, match="255"):
        to_classes(np.array([0, 255]), scheme)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        to_source(np.array([0, 2]), scheme)
    assert get_scheme("brats2021").num_classes == 4


def test_validation_names_each_problem(tmp_path):
    _patient(tmp_path, "TCGA_CS_0001_20000101")
    _patient(tmp_path, "TCGA_CS_0002_20000102", seed=1)
    _patient(tmp_path, "TCGA_CS_0003_20000103", seed=2)
    assert validate_cohort(tmp_path)["problems"] == []
    a, b, c = (tmp_path / f"TCGA_CS_000{i}_2000010{i}" for i in (1, 2, 3))
    (a / f"{a.name}_3_mask.tif").unlink()  # a missing mask
    Image.fromarray(np.zeros((255, 256, 3), np.uint8)).save(b / f"{b.name}_2.tif")  # a 255x256 slice
    m = np.zeros((256, 256), np.uint8)
    m[5, 5] = 128
    Image.fromarray(m).save(c / f"{c.name}_4_mask.tif")  # a non-binary mask value
    report = validate_cohort(tmp_path)
    got = sorted((p["case"], p["code"]) for p in report["problems"])
    assert got == [(a.name, "missing-mask"), (b.name, "slice-size"), (c.name, "mask-values")]
    assert any("128" in p["problem"] for p in report["problems"])
    # gaps in k and an unreadable TIFF
    shutil.move(c / f"{c.name}_5.tif", c / f"{c.name}_7.tif")
    (a / f"{a.name}_2.tif").write_bytes(b"not a tiff")
    codes = {p["code"] for p in validate_cohort(tmp_path)["problems"]}
    assert {"slice-gap", "unreadable", "missing-image"} <= codes


def test_cli_validate_synthetic_cohort_and_broken_copy(tmp_path, capsys):
    root = tmp_path / "k"
    generate_kaggle_cohort(root, n_cases=3, seed=0, shape=(32, 32, 24))
    assert main(["validate", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scheme"] == "kaggle_3m" and len(out["cases"]) == 3 and out["problems"] == []
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    p0, p1 = (broken / kaggle_patient_id(i) for i in (0, 1))
    next(p0.glob("*_1_mask.tif")).unlink()
    Image.fromarray(np.zeros((255, 256, 3), np.uint8)).save(next(p1.glob("*_1.tif")))
    assert main(["validate", str(broken), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert sorted(p["code"] for p in problems) == ["missing-mask", "slice-size"]


def test_synthetic_layout_and_patient_split(tmp_path):
    generate_kaggle_cohort(tmp_path, n_cases=6, seed=3, shape=(32, 32, 24), slice_mm=6.0)
    cases = discover_cases(tmp_path, naming="kaggle_3m")
    assert [c.case_id for c in cases] == sorted(kaggle_patient_id(i) for i in range(6))
    header = (tmp_path / "data.csv").read_text().splitlines()[0]
    assert header.startswith("Patient,")
    for case in cases:
        assert case.metadata["Patient"] == case.case_id.rsplit("_", 1)[0]
        seg = load_seg(case)
        assert seg.shape[:2] == (256, 256) and set(np.unique(seg)) <= {0, 1}
    for seed in range(5):
        splits = split_cases(cases, 0.5, 0.25, seed=seed)
        seen = [cid for s in ("train", "val", "test") for cid in splits[s]]
        assert sorted(seen) == sorted(c.case_id for c in cases)  # each patient in exactly one split


def test_negative_patient_slab():
    brain = np.zeros((4, 4, 30), dtype=bool)
    brain[..., 2:28] = True
    tumour = np.zeros_like(brain)
    tumour[1, 1, 5:12] = True
    assert _slab(brain, tumour, 1, negative=False) == list(range(2, 28))
    assert _slab(brain, tumour, 1, negative=True) == list(range(12, 28))  # longest tumour-free run
    assert _slab(brain, tumour, 2, negative=True) == list(range(12, 28, 2))
    tumour[1, 1, 5:25] = True  # no tumour-free run of 8 slices: the patient keeps its tumour
    assert _slab(brain, tumour, 1, negative=True) == list(range(2, 28))


def test_two_scan_dates_of_one_patient_share_a_split(tmp_path):
    from brats.data import patient_id

    assert patient_id("TCGA_CS_4941_19960909") == "TCGA_CS_4941"
    for i, name in enumerate(["TCGA_CS_4941_19960909", "TCGA_CS_4941_19970101", "TCGA_DU_0001_20000101"]):
        _patient(tmp_path, name, n=2, seed=i)
    for name in ("TCGA_DU_0002_20000101", "TCGA_DU_0003_20000101", "TCGA_DU_0004_20000101"):
        _patient(tmp_path, name, n=2)
    cases = discover_cases(tmp_path)
    for seed in range(8):
        splits = split_cases(cases, 0.4, 0.3, seed=seed)
        where = {cid: s for s in splits for cid in splits[s]}
        assert where["TCGA_CS_4941_19960909"] == where["TCGA_CS_4941_19970101"]


def test_synthetic_patient_written_and_read_back_voxel_for_voxel(tmp_path):
    from brats.synth.kaggle import kaggle_volumes, write_kaggle_case

    image, mask = kaggle_volumes(0, 1, shape=(32, 32, 24))
    assert image.dtype == np.uint8 and image.shape[:3] == (3, 256, 256) and mask.any()
    folder = write_kaggle_case(tmp_path, 0, 1, shape=(32, 32, 24))
    (case,) = discover_cases(folder)
    vol, _ = load_case(case, ["t1", "flair", "t1ce"])
    np.testing.assert_array_equal(vol, image.astype(np.float32))
    np.testing.assert_array_equal(load_seg(case), mask)
