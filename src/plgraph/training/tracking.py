"""Experiment tracking with MLflow: one MLflow run per run directory, continued on resume.

The store is ``tracking.uri`` or, by default, a local SQLite file ``<output_root>/mlflow.db``
with artifacts under ``<output_root>/mlruns/``, shared by every run under that output root so the
MLflow UI compares them. Not MLflow's plain-file store: MLflow 3 put it in maintenance mode and
refuses ``file:`` URIs unless ``MLFLOW_ALLOW_FILE_STORE=true``; SQLite is MLflow's own default.

Failure policy: the store is checked when the :class:`Tracker` is built, and a bad one raises a
:class:`PlgraphError` before any training (fix ``tracking.uri`` or set ``tracking.enabled=false``).
A failure later, in the middle of training, logs one warning and turns tracking off for the rest
of the process: an unreachable server must not cost an hour of training, and ``metrics.csv`` and
``results.json`` in the run directory stay the complete record.

With tracking off (or on a rank other than 0) MLflow is never imported and nothing is written.
"""

from __future__ import annotations

import functools
import json
import logging
import numbers
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plgraph.config import TrackingConfig
from plgraph.errors import PlgraphError
from plgraph.runtime.atomic import replace_atomically
from plgraph.runtime.stop import StopRequested
from plgraph.training.run_dir import flatten

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

RUN_RECORD = "mlflow_run.json"  # in the run directory: which MLflow run a resume continues
STATUSES = ("FINISHED", "FAILED", "KILLED")
# MLflow's limits (mlflow.utils.validation): params + tags per log_batch, length of a param value.
_BATCH, _PARAM_LENGTH = 100, 6000
# The start-up check must answer in seconds. MLflow's defaults (7 retries, exponential backoff,
# 120 s timeout) suit a run in progress riding out a server restart, not a preflight; a value the
# user exported wins.
_PREFLIGHT_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                   "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def _tolerant(method: Callable[..., None]) -> Callable[..., None]:
    """A no-op while tracking is off; an error warns once and turns tracking off for good."""

    @functools.wraps(method)
    def wrapper(self: Tracker, *args: Any, **kwargs: Any) -> None:
        if self._client is None:
            return
        try:
            method(self, *args, **kwargs)
        except Exception as error:  # any failure of the store: training goes on without it
            log.warning("MLflow tracking failed in %s (%s: %s); tracking is off for the rest of "
                        "this run, training goes on. metrics.csv and results.json in the run "
                        "directory are complete.", method.__name__, type(error).__name__,
                        _first_line(error))
            self._client = None

    return wrapper


class Tracker:
    """The MLflow run of one run directory; every method is a no-op while tracking is off.

    Args:
        config: the ``tracking`` section.
        run_dir: the run directory ``<output_root>/<run_name>``; the local store goes beside it,
            in ``<output_root>``, and the MLflow run id in ``<run_dir>/mlflow_run.json``.
        run_name: the MLflow run name.
        params: the flattened config (``{"trainer.lr": 0.001, ...}``), logged as parameters.
        resume: continue the MLflow run recorded in ``run_dir`` (when it still exists in the
            store); False (a run starting from scratch, e.g. ``fresh=true``) starts a new one.
        active: False on ranks other than 0 of a distributed job: nothing is tracked there.

    Raises:
        PlgraphError: the store cannot be reached or used, naming ``tracking.uri`` and the way
            out, before any training time is spent.
    """

    def __init__(self, config: TrackingConfig, run_dir: Path, run_name: str, params: dict,
                 *, resume: bool = True, active: bool = True):
        self._client: MlflowClient | None = None
        self._checkpoints: dict[str, str] = {}
        self.run_id: str | None = None
        self.uri: str | None = None
        if not (config.enabled and active):
            return
        # MLflow 3 sends anonymous usage data from a background thread unless told not to; a
        # training job on a cluster should not phone home. An exported value wins.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow.tracking import MlflowClient  # here: tracking off never imports MLflow

        run_dir = Path(run_dir).resolve()
        self.uri = config.uri or local_store_uri(run_dir.parent)
        try:
            # A client bound to its URI, not mlflow.set_tracking_uri / start_run: those set
            # global state (an environment variable, an active-run stack) that outlives us.
            client = MlflowClient(tracking_uri=self.uri)
            experiment_id = _experiment_id(client, config.experiment, self.uri)
            self.run_id = open_run(client, experiment_id, run_dir, run_name, self.uri, resume)
        except PlgraphError:
            raise
        except Exception as error:
            raise PlgraphError(
                f"tracking.uri {self.uri!r}: the MLflow tracking store cannot be used "
                f"({type(error).__name__}: {_first_line(error)}). Fix tracking.uri (a server "
                "such as http://host:5000, or null for the local store under output_root), or "
                "train without tracking: tracking.enabled=false") from None
        self._client = client
        log.info("MLflow tracking: run %s in experiment %r at %s", self.run_id, config.experiment,
                 self.uri)
        self.log_params(params)

    @property
    def active(self) -> bool:
        """True while this process tracks (on, rank 0, and no failure so far)."""
        return self._client is not None

    @_tolerant
    def log_params(self, params: dict) -> None:
        """Log ``params`` (a flat dict) as MLflow parameters.

        MLflow refuses to change a logged parameter, and a resumed run may legitimately run with
        a changed ``trainer.lr`` or ``trainer.max_epochs``: the parameter keeps the value the run
        started with, and the tag ``changed.<key>`` holds the value in force since the latest
        change.
        """
        from mlflow.entities import Param, RunTag

        assert self._client is not None and self.run_id is not None
        run = self._client.get_run(self.run_id)
        logged, tags = run.data.params, run.data.tags
        values = {key: str(value)[:_PARAM_LENGTH] for key, value in params.items()}
        new = [Param(k, v) for k, v in values.items() if k not in logged]
        changed = [RunTag(f"changed.{k}", v) for k, v in values.items()
                   if k in logged and tags.get(f"changed.{k}", logged[k]) != v]
        for start in range(0, len(new), _BATCH):
            self._client.log_batch(self.run_id, params=new[start:start + _BATCH])
        for start in range(0, len(changed), _BATCH):
            self._client.log_batch(self.run_id, tags=changed[start:start + _BATCH])

    @_tolerant
    def log_epoch(self, row: dict, step: int) -> None:
        """Log the numeric values of one history row (``train_loss``, ``val_rmse``, ``lr``, ...)
        as metrics at ``step``; the trainer passes the epoch number, so runs with different batch
        sizes line up, and the optimizer step goes in as the metric ``step``."""
        from mlflow.entities import Metric

        assert self._client is not None and self.run_id is not None
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, step) for key, value in row.items()
                   if isinstance(value, numbers.Real) and not isinstance(value, bool)]
        self._client.log_batch(self.run_id, metrics=metrics)

    @_tolerant
    def log_checkpoint(self, path: Path, kind: str) -> None:
        """Record where the ``kind`` checkpoint (``best``, ``last``, ...) is, as the tag
        ``checkpoint.<kind>``; a path already recorded costs no request.

        The path, not the file: a checkpoint holds the optimizer state too (hundreds of MB for a
        large model) and ``last.pt`` is rewritten every few minutes; uploading each one would
        stall training on the network and copy files that already sit, complete, in the run
        directory.
        """
        assert self._client is not None and self.run_id is not None
        location = str(Path(path).resolve())
        if self._checkpoints.get(kind) == location:
            return
        self._client.set_tag(self.run_id, f"checkpoint.{kind}", location)
        self._checkpoints[kind] = location

    @_tolerant
    def log_results(self, results: dict, path: Path) -> None:
        """Log the final metrics of ``results`` (``test_rmse``, ``best_val_rmse``, ...,
        ``best_epoch``) at the last epoch, and ``path`` (``results.json``) as an artifact."""
        from mlflow.entities import Metric, RunTag

        assert self._client is not None and self.run_id is not None
        now, step = int(time.time() * 1000), int(results.get("epochs", 0))
        values = {**{f"test_{k}": v for k, v in results.get("test", {}).items()},
                  **{f"best_val_{k}": v for k, v in results.get("val", {}).items()},
                  "best_epoch": results.get("best_epoch")}
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()
                   if isinstance(v, numbers.Real) and not isinstance(v, bool)]
        tags = [RunTag("stopped_by", str(results["stopped_by"]))] if "stopped_by" in results else []
        self._client.log_batch(self.run_id, metrics=metrics, tags=tags)
        self._client.log_artifact(self.run_id, str(path))

    def close(self, status: str = "FINISHED") -> None:
        """End the MLflow run as ``FINISHED``, ``FAILED`` or ``KILLED`` (interrupted; a resume
        sets it running again). Closing twice does nothing."""
        assert status in STATUSES, status
        self._terminate(status)
        self._client = None

    @_tolerant
    def _terminate(self, status: str) -> None:
        assert self._client is not None and self.run_id is not None
        self._client.set_terminated(self.run_id, status)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is None:
            self.close("FINISHED")
        else:
            stopped = issubclass(exc_type, KeyboardInterrupt | StopRequested)
            self.close("KILLED" if stopped else "FAILED")


def local_store_uri(output_root: Path) -> str:
    """The default store: ``sqlite:///<output_root>/mlflow.db`` (an absolute path)."""
    return "sqlite:///" + (Path(output_root).resolve() / "mlflow.db").as_posix()


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store go beside its file; MLflow would put them in ``./mlruns`` of
    whatever directory the process was started from. Servers choose their own."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns").as_uri()


def _experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    """The id of experiment ``name``, created when missing; the first request to the store."""
    from mlflow.exceptions import MlflowException

    with _preflight_http():
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return client.create_experiment(name, artifact_location=_artifact_location(uri))
            except MlflowException:  # another run created it in the meantime
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
    if experiment.lifecycle_stage != "active":
        raise PlgraphError(f"tracking.experiment {name!r} is deleted in {uri}; restore it "
                           f"(mlflow experiments restore --experiment-id "
                           f"{experiment.experiment_id}) or choose another tracking.experiment")
    return experiment.experiment_id


def open_run(client: MlflowClient, experiment_id: str, run_dir: Path, run_name: str, uri: str,
             resume: bool) -> str:
    """The run recorded in ``run_dir`` when resuming and it is still in the store, else a new
    run, recorded atomically (a crash leaves the old record or the new one)."""
    record = run_dir / RUN_RECORD
    run_id = _recorded_run(client, record, uri) if resume and record.exists() else None
    if run_id is not None:
        client.update_run(run_id, status="RUNNING")
        return run_id
    run_id = client.create_run(experiment_id, run_name=run_name,
                               tags={"plgraph.run_dir": str(run_dir)}).info.run_id
    payload = {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": uri}
    replace_atomically(record, lambda target: target.write_text(json.dumps(payload) + "\n"))
    return run_id


def _recorded_run(client: MlflowClient, record: Path, uri: str) -> str | None:
    """The run id in ``record`` when that run is in the store and not deleted."""
    from mlflow.exceptions import MlflowException

    try:
        run_id = str(json.loads(record.read_text())["run_id"])
    except (ValueError, KeyError, TypeError) as error:
        log.warning("%s is unreadable (%s); starting a new MLflow run", record, error)
        return None
    try:
        if client.get_run(run_id).info.lifecycle_stage == "active":
            return run_id
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    log.warning("MLflow run %s of %s is not in %s (deleted, or another tracking.uri); starting "
                "a new MLflow run", run_id, record, uri)
    return None


@contextmanager
def _preflight_http() -> Iterator[None]:
    unset = [key for key in _PREFLIGHT_HTTP if key not in os.environ]
    os.environ.update({key: _PREFLIGHT_HTTP[key] for key in unset})
    try:
        yield
    finally:
        for key in unset:
            os.environ.pop(key, None)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:1000] if text else ""


def run_params(config_dict: dict, split_fingerprint: str, world_size: int, device: str,
               precision: str, data_processing_version: int) -> dict:
    """The parameters a run logs: its config, flattened (``model.lmax``), without the keys
    that say how this invocation started, plus what it runs on."""
    params = flatten(config_dict)
    for key in ("fresh", "prepare_only"):  # how this invocation started, not the run
        params.pop(key, None)
    params.update({"data_processing_version": data_processing_version,
                   "split_fingerprint": split_fingerprint, "world_size": world_size,
                   "device": device, "precision": precision})
    return params
