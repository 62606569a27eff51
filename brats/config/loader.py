"""Loading a config: YAML + ``--set`` overrides -> typed, checked :class:`~brats.config.schema.Config`."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from brats.config.schema import RANGE_KEYS, Config, ConfigError
from brats.fs import atomic_write_text

__all__ = [
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "apply_overrides",
    "save_config",
    "shipped_config",
]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        inner = " or ".join(_type_name(a) for a in non_none)
        return f"{inner} or null" if len(non_none) < len(args) else inner
    if origin is dict:
        return "mapping"
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
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise fail()
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise fail()
        return _build(tp, value, key, source)  # type: ignore[arg-type]
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


_RANGE_TEXT = {"ge": ">= {}", "gt": "> {}", "le": "<= {}", "lt": "< {}"}
_RANGE_OK = {
    "ge": lambda v, b: v >= b,
    "gt": lambda v, b: v > b,
    "le": lambda v, b: v <= b,
    "lt": lambda v, b: v < b,
}


def range_text(meta: Any) -> str:
    """The range a field declares, e.g. ``>= 0 and <= 1`` (empty when it declares none)."""
    return " and ".join(_RANGE_TEXT[k].format(meta[k]) for k in RANGE_KEYS if k in meta)


def _check_range(value: Any, meta: Any, key: str, source: str) -> None:
    """Raise naming ``key`` when ``value`` (a number, or each number of a list) is outside the field's range."""
    bounds = {k: meta[k] for k in RANGE_KEYS if k in meta}
    if not bounds or value is None:
        return
    items = value if isinstance(value, list) else [value]
    for i, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        bad = math.isnan(v) or any(not _RANGE_OK[k](v, b) for k, b in bounds.items())
        if bad:
            where = f"{key}[{i}]" if isinstance(value, list) else key
            raise ConfigError(f"Config key '{where}' in {source}: must be {range_text(bounds)}, got {v!r}")


def _build(cls: type, data: dict, prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)" if close else ""
            valid = ", ".join(names)
            raise ConfigError(f"Unknown config key '{dotted}' in {source}{hint}. Valid keys here: {valid}")
        kwargs[key] = _coerce(value, hints[key], dotted, source)
        _check_range(kwargs[key], fields[key].metadata, dotted, source)
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
    if p.context_slices < 0 or (p.context_slices and p.dim != 2):
        raise ConfigError(
            f"{source}: patches.context_slices must be >= 0 and is for patches.dim: 2 only, "
            f"got {p.context_slices} with dim={p.dim}"
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
    if not d.slice_spacing_mm > 0:
        raise ConfigError(f"{source}: data.slice_spacing_mm must be > 0, got {d.slice_spacing_mm}")
    if not 0 <= cfg.predict.overlap < 1:
        raise ConfigError(f"{source}: predict.overlap must be in [0, 1), got {cfg.predict.overlap}")
    for key in ("min_component_ml", "et_min_ml", "core_min_ml", "fragment_ml"):
        value = getattr(cfg.predict.postprocess, key)
        if not value >= 0:  # also catches NaN
            raise ConfigError(f"{source}: predict.postprocess.{key} must be >= 0 (mL; 0 = off), got {value}")
    if len(cfg.predict.region_thresholds) != 3:
        raise ConfigError(
            f"Config key 'predict.region_thresholds' in {source}: needs 3 values (WT, TC, ET), "
            f"got {cfg.predict.region_thresholds}"
        )
    _check_pair(cfg.preprocess.percentiles, "preprocess.percentiles", source)
    _check_pair(cfg.augment.rescale.percentiles, "augment.rescale.percentiles", source)
    if cfg.loss.dice_smooth and cfg.loss.dice_scope != "patch":
        raise ConfigError(
            f"{source}: loss.dice_smooth is for dice_scope: patch, got dice_scope: {cfg.loss.dice_scope}"
        )
    if cfg.loss.dice_smooth_patches != "all" and not cfg.loss.dice_smooth:
        raise ConfigError(
            f"{source}: loss.dice_smooth_patches: {cfg.loss.dice_smooth_patches} needs loss.dice_smooth > 0, got 0"
        )
    sc = cfg.train.scheduler
    if sc.warmup_steps and sc.name != "cosine":
        raise ConfigError(f"{source}: train.scheduler.warmup_steps is for name: cosine, got name: {sc.name}")
    if d.fold is not None and d.fold >= d.n_folds:
        raise ConfigError(f"{source}: data.fold must be < data.n_folds = {d.n_folds}, got {d.fold}")


def _check_pair(values: list[float], key: str, source: str) -> None:
    """A ``[lower, upper]`` percentile pair: two values, ``0 <= lower < upper <= 100``."""
    ok = len(values) == 2 and 0 <= values[0] < values[1] <= 100
    if not ok:
        raise ConfigError(
            f"Config key '{key}' in {source}: expected [lower, upper] with 0 <= lower < upper <= 100, "
            f"got {list(values)}"
        )


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
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() != "" else ""
        except yaml.YAMLError as exc:
            reason = str(getattr(exc, "problem", None) or exc).splitlines()[0]
            raise ConfigError(f"--set {key}: the value {raw!r} is not valid YAML ({reason})") from exc
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
        config_from_dict(copy.deepcopy(data), source)
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
    return atomic_write_text(Path(path), config_to_yaml(cfg))


def shipped_config(name: str) -> Path:
    """A config shipped inside the package (``brats/configs/NAME.yaml``; ``configs/`` in a checkout links there).

    Raises:
        ConfigError: no such config is installed (the message lists the ones that are).
    """
    import importlib.resources

    folder = Path(str(importlib.resources.files("brats") / "configs"))
    path = folder / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        raise ConfigError(
            f"shipped config {name!r} not found in {folder} (installed: {', '.join(known) or 'none'}); "
            "reinstall brats"
        )
    return path
