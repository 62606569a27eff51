"""Tests of the synthetic cohort generator (brats.synth): geometry, determinism, validation, contrast, tumours."""

from __future__ import annotations

import dataclasses
import hashlib

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from threadpoolctl import threadpool_limits

from brats.cli import main
from brats.data import SUFFIXES, discover_cases, load_seg
from brats.synth import SynthError, case_id, generate_case, generate_cohort, get_profile, simulate_case
from brats.synth.anatomy import output_affine, smooth_noise, upsample
from brats.synth.tumour import case_role

SMALL = (64, 64, 40)  # 3.75 x 3.75 x 3.875 mm voxels
MID = (120, 120, 78)  # 2 x 2 x 1.99 mm voxels
BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])


def _digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.nii.gz"))}


# ---------------------------------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------------------------------


def test_output_affine_is_the_brats_affine_at_1mm():
    np.testing.assert_array_equal(output_affine((240, 240, 155)), BRATS_AFFINE)


def test_output_affine_other_shapes_keep_the_field_of_view():
    aff = output_affine((120, 120, 62))
    # 240/120 = 2 mm, 155/62 = 2.5 mm; origin = centre of voxel 0 = 1 mm corner centre shifted by half a voxel.
    expected = np.array([[-2.0, 0, 0, -0.5], [0, -2.0, 0, 238.5], [0, 0, 2.5, 0.75], [0, 0, 0, 1]])
    np.testing.assert_allclose(aff, expected)
    # The outer voxel corners coincide with those of the 1 mm grid.
    for a, far in ((aff, (119.5, 119.5, 61.5)), (BRATS_AFFINE, (239.5, 239.5, 154.5))):
        np.testing.assert_allclose(a @ [-0.5, -0.5, -0.5, 1], [0.5, 239.5, -0.5, 1])
        np.testing.assert_allclose(a @ [*far, 1], [-239.5, -0.5, 154.5, 1])


def test_upsample_hand_values_and_scipy_reference():
    coarse = np.array([0.0, 2.0], np.float32).reshape(2, 1, 1)
    np.testing.assert_allclose(upsample(coarse, (5, 1, 1)).ravel(), [0.0, 0.5, 1.0, 1.5, 2.0])
    rng = np.random.default_rng(3)
    c = rng.standard_normal((5, 6, 4)).astype(np.float32)
    ours = upsample(c, (17, 11, 10))
    ref = ndimage.zoom(c, (17 / 5, 11 / 6, 10 / 4), order=1, grid_mode=False, mode="nearest")
    assert ref.shape == ours.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_smooth_noise_is_smooth_and_seeded():
    a = smooth_noise(np.random.default_rng(0), (40, 30, 20), 8.0)
    b = smooth_noise(np.random.default_rng(0), (40, 30, 20), 8.0)
    assert a.dtype == np.float32 and a.shape == (40, 30, 20)
    np.testing.assert_array_equal(a, b)
    assert 0.4 < a.std() < 1.1 and abs(a.mean()) < 0.3
    # neighbours are strongly correlated (correlation length 8 voxels)
    assert np.corrcoef(a[1:].ravel(), a[:-1].ravel())[0, 1] > 0.9


def test_case_ids():
    assert case_id("2020", 0) == "BraTS20_Training_001"
    assert case_id("2021", 12) == "BraTS2021_00012"
    assert case_id("2023", 7) == "BraTS-GLI-00007-000"


@pytest.mark.parametrize("seed", [0, 1])
def test_roles_are_stratified_per_block_of_20(seed):
    roles = [case_role(seed, i) for i in range(40)]
    for block in (roles[:20], roles[20:]):
        assert block.count("none") == 2
        assert block.count("non-enhancing") == 4  # the train profile's numbers per block of 20
        assert block.count("enhancing") == 14
    stress = [case_role(seed, i, "stress") for i in range(20)]
    assert (stress.count("none"), stress.count("non-enhancing")) == (3, 5)


# ---------------------------------------------------------------------------------------------------------------
# Cohorts on disk
# ---------------------------------------------------------------------------------------------------------------


def test_same_seed_identical_files_any_workers_other_seed_differs(tmp_path):
    a = generate_cohort(tmp_path / "a", n_cases=3, seed=0, shape=SMALL, progress=False)
    assert [p.name for p in a] == ["BraTS2021_00000", "BraTS2021_00001", "BraTS2021_00002"]
    generate_cohort(tmp_path / "b", n_cases=2, seed=0, shape=SMALL, workers=2, progress=False)
    generate_cohort(tmp_path / "c", n_cases=2, seed=1, shape=SMALL, progress=False)
    da, db, dc = (_digests(tmp_path / k) for k in "abc")
    assert len(da) == 15 and len(db) == 10
    assert all(da[name] == digest for name, digest in db.items())  # case i depends only on (seed, i)
    assert set(dc) == set(db)
    assert all(dc[name] != db[name] for name in db if "_seg" not in name)


@pytest.mark.parametrize("naming", ["2020", "2021", "2023"])
def test_cohort_passes_validate_and_looks_like_brats(tmp_path, naming, capsys):
    out = tmp_path / naming
    if naming == "2023":
        rc = main(["synth", str(out), "--cases", "2", "--naming", "2023", "--shape", *map(str, SMALL)])
        assert rc == 0
    else:
        generate_cohort(out, n_cases=2, seed=0, naming=naming, shape=SMALL, progress=False)
    assert main(["validate", str(out)]) == 0
    assert "problems: none" in capsys.readouterr().out
    cases = discover_cases(out)
    assert [c.case_id for c in cases] == [case_id(naming, 0), case_id(naming, 1)]
    et = 3 if naming == "2023" else 4
    case = cases[0]  # seed 0, case 0 has an enhancing tumour
    sep = "-" if naming == "2023" else "_"
    for mod, path in case.images.items():
        assert path.name == f"{case.case_id}{sep}{SUFFIXES[naming][mod]}.nii.gz"
        img = nib.load(str(path))
        assert img.get_data_dtype() == np.int16
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
        np.testing.assert_allclose(img.affine, output_affine(SMALL))
        np.testing.assert_allclose(img.header.get_zooms(), (3.75, 3.75, 3.875))
    assert nib.load(str(case.seg)).get_data_dtype() == np.uint8
    labels = set(np.unique(load_seg(case)).tolist())
    assert labels == {0, 1, 2, et}


# ---------------------------------------------------------------------------------------------------------------
# Contrast and tumours
# ---------------------------------------------------------------------------------------------------------------


#: The train profile without look-alikes and artefacts: the contrast model itself, measurable on 2 mm voxels.
CLEAN = dataclasses.replace(
    get_profile("train"),
    name="clean",
    wmh_count=(0, 0),
    vessel_density=(0.0, 0.0),
    gamma=(1.0, 1.0),
    bias_std=(0.0, 0.03),
    noise=(0.01, 0.02),
    p_thick=0.0,
)


@pytest.fixture(scope="module")
def mid_cases():
    # seed 0: cases 0, 1, 4, 5 have an enhancing primary tumour, 2 and 3 a non-enhancing one, 6 none.
    return [simulate_case(0, i, MID, profile=CLEAN) for i in range(7)]


def _normal_means(case) -> dict[str, dict[str, float]]:
    normal = case.brain & (case.seg == 0) & (sum(case.lookalikes.values()) < 0.01)
    masks = {
        "wm": normal & (case.tissues["wm"] > 0.9),
        "gm": normal & (case.tissues["gm"] > 0.9),
        "csf": normal & (case.tissues["csf"] > 0.8),
    }
    assert all(m.sum() > 100 for m in masks.values())
    return {mod: {t: float(img[m].mean()) for t, m in masks.items()} for mod, img in case.images.items()}


def test_tissue_contrast_orderings(mid_cases):
    for case in mid_cases:
        m = _normal_means(case)
        assert m["t1"]["wm"] > m["t1"]["gm"] > m["t1"]["csf"], case.case_id
        assert m["t1ce"]["wm"] > m["t1ce"]["gm"] > m["t1ce"]["csf"], case.case_id
        assert m["t2"]["csf"] > m["t2"]["gm"] > m["t2"]["wm"], case.case_id
        assert m["flair"]["gm"] > m["flair"]["wm"] > m["flair"]["csf"], case.case_id  # CSF dark on FLAIR


def test_tumour_contrast(mid_cases):
    with_et = 0
    for case in mid_cases:
        if not case.tumours:
            continue
        m = _normal_means(case)
        img, seg = case.images, case.seg
        ed, ncr, et = seg == 2, seg == 1, seg == 4
        assert ed.sum() > 0, case.case_id
        assert img["flair"][ed].mean() > 1.3 * m["flair"]["wm"], case.case_id
        assert img["t2"][ed].mean() > m["t2"]["gm"], case.case_id  # edema bright on T2
        assert img["t1"][ed].mean() < m["t1"]["wm"], case.case_id  # and slightly dark on T1
        if ncr.sum() > 100:  # small solid tumours have no necrosis
            assert img["t1"][ncr].mean() < 0.8 * m["t1"]["wm"], case.case_id  # core dark on T1 and T1ce
            assert img["t1ce"][ncr].mean() < 0.8 * m["t1ce"]["wm"], case.case_id
            assert img["t2"][ncr].mean() > m["t2"]["gm"], case.case_id  # and bright on T2
        if et.sum() > 50:
            with_et += 1
            assert img["t1ce"][et].mean() > 1.3 * m["t1ce"]["wm"], case.case_id
            # it is enhancement: bright on T1ce relative to WM, not on native T1
            rel_t1ce = img["t1ce"][et].mean() / m["t1ce"]["wm"]
            assert rel_t1ce > 1.5 * img["t1"][et].mean() / m["t1"]["wm"], case.case_id
    assert with_et >= 2


def test_tumours_lie_inside_the_brain_and_images_are_skull_stripped(mid_cases):
    for case in mid_cases:
        assert not np.any((case.seg > 0) & ~case.brain)
        for img in case.images.values():
            assert img.dtype == np.float32
            assert np.all(img[~case.brain] == 0)
            assert np.all(img[case.brain] > 0)
            np.testing.assert_array_equal(img, np.rint(img))  # integer-valued like the int16 files


def test_tumour_free_and_non_enhancing_cases(mid_cases):
    assert case_role(0, 6) == "none" and not mid_cases[6].tumours
    assert not mid_cases[6].seg.any()
    assert case_role(0, 2) == "non-enhancing"
    assert not mid_cases[2].tumours[0].enhancing


def test_same_patient_on_another_grid(mid_cases):
    small = simulate_case(0, 1, SMALL, with_tissues=False)
    assert [t.core_mm for t in small.tumours] == [t.core_mm for t in mid_cases[1].tumours]

    # the tumour sits at the same place (world mm) on both grids
    def centroid(case):
        vox = np.argwhere(case.seg > 0).mean(0)
        return case.affine[:3, :3] @ vox + case.affine[:3, 3]

    assert np.linalg.norm(centroid(small) - centroid(mid_cases[1])) < 5.0


def test_full_size_case_whatever_the_blas_threads():
    """Also: the voxels do not depend on how many BLAS threads the caller allows (before the generator pinned
    one thread, a two-thread OpenBLAS moved 3 voxels of this case's T1 by 1)."""
    with threadpool_limits(limits=2):
        images, seg, affine = generate_case(0, 0)
    with threadpool_limits(limits=1):
        again, _, _ = generate_case(0, 0)
    assert all(np.array_equal(images[m], again[m]) for m in images)
    np.testing.assert_array_equal(affine, BRATS_AFFINE)
    assert seg.shape == (240, 240, 155) and seg.dtype == np.uint8
    assert set(np.unique(seg).tolist()) == {0, 1, 2, 4}
    brain = images["t1"] > 0
    assert all(np.array_equal(img > 0, brain) for img in images.values())
    assert not np.any((seg > 0) & ~brain)
    assert 1.0e6 < brain.sum() < 2.0e6  # a brain is ~1.1-1.6 l
    wm_t1ce = np.median(images["t1ce"][brain & (seg == 0)])
    assert images["t1ce"][seg == 4].mean() > 1.3 * wm_t1ce


def test_bad_arguments(tmp_path):
    with pytest.raises(SynthError, match="2020, 2021, 2023"):
        generate_cohort(tmp_path, naming="2022")
    with pytest.raises(SynthError, match="shape"):
        generate_cohort(tmp_path, shape=(8, 8, 8))
    with pytest.raises(SynthError, match="cases"):
        generate_cohort(tmp_path, n_cases=0)
    with pytest.raises(SynthError, match="seed"):
        generate_case(-1, 0)
