"""From config to training-ready data: read inputs, build or verify the cache, load the split."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset
from torch_geometric.data import HeteroData

from plgraph.config import DataConfig, FeaturizeConfig, SplitConfig
from plgraph.data.build import build_cache, cache_identity
from plgraph.data.cache import ProcessedCache
from plgraph.data.layouts import read_inputs
from plgraph.data.split import Split, load_or_make_split
from plgraph.errors import CacheError, PlgraphError
from plgraph.featurize.posing import ran_out_of_time
from plgraph.runtime.lock import exclusive_lock

log = logging.getLogger(__name__)

# The part name of the train part before capped_training cut it (PreparedData.ids_of).
UNCUT_TRAIN = "uncut_train"


class ComplexDataset(Dataset):
    """The complexes of one split part, in the part's (sorted) order, read from the cache."""

    def __init__(self, cache: ProcessedCache, ids: list[str]):
        position = {complex_id: i for i, complex_id in enumerate(cache.ids)}
        self.cache = cache
        self.ids = list(ids)
        self._indices = [position[complex_id] for complex_id in self.ids]

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int) -> HeteroData:
        return self.cache[self._indices[index]]


@dataclass
class PreparedData:
    """The verified cache and its split: what a training run consumes."""

    cache: ProcessedCache
    split: Split
    # The train part before ``capped_training`` cut it (None: uncut). The network trains on the
    # cut part; a linear fit costs nothing and reads every train complex (model.anchor=
    # vina_descriptors, the series-fit baseline).
    uncut_train: list[str] | None = None

    @functools.cached_property
    def series_of(self) -> dict[str, str]:
        """Each complex's congeneric series ("" where its layout has none)."""
        return {entry.id: entry.group for entry in self.cache.entries}

    @functools.cached_property
    def label_of(self) -> dict[str, float]:
        """Each complex's measured pK."""
        return {entry.id: entry.label for entry in self.cache.entries}

    def require_train_and_val(self) -> None:
        """Training needs complexes in both parts; refuse before any work, naming the split."""
        train, val = (len(self.split.parts[p]) for p in ("train", "val"))
        if not train or not val:
            raise PlgraphError(f"split '{self.split.name}' has {train} train and {val} "
                               "validation complexes; training needs both (check split.train "
                               "/ split.val)")

    def with_parts(self, parts: dict[str, list[str]]) -> PreparedData:
        """The same cache with other split parts (their own fingerprint): a cut training part.
        It is the training data from then on (a learning curve's share, few-shot's part), the
        fits' included; only :func:`capped_training` keeps the part before its cut."""
        return PreparedData(self.cache, self.split.with_parts(parts))

    def ids_of(self, name: str) -> list[str]:
        """The complexes of split part ``name`` in its order, or of ``UNCUT_TRAIN``: the train
        part before any cut."""
        if name == UNCUT_TRAIN:
            return list(self.uncut_train or self.split.parts["train"])
        return list(self.split.parts[name])

    def _rows(self, values, name: str) -> np.ndarray:
        """``values`` (one row per cache complex) in the order of part ``name``, as float64."""
        position = {complex_id: i for i, complex_id in enumerate(self.cache.ids)}
        return values.double().numpy()[[position[i] for i in self.ids_of(name)]]

    def part(self, name: str) -> ComplexDataset:
        return ComplexDataset(self.cache, self.split.parts[name])

    def ligand_sizes(self, name: str) -> list[int]:
        """The ligand heavy-atom count of each complex of split part ``name``, in its order."""
        counts = dict(zip(self.cache.ids, self.cache.ligand_atom_counts(), strict=True))
        return [counts[complex_id] for complex_id in self.ids_of(name)]

    def vina_terms(self, name: str) -> np.ndarray:
        """The Vina terms ``[complexes, len(vocab.VINA_TERMS)]`` of split part ``name``, in its
        order, as float64 of the cache's float32 (CacheError without them)."""
        return self._rows(self.cache.vina_terms(), name)

    def ligand_descriptors(self, name: str) -> np.ndarray:
        """The ligand descriptors ``[complexes, len(vocab.LIGAND_DESCRIPTORS)]`` of split part
        ``name``, in its order, as float64 of the cache's float32."""
        return self._rows(self.cache.ligand_descriptors(), name)

    def labels(self, name: str) -> np.ndarray:
        """The measured pK of each complex of part ``name``, in its order."""
        return np.array([self.label_of[i] for i in self.ids_of(name)], float)

    def series_fit_inputs(self, name: str) -> np.ndarray:
        """What the within-series fit reads for each complex of part ``name``
        ``[complexes, len(vocab.SERIES_FIT_INPUTS)]``: the Vina terms, the ligand descriptors
        and the heavy-atom count, in that order."""
        return np.hstack([self.vina_terms(name), self.ligand_descriptors(name),
                          np.array(self.ligand_sizes(name), float)[:, None]])

    def series_fit_data(self, name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """What :func:`plgraph.training.anchor.series_fit` fits on part ``name``: its inputs
        (:meth:`series_fit_inputs`), labels and series, in the part's order."""
        return (self.series_fit_inputs(name), self.labels(name),
                [self.series_of[i] for i in self.ids_of(name)])

    def ligand_size_range(self, name: str) -> list[int]:
        """[smallest, largest] ligand heavy-atom count of split part ``name``; stored in every
        checkpoint so that prediction can tell a ligand far outside what the model has seen."""
        sizes = self.ligand_sizes(name)
        return [min(sizes), max(sizes)] if sizes else []


def prepare_data(data: DataConfig, featurize: FeaturizeConfig,
                 split: SplitConfig) -> PreparedData:
    """Read the inputs, build the processed cache if there is none, verify it, load the split.

    An existing cache built by other code, another featurization config or other inputs is
    refused (CacheError naming the directory to delete), never rebuilt or used silently.
    """
    inputs = read_inputs(data, featurize)
    identity = cache_identity(data, featurize, inputs)
    target = data.processed_path.absolute()
    if not os.access(target.parent if target.parent.exists() else target.parent.parent, os.W_OK):
        raise CacheError(f"cannot write the processed cache under {target.parent} (read-only?); "
                         "set data.processed_dir=DIR to a writable place")
    with exclusive_lock(target.with_name(f"{target.name}.lock"), f"processed cache {target}",
                        wait=True):
        if not target.exists():
            log.info("no processed cache at %s: featurizing %d complexes with %d workers",
                     target, len(inputs.records), data.num_workers)
            build_cache(target, inputs, identity, data)
        cache = ProcessedCache.open(target, identity, lambda: inputs.fingerprint(content=True))
        split_parts = load_or_make_split(
            cache, split, {record.id: record.protein for record in inputs.records})
    _log_summary(cache, split_parts)
    return PreparedData(cache, split_parts)


def _log_summary(cache: ProcessedCache, split: Split) -> None:
    counts = cache.meta["counts"]
    log.info("processed cache %s: %d complexes, %d failed (DATA_PROCESSING_VERSION %d)",
             cache.path, counts["processed"], counts["failed"],
             cache.meta["data_processing_version"])
    for failure in cache.meta["failures"][:10]:
        log.info("  failed %s: %s", failure["id"], failure["reason"])
    if counts["failed"] > 10:
        log.info("  ... %d more failures listed in %s", counts["failed"] - 10,
                 cache.path / "meta.json")
    out_of_time = sum(ran_out_of_time(f["reason"]) for f in cache.meta["failures"])
    if out_of_time:
        log.warning(
            "%d of the %d failures are common-substructure searches that ran out of "
            "featurize.posing.mcs_timeout: which ligands do depends on the speed and load of the "
            "machine that built the cache, so a build elsewhere may pose some of them and make "
            "other splits (bench/README.md, 'The transfer cache rebuilt')", out_of_time,
            counts["failed"])
    sizes = ", ".join(f"{p} {len(ids)}" for p, ids in split.parts.items())
    log.info("split '%s' (%s, seed %d): %s", split.name, split.recipe["strategy"],
             split.recipe["seed"], sizes)


def capped_training(data: PreparedData, per_series: int, seed: int) -> PreparedData:
    """``data`` with its train part cut to ``per_series`` complexes of each series, drawn with
    ``seed`` (0: unchanged). Validation and test stay whole, so the figures stay comparable; the
    cut split has a fingerprint of its own, so a resumed training checks it like any other.
    The train part before the cut stays known (``UNCUT_TRAIN``) for the linear fits, which cost
    nothing per complex."""
    if not per_series:
        return data
    series_of = data.series_of
    members: dict[str, list[str]] = defaultdict(list)
    for complex_id in data.split.parts["train"]:
        members[series_of[complex_id]].append(complex_id)
    rng = np.random.default_rng(seed)
    train = sorted(i for series in sorted(members) for i in
                   (members[series] if len(members[series]) <= per_series else
                    [members[series][k] for k in rng.choice(len(members[series]), per_series,
                                                            replace=False)]))
    parts = {**data.split.parts, "train": train}
    log.info("max_train_per_series=%d: training on %d of %d train complexes", per_series,
             len(train), len(data.split.parts["train"]))
    return dataclasses.replace(data.with_parts(parts), uncut_train=data.ids_of(UNCUT_TRAIN))
