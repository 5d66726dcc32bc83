"""The processed cache: reuse, equality with fresh featurization, staleness, atomic builds."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, SAMPLE, copy_sample, data_config

from plgraph.config import FeaturizeConfig
from plgraph.data import build, prepare_data
from plgraph.data.featurizer import featurize_record
from plgraph.data.layouts import read_inputs
from plgraph.errors import CacheError
from plgraph.featurize import DATA_PROCESSING_VERSION


def graph_tensors(graph) -> dict[str, torch.Tensor]:
    return {f"{key}/{attr}": value for key in graph.node_types + graph.edge_types
            for attr, value in graph[key].items()}


def assert_same_graph(a, b) -> None:
    assert a.complex_id == b.complex_id
    assert a.processing_version == b.processing_version == DATA_PROCESSING_VERSION
    ta, tb = graph_tensors(a), graph_tensors(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert torch.equal(ta[name], tb[name]), name


def test_cache_is_built_once_then_reused(sample_root, featurize_config, split_config):
    config = data_config(sample_root)
    first = prepare_data(config, featurize_config, split_config)
    shard = first.cache.path / "shard_00000.pt"
    stamp = shard.stat().st_mtime_ns
    second = prepare_data(config, featurize_config, split_config)
    assert shard.stat().st_mtime_ns == stamp
    assert second.cache.ids == first.cache.ids and len(second.cache) == 5
    assert second.split == first.split


def test_cached_graphs_equal_fresh_featurization(sample_root, featurize_config, split_config):
    cache = prepare_data(data_config(sample_root), featurize_config, split_config).cache
    records = {r.id: r for r in read_inputs(data_config(sample_root), featurize_config).records}
    for index, complex_id in enumerate(cache.ids):
        cached = cache[index]
        fresh = featurize_record(records[complex_id], featurize_config)
        assert_same_graph(cached, fresh)
        assert cached.y.item() == pytest.approx(records[complex_id].label)


def test_meta_records_version_config_counts_and_failures(sample_root, featurize_config,
                                                         split_config):
    cache = prepare_data(data_config(sample_root), featurize_config, split_config).cache
    meta = json.loads((cache.path / "meta.json").read_text())
    assert meta["data_processing_version"] == DATA_PROCESSING_VERSION
    assert meta["featurize"] == featurize_config.to_dict()
    assert meta["counts"] == {"inputs": 6, "processed": 5, "failed": 1, "duplicates": 0}
    assert meta["failures"][0]["id"] == "3qlb" and "sanitization" in meta["failures"][0]["reason"]


def test_cache_of_another_version_is_refused_naming_both_versions(sample_root, featurize_config,
                                                                  split_config):
    config = data_config(sample_root)
    cache_dir = prepare_data(config, featurize_config, split_config).cache.path
    meta = json.loads((cache_dir / "meta.json").read_text())
    meta["data_processing_version"] = DATA_PROCESSING_VERSION - 1
    (cache_dir / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CacheError) as error:
        prepare_data(config, featurize_config, split_config)
    message = str(error.value)
    assert f"DATA_PROCESSING_VERSION {DATA_PROCESSING_VERSION - 1}" in message
    assert f"version {DATA_PROCESSING_VERSION}" in message
    assert f"rm -r {cache_dir}" in message


def test_cache_of_another_featurization_config_is_refused(sample_root, featurize_config,
                                                          split_config):
    config = data_config(sample_root)
    prepare_data(config, featurize_config, split_config)
    with pytest.raises(CacheError, match=r"featurize.interaction_cutoff was 5.0, now 6.0"):
        prepare_data(config, FeaturizeConfig(interaction_cutoff=6.0), split_config)


def test_changed_labels_make_the_cache_stale(sample_root, featurize_config, split_config):
    config = data_config(sample_root)
    prepare_data(config, featurize_config, split_config)
    labels = sample_root / "labels.csv"
    labels.write_text(labels.read_text().replace("1h1d,", "1h1d,1"))
    with pytest.raises(CacheError, match="input files or labels changed"):
        prepare_data(config, featurize_config, split_config)


def touch_every_input(root) -> None:
    """New modification times, same content: what a copy without -p or a dataset staged afresh
    onto a node's local disk does."""
    for path in root.rglob("*"):
        if path.is_file() and "processed" not in path.relative_to(root).parts:  # the cache's own
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


def test_inputs_with_new_times_but_the_same_content_reuse_the_cache(sample_root, featurize_config,
                                                                     split_config, caplog):
    config = data_config(sample_root)
    first = prepare_data(config, featurize_config, split_config)
    shard = first.cache.path / "shard_00000.pt"
    built = shard.stat().st_mtime_ns
    fast_before = first.cache.meta["inputs_fingerprint"]
    touch_every_input(sample_root)
    with caplog.at_level(logging.INFO, logger="plgraph.data.cache"):
        second = prepare_data(config, featurize_config, split_config)
    assert shard.stat().st_mtime_ns == built and second.cache.ids == first.cache.ids
    assert "their content did not (SHA-256)" in caplog.text
    meta = json.loads((first.cache.path / "meta.json").read_text())
    fast_now = read_inputs(config, featurize_config).fingerprint()
    assert fast_now != fast_before and meta["inputs_fingerprint"] == fast_now  # fast path again
    assert second.split == first.split


def test_an_edit_with_new_times_is_stale_by_content_too(sample_root, featurize_config,
                                                        split_config):
    config = data_config(sample_root)
    prepare_data(config, featurize_config, split_config)
    pocket = sample_root / "1h1d" / "1h1d_pocket.pdb"
    pocket.chmod(0o644)
    pocket.write_text(pocket.read_text().replace(" 1.00 ", " 0.50 ", 1))  # same size
    touch_every_input(sample_root)
    with pytest.raises(CacheError, match="and so does their content"):
        prepare_data(config, featurize_config, split_config)


def test_a_cache_without_a_content_fingerprint_gets_one_while_its_times_match(
        sample_root, featurize_config, split_config):
    config = data_config(sample_root)
    cache_dir = prepare_data(config, featurize_config, split_config).cache.path
    meta = json.loads((cache_dir / "meta.json").read_text())
    recorded = meta.pop("inputs_content_fingerprint")
    (cache_dir / "meta.json").write_text(json.dumps(meta))  # as an older plgraph wrote it
    touched = dict(meta)
    prepare_data(config, featurize_config, split_config)
    meta = json.loads((cache_dir / "meta.json").read_text())
    assert meta["inputs_content_fingerprint"] == recorded
    assert {k: v for k, v in meta.items() if k != "inputs_content_fingerprint"} == touched
    touch_every_input(sample_root)
    prepare_data(config, featurize_config, split_config)  # now reused by content


def test_without_a_content_fingerprint_new_times_are_stale(sample_root, featurize_config,
                                                           split_config):
    config = data_config(sample_root)
    cache_dir = prepare_data(config, featurize_config, split_config).cache.path
    meta = json.loads((cache_dir / "meta.json").read_text())
    del meta["inputs_content_fingerprint"]
    (cache_dir / "meta.json").write_text(json.dumps(meta))
    touch_every_input(sample_root)
    with pytest.raises(CacheError, match="records no content fingerprint"):
        prepare_data(config, featurize_config, split_config)


def test_deleting_the_cache_reprocesses_with_the_new_config(sample_root, split_config):
    config = data_config(sample_root)
    old = prepare_data(config, FeaturizeConfig(), split_config).cache
    edges_before = old[0]["ligand", "interacts", "protein"].edge_index.shape[1]
    subprocess.run(["rm", "-r", str(old.path)], check=True)
    new = prepare_data(config, FeaturizeConfig(interaction_cutoff=6.0), split_config).cache
    assert new.meta["featurize"]["interaction_cutoff"] == 6.0
    assert new[0]["ligand", "interacts", "protein"].edge_index.shape[1] > edges_before


def test_cache_is_identical_for_any_number_of_workers(sample_root, featurize_config,
                                                      split_config, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "MIN_COMPLEXES_PER_WORKER", 1)  # a real pool for 6 complexes
    prepared_one = prepare_data(data_config(sample_root, processed_dir=str(tmp_path / "one"),
                                            shard_size=2), featurize_config, split_config)
    prepared_two = prepare_data(data_config(sample_root, processed_dir=str(tmp_path / "two"),
                                            workers=2, shard_size=2), featurize_config,
                                split_config)
    one, two = prepared_one.cache, prepared_two.cache
    assert [s["count"] for s in one.meta["shards"]] == [2, 2, 1]
    assert (one.meta["build"]["workers"], two.meta["build"]["workers"]) == (1, 2)
    for key in ("complexes", "failures", "counts", "shards", "inputs_fingerprint"):
        assert one.meta[key] == two.meta[key], key
    for index in range(len(one)):
        assert_same_graph(one[index], two[index])
    assert prepared_one.split == prepared_two.split


@pytest.mark.slow
def test_build_killed_half_way_leaves_no_cache_and_the_next_run_rebuilds(tmp_path,
                                                                         featurize_config,
                                                                         split_config):
    processed = tmp_path / "processed"
    script = ("from plgraph.config import *; from plgraph.data import prepare_data; "
              f"prepare_data(DataConfig(root={str(SAMPLE)!r}, processed_dir={str(processed)!r}, "
              "workers=1, shard_size=1), FeaturizeConfig(), SplitConfig())")
    builder = subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("processed.partial-*/shard_00000.pt")):
        assert builder.poll() is None and time.monotonic() < deadline, "builder ended early"
        time.sleep(0.01)
    os.kill(builder.pid, signal.SIGKILL)
    builder.wait()
    assert not processed.exists()
    assert list(tmp_path.glob("processed.partial-*"))
    with pytest.raises(CacheError, match="no processed cache"):
        from plgraph.data.cache import read_meta
        read_meta(processed)
    rebuilt = prepare_data(data_config(SAMPLE, processed_dir=str(processed)), featurize_config,
                           split_config).cache
    assert len(rebuilt) == 49 and not list(tmp_path.glob("processed.partial-*"))


def test_a_cache_without_meta_is_refused_as_incomplete(sample_root, featurize_config,
                                                       split_config):
    config = data_config(sample_root)
    cache_dir = prepare_data(config, featurize_config, split_config).cache.path
    (cache_dir / "meta.json").unlink()
    with pytest.raises(CacheError, match="incomplete or damaged: delete it"):
        prepare_data(config, featurize_config, split_config)


def test_a_truncated_shard_is_refused(sample_root, featurize_config, split_config):
    config = data_config(sample_root)
    cache_dir = prepare_data(config, featurize_config, split_config).cache.path
    shard = cache_dir / "shard_00000.pt"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(CacheError, match="shard_00000.pt is missing or has the wrong size"):
        prepare_data(config, featurize_config, split_config)


@pytest.mark.slow
def test_a_killed_worker_fails_the_build_instead_of_hanging(tmp_path):
    processed = tmp_path / "processed"
    script = ("from plgraph.config import *; from plgraph.data import build, prepare_data; "
              "build.MIN_COMPLEXES_PER_WORKER = 1; "
              f"prepare_data(DataConfig(root={str(SAMPLE)!r}, processed_dir={str(processed)!r}, "
              "workers=2), FeaturizeConfig(), SplitConfig())")
    builder = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    workers: list[str] = []
    while not workers:  # the pool's workers, not its resource tracker
        assert builder.poll() is None and time.monotonic() < deadline, "builder ended early"
        found = subprocess.run(["pgrep", "-P", str(builder.pid), "-f", "spawn_main"],
                               capture_output=True, text=True)
        workers = found.stdout.split()
        time.sleep(0.01)
    os.kill(int(workers[0]), signal.SIGKILL)
    output, _ = builder.communicate(timeout=300)  # minutes only on a machine loaded 4x
    assert builder.returncode != 0
    assert "a featurization worker died" in output
    assert not processed.exists()


# A pool whose first worker leaves half a result message in the pipe and dies: what a worker
# killed by the OOM killer or kill -9 while it sends a chunk's graphs leaves behind.
HALF_MESSAGE_POOL = """
import os, struct, threading, time
from plgraph.config import DataConfig, FeaturizeConfig, SplitConfig
from plgraph.data import build, prepare_data

class HalfMessage(build.ProcessPoolExecutor):
    def submit(self, *args, **kwargs):
        future = super().submit(*args, **kwargs)
        if not getattr(self, "sabotaged", False):
            self.sabotaged = True
            threading.Thread(target=self.die_mid_send, daemon=True).start()
        return future

    def die_mid_send(self):
        while not self._processes:
            time.sleep(0.01)
        worker = next(iter(self._processes.values()))
        # a length header that promises 1 MiB, then 3 bytes of it
        os.write(self._result_queue._writer.fileno(), struct.pack("!i", 1 << 20) + b"abc")
        time.sleep(0.5)
        worker.kill()

build.ProcessPoolExecutor = HalfMessage
build.MIN_COMPLEXES_PER_WORKER = 1
prepare_data(DataConfig(root={root!r}, processed_dir={processed!r}, workers=2),
             FeaturizeConfig(), SplitConfig())
"""


@pytest.mark.slow
def test_a_worker_killed_while_sending_its_result_fails_the_build_instead_of_hanging(tmp_path):
    processed = tmp_path / "processed"
    script = HALF_MESSAGE_POOL.format(root=str(SAMPLE), processed=str(processed))
    builder = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        output, _ = builder.communicate(timeout=420)  # ~20 s idle; minutes under load
    except subprocess.TimeoutExpired:
        os.killpg(builder.pid, signal.SIGKILL)  # the builder and the workers it left
        builder.communicate()
        pytest.fail("the build hung on a half-sent result of a dead worker")
    assert builder.returncode != 0
    assert "a featurization worker died" in output
    assert not processed.exists()


def test_building_in_process_leaves_the_callers_thread_count_alone(tmp_path, featurize_config,
                                                                   split_config):
    torch.set_num_threads(2)
    prepare_data(data_config(copy_sample(tmp_path / "two", ("1h1d", "2w9r"))), featurize_config,
                 split_config)
    assert torch.get_num_threads() == 2
