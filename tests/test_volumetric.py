"""Volumetric models (issue 14): MONAI 3D networks, the 3D augmentation pipeline, 3D sliding windows with flip
TTA on all three axes, 2.5D slice stacks, and exact resume of a 3D model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchio as tio
from scipy import ndimage

from brats.checkpoint import read_checkpoint
from brats.config import ConfigError, config_from_dict
from brats.extract import StoreWriter, read_store, stack_context, store_attrs
from brats.networks import ModelError, build_model, input_multiple
from brats.predict import make_predictor, predict_volume
from brats.train import AugmentError, run_training
from brats.train.augment3d import build_transform_3d, spatial_transforms_3d
from tests.cohort import make_case
from tests.test_infer import label_volume, one_hot_of_label_channel

torch.set_num_threads(1)

SIZE = 16
SEGRESNET = {
    "arch": "monai.SegResNet",
    "kwargs": {"init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1]},
}


def cfg3d(out: Path | str = "runs/x", model: dict | None = None, **sections):
    return config_from_dict(
        {
            "output_dir": str(out),
            "seed": 5,
            "patches": {"dim": 3, "size": [SIZE] * 3, "stride": [SIZE] * 3},
            "model": model or SEGRESNET,
            **sections,
        }
    )


# --------------------------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, multiple",
    [
        (SEGRESNET, 4),
        ({"arch": "monai.DynUNet", "encoder_depth": 2, "kwargs": {"filters": [4, 8, 16]}}, 4),
        ({"arch": "monai.dynunet", "kwargs": {"strides": [1, 2, [2, 2, 1]], "filters": [4, 8, 16]}}, 4),
    ],
)
def test_monai_networks_map_3d_patches_to_class_logits(model, multiple):
    cfg = cfg3d(model=model)
    assert input_multiple(cfg.model) == multiple
    net = build_model(cfg.model, 4, 4, dim=3)
    assert net(torch.zeros(1, 4, SIZE, SIZE, SIZE)).shape == (1, 4, SIZE, SIZE, SIZE)
    assert any(p.ndim == 5 for p in net.parameters())  # 3D convolutions


def test_model_errors_name_the_key():
    with pytest.raises(
        ModelError, match=r"Unknown key model.kwargs.init_filter \(did you mean 'init_filters'"
    ):
        build_model(cfg3d(model={"arch": "monai.SegResNet", "kwargs": {"init_filter": 8}}).model, 4, dim=3)
    with pytest.raises(ModelError, match=r"did you mean 'monai.DynUNet'"):
        build_model(cfg3d(model={"arch": "monai.DynUnet2"}).model, 4, dim=3)
    with pytest.raises(ModelError, match="model.kwargs.out_channels: set by the toolkit"):
        build_model(cfg3d(model={"arch": "monai.SegResNet", "kwargs": {"out_channels": 3}}).model, 4, dim=3)
    with pytest.raises(ModelError, match="model.kwargs.deep_supervision"):
        build_model(
            cfg3d(model={"arch": "monai.DynUNet", "kwargs": {"deep_supervision": True}}).model, 4, dim=3
        )
    with pytest.raises(ModelError, match=r"monai.SegResNet' needs patches.dim: 3, got 2"):
        build_model(cfg3d().model, 4, dim=2)
    with pytest.raises(ModelError, match="Cannot build SegResNet.*init_filters"):
        build_model(cfg3d(model={"arch": "monai.SegResNet", "kwargs": {"init_filters": "x"}}).model, 4, dim=3)
    with pytest.raises(ConfigError, match=r"'model.kwargs'.*expected mapping, got \[1\]"):
        config_from_dict({"model": {"kwargs": [1]}})
    with pytest.raises(ConfigError, match="patches.context_slices .* dim=3"):
        config_from_dict({"patches": {"dim": 3, "size": [8] * 3, "stride": [8] * 3, "context_slices": 1}})


# --------------------------------------------------------------------------------------------------------------
# 3D augmentation: intensity = label image through every spatial transform
# --------------------------------------------------------------------------------------------------------------


def label_cube(size: int = 24, seed: int = 0) -> np.ndarray:
    """Nested balls (classes 2, 3, 1) and a thin slab of 1 near a border, uint8 ``(size,) * 3``."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:size, :size, :size]
    c = rng.integers(size // 3, 2 * size // 3, 3)
    d = np.sqrt((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2)
    lab = np.zeros((size,) * 3, np.uint8)
    lab[d < size / 4] = 2
    lab[d < size / 6] = 3
    lab[d < size / 12] = 1
    lab[3:6, 3 : size - 5, 4 : size - 4] = 1
    return lab


def disagreement(image: np.ndarray, label: np.ndarray, radius: int) -> int:
    """Voxels where round(image) != label, away (> ``radius``) from every label edge."""
    size = 2 * radius + 1
    uniform = ndimage.maximum_filter(label, size=size, mode="nearest") == ndimage.minimum_filter(
        label, size=size, mode="nearest"
    )
    return int(((np.rint(image) != label) & uniform).sum())


RADIUS = {"flip": 0, "affine": 1, "elastic": 1, "anisotropy": 3}
ALL_ON = {
    "spatial_p": 1.0,
    "intensity_p": 0.0,
    "rescale": {"enabled": False},
    "flip": {"axes": [0, 1, 2]},
    "anisotropy": {"enabled": True},
    "elastic": {"weight": 1.0, "num_control_points": 5, "max_displacement": 3.0},
}


@pytest.mark.parametrize("name", ["flip", "affine", "anisotropy", "elastic"])
def test_each_3d_spatial_transform_keeps_labels_aligned(name):
    transforms = spatial_transforms_3d(cfg3d(augment=ALL_ON).augment)
    assert set(transforms) == {"flip", "affine", "anisotropy", "elastic"}
    torch.manual_seed(2)
    moved = 0
    for seed in range(4):
        lab = label_cube(seed=seed)
        subject = tio.Subject(
            image=tio.ScalarImage(tensor=torch.as_tensor(lab, dtype=torch.float32)[None]),
            label=tio.LabelMap(tensor=torch.as_tensor(lab, dtype=torch.int64)[None]),
        )
        out = transforms[name](subject)
        img, lbl = out["image"].data[0].numpy(), out["label"].data[0].numpy()
        assert img.shape == lbl.shape == lab.shape
        assert set(np.unique(lbl)) <= {0, 1, 2, 3}
        assert disagreement(img, lbl, RADIUS[name]) == 0, name
        moved += not np.array_equal(lbl, lab)
    if name in ("flip", "affine", "elastic"):
        assert moved >= 2, "the transform should move the labels"


def test_3d_misalignment_is_detected():
    lab = label_cube()
    assert disagreement(np.roll(lab, 3, axis=2).astype(float), lab, 1) > 0


def test_3d_train_pipeline_keeps_labels_aligned_and_remaps():
    cfg = cfg3d(augment=ALL_ON, patches={"dim": 3, "size": [24, 24, 24], "stride": [24] * 3})
    transform = build_transform_3d(cfg, "train", "brats2023")  # identity remap
    torch.manual_seed(0)
    for i in range(6):
        lab = label_cube(seed=i)
        out = transform({"image": lab[None].astype(np.float32), "label": lab, "index": i})
        assert out["image"].shape == (1, 24, 24, 24) and out["label"].dtype == torch.int64
        assert disagreement(out["image"][0].numpy(), out["label"].numpy(), 3) == 0
    val = build_transform_3d(cfg3d(), "val", "brats2021")
    lab = np.where(label_cube(size=SIZE) == 3, 4, label_cube(size=SIZE)).astype(np.uint8)  # ET = 4 -> class 3
    out = val({"image": np.ones((4, SIZE, SIZE, SIZE), np.float32), "label": lab, "index": 0})
    np.testing.assert_array_equal(out["label"].numpy(), np.where(lab == 4, 3, lab))


@pytest.mark.parametrize("key", ["gamma", "blur", "lesion_contrast", "channel_bias"])
def test_3d_pipeline_refuses_the_2d_only_transforms_by_name(key):
    with pytest.raises(AugmentError, match=f"augment.{key} is for 2D patches only"):
        build_transform_3d(cfg3d(augment={key: {"enabled": True}}), "train", "brats2021")
    build_transform_3d(cfg3d(augment={key: {"enabled": True}}), "val", "brats2021")  # nothing random there


# --------------------------------------------------------------------------------------------------------------
# 3D sliding window and TTA
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_identity_model_3d_reconstructs_exactly(overlap, blend):
    labels, image = label_volume((37, 30, 19), 1, (slice(3, 33), slice(5, 30), slice(2, 17)))
    prob = predict_volume(
        one_hot_of_label_channel, image, (16, 16, 8), overlap, blend, 5, multiple=8, tta=True
    )
    np.testing.assert_array_equal(prob.argmax(0), labels)
    np.testing.assert_allclose(prob.sum(0), 1.0, atol=1e-5)


def test_3d_tta_flips_all_three_axes():
    seen: list[tuple[int, ...]] = []
    probe = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 1, 2, 4, 6)

    def model(x: torch.Tensor) -> torch.Tensor:
        # which axes are reversed relative to the probe
        seen.append(tuple(d for d in (2, 3, 4) if torch.equal(x, torch.flip(probe, (d,)))) or (0,))
        return torch.cat([x, -x], 1)

    out = make_predictor(model, tta=True, channels_last=False)(probe)
    assert len(seen) == 8 and seen[1:4] == [(2,), (3,), (4,)]
    torch.testing.assert_close(out, torch.softmax(torch.cat([probe, -probe], 1), 1))  # flipped back


# --------------------------------------------------------------------------------------------------------------
# 2.5D stacks
# --------------------------------------------------------------------------------------------------------------


def test_context_stacks_modality_major_zero_padded():
    image = np.zeros((2, 1, 1, 4), np.float32)
    image[0, 0, 0] = [1, 2, 3, 4]  # modality 0, slices 0..3
    image[1, 0, 0] = [10, 20, 30, 40]
    s = stack_context(image, 1)[:, 0, 0, :]  # (6 channels, 4 slices)
    assert s.shape == (6, 4)
    # channel c * 3 + j = modality c at slice z + j - 1; zeros before the first and after the last slice
    np.testing.assert_array_equal(s[:, 0], [0, 1, 2, 0, 10, 20])
    np.testing.assert_array_equal(s[:, 3], [3, 4, 0, 30, 40, 0])
    np.testing.assert_array_equal(s[1], image[0, 0, 0])
    assert stack_context(image, 0) is image
    assert stack_context(image, 2).shape == (10, 1, 1, 4) and stack_context(image, 2)[0, 0, 0, 1] == 0


@pytest.mark.parametrize("j, shift", [(0, -1), (1, 0), (2, 1)])
def test_prediction_builds_the_same_stacks(j, shift):
    """A 2D model reading stack channel j predicts the labels of slice z + j - 1 (background beyond the ends)."""
    labels, image = label_volume((33, 40, 9), 3, (slice(2, 31), slice(3, 38), slice(0, 9)))
    brain = np.any(image != 0, axis=0)
    stacked = stack_context(image, 1)

    def model(x: torch.Tensor) -> torch.Tensor:
        return one_hot_of_label_channel(x[:, j : j + 1])

    prob = predict_volume(model, stacked, (16, 16), 0.5, "gaussian", 8, multiple=8, mask=brain)
    expected = np.zeros_like(labels)
    src = np.arange(9) + shift
    ok = (src >= 0) & (src < 9)
    expected[..., ok] = labels[..., src[ok]]
    expected[~brain] = 0
    np.testing.assert_array_equal(prob.argmax(0), expected)


# --------------------------------------------------------------------------------------------------------------
# 3D training: checkpoint and exact resume
# --------------------------------------------------------------------------------------------------------------


def write_store_3d(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    labels = np.stack(
        [np.where(label_cube(SIZE, seed + i) == 3, 4, label_cube(SIZE, seed + i)) for i in range(n)]
    )
    images = np.stack([labels * (0.5 + 0.2 * c) for c in range(4)], 1).astype(np.float32)
    images += rng.normal(0, 0.1, images.shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with StoreWriter(path, 4, (SIZE,) * 3, attrs=store_attrs(cfg3d(), "brats2021")) as w:
        w.add_case("case0", images, labels.astype(np.uint8), np.zeros((n, 3), np.int32))
    return path


def train_cfg(out: Path, epochs: int):
    return cfg3d(
        out,
        augment={"flip": {"axes": [0, 1, 2]}, "elastic": {"enabled": False}},
        train={"epochs": epochs, "steps_per_epoch": 2, "batch_size": 2, "num_workers": 0},
    )


def test_3d_resume_equals_uninterrupted(tmp_path):
    for run in ("a", "b"):
        write_store_3d(tmp_path / run / "patches" / "train.h5", 4, 0)
        write_store_3d(tmp_path / run / "patches" / "val.h5", 2, 9)
    a, b = tmp_path / "a", tmp_path / "b"
    run_training(train_cfg(a, 3))
    run_training(train_cfg(b, 2))
    run_training(train_cfg(b, 3), resume=True)
    ca, cb = read_checkpoint(a / "checkpoints" / "last.pt"), read_checkpoint(b / "checkpoints" / "last.pt")
    assert ca.dim == 3 and ca.patch_size == [SIZE] * 3 and ca.training and ca.training.epoch == 3
    assert any(w.ndim == 5 for w in ca.weights.values())  # 3D convolution weights
    for key in ca.weights:
        torch.testing.assert_close(ca.weights[key], cb.weights[key], rtol=0, atol=1e-5, msg=key)
    assert [r["train_loss"] for r in ca.history] == pytest.approx(
        [r["train_loss"] for r in cb.history], abs=1e-5
    )
    assert read_store(a / "patches" / "train.h5")["images"].shape == (4, 4, SIZE, SIZE, SIZE)


# --------------------------------------------------------------------------------------------------------------
# End to end: extract -> train -> predict through the CLI, 2.5D and 3D
# --------------------------------------------------------------------------------------------------------------


def test_context_store_holds_the_neighbour_slices(tmp_path):
    from brats.extract import run_extract

    make_case(tmp_path / "cases", 0, shape=(24, 20, 8))
    base = {
        "data": {"root": str(tmp_path / "cases"), "train_fraction": 1.0, "val_fraction": 0.0},
        "patches": {"size": [16, 16], "stride": [8, 8], "min_foreground": 1, "background_fraction": 1.0},
    }
    stores = {}
    for k in (0, 1):
        cfg = config_from_dict(
            {
                **base,
                "output_dir": str(tmp_path / f"k{k}"),
                "patches": {**base["patches"], "context_slices": k},
            }
        )
        run_extract(cfg)
        stores[k] = read_store(tmp_path / f"k{k}" / "patches" / "train.h5")
    flat, ctx = stores[0], stores[1]
    assert ctx["info"]["context_slices"] == 1 and ctx["images"].shape[1] == 12
    np.testing.assert_array_equal(ctx["position"], flat["position"])
    at = {tuple(p): i for i, p in enumerate(flat["position"].tolist())}
    for i, (x, y, z) in enumerate(ctx["position"].tolist()):
        for j, dz in enumerate((-1, 0, 1)):
            got = ctx["images"][i, j::3]  # modality-major: channel c * 3 + j
            if (x, y, z + dz) in at:
                np.testing.assert_array_equal(got, flat["images"][at[(x, y, z + dz)]])
            elif not 0 <= z + dz < 8:
                assert not got.any()  # zeros beyond the first / last slice


@pytest.mark.parametrize("kind", ["2.5d", "3d"])
def test_extract_train_predict_end_to_end(tmp_path, kind):
    import nibabel as nib

    from brats.cli import main as cli_main
    from brats.config import config_to_yaml

    for i in range(4):
        make_case(tmp_path / "cases", i, shape=(24, 20, 8))
    common = {
        "output_dir": str(tmp_path / "run"),
        "data": {"root": str(tmp_path / "cases"), "train_fraction": 0.5, "val_fraction": 0.25},
        "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2},
        "augment": {"elastic": {"enabled": False}},
        "predict": {"postprocess": {"min_component_ml": 0, "et_min_ml": 0}},
    }
    if kind == "3d":
        extra = {"patches": {"dim": 3, "size": [16, 16, 8], "stride": [8, 8, 4]}, "model": SEGRESNET}
    else:
        extra = {
            "patches": {"size": [16, 16], "stride": [8, 8], "context_slices": 1},
            "model": {"encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 4]},
        }
    (tmp_path / "cfg.yaml").write_text(config_to_yaml(config_from_dict({**common, **extra})))
    c = ["--config", str(tmp_path / "cfg.yaml")]
    assert cli_main(["extract", *c]) == 0 and cli_main(["train", *c]) == 0
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert (ckpt.dim, ckpt.in_channels) == ((3, 4) if kind == "3d" else (2, 12))
    case = tmp_path / "cases" / "BraTS2021_00003"
    args = [
        "predict",
        "--checkpoint",
        str(tmp_path / "run" / "checkpoints" / "best.pt"),
        "--input",
        str(case),
    ]
    assert cli_main([*args, "--output", str(tmp_path / "pred"), "--tta"]) == 0
    out = nib.load(tmp_path / "pred" / "BraTS2021_00003.nii.gz")
    ref = nib.load(case / "BraTS2021_00003_seg.nii.gz")
    assert out.shape == ref.shape and np.allclose(out.affine, ref.affine)
    assert set(np.unique(np.asarray(out.dataobj))) <= {0, 1, 2, 4}  # the case's convention (ET = 4)


@pytest.mark.parametrize("name", ["demo3d", "demo25d", "brats21_3d"])
def test_shipped_volumetric_configs_are_consistent(name):
    from brats.config import load_config, shipped_config
    from brats.networks_monai import monai_kwargs

    cfg = load_config(shipped_config(name))
    k = input_multiple(cfg.model)
    assert all(s % k == 0 for s in cfg.patches.size), (cfg.patches.size, k)
    if cfg.patches.dim == 3:
        assert cfg.model.arch.startswith("monai.") and sorted(cfg.augment.flip.axes) == [0, 1, 2]
        monai_kwargs(cfg.model)  # every keyword is known to the MONAI class
    else:
        assert cfg.patches.context_slices == 1
    if name == "demo3d":
        assert any(p.ndim == 5 for p in build_model(cfg.model, 4, 4, dim=3).parameters())
