import json

import nibabel as nib
import numpy as np
import pytest
from cohort import make_case, write_nifti

from brats.cli import main
from brats.data import (
    CaseError,
    discover_cases,
    load_case,
    load_geometry,
    load_seg,
    patient_id,
    resolve_cases,
    save_nifti,
    save_seg,
    split_cases,
    validate_cohort,
)
from brats.fs import atomic_path


@pytest.mark.parametrize(
    "naming,first_id,et",
    [("2020", "BraTS20_Training_000", 4), ("2021", "BraTS2021_00000", 4), ("2023", "BraTS-GLI-00000-000", 3)],
)
def test_discover_each_naming(tmp_path, naming, first_id, et):
    for i in range(3):
        make_case(tmp_path, i, naming)
    cases = discover_cases(tmp_path)
    assert [c.case_id for c in cases][0] == first_id and len(cases) == 3
    assert {c.naming for c in cases} == {naming}
    assert set(cases[0].images) == {"t1", "t1ce", "t2", "flair"} and cases[0].seg is not None
    assert cases[0].label_scheme.et_label == et
    if naming == "2023":
        assert cases[0].images["flair"].name.endswith("-t2f.nii.gz")
    assert validate_cohort(tmp_path)["problems"] == []


def test_discover_uncompressed_and_without_seg(tmp_path):
    folder = make_case(tmp_path, 0, "2021", seg=False)
    for f in folder.glob("*.nii.gz"):
        img = nib.load(f)
        nib.save(img, str(f).replace(".nii.gz", ".nii"))
        f.unlink()
    (case,) = discover_cases(tmp_path)
    assert case.seg is None and case.images["t1"].suffix == ".nii"
    # a case folder itself is accepted too
    assert [c.case_id for c in discover_cases(folder)] == [case.case_id]


def test_custom_pattern(tmp_path):
    folder = tmp_path / "patient7"
    folder.mkdir()
    for m in ("t1", "t1ce", "t2", "flair", "seg"):
        write_nifti(folder / f"{m}.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    (case,) = discover_cases(tmp_path, naming="custom", pattern="{modality}.nii.gz")
    assert case.case_id == "patient7" and case.seg is not None and len(case.images) == 4


def test_no_cases_is_a_clear_error(tmp_path):
    with pytest.raises(CaseError, match="no BraTS case found"):
        discover_cases(tmp_path)


def test_load_case_order_dtype_and_seg(tmp_path):
    make_case(tmp_path, 0, "2021", shape=(10, 9, 6))
    (case,) = discover_cases(tmp_path)
    img, geom = load_case(case, ["flair", "t1"])
    assert img.shape == (2, 10, 9, 6) and img.dtype == np.float32
    np.testing.assert_array_equal(img[0], nib.load(case.images["flair"]).get_fdata())
    assert geom.shape == (10, 9, 6) and geom.spacing == (1.0, 1.0, 1.0)
    seg = load_seg(case)
    assert seg.dtype == np.uint8 and set(np.unique(seg)) == {0, 1, 2, 4}


def test_load_case_geometry_mismatch_lists_files(tmp_path):
    folder = make_case(tmp_path, 0, "2021", shape=(10, 9, 6))
    aff = np.eye(4)
    aff[0, 3] = 2.0
    write_nifti(folder / "BraTS2021_00000_t2.nii.gz", np.ones((10, 9, 6), np.float32), aff)
    (case,) = discover_cases(tmp_path)
    with pytest.raises(CaseError) as exc:
        load_case(case)
    assert "BraTS2021_00000_t2.nii.gz" in str(exc.value) and "BraTS2021_00000_t1.nii.gz" in str(exc.value)


def oblique_flipped_affine():
    theta = np.deg2rad(12)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([-0.9, 1.1, 1.3])  # x flipped, anisotropic
    aff[:3, 3] = [101.5, -33.25, 7.0]
    return aff


def test_save_seg_round_trip_nibabel_and_sitk(tmp_path):
    import SimpleITK as sitk

    aff = oblique_flipped_affine()
    data = np.random.default_rng(0).random((11, 13, 7)).astype(np.float32)
    img = nib.Nifti1Image(data, aff)
    img.header.set_qform(aff, code=1)
    img.header.set_sform(aff, code=2)
    nib.save(img, str(tmp_path / "ref.nii.gz"))
    geom = load_geometry(tmp_path / "ref.nii.gz")
    labels = np.random.default_rng(1).choice([0, 1, 2, 4], size=(11, 13, 7)).astype(np.int64)
    save_seg(tmp_path / "seg.nii.gz", labels, geom)

    ref = nib.load(tmp_path / "ref.nii.gz")
    out = nib.load(tmp_path / "seg.nii.gz")
    assert out.shape == ref.shape
    assert out.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(out.affine, ref.affine)
    np.testing.assert_array_equal(out.get_qform(), ref.get_qform())
    np.testing.assert_array_equal(out.get_sform(), ref.get_sform())
    assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 2
    np.testing.assert_array_equal(np.asarray(out.dataobj), labels)

    r = sitk.ReadImage(str(tmp_path / "ref.nii.gz"))
    o = sitk.ReadImage(str(tmp_path / "seg.nii.gz"))
    assert o.GetSize() == r.GetSize()
    np.testing.assert_allclose(o.GetOrigin(), r.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(o.GetDirection(), r.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(o.GetSpacing(), r.GetSpacing(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(o).transpose(2, 1, 0), labels)


def test_save_rejects_wrong_shape_and_leaves_nothing(tmp_path):
    write_nifti(tmp_path / "ref.nii.gz", np.zeros((4, 5, 6), np.float32), np.eye(4))
    geom = load_geometry(tmp_path / "ref.nii.gz")
    with pytest.raises(CaseError, match="does not match"):
        save_seg(tmp_path / "seg.nii.gz", np.zeros((4, 5, 7), np.uint8), geom)
    assert not (tmp_path / "seg.nii.gz").exists()
    prob = np.zeros((4, 5, 6, 4), np.float16)
    save_nifti(tmp_path / "prob.nii.gz", prob, geom)
    assert nib.load(tmp_path / "prob.nii.gz").shape == (4, 5, 6, 4)


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_split_is_patient_level_and_deterministic(tmp_path):
    for i in range(10):
        make_case(tmp_path, i, "2021", shape=(6, 6, 4))
    make_case(tmp_path, 10, "2021", shape=(6, 6, 4), seg=False)
    cases = discover_cases(tmp_path)
    s1 = split_cases(cases, 0.6, 0.2, seed=3)
    s2 = split_cases(cases, 0.6, 0.2, seed=3)
    assert s1 == s2
    assert (len(s1["train"]), len(s1["val"])) == (6, 2)
    assert "BraTS2021_00010" in s1["test"]  # no seg -> test
    all_ids = s1["train"] + s1["val"] + s1["test"]
    assert sorted(all_ids) == sorted(c.case_id for c in cases) and len(set(all_ids)) == len(all_ids)
    assert split_cases(cases, 0.6, 0.2, seed=4) != s1
    folds = [split_cases(cases, fold=k, n_folds=5)["val"] for k in range(5)]
    assert sorted(sum(folds, [])) == sorted(c.case_id for c in cases if c.seg is not None)


def test_patient_id_groups_2023_timepoints():
    assert patient_id("BraTS-GLI-00012-001") == "BraTS-GLI-00012"
    assert patient_id("BraTS2021_00012") == "BraTS2021_00012"


def test_resolve_cases_from_list(tmp_path):
    a = make_case(tmp_path / "cohort", 0, "2021", shape=(6, 6, 4))
    b = make_case(tmp_path / "cohort", 1, "2023", shape=(6, 6, 4))
    lst = tmp_path / "cases.txt"
    lst.write_text(f"# two cases\n{a}\n{b}\n")
    assert [c.case_id for c in resolve_cases(lst)] == ["BraTS2021_00000", "BraTS-GLI-00001-000"]


def test_validate_reports_exactly_the_four_problems(tmp_path, capsys):
    for i in range(5):
        make_case(tmp_path, i, "2021", shape=(12, 12, 6))
    # 1: no FLAIR
    (tmp_path / "BraTS2021_00001" / "BraTS2021_00001_flair.nii.gz").unlink()
    # 2: seg of another shape
    write_nifti(
        tmp_path / "BraTS2021_00002" / "BraTS2021_00002_seg.nii.gz",
        np.zeros((12, 12, 5), np.uint8),
        nib.load(tmp_path / "BraTS2021_00002" / "BraTS2021_00002_t1.nii.gz").affine,
    )
    # 3: T2 affine shifted by 2 mm
    f = tmp_path / "BraTS2021_00003" / "BraTS2021_00003_t2.nii.gz"
    img = nib.load(f)
    aff = img.affine.copy()
    aff[0, 3] += 2.0
    write_nifti(f, img.get_fdata().astype(np.float32), aff)
    # 4: label 7
    f = tmp_path / "BraTS2021_00004" / "BraTS2021_00004_seg.nii.gz"
    img = nib.load(f)
    seg = np.asarray(img.dataobj).copy()
    seg[0, 0, 0] = 7
    write_nifti(f, seg, img.affine)

    assert main(["validate", str(tmp_path), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["scheme"] == "2021" and len(out["cases"]) == 5
    got = sorted((p["case"], p["file"].split("/")[-1]) for p in out["problems"])
    assert got == [
        ("BraTS2021_00001", "BraTS2021_00001_flair.nii.gz"),
        ("BraTS2021_00002", "BraTS2021_00002_seg.nii.gz"),
        ("BraTS2021_00003", "BraTS2021_00003_t2.nii.gz"),
        ("BraTS2021_00004", "BraTS2021_00004_seg.nii.gz"),
    ]
    text = {p["case"]: p["problem"] for p in out["problems"]}
    assert "missing modality flair" in text["BraTS2021_00001"]
    assert "shape" in text["BraTS2021_00002"]
    assert "affine" in text["BraTS2021_00003"]
    assert "[7]" in text["BraTS2021_00004"]


def test_validate_human_output_and_truncated_file(tmp_path, capsys):
    make_case(tmp_path, 0, "2023", shape=(30, 30, 20))
    assert main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2023 naming" in out and "cases:   1" in out and "problems: none" in out
    f = tmp_path / "BraTS-GLI-00000-000" / "BraTS-GLI-00000-000-t1c.nii.gz"
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    assert main(["validate", str(tmp_path), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [p["file"].split("/")[-1] for p in out["problems"]] == ["BraTS-GLI-00000-000-t1c.nii.gz"]
    assert "cannot read" in out["problems"][0]["problem"]


def test_atomic_path_gives_usual_permissions(tmp_path):
    import os
    import stat

    with atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o666 & ~umask
