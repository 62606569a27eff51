"""The config schema: one dataclass per section, each field documented (``metadata["doc"]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from brats.config.augment_schema import (
    AffineConfig,
    AnisotropyConfig,
    AugmentConfig,
    BiasFieldConfig,
    ElasticConfig,
    FlipConfig,
    NoiseConfig,
    RescaleConfig,
    TransformConfig,
)
from brats.config.fields import RANGE_KEYS, ConfigError, _f
from brats.config.predict_schema import PostprocessConfig, PredictConfig

__all__ = [
    "RANGE_KEYS",
    "ConfigError",
    "DataConfig",
    "PreprocessConfig",
    "PatchConfig",
    "TransformConfig",
    "FlipConfig",
    "AffineConfig",
    "AnisotropyConfig",
    "ElasticConfig",
    "RescaleConfig",
    "NoiseConfig",
    "BiasFieldConfig",
    "AugmentConfig",
    "ModelConfig",
    "LossConfig",
    "SchedulerConfig",
    "TrainConfig",
    "PostprocessConfig",
    "PredictConfig",
    "Config",
]

# --------------------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    root: str = _f("data/synth", "Folder of cases (one sub-folder per patient, any BraTS naming).")
    naming: Literal["auto", "2020", "2021", "2023", "custom", "kaggle_3m"] = _f(
        "auto",
        "Naming scheme of the case files; `auto` detects 2020, 2021, 2023 or kaggle_3m (LGG TIFF slices, "
        "binary masks; docs/lgg.md).",
    )
    pattern: str | None = _f(
        None,
        "For `naming: custom`: file pattern relative to a case folder, with `{case}` and `{modality}` "
        "placeholders, e.g. `{case}_{modality}.nii.gz`. Modality names are those of `modalities` plus `seg`.",
    )
    modalities: list[str] = _f(
        ["t1", "t1ce", "t2", "flair"],
        "Input channels, in order (t1, t1ce, t2, flair; 2023 files t1n/t1c/t2w/t2f map to the same names). "
        "The same order is used in the HDF5 store, the model input and the docs.",
    )
    train_fraction: float = _f(0.7, "Fraction of patients in the training split.", ge=0, le=1)
    val_fraction: float = _f(
        0.15, "Fraction of patients in the validation split (the rest is the test split).", ge=0, le=1
    )
    split_seed: int = _f(0, "Seed of the patient-level split.")
    fold: int | None = _f(
        None,
        "k-fold mode: use fold `fold` (0-based) of `n_folds` as validation, the rest as training.",
        ge=0,
    )
    n_folds: int = _f(5, "Number of folds in k-fold mode.", ge=2)
    skip_invalid: bool = _f(False, "Skip invalid cases with a warning instead of stopping with an error.")
    slice_spacing_mm: float = _f(
        1.0,
        "kaggle_3m only: distance between TIFF slices in mm, used for the affine of written NIfTI files, HD95 "
        "and volumes (the dataset does not record it; 1.0 = voxel units). In-plane spacing is 1 mm.",
    )


@dataclass
class PreprocessConfig:
    normalization: Literal["zscore", "percentile"] = _f(
        "zscore",
        "Per-case, per-modality intensity normalisation inside the brain (non-zero voxels): `zscore` "
        "(mean 0, std 1) or `percentile` (rescale percentiles to [0, 1], as the seed article does).",
    )
    percentiles: list[float] = _f(
        [0.5, 99.5],
        "Lower and upper percentiles for `percentile` normalisation (0 <= lower < upper <= 100).",
        ge=0,
        le=100,
    )
    dtype: Literal["float16", "float32"] = _f("float16", "Storage dtype of the normalised images.")
    bias_correction: Literal["none", "n4"] = _f(
        "none",
        "Bias-field correction of each modality before normalisation, at extraction and prediction alike: "
        "`none`, or `n4` (ITK's N4 through SimpleITK, fitted inside the brain on an ~8 mm grid; about 3.5 s a "
        "case on one core).",
    )
    downsample: int = _f(
        1,
        "In-plane block size of the model's grid: 2 pools each axial slice's 2 x 2 blocks (1 mm -> 2 mm; images "
        "by their mean inside the brain, labels by majority) at extraction and prediction, and prediction "
        "brings the probabilities back to the input's grid by bilinear upsampling before decoding. 1 = off.",
        ge=1,
        le=4,
    )
    asymmetry: bool = _f(
        False,
        "Add one channel per modality to the model's input: the modality minus its mirror image about the "
        "brain's mid-sagittal plane (0 outside the brain), at extraction and prediction (brats/asymmetry.py). "
        "A model of C modalities then has 2C input channels.",
    )


@dataclass
class PatchConfig:
    dim: Literal[2, 3] = _f(2, "2 for axial 2D patches (C, H, W); 3 for 3D patches (C, D, H, W).")
    size: list[int] = _f([128, 128], "Patch size in voxels: [H, W] for 2D, [D, H, W] for 3D.", ge=1)
    stride: list[int] = _f(
        [64, 64], "Stride between patches; the last window sits flush with the border.", ge=1
    )
    slice_stride: int = _f(1, "2D only: use every n-th axial slice.", ge=1)
    context_slices: int = _f(
        0,
        "2D only (2.5D): also feed the k axial slices above and below each slice; the model input has "
        "modalities x (2k + 1) channels, modality-major (t1[z-k..z+k], t1ce[z-k..z+k], ...); slices beyond the "
        "first/last are zeros. 0 = plain 2D.",
        ge=0,
    )
    min_foreground: int = _f(1, "Keep a patch when it holds at least this many tumour voxels.", ge=1)
    background_fraction: float = _f(
        0.1,
        "Keep in addition this fraction of brain-only patches (relative to the number of tumour patches "
        "of the case). Patches with no brain at all are never kept.",
        ge=0,
    )
    tumour_free_windows: int = _f(
        0,
        "A case with no tumour patch (a tumour-free case) keeps this many brain-only patches, drawn at random "
        "(fewer if its brain has fewer); 0: it gives none.",
        ge=0,
    )
    compression: Literal["lzf", "gzip"] | None = _f(None, "HDF5 compression (null: none, fastest reads).")


@dataclass
class ModelConfig:
    arch: str = _f(
        "Unet",
        "segmentation-models-pytorch architecture name (Unet, UnetPlusPlus, FPN, ...; 2D and 2.5D), or a MONAI "
        "3D network `monai.SegResNet` / `monai.DynUNet` (patches.dim: 3).",
    )
    encoder: str = _f("resnet34", "Encoder name (resnet18, resnet34, efficientnet-b0, mobilenet_v2, ...).")
    encoder_depth: int = _f(5, "Number of encoder stages.", ge=1, le=5)
    decoder_channels: list[int] = _f([256, 128, 64, 32, 16], "Decoder channels, one per encoder stage.", ge=1)
    encoder_weights: str | None = _f(
        None, "Pretrained encoder weights by smp name (downloads; off by default). Prefer `weights_path`."
    )
    weights_path: str | None = _f(None, "Local file of weights (a state dict) loaded into the model.")
    output: Literal["classes", "regions"] = _f(
        "classes",
        "`classes`: one softmax channel per training class; `regions` (BraTS schemes): sigmoid WT, TC and ET "
        "channels trained on the nested region masks, as nnU-Net does (brats/outputs.py).",
    )
    kwargs: dict[str, Any] = _f(
        {},
        "Further keyword arguments of the network: of the smp class for 2D (e.g. "
        "`{decoder_attention_type: scse}` for Unet), of the MONAI network for `monai.*` (e.g. `{init_filters: 8}` "
        "for monai.SegResNet or `{filters: [8, 16, 32, 64]}` for monai.DynUNet); unknown names are errors "
        "(see docs/training.md).",
    )


@dataclass
class LossConfig:
    name: Literal["focal", "focal_dice", "ce_dice"] = _f(
        "focal",
        "`focal`, `focal_dice` (weighted sum) or `ce_dice` (softmax cross-entropy + Dice, weighted sum).",
    )
    gamma: float = _f(2.0, "Focal loss focusing parameter (not used by `ce_dice`).", ge=0)
    focal_weight: float = _f(
        1.0, "Weight of the focal term in `focal_dice` (of the cross-entropy in `ce_dice`).", ge=0
    )
    dice_weight: float = _f(1.0, "Weight of the Dice term in `focal_dice` and `ce_dice`.", ge=0)
    class_weights: list[float] | None = _f(
        None, "Weight of each training class (or region) in the focal and Dice terms; null: equal.", ge=0
    )
    dice_scope: Literal["batch", "patch"] = _f(
        "batch",
        "`batch`: the Dice term of each class over the whole batch (smp); `patch`: per patch, then averaged "
        "(MONAI, batch=False), so a small tumour weighs as much as a large one (brats/train/losses.py).",
    )
    dice_smooth: float = _f(
        0.0,
        "`patch` scope only: the Dice term's smoothing k in 1 - (2 I + k) / (P + T + k) (MONAI's smooth_nr = "
        "smooth_dr); with k > 0 a class absent from a patch costs s / (s + k) for its predicted sum s, so false "
        "tumour in a tumour-free patch is penalised; 0: an absent class counts 0, as smp's.",
        ge=0,
    )
    dice_smooth_patches: Literal["all", "tumour_free"] = _f(
        "all",
        "With `dice_smooth` > 0: `all`: every patch's absent classes cost s / (s + k); `tumour_free`: only in "
        "patches with no tumour at all, while a tumour patch is scored exactly as with k = 0 (absent classes count "
        "0), so a tumour patch lacking NCR or ET is not charged for predicting them.",
    )
    false_tumour_weight: float = _f(
        0.0,
        "Weight of a charge on false tumour in tumour-free patches, added to the loss: each patch with no tumour "
        "voxel costs s / (s + false_tumour_k), s its summed whole-tumour probability (1 - p(background); regions: "
        "the WT sigmoid), averaged over the batch's patches (tumour patches count 0); one charge on the whole "
        "tumour, not one per class; works with either dice_scope. 0: off.",
        ge=0,
    )
    false_tumour_k: float = _f(
        1.0,
        "The k of `false_tumour_weight`'s charge s / (s + k): a summed whole-tumour probability of k pixels "
        "costs half the most a patch can cost.",
        gt=0,
    )
    deep_supervision: int = _f(
        0,
        "Auxiliary outputs on the decoder's n stages before the last (smp Unet, 2D): each a 1 x 1 convolution "
        "scored by this loss against the labels at its scale, weights halving per stage (nnU-Net's deep "
        "supervision); training only, the saved model has no heads (brats/train/deep_supervision.py). 0: off.",
        ge=0,
        le=4,
    )


@dataclass
class SchedulerConfig:
    name: Literal["plateau", "cosine"] = _f(
        "plateau",
        "`plateau`: ReduceLROnPlateau on the validation loss; `cosine`: anneal lr to `min_lr` over the run's "
        "progress (steps or time budget, whichever is further; brats/train/schedule.py).",
    )
    factor: float = _f(0.5, "ReduceLROnPlateau: multiply the lr by this on a plateau.", gt=0, lt=1)
    patience: int = _f(3, "ReduceLROnPlateau: epochs without a better validation loss before reducing.", ge=0)
    min_lr: float = _f(1e-6, "Lower bound of the learning rate (both schedules).", ge=0)
    warmup_steps: int = _f(
        0, "`cosine` only: step i < warmup_steps runs at (i + 1) / warmup_steps of the lr.", ge=0
    )


@dataclass
class TrainConfig:
    epochs: int = _f(20, "Number of epochs.", ge=1)
    steps_per_epoch: int | None = _f(
        None, "Training batches per epoch (null = one pass over the training store).", ge=1
    )
    max_minutes: float | None = _f(
        None,
        "Training time budget in minutes, validation included: checked after every step, so the last epoch "
        "may be cut short (0 = after the first step); null = no limit.",
        ge=0,
    )
    batch_size: int = _f(16, "Patches per batch.", ge=1)
    core_oversample: float = _f(
        1.0,
        "Sampling weight of training patches that hold tumour core (NCR or ET) relative to the others; patches "
        "are then drawn with replacement in proportion to it (1 = uniform, without replacement; BraTS label "
        "schemes only).",
        ge=1,
    )
    case_balance: float = _f(
        0.0,
        "Sampling weight of each training patch divided by its case's patch count to this power (0 = off; "
        "0.5: each case drawn in proportion to the square root of its patches; 1: every case equally), so the "
        "few patches of a small tumour are drawn more often; patches are then drawn with replacement.",
        ge=0,
        le=1,
    )
    lr: float = _f(1e-3, "Adam learning rate.", gt=0)
    swa_start: float | None = _f(
        None,
        "Stochastic weight averaging: from this fraction of the run (of its steps or time budget, whichever is "
        "further) validate and save the uniform average of the weights after every step (brats/train/swa.py); "
        "null = the trained weights.",
        ge=0,
        le=1,
    )
    weight_decay: float = _f(1e-5, "Adam weight decay.", ge=0)
    scheduler: SchedulerConfig = _f(
        SchedulerConfig(), "Learning-rate schedule (ReduceLROnPlateau on the validation loss, or cosine)."
    )
    num_workers: int = _f(0, "DataLoader worker processes.", ge=0)
    pin_memory: bool = _f(False, "DataLoader pin_memory (useful on CUDA).")
    amp: Literal["auto", "fp16", "bf16", "off"] = _f(
        "auto",
        "Mixed precision: `auto` = float16 + GradScaler on CUDA; on CPU bf16 when a short probe of this model's "
        "training step measures it faster than float32 (cached per machine and model; the choice and the figures "
        "go to the log and `amp_probe.json` in the run folder), else float32; `fp16`, `bf16` or `off`.",
    )
    device: str = _f("auto", "`auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.")
    channels_last: bool = _f(True, "Use channels_last memory format (faster convolutions on CPU).")
    num_threads: int | None = _f(None, "torch CPU threads (null = torch default).", ge=1)
    best_metric: str = _f(
        "val_loss",
        "Metric that selects `best.pt`: `val_loss` (lower is better), a `metrics.csv` column "
        "such as `val_dice_mean` or `val_dice_WT` (higher is better), or `epoch` (the final epoch's weights).",
    )
    val_max_batches: int | None = _f(
        None,
        "Validate on at most this many batches per epoch, of patches spread evenly over the store (null = whole store).",
        ge=1,
    )
    val_every: int = _f(
        1,
        "Validate after every n-th epoch and after the run's last one (at `epochs` or when `max_minutes` ends it); "
        "the other epochs' `metrics.csv` rows leave the validation columns empty, `best_metric` compares validated "
        "epochs only, and `plateau`'s patience counts validations.",
        ge=1,
    )
    log_every: int = _f(10, "Log the running training loss every n steps.", ge=1)


@dataclass
class Config:
    output_dir: str = _f("runs/demo", "Run folder; every output of a run goes under it.")
    seed: int = _f(0, "Global random seed (training, background-patch sampling).")
    data: DataConfig = _f(DataConfig(), "Where the cases are and how they are split.")
    preprocess: PreprocessConfig = _f(PreprocessConfig(), "Intensity normalisation.")
    patches: PatchConfig = _f(PatchConfig(), "Patch extraction to HDF5.")
    augment: AugmentConfig = _f(AugmentConfig(), "TorchIO training augmentation.")
    model: ModelConfig = _f(ModelConfig(), "Network.")
    loss: LossConfig = _f(LossConfig(), "Loss function.")
    train: TrainConfig = _f(TrainConfig(), "Training loop.")
    predict: PredictConfig = _f(PredictConfig(), "Sliding-window inference and post-processing.")
