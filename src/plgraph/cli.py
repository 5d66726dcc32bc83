"""The only library module that touches Hydra / OmegaConf: schema registration and conversion."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from plgraph.config import AppConfig, PredictConfig
from plgraph.errors import PlgraphError

log = logging.getLogger("plgraph")
T = TypeVar("T")
EXIT_USAGE = 2


def register_configs() -> None:
    """Register the typed schemas that ``conf/*.yaml`` extend, so Hydra type-checks overrides."""
    ConfigStore.instance().store(name="app_schema", node=AppConfig)
    ConfigStore.instance().store(name="predict_schema", node=PredictConfig)


def to_config(cfg: DictConfig) -> AppConfig | PredictConfig:
    """The composed config as typed dataclasses; a bad value raises ValueError naming the key."""
    try:
        config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:
        raise ValueError(str(error).split("\n    full_key")[0]) from None
    assert isinstance(config, AppConfig | PredictConfig), type(config)
    return config


def run_cli(job: Callable[[], T]) -> T:
    """Run ``job``; a plgraph or config error ends the program with its message and exit code 2,
    not a traceback: the message already says what is wrong and what to do."""
    try:
        return job()
    except (PlgraphError, ValueError) as error:
        log.error("%s", error)
        sys.exit(EXIT_USAGE)
