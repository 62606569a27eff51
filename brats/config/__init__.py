"""Typed, validated experiment configuration.

A config is a tree of dataclasses loaded from YAML with :func:`load_config`. Every key is checked:

* an unknown (e.g. misspelt) key is an error naming the dotted key and the file,
  ``Unknown config key 'data.rooot' in configs/demo.yaml (did you mean 'data.root'?)``;
* a value of the wrong type is an error naming the key, the expected type and the value;
* ``--set section.key=value`` overrides (parsed as YAML scalars) are checked the same way.

Each field carries its documentation in ``metadata["doc"]``; ``docs/config.md`` is generated from it
(:func:`config_reference_markdown`) and a test fails when a key has none.
"""

from brats.config.loader import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    load_config,
    save_config,
    shipped_config,
)
from brats.config.reference import config_reference_markdown, iter_config_fields
from brats.config.schema import (
    AffineConfig,
    AnisotropyConfig,
    AugmentConfig,
    BiasFieldConfig,
    Config,
    ConfigError,
    DataConfig,
    ElasticConfig,
    FlipConfig,
    LossConfig,
    ModelConfig,
    NoiseConfig,
    PatchConfig,
    PostprocessConfig,
    PredictConfig,
    PreprocessConfig,
    RescaleConfig,
    SchedulerConfig,
    TrainConfig,
    TransformConfig,
)

__all__ = [
    "AffineConfig",
    "AnisotropyConfig",
    "AugmentConfig",
    "BiasFieldConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "ElasticConfig",
    "FlipConfig",
    "LossConfig",
    "ModelConfig",
    "NoiseConfig",
    "PatchConfig",
    "PostprocessConfig",
    "PredictConfig",
    "PreprocessConfig",
    "RescaleConfig",
    "SchedulerConfig",
    "TrainConfig",
    "TransformConfig",
    "apply_overrides",
    "config_from_dict",
    "config_reference_markdown",
    "config_to_dict",
    "config_to_yaml",
    "iter_config_fields",
    "load_config",
    "save_config",
    "shipped_config",
]
