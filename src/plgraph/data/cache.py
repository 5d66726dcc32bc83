"""The processed cache: ``meta.json`` plus shard files of flat tensors, memory-mapped on load.

Layout of ``<processed>/``::

    meta.json            version, featurization config, inputs fingerprint, counts, failures,
                         shards, and every complex's id / group / label in cache order
    shard_00000.pt       up to ``data.shard_size`` graphs concatenated per attribute, with offsets
    splits/<name>.json   saved splits (see plgraph.data.split)

A shard is read with ``torch.load(mmap=True, weights_only=True)``: opening costs no RAM, pages are
read on access and shared by data-loader workers, so a PDBbind-general cache (~20k complexes) never
needs to fit in memory, let alone twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch_geometric.data import HeteroData

from plgraph.config import FeaturizeConfig
from plgraph.errors import CacheError
from plgraph.featurize import DATA_PROCESSING_VERSION
from plgraph.runtime.atomic import replace_atomically

log = logging.getLogger(__name__)

SHARD_FORMAT = 1
META_FILE = "meta.json"
# meta.json's SHA-256 fingerprint of the inputs: the second check when their times changed.
CONTENT_FINGERPRINT = "inputs_content_fingerprint"
INPUTS_CHANGED = ("the input files or labels changed since it was built (ids, labels, file "
                  "sizes or modification times differ)")
_EDGE_INDEX = "edge_index"
# The graphs' Vina terms (featurize.vina_terms=true), [graphs, len(vocab.VINA_TERMS)] per shard.
VINA = "vina"
# The ligands' whole-molecule descriptors, [graphs, len(vocab.LIGAND_DESCRIPTORS)] per shard.
DESCRIPTORS = "descriptors"


def shard_name(number: int) -> str:
    return f"shard_{number:05d}.pt"


def _cat_dim(attr: str) -> int:
    return 1 if attr == _EDGE_INDEX else 0


def pack_graphs(graphs: Sequence[HeteroData]) -> dict:
    """Concatenate graphs attribute by attribute, with offsets, into one shard payload."""
    tensors: dict[str, list[torch.Tensor]] = {}
    for graph in graphs:
        for store_key in graph.node_types + graph.edge_types:
            key = store_key if isinstance(store_key, str) else "|".join(store_key)
            for attr, value in graph[store_key].items():
                tensors.setdefault(f"{key}/{attr}", []).append(value)
    if any(len(parts) != len(graphs) for parts in tensors.values()):
        raise CacheError("graphs in one shard have different attributes: a featurization bug")
    payload = {"format": SHARD_FORMAT, "ids": [g.complex_id for g in graphs],
               "y": torch.cat([g.y for g in graphs]), "values": {}, "offsets": {}}
    with_vina = sum("vina" in g for g in graphs)
    if with_vina not in (0, len(graphs)):
        raise CacheError("only some graphs of one shard have Vina terms: a featurization bug")
    if with_vina:  # featurize.vina_terms=true: one [1, terms] row per graph, like y
        payload[VINA] = torch.cat([g.vina for g in graphs])
    payload[DESCRIPTORS] = torch.cat([g.descriptors for g in graphs])  # one [1, D] row per graph
    for name, parts in tensors.items():
        dim = _cat_dim(name.rsplit("/", 1)[1])
        sizes = torch.tensor([0] + [p.shape[dim] for p in parts])
        payload["values"][name] = torch.cat(parts, dim=dim)
        payload["offsets"][name] = torch.cumsum(sizes, 0)
    return payload


def unpack_graph(payload: dict, position: int, version: int) -> HeteroData:
    """Rebuild graph ``position`` of a shard payload, as ``featurize_complex`` returned it."""
    data = HeteroData()
    for name, values in payload["values"].items():
        key, attr = name.rsplit("/", 1)
        start, end = payload["offsets"][name][position:position + 2].tolist()
        store = data[key] if "|" not in key else data[tuple(key.split("|"))]
        store[attr] = values.narrow(_cat_dim(attr), start, end - start)
    data.complex_id = payload["ids"][position]
    data.processing_version = version
    data.y = payload["y"][position:position + 1]
    if VINA in payload:
        data.vina = payload[VINA][position:position + 1]
    data.descriptors = payload[DESCRIPTORS][position:position + 1]
    return data


@dataclass(frozen=True)
class CacheEntry:
    id: str
    group: str
    label: float
    extras: dict[str, float] = field(default_factory=dict)  # e.g. fep_dG: reports, not training


class ProcessedCache:
    """A verified processed cache; ``cache[i]`` is the i-th complex as a ``HeteroData``."""

    def __init__(self, path: Path, meta: dict):
        self.path = path
        self.meta = meta
        self.entries = [CacheEntry(**e) for e in meta["complexes"]]
        self._locations = [(number, position)
                           for number, shard in enumerate(meta["shards"])
                           for position in range(shard["count"])]
        self._shards: dict[int, dict] = {}

    @classmethod
    def open(cls, path: Path, expected: dict,
             content_fingerprint: Callable[[], str] | None = None) -> ProcessedCache:
        """Open the cache at ``path`` after checking it was built by this code from these inputs.

        The inputs are checked by name, size and modification time first. Where only those
        changed, as after a copy without ``-p`` or a dataset staged afresh onto a node's local
        disk for every job, ``content_fingerprint`` (SHA-256 of every input file) decides: the
        same content is the same cache, and meta.json records the new times, so that the next
        start takes the fast path again. A cache whose meta.json has no content fingerprint yet
        gets one while its times still match (the caller holds the cache lock).

        Args:
            expected: ``featurize`` config dict, ``source`` dict and ``inputs_fingerprint`` the
                cache must have been built with (see :func:`plgraph.data.build.cache_identity`).
            content_fingerprint: computes ``ReadResult.fingerprint(content=True)`` of the inputs;
                None: times changed means stale.

        Raises:
            CacheError: missing, incomplete, or stale; the message names the directory to delete.
        """
        meta = read_meta(path)
        problems = _staleness(meta, expected)
        if not problems:
            problems = _check_inputs(path, meta, expected, content_fingerprint)
        if problems:
            raise CacheError(f"processed cache {path} is stale: " + "; ".join(problems)
                             + f". It is never used silently: delete it to reprocess "
                             f"(rm -r {path}), or point data.processed_dir elsewhere.")
        for shard in meta["shards"]:
            file = path / shard["file"]
            if not file.is_file() or file.stat().st_size != shard["bytes"]:
                raise CacheError(f"processed cache {path}: {shard['file']} is missing or has the "
                                 f"wrong size (damaged copy?); delete {path} to reprocess")
        return cls(path, meta)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> HeteroData:
        number, position = self._locations[index]
        return unpack_graph(self._shard(number), position, self.meta["data_processing_version"])

    def _shard(self, number: int) -> dict:
        """Shard ``number``'s payload, memory-mapped on first use and kept."""
        if number not in self._shards:
            file = self.path / self.meta["shards"][number]["file"]
            self._shards[number] = torch.load(file, mmap=True, weights_only=True)
        return self._shards[number]

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def ligand_atom_counts(self) -> list[int]:
        """Heavy atoms of each complex's ligand, in cache order, from the shard offsets alone
        (no graph is rebuilt): the training range that prediction's applicability check uses."""
        counts = []
        for number in range(len(self.meta["shards"])):
            counts += self._shard(number)["offsets"]["ligand/x"].diff().tolist()
        return counts

    @property
    def has_vina_terms(self) -> bool:
        """Whether the graphs carry their Vina terms (built with featurize.vina_terms=true)."""
        return bool(self.meta.get("featurize", {}).get("vina_terms"))

    def vina_terms(self) -> torch.Tensor:
        """Each complex's Vina terms ``[complexes, len(vocab.VINA_TERMS)]`` in cache order, from
        the shards' stacked rows alone (no graph is rebuilt); the baselines and the model's
        standardization of the terms read them.

        Raises:
            CacheError: the cache was built without ``featurize.vina_terms=true``.
        """
        if not self.has_vina_terms:
            raise CacheError(f"processed cache {self.path} has no Vina terms: it was built "
                             "without featurize.vina_terms=true")
        return torch.cat([self._shard(number)[VINA]
                          for number in range(len(self.meta["shards"]))])

    def ligand_descriptors(self) -> torch.Tensor:
        """Each complex's ligand descriptors ``[complexes, len(vocab.LIGAND_DESCRIPTORS)]`` in
        cache order, from the shards' stacked rows alone, as :meth:`vina_terms`."""
        return torch.cat([self._shard(number)[DESCRIPTORS]
                          for number in range(len(self.meta["shards"]))])


def read_meta(path: Path) -> dict:
    if not path.is_dir():
        raise CacheError(f"no processed cache at {path}; build it with "
                         "`python main.py prepare_only=true` (same data.* options)")
    try:
        return json.loads((path / META_FILE).read_text())
    except (OSError, ValueError) as error:
        raise CacheError(f"processed cache {path} has no readable {META_FILE} ({error}); it is "
                         f"incomplete or damaged: delete it to reprocess (rm -r {path})") from None


def _staleness(meta: dict, expected: dict) -> list[str]:
    problems = []
    built = meta.get("data_processing_version")
    if built != DATA_PROCESSING_VERSION:
        problems.append(f"built by DATA_PROCESSING_VERSION {built}, this code is version "
                        f"{DATA_PROCESSING_VERSION}")
    if meta.get("shard_format") != SHARD_FORMAT:
        problems.append(f"shard format {meta.get('shard_format')}, this code reads {SHARD_FORMAT}")
    for section in ("featurize", "source"):
        have, want = meta.get(section, {}), expected[section]
        if section == "featurize" and isinstance(have, dict):
            have = _with_defaults(have)
        if not (isinstance(have, dict) and isinstance(want, dict)):  # data.sources: a list
            if have != want:
                problems.append(f"{section} was {have!r}, now {want!r}")
            continue
        changed = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
        problems += [f"{section}.{k} was {have.get(k)!r}, now {want.get(k)!r}" for k in changed]
    return problems


def _with_defaults(featurize: dict) -> dict:
    """A featurization config read from meta.json, each key it lacks at today's default: a key
    added later without a version bump (``vina_terms``) keeps, at its default, the graphs that
    the older code built, so an older cache is the same cache."""
    defaults = FeaturizeConfig().to_dict()
    return {**{k: v for k, v in defaults.items() if k not in featurize}, **featurize}


def _check_inputs(path: Path, meta: dict, expected: dict,
                  content_fingerprint: Callable[[], str] | None) -> list[str]:
    """The inputs' part of the staleness check (see :meth:`ProcessedCache.open`); updates
    meta.json where the content proves the cache current."""
    same_stamps = meta.get("inputs_fingerprint") == expected["inputs_fingerprint"]
    recorded = meta.get(CONTENT_FINGERPRINT)
    if content_fingerprint is None:
        return [] if same_stamps else [INPUTS_CHANGED]
    if same_stamps:
        if recorded is None:  # built before content fingerprints: record it while it is known
            _update_meta(path, meta, {CONTENT_FINGERPRINT: content_fingerprint()})
        return []
    if recorded is None:
        return [INPUTS_CHANGED + "; it records no content fingerprint to compare"]
    if content_fingerprint() != recorded:
        return [INPUTS_CHANGED + ", and so does their content (SHA-256)"]
    log.info("processed cache %s: the input files' times changed since it was built, their "
             "content did not (SHA-256); using it, and recording the new times", path)
    _update_meta(path, meta, {"inputs_fingerprint": expected["inputs_fingerprint"]})
    return []


def _update_meta(path: Path, meta: dict, changes: dict) -> None:
    """Write ``changes`` into ``meta`` and meta.json, atomically. A read-only cache (shared,
    or on a read-only mount) stays as it is: the check is repeated on the next start."""
    meta.update(changes)
    try:
        replace_atomically(path / META_FILE,
                           lambda target: target.write_text(json.dumps(meta, indent=1)))
    except OSError as error:
        log.info("processed cache %s: could not update %s (%s); the inputs will be checked by "
                 "content again next time", path, META_FILE, error)
