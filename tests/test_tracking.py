"""MLflow tracking against a real local store in a temporary directory: parameters, per-epoch
metrics, one MLflow run across a resume, results.json as an artifact, and the failure policy."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import SAMPLE_IDS, copy_sample, data_config
from mlflow.tracking import MlflowClient
from test_predict import TINY

from plgraph.config import AppConfig, FeaturizeConfig, SplitConfig, TrackingConfig, TrainConfig
from plgraph.data import prepare_data
from plgraph.errors import PlgraphError
from plgraph.training.checkpoint import read_checkpoint
from plgraph.training.run_dir import RunDirectory
from plgraph.training.tracking import RUN_RECORD, Tracker, local_store_uri
from plgraph.training.trainer import Trainer

# MLflow's SQLAlchemy store uses an ORM option that SQLAlchemy 2.1 deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

PARAMS = {"trainer.lr": 0.001, "model.hidden_channels": 64,
          "featurize.ligand_formats": ["sdf", "mol2"], "split.test_ids": None}


def epoch_row(epoch: int) -> dict:
    return {"epoch": epoch, "step": 10 * epoch, "train_loss": 1.0 / epoch,
            "val_rmse": 2.0 - epoch / 10, "val_pearson": 0.1 * epoch, "lr": 1e-3,
            "wall_seconds": 3.5 * epoch, "note": "text"}


@pytest.fixture(autouse=True)
def no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="module")
def output_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store for the module, as for the runs of one output root (its tables are built once)."""
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture
def run_dir(output_root: Path, request: pytest.FixtureRequest) -> Path:
    path = output_root / request.node.name
    path.mkdir()
    return path


def client_for(output_root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=local_store_uri(output_root))


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_params_and_epoch_metrics_go_to_the_local_store(output_root: Path, run_dir: Path):
    tracker = Tracker(TrackingConfig(), run_dir, "first", PARAMS)
    for epoch in (1, 2):
        tracker.log_epoch(epoch_row(epoch), step=epoch)
    tracker.close()

    assert (output_root / "mlflow.db").is_file()
    record = json.loads((run_dir / RUN_RECORD).read_text())
    assert record["run_id"] == tracker.run_id
    run = client_for(output_root).get_run(tracker.run_id)
    assert run.data.params == {"trainer.lr": "0.001", "model.hidden_channels": "64",
                               "featurize.ligand_formats": "['sdf', 'mol2']",
                               "split.test_ids": "None"}
    assert run.info.run_name == "first" and run.info.status == "FINISHED"
    assert run.data.tags["plgraph.run_dir"] == str(run_dir.resolve())
    client = client_for(output_root)
    assert history(client, tracker.run_id, "val_rmse") == [(1, 1.9), (2, 1.8)]
    assert history(client, tracker.run_id, "step") == [(1, 10.0), (2, 20.0)]
    assert "note" not in run.data.metrics


def test_resume_continues_the_same_run_and_appends_metrics(output_root: Path, run_dir: Path):
    first = Tracker(TrackingConfig(), run_dir, "resumed", PARAMS)
    first.log_epoch(epoch_row(1), step=1)
    first.close("KILLED")

    changed = {**PARAMS, "trainer.lr": 0.0005, "trainer.max_epochs": 40}
    second = Tracker(TrackingConfig(), run_dir, "resumed", changed)
    assert second.run_id == first.run_id and second.active
    client = client_for(output_root)
    assert client.get_run(second.run_id).info.status == "RUNNING"
    second.log_epoch(epoch_row(2), step=2)
    second.close("KILLED")

    run = client.get_run(first.run_id)
    assert history(client, first.run_id, "val_rmse") == [(1, 1.9), (2, 1.8)]
    assert run.data.params["trainer.lr"] == "0.001"  # MLflow keeps what the run started with
    assert run.data.tags["changed.trainer.lr"] == "0.0005"
    assert run.data.params["trainer.max_epochs"] == "40"  # new keys are plain parameters

    Tracker(TrackingConfig(), run_dir, "resumed", PARAMS).close()  # back to the first value
    assert client.get_run(first.run_id).data.tags["changed.trainer.lr"] == "0.001"
    assert len(client.search_runs([run.info.experiment_id],
                                  "attributes.run_name = 'resumed'")) == 1


def test_fresh_start_opens_a_new_run(output_root: Path, run_dir: Path):
    old = Tracker(TrackingConfig(), run_dir, "fresh", PARAMS)
    old.close()
    new = Tracker(TrackingConfig(), run_dir, "fresh", PARAMS, resume=False)
    new.close()
    assert new.run_id != old.run_id
    assert json.loads((run_dir / RUN_RECORD).read_text())["run_id"] == new.run_id


@pytest.mark.parametrize("record", ['{"run_id": "0123456789abcdef0123456789abcdef"}', "{trunc"],
                         ids=["unknown_id", "unreadable"])
def test_a_recorded_run_missing_from_the_store_is_replaced(run_dir: Path, record: str):
    (run_dir / RUN_RECORD).write_text(record)
    tracker = Tracker(TrackingConfig(), run_dir, "missing", PARAMS)
    tracker.close()
    assert tracker.run_id is not None and tracker.run_id not in record
    assert json.loads((run_dir / RUN_RECORD).read_text())["run_id"] == tracker.run_id


def test_results_are_metrics_and_results_json_an_artifact(output_root: Path, run_dir: Path):
    tracker = Tracker(TrackingConfig(), run_dir, "results", PARAMS)
    results = {"stopped_by": "max_epochs", "epochs": 3, "best_epoch": 2,
               "val": {"rmse": 1.25, "pearson": 0.5}, "test": {"rmse": 1.5, "spearman": 0.25},
               "device": "cpu"}
    path = run_dir / "results.json"
    path.write_text(json.dumps(results))
    tracker.log_results(results, path)
    tracker.close()

    client = client_for(output_root)
    run = client.get_run(tracker.run_id)
    assert run.data.metrics == {"test_rmse": 1.5, "test_spearman": 0.25, "best_val_rmse": 1.25,
                                "best_val_pearson": 0.5, "best_epoch": 2.0}
    assert history(client, tracker.run_id, "test_rmse") == [(3, 1.5)]
    assert run.data.tags["stopped_by"] == "max_epochs"
    assert [a.path for a in client.list_artifacts(tracker.run_id)] == ["results.json"]
    # Beside the store, not in ./mlruns of whatever directory the test runs from.
    stored = list((output_root / "mlruns").rglob("results.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text()) == results


def test_checkpoints_are_recorded_as_paths_not_uploaded(output_root: Path, run_dir: Path):
    tracker = Tracker(TrackingConfig(), run_dir, "checkpoints", PARAMS)
    best = run_dir / "checkpoints" / "best.pt"
    tracker.log_checkpoint(best, "best")
    tracker.log_checkpoint(run_dir / "checkpoints" / "last.pt", "last")
    tracker.close()
    client = client_for(output_root)
    tags = client.get_run(tracker.run_id).data.tags
    assert tags["checkpoint.best"] == str(best.resolve())
    assert tags["checkpoint.last"].endswith("last.pt")
    assert client.list_artifacts(tracker.run_id) == []


def test_failure_during_training_warns_and_turns_tracking_off(
        output_root: Path, run_dir: Path, caplog: pytest.LogCaptureFixture):
    tracker = Tracker(TrackingConfig(), run_dir, "broken", PARAMS)
    tracker.log_epoch(epoch_row(1), step=1)
    client_for(output_root).delete_run(tracker.run_id)  # the store now refuses this run's writes
    with caplog.at_level(logging.WARNING, logger="plgraph.training.tracking"):
        tracker.log_epoch(epoch_row(2), step=2)
        tracker.log_checkpoint(run_dir / "last.pt", "last")
        tracker.close("FINISHED")
    assert not tracker.active
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "tracking is off for the rest of this run" in warnings[0].message
    assert history(client_for(output_root), tracker.run_id, "val_rmse") == [(1, 1.9)]


def test_unreachable_server_fails_fast_naming_tracking_uri(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    raised: list[BaseException] = []

    def start() -> None:
        try:
            Tracker(TrackingConfig(uri=f"http://127.0.0.1:{port}"), tmp_path, "offline", PARAMS)
        except BaseException as error:
            raised.append(error)

    # A thread, so that a preflight retrying for minutes (MLflow's defaults) fails the test in
    # 20 s instead of stalling it.
    attempt = threading.Thread(target=start, daemon=True)
    attempt.start()
    attempt.join(timeout=20)
    assert not attempt.is_alive(), "the preflight did not give up within 20 s"
    assert len(raised) == 1 and isinstance(raised[0], PlgraphError), raised
    message = str(raised[0])
    assert re.match(r"tracking\.uri 'http://127\.0\.0\.1:\d+': ", message), message
    assert "tracking.enabled=false" in message
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # the preflight's own setting
    assert list(tmp_path.iterdir()) == []


def test_disabled_tracking_imports_and_writes_nothing(tmp_path: Path):
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from plgraph.config import TrackingConfig
        from plgraph.training.tracking import Tracker

        run_dir = Path({str(tmp_path)!r})
        for tracker in (Tracker(TrackingConfig(enabled=False), run_dir, "off", {{"a": 1}}),
                        Tracker(TrackingConfig(), run_dir, "rank1", {{"a": 1}}, active=False)):
            tracker.log_params({{"b": 2}})
            tracker.log_epoch({{"epoch": 1, "val_rmse": 1.0}}, step=1)
            tracker.log_checkpoint(run_dir / "best.pt", "best")
            tracker.log_results({{"test": {{"rmse": 1.0}}}}, run_dir / "results.json")
            tracker.close()
            assert not tracker.active and tracker.run_id is None
        print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] == "mlflow")))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("key", "value"), [("uri", ""), ("experiment", " ")])
def test_empty_tracking_values_are_refused_naming_the_key(key: str, value: str):
    with pytest.raises(ValueError, match=f"tracking.{key} must be"):
        TrackingConfig(**{key: value})


@pytest.fixture(scope="module")
def ten_complexes(tmp_path_factory: pytest.TempPathFactory):
    """Ten real sample complexes, prepared once for the module: (data root, PreparedData).
    The trainings only read the cache; each writes under an output root of its own."""
    root = copy_sample(tmp_path_factory.mktemp("ten") / "ten", SAMPLE_IDS[:10])
    return root, prepare_data(data_config(root), FeaturizeConfig(), SplitConfig())


def train_tiny(ten_complexes, outputs: Path, epochs: int,
               tracking: TrackingConfig | None = None) -> Path:
    """Train (or resume) the tiny model to ``epochs``; the run directory."""
    root, prepared = ten_complexes
    config = AppConfig(data=data_config(root), model=TINY, output_root=str(outputs),
                       tracking=tracking or TrackingConfig(),
                       trainer=TrainConfig(max_epochs=epochs, batch_size=4, warmup_steps=1))
    with RunDirectory(config.run_dir) as run:
        Trainer(config, prepared, run, "python main.py").fit()
    return config.run_dir


@pytest.mark.slow
def test_training_logs_every_epoch_checkpoints_and_results_and_a_resume_continues(
        ten_complexes, tmp_path):
    """The trainer's own calls: a real run of 2 epochs, then raised to 3 (a resume)."""
    outputs = tmp_path / "outputs"
    for epochs in (2, 3):
        train_tiny(ten_complexes, outputs, epochs)
    client = client_for(outputs)
    runs = client.search_runs([client.get_experiment_by_name("plgraph").experiment_id])
    assert len(runs) == 1  # the resume continued the same MLflow run
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert [step for step, _ in history(client, run.info.run_id, "val_rmse")] == [1, 2, 3]
    assert run.data.params["trainer.max_epochs"] == "2"
    assert run.data.tags["changed.trainer.max_epochs"] == "3"
    assert run.data.tags["checkpoint.best"].endswith("checkpoints/best.pt")
    assert "test_rmse" in run.data.metrics
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "results.json" in artifacts


@pytest.mark.slow
def test_training_ends_the_same_with_tracking_on_and_off(ten_complexes, tmp_path):
    final = {}
    for enabled in (True, False):
        run_dir = train_tiny(ten_complexes, tmp_path / f"outputs-{enabled}", 2,
                             TrackingConfig(enabled=enabled))
        final[enabled] = read_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    assert (tmp_path / "outputs-True" / "mlflow.db").is_file()
    assert not (tmp_path / "outputs-False" / "mlflow.db").exists()
    for name, tensor in final[True].items():
        assert tensor.equal(final[False][name]), name
