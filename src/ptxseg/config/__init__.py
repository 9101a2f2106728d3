"""Training configuration: a validated YAML schema (pydantic), shipped recipes, ``--set`` overrides.

A config is a YAML mapping with the sections below; every field has a
default, so ``{}`` is a valid config (the CPU default). A file may start from
another with ``base: NAME`` (a shipped config name or a path); its own values
are merged over the base's, mapping by mapping (lists and the ``loss`` spec are
replaced whole).

Shipped configs live in ``ptxseg/configs/`` (the repository's ``configs/``
links there); :func:`load_config` accepts their names. A wrong value is one
:class:`~ptxseg.errors.PtxsegError` naming the file, the key and the allowed
values, raised before any work starts.
"""

from ptxseg.config.files import CONFIG_DIR, config_path, list_configs, load_yaml, read_raw
from ptxseg.config.loading import apply_override, dump_config, load_config, validate
from ptxseg.config.schema import (
    Config,
    CropConfig,
    DataConfig,
    EarlyStoppingConfig,
    ModelConfig,
    OperatingPointConfig,
    ResolvedStage,
    SamplerConfig,
    StageConfig,
    TrainingConfig,
)

__all__ = [
    "CONFIG_DIR",
    "Config",
    "CropConfig",
    "DataConfig",
    "EarlyStoppingConfig",
    "ModelConfig",
    "OperatingPointConfig",
    "ResolvedStage",
    "SamplerConfig",
    "StageConfig",
    "TrainingConfig",
    "apply_override",
    "config_path",
    "dump_config",
    "list_configs",
    "load_config",
    "load_yaml",
    "read_raw",
    "validate",
]
