"""Typed, validated experiment configuration.

A config is a tree of dataclasses loaded from YAML with :func:`load_config`. Every key is checked:

* an unknown (e.g. misspelt) key is an error naming the dotted key and the file,
  ``Unknown config key 'data.rooot' in configs/demo.yaml (did you mean 'data.root'?)``;
* a value of the wrong type is an error naming the key, the expected type and the value;
* ``--set section.key=value`` overrides (parsed as YAML scalars) are checked the same way.

Each field carries its documentation in ``metadata["doc"]``; ``docs/config.md`` is generated from it
(:func:`config_reference_markdown`) and a test fails when a key has none.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from brats.errors import BratsError

__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "apply_overrides",
    "save_config",
    "config_reference_markdown",
]


class ConfigError(BratsError, ValueError):
    """A config file or override is invalid. The message names the key and the source."""


def _f(default: Any, doc: str, **kw: Any) -> Any:
    """A dataclass field with a documentation string (``metadata['doc']``)."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        value = default
        return field(default_factory=lambda: _copy(value), metadata={"doc": doc}, **kw)
    return field(default=default, metadata={"doc": doc}, **kw)


def _copy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


# --------------------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    root: str = _f("data/synth", "Folder of cases (one sub-folder per patient, any BraTS naming).")
    naming: Literal["auto", "2020", "2021", "2023", "custom"] = _f(
        "auto", "Naming scheme of the case files; `auto` detects 2020, 2021 or 2023 naming."
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
    train_fraction: float = _f(0.7, "Fraction of patients in the training split.")
    val_fraction: float = _f(
        0.15, "Fraction of patients in the validation split (the rest is the test split)."
    )
    split_seed: int = _f(0, "Seed of the patient-level split.")
    fold: int | None = _f(
        None, "k-fold mode: use fold `fold` (0-based) of `n_folds` as validation, the rest as training."
    )
    n_folds: int = _f(5, "Number of folds in k-fold mode.")
    skip_invalid: bool = _f(False, "Skip invalid cases with a warning instead of stopping with an error.")


@dataclass
class PreprocessConfig:
    normalization: Literal["zscore", "percentile"] = _f(
        "zscore",
        "Per-case, per-modality intensity normalisation inside the brain (non-zero voxels): `zscore` "
        "(mean 0, std 1) or `percentile` (rescale percentiles to [0, 1], as the seed article does).",
    )
    percentiles: list[float] = _f([0.5, 99.5], "Lower and upper percentiles for `percentile` normalisation.")
    dtype: Literal["float16", "float32"] = _f("float16", "Storage dtype of the normalised images.")


@dataclass
class PatchConfig:
    dim: Literal[2, 3] = _f(2, "2 for axial 2D patches (C, H, W); 3 for 3D patches (C, D, H, W).")
    size: list[int] = _f([128, 128], "Patch size in voxels: [H, W] for 2D, [D, H, W] for 3D.")
    stride: list[int] = _f([64, 64], "Stride between patches; the last window sits flush with the border.")
    slice_stride: int = _f(1, "2D only: use every n-th axial slice.")
    min_foreground: int = _f(1, "Keep a patch when it holds at least this many tumour voxels.")
    background_fraction: float = _f(
        0.1,
        "Keep in addition this fraction of brain-only patches (relative to the number of tumour patches "
        "of the case). Patches with no brain at all are never kept.",
    )
    compression: Literal["lzf", "gzip"] | None = _f(
        None, "HDF5 compression of the store (null = none; fastest random reads)."
    )


@dataclass
class TransformConfig:
    enabled: bool = _f(True, "Use this transform.")
    weight: float = _f(1.0, "Relative weight inside its OneOf group.")


@dataclass
class FlipConfig(TransformConfig):
    axes: list[int] = _f([0, 1], "Spatial axes that may be flipped (0 = X, 1 = Y of an axial patch).")


@dataclass
class AffineConfig(TransformConfig):
    degrees: float = _f(20.0, "Maximum in-plane rotation in degrees.")
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
    rescale: RescaleConfig = _f(
        RescaleConfig(), "Percentile intensity rescaling (also at validation and test)."
    )
    intensity_p: float = _f(0.95, "Probability of applying one intensity transform (OneOf noise/bias field).")
    noise: NoiseConfig = _f(NoiseConfig(), "Random Gaussian noise.")
    bias_field: BiasFieldConfig = _f(BiasFieldConfig(), "Random smooth bias field.")


@dataclass
class ModelConfig:
    arch: str = _f("Unet", "segmentation-models-pytorch architecture name (Unet, UnetPlusPlus, FPN, ...).")
    encoder: str = _f("resnet34", "Encoder name (resnet18, resnet34, efficientnet-b0, mobilenet_v2, ...).")
    encoder_depth: int = _f(5, "Number of encoder stages.")
    decoder_channels: list[int] = _f([256, 128, 64, 32, 16], "Decoder channels, one per encoder stage.")
    encoder_weights: str | None = _f(
        None, "Pretrained encoder weights by smp name (downloads; off by default). Prefer `weights_path`."
    )
    weights_path: str | None = _f(None, "Local file of weights (a state dict) loaded into the model.")


@dataclass
class LossConfig:
    name: Literal["focal", "focal_dice"] = _f("focal", "`focal` or `focal_dice` (weighted sum).")
    gamma: float = _f(2.0, "Focal loss focusing parameter.")
    focal_weight: float = _f(1.0, "Weight of the focal term in `focal_dice`.")
    dice_weight: float = _f(1.0, "Weight of the Dice term in `focal_dice`.")


@dataclass
class SchedulerConfig:
    factor: float = _f(0.5, "ReduceLROnPlateau: multiply the learning rate by this factor on a plateau.")
    patience: int = _f(
        3, "ReduceLROnPlateau: epochs without improvement of the validation loss before reducing."
    )
    min_lr: float = _f(1e-6, "ReduceLROnPlateau: lower bound of the learning rate.")


@dataclass
class TrainConfig:
    epochs: int = _f(20, "Number of epochs.")
    steps_per_epoch: int | None = _f(
        None, "Training batches per epoch (null = one pass over the training store)."
    )
    max_minutes: float | None = _f(
        None, "Stop training after this many minutes (checked after every epoch); null = no limit."
    )
    batch_size: int = _f(16, "Patches per batch.")
    lr: float = _f(1e-3, "Adam learning rate.")
    weight_decay: float = _f(1e-5, "Adam weight decay.")
    scheduler: SchedulerConfig = _f(
        SchedulerConfig(), "Learning-rate schedule (ReduceLROnPlateau on val loss)."
    )
    num_workers: int = _f(0, "DataLoader worker processes.")
    pin_memory: bool = _f(False, "DataLoader pin_memory (useful on CUDA).")
    amp: Literal["auto", "fp16", "bf16", "off"] = _f(
        "auto", "Mixed precision: `auto` = float16 + GradScaler on CUDA, off on CPU; `fp16`, `bf16` or `off`."
    )
    device: str = _f("auto", "`auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.")
    channels_last: bool = _f(True, "Use channels_last memory format (faster convolutions on CPU).")
    num_threads: int | None = _f(None, "torch CPU threads (null = torch default).")
    best_metric: str = _f(
        "val_loss",
        "Metric that selects `best.pt`: `val_loss` (lower is better) or a `metrics.csv` column "
        "such as `val_dice_mean` (higher is better).",
    )
    val_max_batches: int | None = _f(None, "Cap on validation batches per epoch (null = whole store).")
    log_every: int = _f(10, "Log the running training loss every n steps.")


@dataclass
class PostprocessConfig:
    min_component: int = _f(
        200,
        "Remove connected tumour components (WT, 26-connectivity) smaller than this many voxels (0 = off).",
    )
    et_min_voxels: int = _f(
        500,
        "nnU-Net BraTS rule: when the predicted ET has fewer voxels than this, relabel it as NCR (0 = off; "
        "500 chosen on validation cases, see docs/predict.md).",
    )


@dataclass
class PredictConfig:
    overlap: float = _f(0.5, "Sliding-window overlap in [0, 1).")
    blend: Literal["gaussian", "constant"] = _f("gaussian", "Blending of overlapping windows.")
    tta: bool = _f(False, "Flip test-time augmentation (mean of softmax over flips).")
    batch_size: int = _f(16, "Windows per forward pass.")
    postprocess: PostprocessConfig = _f(PostprocessConfig(), "Post-processing of the predicted labels.")


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


# --------------------------------------------------------------------------------------------------------------
# Loading and checking
# --------------------------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        inner = " or ".join(_type_name(a) for a in non_none)
        return f"{inner} or null" if len(non_none) < len(args) else inner
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints are accepted where floats are)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def fail() -> ConfigError:
        return ConfigError(
            f"Config key '{key}' in {source}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})"
        )

    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, source)
            except ConfigError:
                continue
        raise fail()
    if origin is Literal:
        if isinstance(value, bool) and not any(isinstance(a, bool) for a in args):
            # YAML 1.1 reads off/on/no/yes as booleans: take them back as the words.
            for word in ("off", "no", "false") if value is False else ("on", "yes", "true"):
                if word in args:
                    return word
        if value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)):
            return value
        # YAML reads 2020 as int; accept "2020" for a Literal["2020"] and vice versa.
        for a in args:
            if str(a) == str(value) and not isinstance(value, bool):
                return a
        msg = f"Config key '{key}' in {source}: expected {_type_name(tp)}, got {value!r}"
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
        raise ConfigError(msg)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise fail()
        return (
            [_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)] if args else list(value)
        )
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise fail()
        return _build(tp, value, key, source)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 3e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise fail()
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail()
    return value


def _build(cls: type, data: dict, prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)" if close else ""
            valid = ", ".join(names)
            raise ConfigError(f"Unknown config key '{dotted}' in {source}{hint}. Valid keys here: {valid}")
        kwargs[key] = _coerce(value, hints[key], dotted, source)
    obj = cls(**kwargs)
    return obj


def config_from_dict(data: dict | None, source: str = "<dict>") -> Config:
    """Build a :class:`Config` from a (possibly partial) nested dict; missing keys take their defaults."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config must be a YAML mapping, got {type(data).__name__}")
    cfg = _build(Config, data, "", source)
    _check(cfg, source)
    return cfg


def _check(cfg: Config, source: str) -> None:
    """Cross-field checks that types alone cannot express."""
    p = cfg.patches
    if len(p.size) != p.dim or len(p.stride) != p.dim:
        raise ConfigError(
            f"{source}: patches.size and patches.stride need {p.dim} values for patches.dim={p.dim}, "
            f"got size={p.size}, stride={p.stride}"
        )
    if any(s <= 0 for s in p.size + p.stride):
        raise ConfigError(
            f"{source}: patches.size and patches.stride must be positive, got {p.size}, {p.stride}"
        )
    d = cfg.data
    if not d.modalities:
        raise ConfigError(f"{source}: data.modalities must name at least one modality")
    known = {"t1", "t1ce", "t2", "flair"}
    bad = [m for m in d.modalities if m not in known]
    if bad:
        raise ConfigError(f"{source}: data.modalities has unknown modality {bad}; known: t1, t1ce, t2, flair")
    if not (
        0 <= d.train_fraction <= 1 and 0 <= d.val_fraction <= 1 and d.train_fraction + d.val_fraction <= 1
    ):
        raise ConfigError(
            f"{source}: data.train_fraction + data.val_fraction must be within [0, 1], "
            f"got {d.train_fraction} + {d.val_fraction}"
        )
    if d.naming == "custom" and not d.pattern:
        raise ConfigError(f"{source}: data.naming is 'custom' but data.pattern is not set")
    if not 0 <= cfg.predict.overlap < 1:
        raise ConfigError(f"{source}: predict.overlap must be in [0, 1), got {cfg.predict.overlap}")


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply ``key=value`` overrides (values parsed as YAML) to a nested dict, in order."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(data, key, value)
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``--set`` overrides.

    Raises:
        ConfigError: on a missing file, invalid YAML, an unknown key or a wrong type; the message names the
            dotted key and the file (or ``--set`` for an override).
    """
    source = str(path) if path is not None else "<defaults>"
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"Config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: invalid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: a config must be a YAML mapping")
        # Check the file alone first, so an error in it names the file.
        config_from_dict(_copy(data), source)
    if overrides:
        data = apply_overrides(data, overrides)
        return config_from_dict(data, f"--set (on {source})")
    return config_from_dict(data, source)


def config_to_dict(cfg: Any) -> dict:
    """The config as a plain nested dict (YAML-serialisable)."""
    return dataclasses.asdict(cfg)


def config_to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically."""
    from brats.io import atomic_write_text

    return atomic_write_text(Path(path), config_to_yaml(cfg))


# --------------------------------------------------------------------------------------------------------------
# Reference documentation
# --------------------------------------------------------------------------------------------------------------


def iter_config_fields(cls: type = Config, prefix: str = ""):
    """Yield ``(dotted_key, type_name, default, doc, is_section)`` for every key of the config tree."""
    yield from _iter_with_defaults(cls, prefix, cls())


def _iter_with_defaults(cls: type, prefix: str, obj: Any):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        doc = f.metadata.get("doc", "")
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(tp):
            yield dotted, "section", None, doc, True
            yield from _iter_with_defaults(tp, dotted, value)
        else:
            yield dotted, _type_name(tp), value, doc, False


def config_reference_markdown() -> str:
    """The config reference (``docs/config.md``), generated from the dataclasses."""
    lines = [
        "# Config reference",
        "",
        "Generated from `brats/config.py` by `brats config-reference > docs/config.md`; do not edit by hand.",
        "Every key can be set in a YAML file or on the command line with `--set key=value`.",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for dotted, tname, default, doc, is_section in iter_config_fields():
        if is_section:
            lines.append(f"| **`{dotted}`** | section | | {doc} |")
        else:
            d = "null" if default is None else yaml.safe_dump(default, default_flow_style=True).strip()
            d = d.removesuffix("\n...").removesuffix("...").strip()
            lines.append(f"| `{dotted}` | {tname} | `{d}` | {doc} |")
    return "\n".join(lines) + "\n"
