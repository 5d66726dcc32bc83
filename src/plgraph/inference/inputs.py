"""Prediction inputs and output: every record featurized by the training featurizer and written
as one CSV row, with its predicted pK or the reason it has none. Nothing is dropped."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from rdkit import Chem
from torch_geometric.data import HeteroData
from tqdm import tqdm

from plgraph.config import FeaturizeConfig, PredictConfig
from plgraph.data.featurizer import featurize_record_with_pose
from plgraph.data.layouts import read_manifest, read_pdbbind
from plgraph.data.libraries import iter_ligand_records, iter_smiles_library
from plgraph.data.records import ComplexRecord, Failure, ReadResult
from plgraph.errors import FeaturizationError, InputError
from plgraph.featurize.posing import Pose
from plgraph.runtime.files import plain_stem

CHUNK = 512  # records featurized and predicted together: memory stays bounded for any library
Inputs = ReadResult | Iterable[ComplexRecord | Failure]


@dataclass(frozen=True)
class Featurized:
    id: str
    ligand_name: str
    ligand_index: int
    graph: HeteroData | None
    error: str = ""
    label: float | None = None
    pose: Pose | None = None  # the pose made for a SMILES record
    ligand: Chem.Mol | None = None  # the featurized ligand: heavy atoms in the graph's order
    protein: Path | None = None  # its protein file (docking baselines score the pose in it)


def read_prediction_inputs(config: PredictConfig, featurize: FeaturizeConfig) -> Inputs:
    """The records of whichever input ``config`` names; labels are optional. A ligand library
    (SDF, mol2, SMILES) is read lazily, record by record, as the caller consumes it."""
    for name in ("protein", "ligands", "reference", "root", "labels", "manifest"):
        value = getattr(config, name)
        if value and not Path(value).exists():
            raise InputError(f"{name}={value}: not found")
    for name in ("protein", "ligands", "reference", "labels", "manifest"):
        value = getattr(config, name)
        if value and Path(value).is_dir():
            raise InputError(f"{name}={value} is a directory; give a file (root=DIR reads a "
                             "PDBbind-layout directory)")
    if config.reference:
        return iter_smiles_library(Path(config.ligands), Path(config.protein),
                                   Path(config.reference), config.smiles_column,
                                   config.name_column, config.label_property, config.label_kind)
    if config.protein and config.ligands:
        ligands = Path(config.ligands)
        return iter_ligand_records(ligands, Path(config.protein), plain_stem(ligands),
                                   config.label_property, config.label_kind)
    if config.root:
        return read_pdbbind(Path(config.root), Path(config.labels) if config.labels else None,
                            featurize)
    return read_manifest(Path(config.manifest), require_labels=False)


def featurize_all(inputs: Inputs, config: FeaturizeConfig) -> Iterator[Featurized]:
    """Featurize every record in input order, one at a time as ``inputs`` yields them (a
    ``ReadResult``: its reader rejects first); each protein file is parsed once."""
    if isinstance(inputs, ReadResult):
        inputs = [*inputs.failures, *inputs.records]
    proteins: OrderedDict = OrderedDict()
    sites: OrderedDict = OrderedDict()
    for record in tqdm(inputs, unit="complex", desc="featurizing", mininterval=1.0):
        if isinstance(record, Failure):
            yield Featurized(record.id, record.ligand_name, record.ligand_index, None,
                             record.reason)
            continue
        try:
            graph, ligand, pose = featurize_record_with_pose(record, config, proteins, sites)
        except FeaturizationError as error:
            yield _row(record, None, str(error))
            continue
        yield _row(record, graph, "", pose, ligand)


def _row(record: ComplexRecord, graph: HeteroData | None, error: str,
         pose: Pose | None = None, ligand: Chem.Mol | None = None) -> Featurized:
    return Featurized(record.id, record.ligand_name, record.ligand_index, graph, error,
                      record.label, pose, ligand, record.protein)


def chunks(rows: Iterable[Featurized], size: int = CHUNK) -> Iterator[list[Featurized]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


