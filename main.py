"""Train plgraph: ``python main.py [key=value ...]`` (see conf/config.yaml and README.md).

Running it again on the same ``run_name`` resumes from the newest valid checkpoint.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from plgraph.allocator import keep_freed_memory
from plgraph.cli import register_configs, run_cli, to_config
from plgraph.data import prepare_data
from plgraph.errors import PlgraphError
from plgraph.slurm import requeue_after_preemption
from plgraph.training.distributed import Ranks

log = logging.getLogger("plgraph")
register_configs()
keep_freed_memory()  # CPU steps reuse their large buffers: see plgraph.allocator


def resume_command() -> str:
    """This command line without fresh=true: what resumes the run."""
    arguments = [a for a in sys.argv[1:] if a.split("=")[0].lstrip("+") != "fresh"]
    return shlex.join([sys.executable.rsplit("/", 1)[-1], sys.argv[0], *arguments])


def experiment(config, ranks: Ranks) -> int:
    """``experiment=NAME``: every seed and baseline of conf/experiment/NAME.yaml, one report."""
    from plgraph.experiment import run_experiment
    from plgraph.training.trainer import TrainingInterrupted

    if ranks.enabled:
        raise PlgraphError("an experiment runs its trainings one after another in one process; "
                           "run it with python main.py, not torchrun")
    try:
        run_experiment(config, resume_command())
    except TrainingInterrupted as stop:
        log.warning("%s", stop)
        return stop.exit_code
    return 0


def quiet_other_ranks() -> None:
    """Under torchrun, only rank 0 writes train.log and reports progress; the other ranks print
    warnings and errors to stderr, prefixed with their rank."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
        handler.setFormatter(logging.Formatter(f"[rank {os.environ['RANK']}] %(levelname)s "
                                               "%(name)s: %(message)s"))
    logging.getLogger("plgraph").setLevel(logging.WARNING)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    ranks = Ranks.from_environment()
    if not ranks.is_main:
        quiet_other_ranks()

    def job() -> int:
        config = to_config(cfg)
        if config.experiment.name:
            return experiment(config, ranks)
        # Every rank prepares: the cache lock lets the first build while the others wait, then
        # they open the same cache and split.
        data = prepare_data(config.data, config.featurize, config.split)
        if config.prepare_only:
            log.info("data prepared (prepare_only=true); exiting")
            return 0
        from plgraph.training.device import resolve_device
        from plgraph.training.distributed import (
            Collectives,
            end_process_group,
            start_process_group,
        )
        from plgraph.training.run_dir import RunDirectory
        from plgraph.training.trainer import Trainer, TrainingInterrupted

        device = resolve_device(config.trainer.device, ranks.local_rank)
        start_process_group(ranks, device)
        try:
            with RunDirectory(config.run_dir, writer=ranks.is_main) as run:
                if ranks.is_main:
                    if config.fresh:
                        run.move_aside()
                    (run.path / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
                Collectives(ranks, device).barrier()  # nobody reads checkpoints being moved
                try:
                    Trainer(config, data, run, resume_command(), ranks).fit()
                except TrainingInterrupted as stop:
                    log.warning("%s", stop)
                    return stop.exit_code
        finally:
            end_process_group()
        return 0

    try:
        code = run_cli(job)
    except KeyboardInterrupt:
        log.error("aborted by a second Ctrl-C; checkpoints are written atomically, the newest "
                  "complete one is used on resume: %s", resume_command())
        sys.exit(130)
    requeue_after_preemption(code)  # SIGUSR1 before a Slurm time limit: back in the queue
    # Return on success: submitit (hydra/launcher=slurm) records a job's result only when this
    # function returns; a non-zero code exits, so a requeued job records none and is waited for.
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
