"""Train plgraph: ``python main.py [key=value ...]`` (see conf/config.yaml and README.md).

Running it again on the same ``run_name`` resumes from the newest valid checkpoint.
"""

from __future__ import annotations

import logging
import shlex
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from plgraph.cli import register_configs, run_cli, to_config
from plgraph.data import prepare_data

log = logging.getLogger("plgraph")
register_configs()


def resume_command() -> str:
    """This command line without fresh=true: what resumes the run."""
    arguments = [a for a in sys.argv[1:] if a.split("=")[0].lstrip("+") != "fresh"]
    return shlex.join([sys.executable.rsplit("/", 1)[-1], sys.argv[0], *arguments])


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    def job() -> int:
        config = to_config(cfg)
        data = prepare_data(config.data, config.featurize, config.split)
        if config.prepare_only:
            log.info("data prepared (prepare_only=true); exiting")
            return 0
        from plgraph.training.run_dir import RunDirectory
        from plgraph.training.trainer import Trainer, TrainingInterrupted

        with RunDirectory(config.run_dir) as run:
            if config.fresh:
                run.move_aside()
            (run.path / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            try:
                Trainer(config, data, run, resume_command()).fit()
            except TrainingInterrupted as stop:
                log.warning("%s", stop)
                return stop.exit_code
        return 0

    try:
        sys.exit(run_cli(job))
    except KeyboardInterrupt:
        log.error("aborted by a second Ctrl-C; checkpoints are written atomically, the newest "
                  "complete one is used on resume: %s", resume_command())
        sys.exit(130)


if __name__ == "__main__":
    main()
