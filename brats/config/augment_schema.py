"""The ``augment`` section of the config schema: the training pipeline's spatial and intensity transforms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from brats.config.fields import _f

__all__ = [
    "TransformConfig",
    "FlipConfig",
    "AffineConfig",
    "AnisotropyConfig",
    "ElasticConfig",
    "RescaleConfig",
    "NoiseConfig",
    "BiasFieldConfig",
    "GammaConfig",
    "LesionContrastConfig",
    "ChannelBiasConfig",
    "IntensityCurveConfig",
    "ModalityDropoutConfig",
    "BlurConfig",
    "ThickSlicesConfig",
    "TumourPasteConfig",
    "AugmentConfig",
]


@dataclass
class TransformConfig:
    enabled: bool = _f(True, "Use this transform.")
    weight: float = _f(1.0, "Relative weight inside its OneOf group.")


@dataclass
class FlipConfig(TransformConfig):
    axes: list[int] = _f(
        [0, 1], "Spatial axes that may be flipped (0 = X, 1 = Y of an axial patch; 3D patches also 2 = Z)."
    )


@dataclass
class AffineConfig(TransformConfig):
    degrees: float = _f(20.0, "Maximum rotation in degrees (2D: in-plane; 3D: about each axis).")
    scales: float = _f(0.1, "Maximum relative scaling.")


@dataclass
class AnisotropyConfig(TransformConfig):
    downsampling: list[float] = _f([1.5, 3.0], "Range of the simulated downsampling factor.")


@dataclass
class ElasticConfig(TransformConfig):
    weight: float = _f(0.25, "Relative weight inside its OneOf group (elastic deformation is slow).")
    num_control_points: int = _f(7, "Control points of the deformation grid.")
    max_displacement: float = _f(7.5, "Maximum displacement in voxels.")


@dataclass
class RescaleConfig:
    enabled: bool = _f(True, "Rescale intensities per channel inside the brain.")
    out_min_max: list[float] = _f([-1.0, 1.0], "Output intensity range.")
    percentiles: list[float] = _f([0.5, 99.5], "Input percentiles mapped to the output range.")


@dataclass
class NoiseConfig(TransformConfig):
    std: float = _f(0.1, "Maximum standard deviation of the Gaussian noise.")


@dataclass
class BiasFieldConfig(TransformConfig):
    coefficients: float = _f(0.5, "Maximum magnitude of the polynomial bias-field coefficients.")


@dataclass
class GammaConfig:
    enabled: bool = _f(False, "Random gamma per channel, applied before the rescaling (non-linear contrast).")
    p: float = _f(0.5, "Probability of applying it to a patch (each channel draws its own gamma).")
    log_gamma: float = _f(0.4, "Gamma = exp(u), u uniform in [-log_gamma, log_gamma].")


@dataclass
class LesionContrastConfig:
    enabled: bool = _f(
        False,
        "Random tumour-to-brain contrast per channel (the tumour pulled towards the median of the brain around "
        "it), before the rescaling; uses the label map (brats/train/lesion_contrast.py).",
    )
    p: float = _f(0.5, "Probability of applying it to a patch that holds tumour.", ge=0, le=1)
    min_scale: float = _f(0.25, "Smallest contrast factor drawn per channel (1: no change).", ge=0, le=1)
    sigma: float = _f(1.0, "Smoothing of the tumour mask's edge, in voxels (partial volume).", ge=0)
    target: Literal["tumour", "edema"] = _f(
        "tumour",
        "Which voxels fade: `tumour` (every tumour label) or `edema` (ED only: the core keeps its contrast, so "
        "enhancing tumour still enhances; BraTS label schemes only).",
    )


@dataclass
class ChannelBiasConfig:
    enabled: bool = _f(
        False,
        "Random smooth bias field drawn per channel (each sequence its own gain), before the rescaling "
        "(brats/train/channel_bias.py).",
    )
    p: float = _f(0.5, "Probability of applying it to a patch.", ge=0, le=1)
    max_std: float = _f(0.4, "Largest standard deviation of the log gain inside a patch.", ge=0)
    grid: int = _f(3, "Control points per side of the field (2: a gradient; more: more local).", ge=2, le=16)


@dataclass
class IntensityCurveConfig:
    enabled: bool = _f(
        False,
        "Random monotone piecewise-linear intensity curve per channel, with random contrast between intensity "
        "levels, before the rescaling (brats/train/intensity_curve.py).",
    )
    p: float = _f(0.5, "Probability of applying it to a patch.", ge=0, le=1)
    max_std: float = _f(1.0, "Largest standard deviation of the log change of a segment's contrast.", ge=0)
    knots: int = _f(4, "Inner knots, at quantiles of the channel's brain intensities.", ge=1, le=16)


@dataclass
class ModalityDropoutConfig:
    enabled: bool = _f(
        False,
        "Set every channel of one random modality to 0 in a training patch (its 2.5D neighbours and asymmetry "
        "channel too), after the rescaling (brats/train/modality_dropout.py); 2D only, two modalities or more.",
    )
    p: float = _f(0.5, "Probability that a patch loses one modality (drawn uniformly).", ge=0, le=1)


@dataclass
class BlurConfig:
    enabled: bool = _f(False, "Random Gaussian blur (thick slices, low resolution), after the rescaling.")
    p: float = _f(0.2, "Probability of applying it to a patch.")
    std: float = _f(1.0, "Maximum standard deviation of the blur kernel, in voxels.")


@dataclass
class ThickSlicesConfig:
    enabled: bool = _f(
        False,
        "Resample each channel (a modality, with its mirror image) on its own as if acquired with thick slices "
        "along a random in-plane axis, before the rescaling (brats/train/thick_slices.py); 2D only.",
    )
    p: float = _f(0.25, "Probability that a channel is resampled, drawn for each channel.", ge=0, le=1)
    thickness: list[float] = _f([2.0, 7.0], "Range of the slice thickness in voxels, [min, max], min >= 1.")


@dataclass
class TumourPasteConfig:
    enabled: bool = _f(
        False,
        "Paste the tumour of a random training patch, flipped at random, into tumour-free training patches with "
        "a soft edge, labels included, before the other transforms (TumorCP; brats/train/tumour_paste.py); 2D only.",
    )
    p: float = _f(0.5, "Probability that a tumour-free patch gets a tumour.", ge=0, le=1)
    sigma: float = _f(1.0, "Smoothing of the pasted tumour's edge, in voxels (0: a hard edge).", ge=0)


@dataclass
class AugmentConfig:
    enabled: bool = _f(True, "Apply the training augmentations (false: only crop/pad, rescale and remap).")
    crop_or_pad: bool = _f(True, "Crop or pad every patch to the patch size.")
    spatial_p: float = _f(
        0.95, "Probability of applying one spatial transform (OneOf flip/affine/anisotropy/elastic)."
    )
    flip: FlipConfig = _f(FlipConfig(), "Random flips.")
    affine: AffineConfig = _f(AffineConfig(), "Random rotation and scaling.")
    anisotropy: AnisotropyConfig = _f(AnisotropyConfig(enabled=False), "Random anisotropic downsampling.")
    elastic: ElasticConfig = _f(ElasticConfig(), "Random elastic deformation.")
    warp: Literal["torchio", "torch"] = _f(
        "torchio",
        "How 2D patches are resampled by `affine` and `elastic`: `torchio` (TorchIO's RandomAffine and "
        "RandomElasticDeformation, through SimpleITK) or `torch` (the same draws resampled by torch "
        "grid_sample, all channels at once; brats/train/warp.py).",
    )
    engine: Literal["patch", "batch"] = _f(
        "patch",
        "How the training patches are augmented: `patch` (the TorchIO pipeline, one patch at a time, in the "
        "dataset) or `batch` (the same transforms drawn per patch and applied to the whole batch at once by "
        "torch, in the loader's collate step; brats/train/batch_augment.py). `batch` runs 2D patches with flip, "
        "affine, elastic (`warp: torch`), channel_bias, rescale, noise and bias_field only.",
    )
    rescale: RescaleConfig = _f(
        RescaleConfig(), "Percentile intensity rescaling (also at validation and test)."
    )
    intensity_p: float = _f(
        0.95,
        "Probability of the noise/bias-field step: of one transform of the OneOf, or of each one "
        "(`intensity_combine: each`).",
    )
    intensity_combine: Literal["one_of", "each"] = _f(
        "one_of",
        "`one_of`: at most one of noise and bias field per patch (OneOf, probability `intensity_p`, by weight); "
        "`each`: each enabled one on its own, with probability `intensity_p` (a patch can get both).",
    )
    noise: NoiseConfig = _f(NoiseConfig(), "Random Gaussian noise.")
    bias_field: BiasFieldConfig = _f(BiasFieldConfig(), "Random smooth bias field.")
    gamma: GammaConfig = _f(GammaConfig(), "Random per-channel gamma (independent of the OneOf groups).")
    lesion_contrast: LesionContrastConfig = _f(
        LesionContrastConfig(), "Random tumour-to-brain contrast (independent of the OneOf groups)."
    )
    channel_bias: ChannelBiasConfig = _f(
        ChannelBiasConfig(), "Random bias field per channel (independent of the OneOf groups)."
    )
    tumour_paste: TumourPasteConfig = _f(
        TumourPasteConfig(), "Tumour copy-paste into tumour-free patches (before the other transforms)."
    )
    thick_slices: ThickSlicesConfig = _f(
        ThickSlicesConfig(), "Random thick slices per channel (independent of the OneOf groups)."
    )
    intensity_curve: IntensityCurveConfig = _f(
        IntensityCurveConfig(), "Random intensity curve per channel (independent of the OneOf groups)."
    )
    blur: BlurConfig = _f(BlurConfig(), "Random blur (independent of the OneOf groups).")
    modality_dropout: ModalityDropoutConfig = _f(
        ModalityDropoutConfig(),
        "Random modality dropout (the last random step; independent of the OneOf groups).",
    )
    recompute_asymmetry: bool = _f(
        False,
        "With `preprocess.asymmetry`: the transforms before the rescaling (`lesion_contrast`, `thick_slices`, "
        "`channel_bias`, `gamma`, `intensity_curve`) act on each modality and on its mirror image, and the asymmetry channels are computed again "
        "from them (brats/train/mirror_pairs.py); false: they act on the stored asymmetry channels as on any "
        "channel. No effect without `preprocess.asymmetry`.",
    )
