"""Bias-field correction (brats.bias): N4 recovers a known field, keeps the background, and is recorded."""

import numpy as np
import pytest

from brats.bias import correct_bias, shrink_factor
from brats.config import load_config
from brats.errors import BratsError
from brats.preprocess import Normalization, brain_mask, normalize
from brats.synth import simulate_case, with_settings

SHAPE = (96, 96, 62)


@pytest.fixture(scope="module")
def twins():
    """One stress-profile case drawn twice by the generator: with a strong bias field (log-std 0.35 per
    sequence) and without one; everything else, noise included, is the same draw."""
    biased = with_settings("stress", {"bias_std": "0.35,0.35"})
    flat = with_settings("stress", {"bias_std": "0,0"})
    a = simulate_case(7, 5, SHAPE, profile=biased)
    b = simulate_case(7, 5, SHAPE, profile=flat, with_tissues=False)
    mods = ("t1", "t1ce", "t2", "flair")
    return np.stack([a.images[m] for m in mods]), np.stack([b.images[m] for m in mods]), a


def _log_error(image, reference, mask):
    """Per channel: std over the brain of log(image / reference), i.e. the field left (its scale ignored)."""
    out = []
    for c in range(image.shape[0]):
        d = np.log(np.maximum(image[c][mask], 1e-3)) - np.log(np.maximum(reference[c][mask], 1e-3))
        out.append(float(d.std()))
    return np.array(out)


def test_n4_removes_most_of_a_known_field(twins):
    biased, flat, case = twins
    mask = case.brain
    before = _log_error(biased, flat, mask)
    after = _log_error(correct_bias(biased, "n4"), flat, mask)
    assert np.all(before > 0.2), before  # the field is there to remove
    assert np.all(after < 0.6 * before), (before, after)


def test_n4_brings_tumour_contrast_back_towards_the_field_free_image(twins):
    """Edema against white matter (log contrast, per modality): the field moves it (the tumour sits where the
    field is high or low); after N4 it is nearer the field-free image's, summed over the four modalities."""
    biased, flat, case = twins
    edema = case.seg == 2
    wm = (case.tissues["wm"] > 0.9) & (case.seg == 0)
    assert edema.sum() > 200

    def contrast(image):
        return np.array([np.log(image[c][edema]).mean() - np.log(image[c][wm]).mean() for c in range(4)])

    ref = contrast(flat)
    raw_err = np.abs(contrast(biased) - ref).sum()
    n4_err = np.abs(contrast(correct_bias(biased, "n4")) - ref).sum()
    assert raw_err > 0.3
    assert n4_err < 0.6 * raw_err, (raw_err, n4_err)


def test_background_untouched_rerun_identical_and_none_is_a_copy(twins):
    biased, _, _ = twins
    mask = brain_mask(biased)
    one = correct_bias(biased, "n4")
    assert np.array_equal(one, correct_bias(biased, "n4"))
    assert np.all(one[:, ~mask] == 0)
    assert np.all(one[:, mask] > 0)
    same = correct_bias(biased, "none")
    assert np.array_equal(same, biased.astype(np.float32)) and same is not biased


def test_small_or_empty_channel_left_alone():
    image = np.zeros((2, 20, 20, 20), np.float32)
    image[0, 5:10, 5:10, 5:10] = 3.0  # 125 voxels: under MIN_VOXELS
    out = correct_bias(image, "n4")
    assert np.array_equal(out, image)


def test_shrink_factor_and_bad_input():
    assert shrink_factor((240, 240, 155)) == 8
    assert shrink_factor((48, 48, 31)) == 2
    assert shrink_factor((10, 10, 10)) == 1
    with pytest.raises(BratsError, match="unknown bias_correction 'n3'"):
        correct_bias(np.ones((1, 4, 4, 4)), "n3")
    with pytest.raises(BratsError, match=r"\(C, X, Y, Z\)"):
        correct_bias(np.ones((4, 4, 4)), "n4")


def test_normalization_record_applies_and_checks_bias_correction(twins):
    biased, _, _ = twins
    n4 = Normalization(bias_correction="n4")
    want = normalize(correct_bias(biased, "n4")).astype("float16").astype(np.float32)
    assert np.array_equal(n4.apply(biased), want)
    assert not np.array_equal(Normalization().apply(biased), want)
    assert Normalization.from_dict(n4.to_dict()) == n4
    # a record written before the key existed means no correction
    old = {k: v for k, v in n4.to_dict().items() if k != "bias_correction"}
    assert Normalization.from_dict(old).bias_correction == "none"
    assert n4.conflicts(Normalization()) == ["bias_correction n4 vs none"]
    with pytest.raises(BratsError, match="store.h5: unknown bias_correction 'n5'"):
        Normalization.from_dict(dict(n4.to_dict(), bias_correction="n5"), where="store.h5")


def test_config_key_is_validated(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("preprocess: {bias_correction: n4}\n")
    cfg = load_config(good)
    assert Normalization.from_config(cfg.preprocess).bias_correction == "n4"
    bad = tmp_path / "bad.yaml"
    bad.write_text("preprocess: {bias_correction: n3}\n")
    with pytest.raises(BratsError, match="preprocess.bias_correction"):
        load_config(bad)


def test_extraction_records_n4_and_cuts_the_corrected_image(tmp_path):
    """run_extract with bias_correction n4: the store's record says so, and a patch equals the same window of
    Normalization(bias_correction="n4").apply of its case (the image prediction would see)."""
    from brats.config import config_from_dict
    from brats.data import discover_cases, load_case
    from brats.extract import read_store, run_extract
    from brats.synth import generate_cohort

    generate_cohort(tmp_path / "cases", 4, 3, "2021", 1, (64, 64, 40))
    cfg = config_from_dict(
        {
            "output_dir": str(tmp_path / "out"),
            "data": {"root": str(tmp_path / "cases")},
            "preprocess": {"bias_correction": "n4"},
            "patches": {"size": [32, 32], "stride": [16, 16], "min_foreground": 1},
        }
    )
    store = read_store(run_extract(cfg, workers=1, progress=False)["train"])
    assert store["info"]["normalization"]["bias_correction"] == "n4"
    ci = int(store["case_index"][0])
    case = {c.case_id: c for c in discover_cases(tmp_path / "cases")}[store["info"]["cases"][ci]]
    image, _ = load_case(case)
    want = Normalization(bias_correction="n4").apply(image)
    x, y, z = (int(v) for v in store["position"][0])
    np.testing.assert_array_equal(store["images"][0].astype(np.float32), want[:, x : x + 32, y : y + 32, z])
    plain = Normalization().apply(image)[:, x : x + 32, y : y + 32, z]
    assert not np.array_equal(store["images"][0].astype(np.float32), plain)
