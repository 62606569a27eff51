"""TorchIO pipelines for 3D patches (``patches.dim: 3``); the 2D pipelines are :mod:`brats.train.augment`.

Same ``augment`` section, same order, same label rules as 2D: crop/pad to ``patches.size`` -> (train) OneOf
spatial transform -> per-channel percentile rescale inside the brain -> (train) OneOf intensity transform ->
remap source labels to training classes. The spatial transforms act on all three axes:

* ``flip``: ``augment.flip.axes`` any subset of ``[0, 1, 2]`` (X, Y, Z of the patch);
* ``affine``: rotation up to ``degrees`` about each axis, scaling ``1 +- scales`` per axis;
* ``anisotropy``: simulated downsampling along one of the three axes (intensities only, labels untouched);
* ``elastic``: a ``num_control_points`` ^ 3 grid, displacement up to ``max_displacement`` along each axis.

Images use linear interpolation, labels nearest neighbour (no new label values).
"""

from __future__ import annotations

import torchio as tio

from brats.config import AugmentConfig, Config
from brats.labels import LabelScheme, get_scheme
from brats.preprocess import nonzero_mask
from brats.train.augment import (
    AugmentError,
    ChannelwiseRescaleIntensity,
    PatchTransform,
    intensity_transforms,
    rescaled_channels,
)

__all__ = ["spatial_transforms_3d", "PatchTransform3D", "build_transform_3d"]


def spatial_transforms_3d(aug: AugmentConfig) -> dict[str, tio.Transform]:
    """The enabled 3D spatial transforms, by config name (``flip``, ``affine``, ``anisotropy``, ``elastic``)."""
    out: dict[str, tio.Transform] = {}
    if aug.flip.enabled:
        axes = tuple(int(a) for a in aug.flip.axes)
        if not axes or any(a not in (0, 1, 2) for a in axes):
            raise AugmentError(f"augment.flip.axes must be a non-empty subset of [0, 1, 2], got {list(axes)}")
        out["flip"] = tio.RandomFlip(axes=axes, flip_probability=0.5)
    if aug.affine.enabled:
        d, s = float(aug.affine.degrees), float(aug.affine.scales)
        if d < 0 or not 0 <= s < 1:
            raise AugmentError(f"augment.affine needs degrees >= 0 and 0 <= scales < 1, got {d}, {s}")
        out["affine"] = tio.RandomAffine(
            scales=(1 - s, 1 + s),
            degrees=d,
            translation=0,
            image_interpolation="linear",
            label_interpolation="nearest",
            default_pad_value=0,
            default_pad_label=0,
        )
    if aug.anisotropy.enabled:
        lo, hi = (list(aug.anisotropy.downsampling) + [None])[:2]
        if lo is None or hi is None or not 1 <= lo <= hi:
            raise AugmentError(
                f"augment.anisotropy.downsampling must be [min, max] with 1 <= min <= max, "
                f"got {aug.anisotropy.downsampling}"
            )
        out["anisotropy"] = tio.RandomAnisotropy(axes=(0, 1, 2), downsampling=(lo, hi), scalars_only=True)
    if aug.elastic.enabled:
        n, m = int(aug.elastic.num_control_points), float(aug.elastic.max_displacement)
        if n < 5 or m < 0:
            raise AugmentError(
                f"augment.elastic needs num_control_points >= 5 and max_displacement >= 0, got {n}, {m}"
            )
        out["elastic"] = tio.RandomElasticDeformation(
            num_control_points=n,
            max_displacement=m,
            image_interpolation="linear",
            label_interpolation="nearest",
        )
    return out


def _one_of(
    transforms: dict[str, tio.Transform], aug: AugmentConfig, p: float, key: str
) -> tio.Transform | None:
    if not 0.0 <= p <= 1.0:
        raise AugmentError(f"augment.{key} must be a probability in [0, 1], got {p}")
    weights = {n: float(getattr(aug, n).weight) for n in transforms}
    if any(w < 0 for w in weights.values()):
        raise AugmentError(f"augment weights must be >= 0, got {weights}")
    chosen = {transforms[n]: w for n, w in weights.items() if w > 0}
    if not chosen or p == 0:
        return None
    return tio.OneOf(chosen, p=p)


class PatchTransform3D(PatchTransform):
    """:class:`~brats.train.augment.PatchTransform` for 3D samples ``{"image": (C, X, Y, Z), "label": (X, Y, Z)}``."""

    def __init__(self, transform: tio.Transform, scheme: LabelScheme | str):
        super().__init__(transform, scheme, dim=3)


def build_transform_3d(cfg: Config, split: str, label_scheme: LabelScheme | str) -> PatchTransform3D:
    """The 3D pipeline of ``split`` (``train``, ``val`` or ``test``); see the module doc.

    Raises:
        AugmentError: not 3D patches, a bad split name, an invalid augmentation parameter, or (train) a
            2D-only transform (``gamma``, ``blur``, ``lesion_contrast``, ``channel_bias``, ``thick_slices``,
            ``intensity_curve``, ``modality_dropout``) enabled.
    """
    if split not in ("train", "val", "test"):
        raise AugmentError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if cfg.patches.dim != 3:
        raise AugmentError(f"build_transform_3d needs patches.dim: 3, got {cfg.patches.dim}")
    aug = cfg.augment
    steps: list[tio.Transform] = []
    if aug.crop_or_pad:
        steps.append(tio.CropOrPad(tuple(int(s) for s in cfg.patches.size), padding_mode=0))
    random_on = split == "train" and aug.enabled
    two_d = (
        "gamma",
        "blur",
        "lesion_contrast",
        "channel_bias",
        "thick_slices",
        "intensity_curve",
        "modality_dropout",
    )
    two_d_only = [k for k in two_d if getattr(aug, k).enabled]
    if random_on and two_d_only:
        raise AugmentError(f"augment.{two_d_only[0]} is for 2D patches only; disable it for patches.dim: 3")
    if random_on:
        spatial = _one_of(spatial_transforms_3d(aug), aug, aug.spatial_p, "spatial_p")
        if spatial is not None:
            steps.append(spatial)
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
        intensity = _one_of(intensity_transforms(aug), aug, aug.intensity_p, "intensity_p")
        if intensity is not None:
            steps.append(intensity)
    scheme = get_scheme(label_scheme)
    steps.append(tio.RemapLabels(scheme.mapping))
    return PatchTransform3D(tio.Compose(steps), scheme)
