"""One training of an experiment, read back: the run trained, resumed, or left as it is when
finished, and its test predictions. Its own module because both ``run.py`` and ``few_shot.py``
call it (in ``run.py`` it would make a circle with ``few_shot.py``)."""

from __future__ import annotations

from plgraph.config import AppConfig
from plgraph.data import PreparedData
from plgraph.training import reports
from plgraph.training.run_dir import RunDirectory
from plgraph.training.trainer import Trainer


def fit_and_read_predictions(config: AppConfig, data: PreparedData,
                             resume_command: str) -> tuple[dict, dict]:
    """One single-process run in ``config.run_dir`` (its lock held; ``fresh`` moves old
    checkpoints aside): trained, resumed, or left as it is when finished. Returns its
    ``results.json`` content and its test predictions (``reports.read_predictions_csv``)."""
    with RunDirectory(config.run_dir) as run:
        if config.fresh:
            run.move_aside()
        results = Trainer(config, data, run, resume_command).fit()
    return results, reports.read_predictions_csv(config.run_dir / "test_predictions.csv")
