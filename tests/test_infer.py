"""Sliding-window inference and NIfTI export (issue 6).

The sliding window is checked with models whose output is known: a "model" returning the one-hot of the
input's own label channel must blend back exactly to the labels, and one returning a position code must put
every window back at its place. Whole-case prediction runs a tiny real smp U-Net from a checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference

from brats.data import SEPARATOR, SUFFIXES, CaseError
from brats.predict import (
    InferenceError,
    fit_window,
    flip_combinations,
    make_predictor,
    num_windows,
    predict_volume,
    run_predict,
    window_layout,
)
from tests.cohort import CASE_IDS, make_case

torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------------------------
# Window geometry
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75])
def test_num_windows_is_monai_count(overlap):
    for extent in (1, 31, 32, 33, 97, 128, 130, 145, 160, 240):
        for window in (16, 32, 96, 128):
            roi = (min(window, extent),)
            step = window if window >= extent else max(int(window * (1 - overlap)), 1)
            expected = len(dense_patch_slices((max(extent, window),), roi, (step,)))
            assert num_windows(extent, window, overlap) == expected, (extent, window, overlap)


def test_fit_window_hand_computed():
    # 160 at overlap 0: two 128-windows (0, 32) or two 96-windows (0, 64); 64 would need 3.
    assert fit_window(160, 128, 0.0) == 96
    # At overlap 0.5 two 128-windows (step 64) cover 160; two 96-windows (step 48) do not: keep 128.
    assert fit_window(160, 128, 0.5) == 128
    assert fit_window(192, 128, 0.0) == 96
    assert fit_window(96, 128, 0.5) == 96  # a box smaller than the patch: one window of the box
    assert fit_window(20, 128, 0.5) == 32
    assert fit_window(300, 128, 0.0) == 128  # 3 windows of 128; 96 would need 4
    assert fit_window(97, 32, 0.25, multiple=8) == 32
    assert window_layout((160, 100), (128, 128), 0.0) == ((96, 128), 2)
    assert window_layout((160, 100), (128, 128), 0.0, fit=False) == ((128, 128), 2)


def test_flip_combinations():
    assert flip_combinations(2) == [(), (2,), (3,), (2, 3)]
    assert len(flip_combinations(3)) == 8 and flip_combinations(3)[-1] == (2, 3, 4)


# --------------------------------------------------------------------------------------------------------------
# Identity and position tests
# --------------------------------------------------------------------------------------------------------------


def one_hot_of_label_channel(x: torch.Tensor) -> torch.Tensor:
    """The identity "model": logits = 10 x one-hot of channel 0 (the labels), any spatial dims."""
    oh = torch.nn.functional.one_hot(x[:, 0].round().long(), 4)
    return oh.movedim(-1, 1).float() * 10


def label_volume(shape=(97, 130, 11), seed=0, box=(slice(7, 90), slice(20, 121), slice(1, 9))):
    """Labels 0..3 inside an off-centre brain box (with empty slices), and the image ``(labels, brain)``."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int64)
    brain = np.zeros(shape, bool)
    brain[box] = True
    brain[box[0].start : box[0].start + 5, box[1].start : box[1].start + 4, box[2].start + 1] = (
        False  # a hole
    )
    labels[brain] = rng.integers(0, 4, int(brain.sum()))
    image = np.stack([labels.astype(np.float32), brain.astype(np.float32)])
    return labels, image


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize("fit", [True, False])
def test_identity_model_blends_back_exactly(overlap, blend, fit):
    labels, image = label_volume()
    prob = predict_volume(
        one_hot_of_label_channel, image, (32, 48), overlap, blend, batch_size=7, multiple=16, fit_windows=fit
    )
    assert prob.shape == (4, 97, 130, 11) and prob.dtype == np.float32
    np.testing.assert_array_equal(prob.argmax(0), labels)
    np.testing.assert_allclose(prob.sum(0), 1.0, atol=1e-5)


@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_identity_model_3d_windows(overlap):
    labels, image = label_volume((37, 30, 19), 1, (slice(3, 33), slice(5, 30), slice(2, 17)))
    prob = predict_volume(one_hot_of_label_channel, image, (16, 16, 8), overlap, "gaussian", 5, multiple=8)
    np.testing.assert_array_equal(prob.argmax(0), labels)


def position_code(shape: tuple[int, ...]) -> np.ndarray:
    """A distinct value in (0.05, 0.95) per voxel."""
    code = np.arange(math.prod(shape), dtype=np.float64).reshape(shape)
    return (0.05 + 0.9 * code / code.max()).astype(np.float32)


def position_model(x: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax is exactly (v, 1 - v, 0, 0) for the value v of channel 0."""
    v = x[:, 0].double()
    logits = torch.stack([v.log(), (1 - v).log(), torch.full_like(v, -80), torch.full_like(v, -80)], 1)
    return logits.float()


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize("fit", [True, False])
def test_every_window_lands_at_its_place(blend, fit):
    shape = (97, 130, 11)
    image = position_code(shape)[None]
    prob = predict_volume(position_model, image, (32, 48), 0.5, blend, 9, multiple=16, fit_windows=fit)
    np.testing.assert_allclose(prob[0], image[0], atol=2e-6)
    np.testing.assert_allclose(prob[1], 1 - image[0], atol=2e-6)


def test_brain_box_restricts_windows_and_background_outside():
    labels, image = label_volume()
    seen: list[tuple[int, ...]] = []

    def model(x):
        seen.append(tuple(x.shape))
        return one_hot_of_label_channel(x)

    prob = predict_volume(model, image, (32, 48), 0.0, "gaussian", 64, multiple=16)
    outside = image[1] == 0
    assert (prob[0][outside] == 1).all() and (prob[1:][:, outside] == 0).all()
    # Slices 0, 9 and 10 hold no brain. The 83x101 box of the 8 others (the hole of slice 2 is inside it) rounds
    # up to 96x112: 3 windows of 32 along X (16 would need 6), 3 of 48 along Y (32 would need 4).
    assert sum(s[0] for s in seen) == 8 * 3 * 3
    assert {s[2:] for s in seen} == {(32, 48)}


def test_plain_monai_equivalence():
    """Without brain box and window fitting, the result is MONAI's sliding window over the slices."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3, padding=1)
    )
    image = np.random.default_rng(0).normal(size=(2, 45, 37, 5)).astype(np.float32)
    ours = predict_volume(net, image, (32, 32), 0.5, "gaussian", 4, brain_box=False, fit_windows=False)
    with torch.inference_mode():
        slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0)))
        ref = sliding_window_inference(
            slices, (32, 32), 4, lambda x: torch.softmax(net(x), 1), overlap=0.5, mode="gaussian"
        )
    np.testing.assert_allclose(ours, np.moveaxis(ref.numpy(), 0, -1), atol=1e-5)


def test_tta_means_softmax_over_flips():
    """A model whose logits depend on the window position only: TTA = mean over the flips, flipped back."""
    a = 0.3
    w = 16

    def ramp(x):
        i = torch.arange(x.shape[2], dtype=torch.float32)[:, None].expand(x.shape[2], x.shape[3])
        logits = torch.zeros(x.shape[0], 2, x.shape[2], x.shape[3])
        logits[:, 1] = a * i
        return logits

    image = np.ones((1, w, w, 3), np.float32)
    plain = predict_volume(ramp, image, (w, w), 0.0, "constant", 4, multiple=16)
    tta = predict_volume(ramp, image, (w, w), 0.0, "constant", 4, tta=True, multiple=16)
    i = np.arange(w)[:, None, None]
    sig = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    np.testing.assert_allclose(plain[1], np.broadcast_to(sig(a * i), (w, w, 3)), atol=1e-6)
    expected = 0.5 * (sig(a * i) + sig(a * (w - 1 - i)))  # flips of dim X average; flips of Y change nothing
    np.testing.assert_allclose(tta[1], np.broadcast_to(expected, (w, w, 3)), atol=1e-6)
    # TTA of a flip-equivariant model changes nothing; 3D windows flip 3 axes.
    labels, image = label_volume((20, 18, 9), 2, (slice(2, 18), slice(3, 16), slice(1, 8)))
    for patch in ((16, 16), (16, 16, 8)):
        prob = predict_volume(
            one_hot_of_label_channel, image, patch, 0.5, "gaussian", 8, tta=True, multiple=8
        )
        np.testing.assert_array_equal(prob.argmax(0), labels)
    calls = []
    pred = make_predictor(lambda x: calls.append(x.shape) or one_hot_of_label_channel(x), tta=True)
    out = pred(torch.zeros(3, 2, 8, 8, 4))
    assert out.shape == (3, 4, 8, 8, 4) and len(calls) == 8


def test_window_fn_sees_every_batch():
    labels, image = label_volume((20, 18, 4), 3, (slice(2, 18), slice(3, 16), slice(1, 3)))
    shapes = []

    def window_fn(x):
        shapes.append(tuple(x.shape))
        return x

    predict_volume(
        one_hot_of_label_channel, image, (16, 16), 0.5, "gaussian", 3, window_fn=window_fn, multiple=8
    )
    assert shapes and all(s[1] == 2 and s[0] <= 3 for s in shapes)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"overlap": 1.0}, "overlap"),
        ({"blend": "gausian"}, "did you mean 'gaussian'"),
        ({"batch_size": 0}, "batch_size"),
        ({"patch_size": (16,)}, "patch_size"),
    ],
)
def test_bad_settings(kwargs, match):
    args = {"patch_size": (16, 16), "overlap": 0.5, "blend": "gaussian", "batch_size": 2} | kwargs
    with pytest.raises(InferenceError, match=match):
        predict_volume(one_hot_of_label_channel, np.ones((1, 8, 8, 2), np.float32), **args)


def test_empty_volume_is_background():
    prob = predict_volume(one_hot_of_label_channel, np.zeros((2, 10, 12, 3), np.float32), (16, 16))
    assert prob.shape == (4, 10, 12, 3) and (prob[0] == 1).all() and (prob[1:] == 0).all()


# --------------------------------------------------------------------------------------------------------------
# Whole cases from a checkpoint
# --------------------------------------------------------------------------------------------------------------

SHAPE = (40, 36, 8)


def make_checkpoint(path: Path, bias: list[float] | None = None, output: str = "classes") -> Path:
    """A tiny smp U-Net (resnet18, depth 3) checkpoint in the training format (brats.train).

    With ``bias`` the segmentation head is zeroed and its bias set, so every voxel gets ``argmax(bias)``
    (``output="regions"``: 3 sigmoid channels WT, TC, ET with logits ``bias``).
    """
    from brats.checkpoint import new_checkpoint, write_checkpoint
    from brats.config import config_from_dict
    from brats.networks import build_model

    cfg = config_from_dict(
        {
            "model": {"encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 8]},
            "patches": {"size": [32, 32], "stride": [16, 16]},
            "predict": {"postprocess": {"min_component_ml": 0.005, "et_min_ml": 0}},
        }
    )
    cfg.model.output = output
    classes = 3 if output == "regions" else 4
    torch.manual_seed(0)
    model = build_model(cfg.model, in_channels=4, classes=classes)
    if bias is not None:
        head = model.segmentation_head[0]
        torch.nn.init.zeros_(head.weight)
        with torch.no_grad():
            head.bias.copy_(torch.tensor(bias))
    return write_checkpoint(new_checkpoint(model.state_dict(), cfg, classes=classes), path)


def oblique_affine() -> np.ndarray:
    """Rotated 20 deg about z and 10 deg about x, flipped in x, anisotropic spacing, an offset."""
    a, b = np.deg2rad(20), np.deg2rad(10)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    aff = np.eye(4)
    aff[:3, :3] = rz @ rx @ np.diag([-0.9, 1.1, 2.5])
    aff[:3, 3] = [12.5, -30.25, 7.0]
    return aff


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ckpt")
    make_checkpoint(d / "random.pt")
    for c in range(4):
        bias = [0.0] * 4
        bias[c] = 5.0
        make_checkpoint(d / f"class{c}.pt", bias)
    return d


@pytest.mark.parametrize("naming, et_label", [("2021", 4), ("2020", 4), ("2023", 3)])
def test_labels_follow_the_case_naming(tmp_path, ckpt_dir, naming, et_label):
    folder = make_case(tmp_path / "cases", 0, naming=naming, shape=SHAPE, seg=False)
    cid = folder.name
    source = {0: 0, 1: 1, 2: 2, 3: et_label}
    for c in range(4):
        out = tmp_path / f"out{c}"
        paths = run_predict(ckpt_dir / f"class{c}.pt", folder, out, progress=False)
        assert paths == [out / f"{cid}.nii.gz"]
        img = nib.load(str(paths[0]))
        data = np.asarray(img.dataobj)
        assert img.get_data_dtype() == np.uint8 and data.shape == SHAPE
        # Brain voxels get the class's source label, the zero background stays 0.
        flair = folder / f"{cid}{SEPARATOR[naming]}{SUFFIXES[naming]['flair']}.nii.gz"
        brain = np.asarray(nib.load(str(flair)).dataobj) != 0
        assert set(np.unique(data[brain]).tolist()) == {source[c]}
        assert set(np.unique(data[~brain]).tolist()) <= {0}
    # A random network: labels within the scheme.
    paths = run_predict(ckpt_dir / "random.pt", folder, tmp_path / "rand", progress=False, postprocess=False)
    allowed = {0, 1, 2, et_label}
    assert set(np.unique(np.asarray(nib.load(str(paths[0])).dataobj)).tolist()) <= allowed


def write_oblique_case(root: Path) -> Path:
    """A 2021-named case whose files have an oblique flipped affine, qform code 1 and sform code 2."""
    cid = CASE_IDS["2021"].format(7)
    folder = root / cid
    folder.mkdir(parents=True)
    aff = oblique_affine()
    rng = np.random.default_rng(0)
    brain = np.zeros(SHAPE, bool)
    brain[3:-3, 4:-4, 1:-1] = True
    for m in ("t1", "t1ce", "t2", "flair"):
        data = ((rng.random(SHAPE) * 100 + 10) * brain).astype(np.float32)
        img = nib.Nifti1Image(data, aff)
        img.header.set_qform(aff, code=1)
        img.header.set_sform(aff, code=2)
        nib.save(img, str(folder / f"{cid}{SEPARATOR['2021']}{SUFFIXES['2021'][m]}.nii.gz"))
    return folder


def test_geometry_is_the_input_grid(tmp_path, ckpt_dir):
    import SimpleITK as sitk

    folder = write_oblique_case(tmp_path / "cases")
    out = tmp_path / "out"
    [seg] = run_predict(ckpt_dir / "random.pt", folder, out, probabilities=True, progress=False)
    ref_path = next(folder.glob("*_t1.nii.gz"))
    ref, pred = nib.load(str(ref_path)), nib.load(str(seg))
    assert pred.shape == ref.shape == SHAPE
    np.testing.assert_array_equal(pred.affine, ref.affine)
    for got, want in (
        (pred.header.get_qform(coded=True), ref.header.get_qform(coded=True)),
        (pred.header.get_sform(coded=True), ref.header.get_sform(coded=True)),
    ):
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1] == want[1]
    assert int(pred.header["qform_code"]) == 1 and int(pred.header["sform_code"]) == 2
    np.testing.assert_array_equal(pred.header.get_zooms(), ref.header.get_zooms())
    s_ref, s_pred = sitk.ReadImage(str(ref_path)), sitk.ReadImage(str(seg))
    assert s_pred.GetSize() == s_ref.GetSize()
    np.testing.assert_allclose(s_pred.GetOrigin(), s_ref.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(s_pred.GetSpacing(), s_ref.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(s_pred.GetDirection(), s_ref.GetDirection(), atol=1e-6)
    assert s_pred.GetPixelID() == sitk.sitkUInt8
    # The probabilities: (X, Y, Z, 4) on the same grid, summing to 1, float16 values (NIfTI-1 has no float16
    # datatype: the file is float32).
    prob = nib.load(str(out / f"{folder.name}_prob.nii.gz"))
    assert prob.shape == (*SHAPE, 4) and prob.get_data_dtype() == np.float32
    np.testing.assert_array_equal(prob.affine, ref.affine)
    values = np.asarray(prob.dataobj)
    np.testing.assert_array_equal(values, values.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(values.sum(-1), 1.0, atol=4e-3)


@pytest.fixture()
def cohort(tmp_path) -> Path:
    root = tmp_path / "cases"
    for i in range(5):
        make_case(root, i, shape=SHAPE, seg=i % 2 == 0)
    return root


def test_shard_and_cli(tmp_path, ckpt_dir, cohort):
    from brats.cli import main

    ids = sorted(p.name for p in cohort.iterdir())
    out = tmp_path / "out"
    paths = run_predict(ckpt_dir / "class2.pt", cohort, out, shard=(1, 2), progress=False)
    assert [p.name for p in paths] == [f"{ids[1]}.nii.gz", f"{ids[3]}.nii.gz"]
    rc = main(
        [
            "predict",
            "--checkpoint",
            str(ckpt_dir / "class2.pt"),
            "--input",
            str(cohort),
            "--output",
            str(out),
            "--shard",
            "0/2",
            "--overlap",
            "0",
            "--blend",
            "constant",
            "--tta",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(f"{i}.nii.gz" for i in ids)
    assert not list(out.glob(".*"))  # no temporary file left behind


def test_text_file_input(tmp_path, ckpt_dir, cohort):
    ids = sorted(p.name for p in cohort.iterdir())
    listing = tmp_path / "cases.txt"
    listing.write_text(f"# two cases\ncases/{ids[4]}\n\n{cohort / ids[0]}\n")
    paths = run_predict(ckpt_dir / "class1.pt", listing, tmp_path / "out", progress=False)
    assert [p.name for p in paths] == [f"{ids[4]}.nii.gz", f"{ids[0]}.nii.gz"]


def test_missing_modality_names_case_and_file(tmp_path, ckpt_dir):
    folder = make_case(tmp_path / "cases", 3, shape=SHAPE, modalities=("t1", "t1ce", "t2"))
    with pytest.raises(CaseError) as err:
        run_predict(ckpt_dir / "class1.pt", folder, tmp_path / "out", progress=False)
    assert folder.name in str(err.value) and f"{folder.name}_flair.nii.gz" in str(err.value)
    assert not (tmp_path / "out" / f"{folder.name}.nii.gz").exists()


def test_geometry_mismatch_names_the_files(tmp_path, ckpt_dir):
    folder = make_case(tmp_path / "cases", 4, shape=SHAPE)
    t2 = next(folder.glob("*_t2.nii.gz"))
    img = nib.load(str(t2))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :-1], img.affine), str(t2))
    with pytest.raises(CaseError, match=rf"{folder.name}.*disagree[\s\S]*_t2\.nii\.gz"):
        run_predict(ckpt_dir / "class1.pt", folder, tmp_path / "out", progress=False)


def test_postprocess_thresholds_come_from_the_checkpoint_unless_overridden(tmp_path, ckpt_dir):
    from brats.checkpoint import read_checkpoint
    from brats.predict.predictor import settings_from_checkpoint

    ckpt = read_checkpoint(ckpt_dir / "random.pt")
    assert ckpt.postprocess == {
        "min_component_ml": 0.005,
        "et_min_ml": 0.0,
        "core_min_ml": 0.0,
        "fragment_ml": 0.0,
        "source": "config",
    }
    s = settings_from_checkpoint(ckpt)
    assert (s.min_component_ml, s.et_min_ml, s.core_min_ml, s.fragment_ml) == (0.005, 0.0, 0.0, 0.0)
    s = settings_from_checkpoint(ckpt, min_component_ml=0.0, et_min_ml=0.25, core_min_ml=0.1, fragment_ml=0.2)
    assert (s.min_component_ml, s.et_min_ml, s.core_min_ml, s.fragment_ml) == (0.0, 0.25, 0.1, 0.2)
    del ckpt.postprocess["fragment_ml"]  # a checkpoint from before the rule: the config's value (0, off)
    assert settings_from_checkpoint(ckpt).fragment_ml == 0.0


def test_window_rescale_follows_the_checkpoint(ckpt_dir):
    """Prediction rescales every window exactly when training did: ``augment.rescale`` of the checkpoint."""
    from brats.checkpoint import read_checkpoint
    from brats.predict.predictor import settings_from_checkpoint
    from brats.preprocess import rescale_batch

    ckpt = read_checkpoint(ckpt_dir / "random.pt")
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0)) * 3 + 1
    on = settings_from_checkpoint(ckpt).window_fn
    assert on is not None
    assert torch.equal(on(x), rescale_batch(x, out_min_max=[-1.0, 1.0], percentiles=[0.5, 99.5]))
    ckpt.config.augment.rescale.enabled = False  # trained on each case's z-scores: windows go in unchanged
    assert settings_from_checkpoint(ckpt).window_fn is None


def test_core_min_ml_removes_a_tumour_without_core(tmp_path, ckpt_dir):
    from brats.cli import main

    folder = make_case(tmp_path / "cases", 0, shape=SHAPE, seg=False)
    labels = {}
    for name, extra in (("kept", []), ("removed", ["--core-min-ml", "0.001"])):
        for ckpt in ("class2", "class1"):  # every brain voxel ED (no core), or NCR (all core)
            out = tmp_path / f"{name}-{ckpt}"
            argv = ["predict", "--checkpoint", str(ckpt_dir / f"{ckpt}.pt"), "--input", str(folder)]
            assert main([*argv, "--output", str(out), *extra]) == 0
            labels[name, ckpt] = np.asarray(nib.load(str(out / f"{folder.name}.nii.gz")).dataobj)
    assert labels["kept", "class2"].max() == 2
    assert not labels["removed", "class2"].any()
    np.testing.assert_array_equal(labels["removed", "class1"], labels["kept", "class1"])
    assert labels["kept", "class1"].max() == 1


def test_negative_ml_threshold_is_one_line_and_writes_nothing(tmp_path, ckpt_dir, capsys):
    from brats.cli import main

    folder = make_case(tmp_path / "cases", 0, shape=SHAPE, seg=False)
    out = tmp_path / "out"
    argv = [
        "predict",
        "--checkpoint",
        str(ckpt_dir / "random.pt"),
        "--input",
        str(folder),
        "--output",
        str(out),
    ]
    assert main([*argv, "--et-min-ml", "-0.5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "et_min_ml must be >= 0" in err[0] and "-0.5" in err[0]
    assert not out.exists()
    assert main([*argv, "--fragment-ml", "-1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fragment_ml must be >= 0" in err[0] and "-1" in err[0]
    assert not out.exists()
