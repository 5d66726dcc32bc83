"""Train plgraph: ``python main.py [key=value ...]`` (see conf/config.yaml and README.md)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from plgraph.cli import register_configs, run_cli, to_config
from plgraph.data import prepare_data

log = logging.getLogger("plgraph")
register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    def job() -> None:
        config = to_config(cfg)
        prepare_data(config.data, config.featurize, config.split)
        if config.prepare_only:
            log.info("data prepared (prepare_only=true); exiting")
            return
        log.warning("data prepared; training is not implemented yet (issue #3), so main.py "
                    "stops here")

    run_cli(job)


if __name__ == "__main__":
    main()
