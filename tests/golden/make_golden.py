"""Regenerate tests/golden/1h1d.json after a deliberate featurization change.

Run only together with a DATA_PROCESSING_VERSION bump: python tests/golden/make_golden.py

Besides 1h1d (SDF ligand, pocket given) and a posed Uni-FEP ligand, ``paths`` guards the other
featurization paths: the mol2 fallback (2l1r's SDF fails sanitization), a pocket cut from a full
protein (Uni-FEP's FKBP12), and waters and an ion kept (1h1d with ``keep_waters``: its waters and
its Mg).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from plgraph.config import DataConfig, FeaturizeConfig
from plgraph.featurize import (
    DATA_PROCESSING_VERSION,
    featurize_complex,
    load_protein,
    read_ligand_files,
)

HERE = Path(__file__).resolve().parent
COMPLEX_ID = "1h1d"
GOLDEN_FILE = HERE / f"{COMPLEX_ID}.json"
POSED_ROOT = HERE.parent / "data" / "uni-fep-mini"
POSED_ID = "WaterSet|Brd4(1)-ASH106/cmpd 9 (methoxyethyl)"
SAMPLE = HERE.parent.parent / "data" / "sample"
FULL_PROTEIN = POSED_ROOT / "Hermite|FKBP12"


def featurize_golden_complex():
    config = FeaturizeConfig()
    ligand = read_ligand_files([HERE / f"{COMPLEX_ID}_ligand.sdf"], COMPLEX_ID)
    protein = load_protein(HERE / f"{COMPLEX_ID}_pocket.pdb", config)
    return featurize_complex(ligand, protein, config, COMPLEX_ID, cut_pocket=False)


def featurize_golden_posed_complex():
    """A Uni-FEP ligand given as SMILES, posed onto its series' reference (the reference
    layout's path): guards posing as well as the graphs."""
    from plgraph.data.featurizer import featurize_record
    from plgraph.data.layouts import read_inputs

    config = FeaturizeConfig()
    data = DataConfig(root=str(POSED_ROOT), layout="reference")
    record = next(r for r in read_inputs(data, config).records if r.id == POSED_ID)
    return featurize_record(record, config)


def featurize_golden_paths() -> dict:
    """The graphs of the other featurization paths, by name (see the module docstring)."""
    config = FeaturizeConfig()
    fallback = read_ligand_files([SAMPLE / "2l1r" / "2l1r_ligand.sdf",
                                  SAMPLE / "2l1r" / "2l1r_ligand.mol2"], "2l1r")
    reference = read_ligand_files([FULL_PROTEIN / "ref_ligand.sdf"], "FKBP12")
    waters = FeaturizeConfig(keep_waters=True)
    return {
        "mol2_fallback": featurize_complex(
            fallback, load_protein(SAMPLE / "2l1r" / "2l1r_pocket.pdb", config), config, "2l1r",
            cut_pocket=False),
        "pocket_cut_from_full_protein": featurize_complex(
            reference, load_protein(FULL_PROTEIN / "protein.pdb", config), config, "FKBP12",
            cut_pocket=True),
        "waters_and_ion_kept": featurize_complex(
            read_ligand_files([HERE / f"{COMPLEX_ID}_ligand.sdf"], COMPLEX_ID),
            load_protein(HERE / f"{COMPLEX_ID}_pocket.pdb", waters), waters, COMPLEX_ID,
            cut_pocket=False),
    }


GRAPH_LEVEL = ("descriptors",)


def summarize(graph) -> dict:
    """Shape, dtype and content hash of every tensor of the graph, keyed ``store/attr`` (a
    graph-level tensor by its name alone)."""
    tensors = {}
    for key in graph.node_types + graph.edge_types:
        name = key if isinstance(key, str) else "|".join(key)
        for attr, value in graph[key].items():
            tensors[f"{name}/{attr}"] = {
                "shape": list(value.shape), "dtype": str(value.dtype),
                "sha256": hashlib.sha256(value.contiguous().numpy().tobytes()).hexdigest()}
    for attr in GRAPH_LEVEL:  # the ligand's descriptors: one row for the whole graph
        value = graph[attr]
        tensors[attr] = {
            "shape": list(value.shape), "dtype": str(value.dtype),
            "sha256": hashlib.sha256(value.contiguous().numpy().tobytes()).hexdigest()}
    return tensors


def main() -> None:
    golden = {"data_processing_version": DATA_PROCESSING_VERSION,
              "featurize": FeaturizeConfig().to_dict(),
              "tensors": summarize(featurize_golden_complex()),
              "posed_tensors": summarize(featurize_golden_posed_complex()),
              "paths": {name: summarize(graph)
                        for name, graph in featurize_golden_paths().items()}}
    GOLDEN_FILE.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {GOLDEN_FILE}")


if __name__ == "__main__":
    main()
