"""TorchIO transform pipelines built from the config (train / val / test), label remapping included.

A pipeline is a callable on a :class:`brats.data.PatchDataset` sample ``{"image": float32 (C, H, W),
"label": (H, W) source labels (0, 1, 2, 4 or 0, 1, 2, 3), "index": i}`` and returns the same dict with
``"image"`` a float32 tensor ``(C, H, W)`` and ``"label"`` an int64 tensor ``(H, W)`` of *training classes*
``0 background, 1 NCR, 2 ED, 3 ET``. Inside, a 2D patch is a TorchIO subject of shape ``(C, H, W, 1)``.

The train pipeline reproduces the seed article's (each step configurable under ``augment``)::

    CropOrPad(patch size)
    OneOf{RandomFlip, RandomAffine, RandomAnisotropy, RandomElasticDeformation}   p = spatial_p, weights from config
    RandomLesionContrast(min_scale, sigma, target)                                 p = lesion_contrast.p (if enabled)
    RandomChannelThickSlices(thickness), each channel                              p = thick_slices.p (if enabled)
    RandomChannelBias(max_std, grid)                                               p = channel_bias.p (if enabled)
    ChannelwiseRandomGamma(log_gamma)                                              p = gamma.p (if enabled)
    RandomIntensityCurve(max_std, knots)                                           p = intensity_curve.p (if enabled)
      (these five on each modality and its mirror, asymmetry recomputed: augment.recompute_asymmetry)
    RescaleIntensity(out_min_max, percentiles, mask = non-zero voxels)            per channel
    OneOf{RandomNoise, RandomBiasField}                                            p = intensity_p
      (intensity_combine: each -> RandomNoise, then RandomBiasField, each with p = intensity_p)
    RandomBlur(std)                                                                p = blur.p (if enabled)
    RandomModalityDropout(modalities)                                              p = modality_dropout.p (if enabled)
    RemapLabels(scheme.mapping)                                                    e.g. {0: 0, 1: 1, 2: 2, 4: 3}

Validation and test use CropOrPad, RescaleIntensity and RemapLabels only. Label maps are resampled with
nearest-neighbour interpolation; rotations pad images with 0 (the background of a normalised patch) and labels
with 0. Randomness comes from ``torch``'s generator, so seeding torch (per worker, per epoch) reproduces it.

:func:`brats.preprocess.rescale_batch` is the batched torch twin of the per-channel rescaling, used by prediction
on every window.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torchio as tio

from brats.asymmetry import rescaled_channels as modality_channels
from brats.config import AugmentConfig, Config
from brats.errors import BratsError
from brats.labels import CLASS_NAMES, NUM_CLASSES, LabelScheme, check_labels, get_scheme
from brats.preprocess import nonzero_mask
from brats.train.channel_bias import RandomChannelBias
from brats.train.intensity_curve import ChannelwiseRandomGamma, RandomIntensityCurve
from brats.train.lesion_contrast import RandomLesionContrast
from brats.train.mirror_pairs import GAP, MirrorPairs
from brats.train.modality_dropout import RandomModalityDropout
from brats.train.thick_slices import RandomChannelThickSlices
from brats.train.tio_copies import SHARE_SUBJECTS, set_copies
from brats.train.warp import RandomAffine2D, RandomElastic2D

__all__ = [
    "AugmentError",
    "PatchTransform",
    "ChannelwiseRescaleIntensity",
    "ChannelwiseRandomGamma",
    "spatial_transforms",
    "intensity_transforms",
    "build_transform",
    "check_prob",
    "oneof_weights",
    "rescaled_channels",
    "set_copies",
    "SHARE_SUBJECTS",
]

Split = Literal["train", "val", "test"]


class AugmentError(BratsError, ValueError):
    """A pipeline cannot be built from the config, or a sample does not fit it."""


class ChannelwiseRescaleIntensity(tio.RescaleIntensity):
    """:class:`torchio.RescaleIntensity` applied to each channel on its own (statistics and mask per channel).

    TorchIO pools all channels of an image; modalities have different intensity distributions, so each channel
    gets its own percentiles here. A channel whose mask is empty, or whose clipped range is 0, is left unchanged
    (TorchIO's rule). ``channels``: rescale only the first ``channels`` channels and leave the rest as they are
    (the asymmetry channels of :mod:`brats.asymmetry`, whose magnitude is the signal); None: all.
    """

    def __init__(self, *args: Any, channels: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channels = channels

    def apply_normalization(self, subject: tio.Subject, image_name: str, mask: torch.Tensor) -> None:
        image = subject.get_scalar_image(image_name)
        data = image.data
        n = data.shape[0] if self.channels is None else min(int(self.channels), data.shape[0])
        with (
            warnings.catch_warnings()
        ):  # an empty or constant channel is left unchanged: documented, not news
            warnings.simplefilter("ignore", RuntimeWarning)
            channels = [
                self.rescale(data[c : c + 1], mask[c : c + 1], f"{image_name}[{c}]").float() for c in range(n)
            ]
        image.set_data(torch.cat([*channels, data[n:].float()], dim=0))


def check_prob(value: float, key: str) -> float:
    """``value`` if it is a probability in [0, 1], else :class:`AugmentError` naming ``augment.<key>``."""
    if not 0.0 <= value <= 1.0:
        raise AugmentError(f"augment.{key} must be a probability in [0, 1], got {value}")
    return value


def spatial_transforms(aug: AugmentConfig) -> dict[str, tio.Transform]:
    """The enabled spatial transforms of the train pipeline, by config name (``flip``, ``affine``,
    ``anisotropy``, ``elastic``), each built to apply whenever it is called (the OneOf draws among them).

    All work on a 2D subject ``(C, H, W, 1)``: rotation only about the axis normal to the patch, no scaling,
    displacement or downsampling along that axis. Labels use nearest-neighbour interpolation. With
    ``augment.warp: torch`` the affine and elastic warps are :mod:`brats.train.warp`'s grid_sample versions.
    """
    out: dict[str, tio.Transform] = {}
    if aug.flip.enabled:
        axes = tuple(int(a) for a in aug.flip.axes)
        if not axes or any(a not in (0, 1) for a in axes):
            raise AugmentError(f"augment.flip.axes must be a non-empty subset of [0, 1], got {list(axes)}")
        out["flip"] = tio.RandomFlip(axes=axes, flip_probability=0.5)
    if aug.affine.enabled:
        d, s = float(aug.affine.degrees), float(aug.affine.scales)
        if d < 0 or not 0 <= s < 1:
            raise AugmentError(f"augment.affine needs degrees >= 0 and 0 <= scales < 1, got {d}, {s}")
        out["affine"] = (
            RandomAffine2D(d, s)
            if aug.warp == "torch"
            else tio.RandomAffine(
                scales=(1 - s, 1 + s, 1 - s, 1 + s, 1, 1),
                degrees=(0, 0, 0, 0, -d, d),
                translation=0,
                image_interpolation="linear",
                label_interpolation="nearest",
                default_pad_value=0,
                default_pad_label=0,
            )
        )
    if aug.anisotropy.enabled:
        lo, hi = (list(aug.anisotropy.downsampling) + [None])[:2]
        if lo is None or hi is None or not 1 <= lo <= hi:
            raise AugmentError(
                f"augment.anisotropy.downsampling must be [min, max] with 1 <= min <= max, "
                f"got {aug.anisotropy.downsampling}"
            )
        # scalars_only: the label map is untouched (the transform only blurs intensities).
        out["anisotropy"] = tio.RandomAnisotropy(axes=(0, 1), downsampling=(lo, hi), scalars_only=True)
    if aug.elastic.enabled:
        n = int(aug.elastic.num_control_points)
        m = float(aug.elastic.max_displacement)
        if n < 5 or m < 0:
            raise AugmentError(
                f"augment.elastic needs num_control_points >= 5 and max_displacement >= 0, got {n}, {m}"
            )
        out["elastic"] = (
            RandomElastic2D(n, m)
            if aug.warp == "torch"
            else tio.RandomElasticDeformation(
                num_control_points=(n, n, 5),
                max_displacement=(m, m, 0),
                image_interpolation="linear",
                label_interpolation="nearest",
            )
        )
    return out


def oneof_weights(aug: AugmentConfig, names: Sequence[str]) -> list[float]:
    """The ``weight`` of each transform ``names`` in a OneOf group, as floats; :class:`AugmentError` if one is
    negative. Shared with the batched engine (:mod:`brats.train.batch_augment`)."""
    weights = [float(getattr(aug, n).weight) for n in names]
    if any(w < 0 for w in weights):
        raise AugmentError(f"augment weights must be >= 0, got {dict(zip(names, weights))}")
    return weights


def intensity_transforms(aug: AugmentConfig) -> dict[str, tio.Transform]:
    """The enabled intensity transforms of the train pipeline (``noise``, ``bias_field``), by config name."""
    out: dict[str, tio.Transform] = {}
    if aug.noise.enabled:
        out["noise"] = tio.RandomNoise(mean=0, std=(0, float(aug.noise.std)))
    if aug.bias_field.enabled:
        out["bias_field"] = tio.RandomBiasField(coefficients=float(aug.bias_field.coefficients), order=3)
    return out


def channel_transforms(
    aug: AugmentConfig, scheme: LabelScheme | None = None, pairs: bool = False
) -> tuple[list[tio.Transform], list[tio.Transform]]:
    """The enabled independent intensity transforms: (before the rescaling, after it).

    ``scheme`` (the source labels) is needed by ``lesion_contrast.target: edema``; None: BraTS 2021 labels.
    ``pairs``: the transforms before the rescaling will run inside :class:`MirrorPairs`.
    """
    before: list[tio.Transform] = []
    after: list[tio.Transform] = []
    lc = aug.lesion_contrast
    if lc.enabled:
        p = check_prob(lc.p, "lesion_contrast.p")
        labels = _faded_labels(lc.target, scheme or get_scheme("brats2021"))
        try:  # the transform checks its own ranges; name the config key
            before.append(RandomLesionContrast(lc.min_scale, lc.sigma, labels=labels, p=p))
        except ValueError as err:
            raise AugmentError(f"augment.lesion_contrast.{err}") from None
    ts = aug.thick_slices
    if ts.enabled:
        try:
            p = check_prob(ts.p, "thick_slices.p")
            before.append(RandomChannelThickSlices(ts.thickness, p, pair_gap=GAP * pairs))
        except ValueError as err:
            raise AugmentError(f"augment.thick_slices.{err}") from None
    cb = aug.channel_bias
    if cb.enabled:
        p = check_prob(cb.p, "channel_bias.p")
        try:
            before.append(RandomChannelBias(cb.max_std, cb.grid, p=p))
        except ValueError as err:
            raise AugmentError(f"augment.channel_bias.{err}") from None
    if aug.gamma.enabled:
        if aug.gamma.log_gamma < 0:
            raise AugmentError(f"augment.gamma.log_gamma must be >= 0, got {aug.gamma.log_gamma}")
        before.append(ChannelwiseRandomGamma(aug.gamma.log_gamma, p=check_prob(aug.gamma.p, "gamma.p")))
    ic = aug.intensity_curve
    if ic.enabled:
        try:
            before.append(RandomIntensityCurve(ic.max_std, ic.knots, p=check_prob(ic.p, "intensity_curve.p")))
        except ValueError as err:
            raise AugmentError(f"augment.intensity_curve.{err}") from None
    if aug.blur.enabled:
        if aug.blur.std < 0:
            raise AugmentError(f"augment.blur.std must be >= 0, got {aug.blur.std}")
        std = float(aug.blur.std)
        blur_std: Any = (0.0, std, 0.0, std, 0.0, 0.0)  # in-plane only (TorchIO accepts 6 values)
        after.append(tio.RandomBlur(std=blur_std, p=check_prob(aug.blur.p, "blur.p")))
    return before, after


def _one_of(transforms: dict[str, tio.Transform], aug: AugmentConfig, p: float) -> tio.Transform | None:
    names = [n for n, w in zip(transforms, oneof_weights(aug, list(transforms))) if w > 0]
    if not names or p == 0:
        return None
    weights = oneof_weights(aug, names)
    return tio.OneOf({transforms[n]: w for n, w in zip(names, weights)}, p=p)


def _intensity(aug: AugmentConfig) -> list[tio.Transform]:
    """The noise / bias-field step: one of them (``intensity_combine: one_of``) or each on its own (``each``)."""
    p = check_prob(aug.intensity_p, "intensity_p")
    transforms = intensity_transforms(aug)
    if aug.intensity_combine == "each":
        names = [n for n, w in zip(transforms, oneof_weights(aug, list(transforms))) if w > 0]
        return [tio.Compose([transforms[n]], p=p) for n in names] if p > 0 else []
    if aug.intensity_combine != "one_of":
        raise AugmentError(f"augment.intensity_combine must be one_of or each, got {aug.intensity_combine!r}")
    one = _one_of(transforms, aug, p)
    return [] if one is None else [one]


class PatchTransform:
    """A TorchIO pipeline applied to a dataset sample (see the module doc). Picklable (DataLoader workers).

    Args:
        transform: a TorchIO transform for a subject with ``image`` ``(C, X, Y, Z)`` and ``label`` ``(1, X, Y, Z)``
            (a 2D patch is given a trailing axis of 1).
        scheme: the source label scheme; labels outside it raise :class:`brats.labels.LabelError`.
        dim: 2 for samples ``{"image": (C, H, W), "label": (H, W)}``, 3 for ``(C, X, Y, Z)`` / ``(X, Y, Z)``.
    """

    def __init__(self, transform: tio.Transform, scheme: LabelScheme | str, dim: int = 2):
        if dim not in (2, 3):
            raise AugmentError(f"PatchTransform: dim must be 2 or 3, got {dim}")
        self.transform = transform
        self.scheme = get_scheme(scheme)
        self.dim = dim

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image = torch.as_tensor(np.asarray(sample["image"]), dtype=torch.float32)
        label = np.asarray(sample["label"])
        if image.ndim != self.dim + 1 or label.shape != tuple(image.shape[1:]):
            axes = "(C, H, W) and label (H, W)" if self.dim == 2 else "(C, X, Y, Z) and label (X, Y, Z)"
            raise AugmentError(
                f"sample {sample.get('index')}: expected image {axes}, got {tuple(image.shape)} and {label.shape}"
            )
        check_labels(label, self.scheme, where=f"patch {sample.get('index')}")
        lab = torch.as_tensor(label.astype(np.int64))[None]
        if self.dim == 2:  # TorchIO subjects are 3D: a 2D patch is one voxel thick
            image, lab = image.unsqueeze(-1), lab.unsqueeze(-1)
        out = self.transform(tio.Subject(image=tio.ScalarImage(tensor=image), label=tio.LabelMap(tensor=lab)))
        image_out = out["image"].data  # type: ignore[attr-defined]
        label_out = out["label"].data[0]  # type: ignore[attr-defined]
        if self.dim == 2:
            image_out, label_out = image_out[..., 0], label_out[..., 0]
        result = dict(sample)
        result["image"] = image_out.float().contiguous()
        result["label"] = label_out.long().contiguous()
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r}, scheme={self.scheme.name})"


def _faded_labels(target: str, scheme: LabelScheme) -> tuple[int, ...] | None:
    """Source labels that ``augment.lesion_contrast.target`` fades (None: every tumour label)."""
    if target == "tumour":
        return None
    if target == "edema" and scheme.num_classes == NUM_CLASSES:
        return (scheme.source_labels[1 + CLASS_NAMES.index("ED")],)  # training class 2 -> its source label
    if target == "edema":
        raise AugmentError(
            f"augment.lesion_contrast.target: 'edema' needs a BraTS label scheme, not {scheme.name}"
        )
    raise AugmentError(f"augment.lesion_contrast.target must be 'tumour' or 'edema', got {target!r}")


def _modality_dropout(cfg: Config) -> tio.Transform:
    p = check_prob(cfg.augment.modality_dropout.p, "modality_dropout.p")
    n = len(cfg.data.modalities)
    if n < 2:
        raise AugmentError(
            f"augment.modality_dropout needs at least 2 modalities in data.modalities, got {n}"
        )
    return RandomModalityDropout(n, cfg.preprocess.asymmetry, cfg.patches.context_slices, p=p)


def rescaled_channels(cfg: Config) -> int | None:
    """The leading input channels the per-channel rescaling applies to: the modalities (x (2k + 1) in 2.5D)
    when ``preprocess.asymmetry`` appends asymmetry channels after them, else None (every channel)."""
    return modality_channels(len(cfg.data.modalities), cfg.preprocess.asymmetry, cfg.patches.context_slices)


def build_transform(cfg: Config, split: Split, label_scheme: LabelScheme | str) -> PatchTransform:
    """The pipeline of ``split`` (``"train"``, ``"val"`` or ``"test"``) from ``cfg.augment`` and ``cfg.patches``.

    ``train`` adds the random spatial and intensity transforms when ``augment.enabled``; ``val`` and ``test``
    only crop/pad, rescale and remap. ``label_scheme`` (``brats2021``/``brats2023`` or a
    :class:`~brats.labels.LabelScheme`) gives the source labels, e.g. the store's ``label_scheme`` attribute.

    Raises:
        AugmentError: 3D patches, a bad split name, or an invalid augmentation parameter.
    """
    if split not in ("train", "val", "test"):
        raise AugmentError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if cfg.patches.dim != 2:
        raise AugmentError(f"3D augmentation is not supported yet (patches.dim={cfg.patches.dim})")
    aug = cfg.augment
    scheme = get_scheme(label_scheme)
    steps: list[tio.Transform] = []
    if aug.crop_or_pad:
        h, w = cfg.patches.size
        steps.append(tio.CropOrPad((int(h), int(w), 1), padding_mode=0))
    random_on = split == "train" and aug.enabled
    if random_on:
        spatial = _one_of(spatial_transforms(aug), aug, check_prob(aug.spatial_p, "spatial_p"))
        if spatial is not None:
            steps.append(spatial)
    pairs = bool(aug.recompute_asymmetry and cfg.preprocess.asymmetry)  # brats/train/mirror_pairs.py
    before, after = channel_transforms(aug, scheme, pairs) if random_on else ([], [])
    if before and pairs:
        steps.append(MirrorPairs(before, int(rescaled_channels(cfg) or 0)))
    else:
        steps += before
    if aug.rescale.enabled:
        r = aug.rescale
        if len(r.out_min_max) != 2 or len(r.percentiles) != 2:
            raise AugmentError(
                f"augment.rescale.out_min_max and .percentiles need 2 values, got {r.out_min_max}, {r.percentiles}"
            )
        steps.append(
            ChannelwiseRescaleIntensity(
                out_min_max=(float(r.out_min_max[0]), float(r.out_min_max[1])),
                percentiles=(float(r.percentiles[0]), float(r.percentiles[1])),
                masking_method=nonzero_mask,
                channels=rescaled_channels(cfg),
            )
        )
    if random_on:
        steps += _intensity(aug)
    steps += after
    if random_on and aug.modality_dropout.enabled:
        steps.append(_modality_dropout(cfg))
    steps.append(tio.RemapLabels(scheme.mapping))
    pipeline = tio.Compose(steps)
    if SHARE_SUBJECTS:
        set_copies(pipeline, False)
    return PatchTransform(pipeline, scheme)
