"""Synth profiles: every new phenomenon is checked in generated images; train and stress ranges; determinism."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest

from brats.cli import main
from brats.errors import BratsError
from brats.synth import (
    DISJOINT,
    PROFILES,
    SynthError,
    generate_cohort,
    get_profile,
    simulate_case,
    with_settings,
)
from brats.synth.anatomy import load_template, random_pose
from brats.synth.contrast import EDEMA_KEEP, draw_contrast, thick_slices
from brats.synth.tumour import draw_tumours

MID = (120, 120, 78)  # 2 mm voxels
TRAIN = get_profile("train")
#: No artefacts: what a phenomenon looks like, measured without noise, bias, gamma or thick slices in the way.
QUIET = dict(gamma=(1.0, 1.0), bias_std=(0.0, 0.0), noise=(0.01, 0.01), p_thick=0.0)


def _profile(**changes) -> object:
    return dataclasses.replace(TRAIN, name="test", **(QUIET | changes))


def _normal_wm(case, mod: str) -> float:
    looks = sum(case.lookalikes.values())
    m = case.brain & (case.seg == 0) & (case.tissues["wm"] > 0.9) & (looks < 0.01)
    return float(case.images[mod][m].mean())


def _normal_gm(case, mod: str) -> float:
    looks = sum(case.lookalikes.values())
    m = case.brain & (case.seg == 0) & (case.tissues["gm"] > 0.8) & (looks < 0.01)
    return float(case.images[mod][m].mean())


def test_stress_ranges_lie_outside_the_training_ranges_where_documented():
    train, stress = PROFILES["train"], PROFILES["stress"]
    for name in DISJOINT:
        (a0, a1), (b0, b1) = getattr(train, name), getattr(stress, name)
        assert a1 <= b0 or b1 <= a0, f"{name}: train {a0, a1} overlaps stress {b0, b1}"
    # stress is the harder side: fainter lesions, more look-alikes, stronger artefacts
    assert stress.edema_flair[1] <= train.edema_flair[0] and stress.et_t1ce[1] <= train.et_t1ce[0]
    assert stress.wmh_count[0] > train.wmh_count[1] and stress.vessel_density[0] >= train.vessel_density[1]
    assert stress.noise[0] >= train.noise[1] and stress.bias_std[0] >= train.bias_std[1]
    assert stress.slice_mm[0] >= train.slice_mm[1]
    assert stress.wt_radius_mm[0] < train.wt_radius_mm[0]  # smaller lesions too (overlapping range)


def test_unknown_profile_is_one_clear_error(tmp_path):
    with pytest.raises(SynthError, match="'nope' is not one of train, stress"):
        generate_cohort(tmp_path, n_cases=1, profile="nope")


def test_lesion_volumes_span_brats_from_small_foci_to_large_tumours():
    template = load_template((1.0, 1.0, 1.0))
    wt_ml, core_ml = [], []
    for i in range(150):
        rng = np.random.default_rng(i)
        specs = draw_tumours(rng, template, random_pose(rng, template), (240, 240, 155), "enhancing", TRAIN)
        wt_ml += [4 / 3 * math.pi * s.edema_mm**3 / 1000 for s in specs]
        core_ml += [4 / 3 * math.pi * s.core_mm**3 / 1000 for s in specs]
    assert min(core_ml) < 1.0 and max(wt_ml) > 100.0
    assert sum(v < 5 for v in wt_ml) >= 10 and sum(v > 50 for v in wt_ml) >= 10  # both ends well covered


def test_white_matter_hyperintensities_are_bright_on_flair_and_unlabelled():
    case = simulate_case(0, 0, MID, profile=_profile(wmh_count=(10, 10), wmh_radius_mm=(4.0, 6.0)))
    wmh = case.lookalikes["wmh"] > 0.6
    assert wmh.sum() > 50
    assert not np.any(case.seg[wmh])  # label 0
    assert case.images["flair"][wmh].mean() > 1.05 * _normal_gm(case, "flair")  # as bright as edema
    assert case.images["flair"][wmh].mean() > 1.3 * _normal_wm(case, "flair")
    assert case.images["t2"][wmh].mean() > 1.3 * _normal_wm(case, "t2")
    # no look-alike touches the tumour
    assert not np.any((sum(case.lookalikes.values()) > 0) & (case.seg > 0))


def test_hyperintensities_draw_their_contrast_from_their_own_ranges():
    # faint edema, bright look-alikes: the combination real FLAIR shows and the edema ranges alone cannot make
    prof = _profile(
        wmh_count=(10, 10),
        wmh_radius_mm=(4.0, 6.0),
        edema_flair=(1.1, 1.1),
        edema_t2=(1.1, 1.1),
        wmh_flair=(1.8, 1.8),
        wmh_t2=(1.6, 1.6),
        vessel_density=(0.0, 0.0),
    )
    case = simulate_case(0, 0, MID, profile=prof)
    wmh = (case.lookalikes["wmh"] > 0.9) & (case.tissues["wm"] > 0.9)
    edema = (case.seg == 2) & (case.tissues["wm"] > 0.9)
    assert wmh.sum() > 30 and edema.sum() > 30
    assert not np.any(case.seg[wmh])  # still label 0
    for mod in ("flair", "t2"):  # in the images: the look-alikes far brighter than this case's edema
        assert case.images[mod][wmh].mean() > 1.3 * case.images[mod][edema].mean(), mod
    for seed in range(5):  # the drawn signals, exactly: drawn as edema is, from their own ranges
        v = draw_contrast(np.random.default_rng(seed), prof)
        for mod, ratio in (("flair", 1.8), ("t2", 1.6)):
            gm, wm = v[mod].values["gm"], v[mod].values["wm"]
            assert v[mod].values["wmh"] == pytest.approx((ratio * gm - EDEMA_KEEP * wm) / (1 - EDEMA_KEEP))
            assert v[mod].values["ed"] == pytest.approx((1.1 * gm - EDEMA_KEEP * wm) / (1 - EDEMA_KEEP))
    assert abs(case.images["flair"][edema].mean() / _normal_gm(case, "flair") - 1.1) < 0.08
    # the train profile keeps the look-alikes on the edema ranges, so cohorts made before these settings are
    # unchanged; the stress profile's are as faint as its edema, outside the training range
    train, stress = PROFILES["train"], PROFILES["stress"]
    assert (train.wmh_flair, train.wmh_t2) == (train.edema_flair, train.edema_t2)
    assert (stress.wmh_flair, stress.wmh_t2) == (stress.edema_flair, stress.edema_t2)


def test_faint_edema_share_mixes_two_edema_ranges():
    # a share of the cases draws its edema from the faint ranges, the rest from the usual ones
    prof = _profile(
        edema_flair=(1.5, 1.5),
        edema_t2=(1.6, 1.6),
        faint_edema_share=0.5,
        faint_edema_flair=(1.05, 1.05),
        faint_edema_t2=(1.2, 1.2),
    )
    faint = 0
    for seed in range(40):
        v = draw_contrast(np.random.default_rng(seed), prof)
        gm, wm = v["flair"].values["gm"], v["flair"].values["wm"]
        ratio = (v["flair"].values["ed"] * (1 - EDEMA_KEEP) + EDEMA_KEEP * wm) / gm
        t2 = v["t2"].values
        t2_ratio = (t2["ed"] * (1 - EDEMA_KEEP) + EDEMA_KEEP * t2["wm"]) / t2["gm"]
        assert (ratio, t2_ratio) in (
            (pytest.approx(1.05), pytest.approx(1.2)),
            (pytest.approx(1.5), pytest.approx(1.6)),
        )
        faint += ratio < 1.3
    assert 10 <= faint <= 30
    # share 0 and 1: one range only; both shipped profiles draw no faint edema (and no extra random number)
    for share, want in ((0.0, 1.5), (1.0, 1.05)):
        p = dataclasses.replace(prof, faint_edema_share=share)
        v = draw_contrast(np.random.default_rng(3), p)["flair"].values
        assert (v["ed"] * (1 - EDEMA_KEEP) + EDEMA_KEEP * v["wm"]) / v["gm"] == pytest.approx(want)
    assert PROFILES["train"].faint_edema_share == PROFILES["stress"].faint_edema_share == 0
    with pytest.raises(BratsError, match="faint_edema_share must be at most 1"):
        with_settings("train", {"faint_edema_share": "1.5"})


def test_vessels_and_choroid_plexus_are_bright_on_t1ce_and_unlabelled():
    prof = _profile(vessel_density=(1.0, 1.0), vessel_radius_mm=(1.5, 1.5))
    case = simulate_case(0, 6, MID, profile=prof)  # tumour-free case
    assert not case.seg.any()
    wm = _normal_wm(case, "t1ce")
    for key, thr in (("vessel", 0.5), ("plexus", 0.5)):
        where = case.lookalikes[key] > thr
        assert where.sum() > 20, key
        assert not np.any(case.seg[where]), key
        assert case.images["t1ce"][where].mean() > 1.2 * wm, key  # enhancing
        # enhancement, not native brightness: much brighter on T1ce than on T1 (relative to WM)
        rel_t1 = case.images["t1"][where].mean() / _normal_wm(case, "t1")
        assert case.images["t1ce"][where].mean() / wm > 1.3 * rel_t1, key


@pytest.mark.parametrize("name", ["train", "stress"])
def test_edema_contrast_follows_the_profile(name):
    prof = dataclasses.replace(PROFILES[name], **QUIET, wmh_count=(0, 0), vessel_density=(0.0, 0.0))
    ratios = []
    for i in (0, 1, 4):
        case = simulate_case(3, i, MID, profile=prof)
        pure = (case.seg == 2) & (case.tissues["wm"] > 0.9)
        if pure.sum() > 30:
            ratios.append(case.images["flair"][pure].mean() / _normal_gm(case, "flair"))
    assert ratios
    lo, hi = prof.edema_flair
    for r in ratios:
        assert lo - 0.08 < r < hi + 0.08, (name, ratios)


def test_thick_slices_blur_along_one_axis_only():
    vol = np.zeros((20, 20, 30), np.float32)
    vol[:, :, 15] = 1.0
    vol[10, 10, :] += 1.0
    out = thick_slices(vol, 2, slice_mm=5.0, spacing=1.0)
    assert out.shape == vol.shape and out.dtype == np.float32
    assert out[5, 5, 15] < 0.6 and out[5, 5, 13] > 0.05  # spread along z
    np.testing.assert_allclose(out[10, 10, 5:25], out[10, 10, 5:25].mean(), atol=0.35)
    np.testing.assert_array_equal(out[9, 10], out[0, 0])  # nothing leaks across x or y from the line
    np.testing.assert_allclose(
        thick_slices(np.full((8, 8, 12), 3.0, np.float32), 2, 4.0, 1.0), 3.0, rtol=1e-5
    )
    assert thick_slices(vol, 0, slice_mm=1.0, spacing=1.0) is vol  # no thicker than a voxel: unchanged


def test_thick_slices_show_in_the_images_not_in_the_labels():
    sharp = simulate_case(0, 0, MID, profile=_profile())
    thick = simulate_case(0, 0, MID, profile=_profile(p_thick=1.0, slice_mm=(8.0, 8.0)))
    grads = [
        sum(float(np.abs(np.diff(c.images["t2"], axis=a)).mean()) for a in range(3)) for c in (sharp, thick)
    ]
    assert grads[1] < 0.9 * grads[0]
    np.testing.assert_array_equal(sharp.seg, thick.seg)  # labels stay on the fine grid


def test_profiles_differ_and_same_seed_same_files(tmp_path):
    def digests(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.nii.gz"))}

    args = ["synth", "--cases", "2", "--shape", "48", "48", "32", "--seed", "5"]
    assert main([*args[:1], str(tmp_path / "a"), *args[1:], "--profile", "stress"]) == 0
    assert main([*args[:1], str(tmp_path / "b"), *args[1:], "--profile", "stress"]) == 0
    generate_cohort(tmp_path / "c", 2, 5, shape=(48, 48, 32), workers=2, profile="stress")
    generate_cohort(tmp_path / "d", 2, 5, shape=(48, 48, 32))
    a, b, c, d = (digests(tmp_path / x) for x in "abcd")
    assert len(a) == 10 and a == b == c
    assert all(a[k] != d[k] for k in a if not k.endswith("seg.nii.gz"))


def test_no_labelled_speck_under_the_minimum_island_volume():
    """Edema that follows white matter leaves no labelled island under 50 mm^3 (26-connected whole tumour)."""
    from scipy import ndimage

    from brats.synth.tumour import MIN_ISLAND_MM3

    prof = _profile(edema_wm_follow=(0.8, 0.8), p_second=1.0)
    for index in (0, 1, 2):
        case = simulate_case(0, index, MID, profile=prof)
        lab, n = ndimage.label(case.seg > 0, structure=np.ones((3, 3, 3), bool))
        voxel_mm3 = 8.0  # MID: 2 mm voxels
        assert n >= 1 and np.bincount(lab.ravel())[1:].min() * voxel_mm3 >= MIN_ISLAND_MM3, index


def test_drop_islands_caps_only_the_specks():
    from types import SimpleNamespace

    from brats.synth.tumour import _drop_islands

    shape = (20, 20, 20)
    core, et, net = (np.zeros(shape, np.float32) for _ in range(3))
    edema = np.zeros(shape, np.float32)
    edema[2:8, 2:8, 2:8] = 0.9  # 216 mm^3: kept
    core[3:6, 3:6, 3:6], et[3:6, 3:6, 3:6] = 0.8, 0.4
    edema[15:17, 15, 15] = 0.7  # 2 voxels: a speck
    core[15, 15, 15], et[15, 15, 15] = 0.6, 0.3
    before = [a.copy() for a in (core, et, net, edema)]
    _drop_islands(core, et, net, edema, SimpleNamespace(mask=np.ones(shape, bool)), 1.0)
    assert edema[15, 15, 15] == pytest.approx(0.49) and edema[16, 15, 15] == pytest.approx(0.49)
    assert core[15, 15, 15] == pytest.approx(0.49) and et[15, 15, 15] / core[15, 15, 15] == pytest.approx(0.5)
    big = (slice(0, 10),) * 3
    for a, b in zip((core, et, net, edema), before):
        np.testing.assert_array_equal(a[big], b[big])


def test_set_replaces_named_settings_as_a_profile_in_code_would(tmp_path):
    def digests(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.nii.gz"))}

    shape = ["--shape", "48", "48", "32", "--seed", "2", "--cases", "2"]
    sets = ["--set", "noise=0.06,0.09", "--set", "p_thick=1", "--set", "wmh_count=13,30"]
    assert main(["synth", str(tmp_path / "cli"), *shape, *sets]) == 0
    prof = dataclasses.replace(TRAIN, noise=(0.06, 0.09), p_thick=1.0, wmh_count=(13, 30))
    generate_cohort(tmp_path / "code", 2, 2, shape=(48, 48, 32), profile=prof)
    generate_cohort(tmp_path / "train", 2, 2, shape=(48, 48, 32))
    cli, code, train = (digests(tmp_path / x) for x in ("cli", "code", "train"))
    assert len(cli) == 10 and cli == code
    assert all(cli[k] != train[k] for k in cli if not k.endswith("seg.nii.gz"))
    made = with_settings("stress", {"edema_flair": "1.1, 1.9", "p_second": "0"})
    assert made.edema_flair == (1.1, 1.9) and made.p_second == 0.0 and made.noise == PROFILES["stress"].noise
    assert made.name == "stress+edema_flair+p_second" and isinstance(
        with_settings("train", {"wmh_count": "1,2"}).wmh_count[0], int
    )


@pytest.mark.parametrize(
    "item, message",
    [
        ("nosie=0.1,0.2", "synth setting 'nosie' is not one of no_tumour_per_20, "),
        ("noise=0.2", "synth setting noise='0.2': expected LOW,HIGH"),
        ("noise=0.2,0.1", "synth profile train+noise: noise must be (low, high) with 0 <= low <= high"),
        ("p_thick=1.5", "synth profile train+p_thick: p_thick must be at most 1, got 1.5"),
        ("wmh_count=1.5,3", "synth setting wmh_count='1.5,3': expected LOW,HIGH (int values)"),
        ("no_tumour_per_20=17", "no_tumour_per_20 + non_enhancing_per_20 must be at most 20"),
        ("noise", "--set 'noise': expected KEY=VALUE"),
    ],
)
def test_a_bad_setting_is_one_line_and_writes_nothing(tmp_path, capsys, item, message):
    out = tmp_path / "out"
    assert main(["synth", str(out), "--cases", "1", "--shape", "48", "48", "32", "--set", item]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_kaggle_naming_refuses_a_profile_it_would_ignore(tmp_path, capsys):
    out = tmp_path / "lgg"
    assert main(["synth", str(out), "--naming", "kaggle_3m", "--profile", "stress"]) != 0
    assert "kaggle_3m cases use the train profile" in capsys.readouterr().err and not out.exists()


def test_profiles_montage_writes_one_row_per_case(tmp_path):
    """The docs figure's code (its docs block is slow: it rewrites the committed PNG), on small cases."""
    import matplotlib.image as mpimg

    from brats.synth.montage import montage

    rows = (("train", 0, 0), ("stress", 1000, 2))
    out = montage(tmp_path / "sub" / "m.png", rows=rows, shape=(48, 48, 32))
    height, width = mpimg.imread(out).shape[:2]
    assert (height, width) == (int(2.7 * 2 * 72), int(12.5 * 72))  # figsize x dpi, truncated
