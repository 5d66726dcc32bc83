"""Train plgraph: ``python main.py [key=value ...]`` (see conf/config.yaml and README.md).

Running it again on the same ``run_name`` resumes from the newest valid checkpoint. Ctrl-C,
SIGTERM and SIGUSR1 are honoured from the first line to the last (plgraph.runtime.stop).
"""

# ruff: noqa: E402 (the stop handlers go in before the imports, which take seconds)
from __future__ import annotations

import sys

from plgraph.runtime.stop import STOP, ignore_stop_signals_in_worker

# A multirun (-m) launches jobs, and on a login node waits for Slurm's: Ctrl-C ends that at once,
# as before; each job installs the handlers in main().
MULTIRUN = {"-m", "--multirun", "hydra.mode=MULTIRUN"}
if __name__ == "__mp_main__":  # a featurization worker (spawn) importing this file: its parent
    ignore_stop_signals_in_worker()  # decides when to stop, and ends it
elif MULTIRUN.isdisjoint(sys.argv):
    STOP.install()

import logging
import os

import hydra
from omegaconf import DictConfig, OmegaConf

from plgraph.cli import register_configs, resume_command, run_cli, run_entry, to_config
from plgraph.config import AppConfig
from plgraph.data import PreparedData, capped_training, prepare_data
from plgraph.errors import PlgraphError
from plgraph.runtime.allocator import keep_freed_memory
from plgraph.runtime.slurm import requeue_after_preemption
from plgraph.training.distributed import Collectives, Ranks

log = logging.getLogger("plgraph")
register_configs()
keep_freed_memory()  # CPU steps reuse their large buffers: see plgraph.runtime.allocator


def experiment(config, ranks: Ranks) -> int:
    """``experiment=NAME``: every seed and baseline of conf/experiment/NAME.yaml, one report."""
    from plgraph.experiments.run import prepare_experiment, run_experiment

    if ranks.enabled:
        raise PlgraphError("an experiment runs its trainings one after another in one process; "
                           "run it with python main.py, not torchrun")
    if config.prepare_only:
        prepare_experiment(config)
        log.info("data and every seed's split prepared (prepare_only=true); exiting")
        return 0
    run_experiment(config, resume_command())
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


def command_line_keys() -> set[str]:
    """The keys this command line overrides (``model.lmax``, or ``model`` for ``model=large``)."""
    from hydra.core.hydra_config import HydraConfig

    return {override.split("=", 1)[0].lstrip("+~")
            for override in HydraConfig.get().overrides.task}


def train(cfg: DictConfig, ranks: Ranks) -> int:
    """Prepare the data and train (or run an experiment); the exit code."""
    config = to_config(cfg)
    if config.init_from:  # before the data: the checkpoint's featurization builds the cache
        from plgraph.training.init_from import adopt_checkpoint_configs

        config = adopt_checkpoint_configs(config, command_line_keys())
    if config.experiment.name:
        return experiment(config, ranks)
    from plgraph.training.device import resolve_device
    from plgraph.training.distributed import end_process_group, start_process_group
    from plgraph.training.run_dir import RunDirectory
    from plgraph.training.trainer import Trainer

    device = resolve_device(config.trainer.device, ranks.local_rank)
    # First: from here on, a stop or an error on one rank ends every rank at the same point (a
    # signal that came during the imports too: the first agreement below stops them all).
    start_process_group(ranks, device)
    try:
        comm = Collectives(ranks, device)
        data = prepare_on_every_rank(config, comm)
        if config.prepare_only:
            log.info("data prepared (prepare_only=true); exiting")
            return 0
        # the budget knob of a recipe (conf/experiment/shipped.yaml), drawn with the run's seed
        data = capped_training(data, config.experiment.max_train_per_series, config.seed)
        with RunDirectory(config.run_dir, writer=ranks.is_main) as run:
            if ranks.is_main:
                if config.fresh:
                    run.move_aside()
                (run.path / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            comm.agree("before training")  # nobody reads checkpoints being moved
            Trainer(config, data, run, resume_command(), ranks).fit()
    finally:
        end_process_group()
    return 0


def prepare_on_every_rank(config: AppConfig, comm: Collectives) -> PreparedData:
    """The first process of each node prepares the data (builds the cache when there is none)
    while the others wait; then they open it. Under torchrun a stop or an error in either step
    ends every rank together, and a rank that was not asked to stop never starts a build."""
    first = comm.ranks.local_rank == 0

    def prepare() -> PreparedData:
        return prepare_data(config.data, config.featurize, config.split)

    what = "while preparing the data; nothing was cached (the next run goes on from there)"
    prepared = comm.agree(what, lambda: prepare() if first else None)
    opened = comm.agree(what, lambda: None if first else prepare())
    return prepared if first else opened


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    if not STOP.installed:  # a multirun job, or a Slurm job that submitit started
        STOP.install()
    ranks = Ranks.from_environment()
    if not ranks.is_main:
        quiet_other_ranks()
    code = run_cli(lambda: train(cfg, ranks), resume_command())
    requeue_after_preemption(code)  # SIGUSR1 before a Slurm time limit: back in the queue
    # Return on success: submitit (hydra/launcher=slurm) records a job's result only when this
    # function returns; a non-zero code exits, so a requeued job records none and is waited for.
    if code:
        sys.exit(code)


if __name__ == "__main__":
    run_entry(main)  # a command line Hydra refuses exits 2 too
