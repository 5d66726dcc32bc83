"""Several datasets read as one (``data.sources``), each complex kept once.

Public affinity sets copy each other: Uni-FEP's ``JACS8`` and ``WaterSet`` series are FEP+
benchmark series, prepared again. Training on both without care would count those ligands twice
and, worse, could put one copy in train and the other in test. The rule:

- ids become ``<source name>:<id>`` (and groups ``<source name>:<group>``), so no two sources
  collide;
- two records of different sources are the same complex when their ligands have the same
  canonical isomeric SMILES (heavy atoms, RDKit) and their proteins have a chain pair at
  ``data.duplicate_identity`` sequence identity or more (the same target, prepared differently:
  other termini, other missing loops);
- of such copies the one from the source listed first in ``data.sources`` is kept; the others are
  listed in ``meta.json`` under ``duplicates`` with the id they copy. They are not failures.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import cache
from pathlib import Path

from rdkit import Chem

from plgraph.data.records import ComplexRecord, Failure, ReadResult
from plgraph.data.targets import chain_sequences, identity
from plgraph.errors import FeaturizationError, PlgraphError
from plgraph.featurize import parse_ligand_block, read_ligand_files
from plgraph.featurize.posing import parse_smiles

log = logging.getLogger(__name__)


def combine_sources(results: list[tuple[str, ReadResult]], min_identity: float) -> ReadResult:
    """The records of every ``(source name, result)`` in order, prefixed, copies dropped."""
    combined = ReadResult()
    for name, result in results:
        combined.records += [replace(r, id=f"{name}:{r.id}", group=f"{name}:{r.group}")
                             for r in result.records]
        combined.failures += [Failure(f"{name}:{f.id}", f.reason) for f in result.failures]
    kept, duplicates = _drop_copies(combined.records, min_identity)
    combined.records, combined.duplicates = kept, duplicates
    log.info("%d sources: %d complexes, %d dropped as copies of a complex of an earlier source",
             len(results), len(kept), len(duplicates))
    return combined


def _drop_copies(records: list[ComplexRecord],
                 min_identity: float) -> tuple[list[ComplexRecord], list[Failure]]:
    first_by_smiles: dict[str, list[ComplexRecord]] = {}
    kept, duplicates = [], []
    for record in records:
        smiles = canonical_smiles(record)
        source = _source(record)
        earlier = [r for r in first_by_smiles.get(smiles, ()) if _source(r) != source]
        original = next((r for r in earlier if same_target(r.protein, record.protein,
                                                           min_identity)), None)
        if smiles is not None and original is not None:
            duplicates.append(Failure(record.id, f"copy of {original.id}: same ligand (canonical "
                                                 f"SMILES) and target (>= {min_identity:.0%} "
                                                 "sequence identity) in an earlier source"))
            continue
        if smiles is not None:
            first_by_smiles.setdefault(smiles, []).append(record)
        kept.append(record)
    return kept, duplicates


def _source(record: ComplexRecord) -> str:
    return record.id.split(":", 1)[0]


def canonical_smiles(record: ComplexRecord) -> str | None:
    """The ligand's canonical isomeric SMILES (heavy atoms), or None where it cannot be read:
    such a record fails featurization later with its reason, and is never a copy."""
    try:
        if record.smiles is not None:
            mol = parse_smiles(record.smiles, record.id)
        elif record.ligand_block is not None:
            mol = parse_ligand_block(record.ligand_block, "sdf", record.id)
        else:
            mol = read_ligand_files(record.ligand_files, record.id)
    except FeaturizationError:
        return None
    return Chem.MolToSmiles(Chem.RemoveHs(mol))


def same_target(first: Path, second: Path, min_identity: float) -> bool:
    """Two protein files share a chain at ``min_identity`` sequence identity or more."""
    if first == second:
        return True
    return any(a == b or identity(a, b) >= min_identity
               for a in _chains(first) for b in _chains(second))


@cache
def _chains(path: Path) -> tuple[str, ...]:
    try:
        return tuple(chain_sequences(path))
    except PlgraphError:
        return ()
