"""One input record -> its graphs: the one path that the cache build AND predict.py take.

A SMILES record is posed onto its system's reference ligand first, exactly as in training, so a
prediction sees the same graph that a training complex of the same input would have had. Parsed
proteins and posing sites are kept across calls (a series shares one protein).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from rdkit import Chem
from torch_geometric.data import HeteroData

from plgraph.config import FeaturizeConfig
from plgraph.data.records import ComplexRecord
from plgraph.errors import FeaturizationError
from plgraph.featurize import (
    ProteinAtoms,
    featurize_complex,
    is_pocket_file,
    load_protein,
    parse_ligand_block,
    read_ligand_files,
)
from plgraph.featurize.posing import Pose, PosingSite, parse_smiles, pose_ligand
from plgraph.featurize.vina_terms import vina_terms

PROTEINS_KEPT = 4  # parsed proteins kept per process: a series shares one protein


def featurize_record(record: ComplexRecord, config: FeaturizeConfig,
                     proteins: OrderedDict[str, ProteinAtoms] | None = None,
                     sites: OrderedDict[tuple, PosingSite] | None = None) -> HeteroData:
    """Featurize one input record (labels not attached); a SMILES record is posed first.
    ``proteins`` and ``sites`` cache parsed proteins and posing sites across calls."""
    return featurize_record_with_pose(record, config, proteins, sites)[0]


def featurize_record_with_pose(record: ComplexRecord, config: FeaturizeConfig,
                               proteins: OrderedDict[str, ProteinAtoms] | None = None,
                               sites: OrderedDict[tuple, PosingSite] | None = None,
                               ) -> tuple[HeteroData, Chem.Mol, Pose | None]:
    """:func:`featurize_record`, the ligand it featurized (heavy atoms, in the graph's order),
    and the pose made for a SMILES record (None for the others)."""
    key = str(record.protein)
    protein = proteins.get(key) if proteins is not None else None
    if protein is None:
        protein = load_protein(record.protein, config)
        if proteins is not None:
            _keep(proteins, key, protein)
    pose = None
    if record.smiles is not None:
        pose = pose_record(record, protein, config, sites)
        ligand = pose.heavy
    elif record.ligand_block is not None:
        ligand = parse_ligand_block(record.ligand_block, record.ligand_format,
                                    f"{record.id}: {record.ligand_source}", record.ligand_line)
    else:
        ligand = read_ligand_files(record.ligand_files, record.id)
    graph = featurize_complex(ligand, protein, config, record.id,
                              cut_pocket=not is_pocket_file(record.protein))
    if config.vina_terms:
        graph.vina = vina_vector(record, ligand)
    return graph, ligand, pose


def vina_vector(record: ComplexRecord, ligand: Chem.Mol) -> torch.Tensor:
    """The pose's Vina terms (``featurize.vina_terms=true``) as a ``[1, len(VINA_TERMS)]``
    float32 row, one per graph, as a batch stacks them. A pose Vina cannot score raises its
    FeaturizationError: the cache build records it as a failure with Vina's reason, and
    predict.py gives the record an error row, as for any featurization failure."""
    terms = vina_terms(record.protein, ligand, record.id).vector()
    return torch.from_numpy(terms.astype(np.float32)).unsqueeze(0)


def pose_record(record: ComplexRecord, protein: ProteinAtoms, config: FeaturizeConfig,
                sites: OrderedDict[tuple, PosingSite] | None = None) -> Pose:
    """Pose a SMILES record onto its system's reference ligand. ``sites`` caches the systems'
    reference + protein pairs, like ``proteins`` in :func:`featurize_record`."""
    site = posing_site(record, protein, sites)
    source = f"{record.id} ({record.ligand_source})"
    return pose_ligand(parse_smiles(record.smiles, source), site, config.posing, source)


def posing_site(record: ComplexRecord, protein: ProteinAtoms,
                sites: OrderedDict[tuple, PosingSite] | None = None) -> PosingSite:
    """The record's reference ligand in its protein, from ``sites`` or read now (and kept)."""
    key = (str(record.protein), record.reference_files)
    site = sites.get(key) if sites is not None else None
    if site is None:
        try:
            reference = read_ligand_files(record.reference_files, "reference ligand")
        except FeaturizationError as error:
            raise FeaturizationError(f"{record.id}: cannot pose it: {error}") from None
        site = PosingSite.build(reference, protein, str(record.reference_files[0]))
        if sites is not None:
            _keep(sites, key, site)
    return site


def _keep(cache: OrderedDict, key, value) -> None:
    cache[key] = value
    while len(cache) > PROTEINS_KEPT:
        cache.popitem(last=False)
