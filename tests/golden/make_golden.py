"""Regenerate tests/golden/1h1d.json after a deliberate featurization change.

Run only together with a DATA_PROCESSING_VERSION bump: python tests/golden/make_golden.py
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


def featurize_golden_complex():
    config = FeaturizeConfig()
    ligand = read_ligand_files([HERE / f"{COMPLEX_ID}_ligand.sdf"], COMPLEX_ID)
    protein = load_protein(HERE / f"{COMPLEX_ID}_pocket.pdb", config)
    return featurize_complex(ligand, protein, config, COMPLEX_ID, cut_pocket=False)


def featurize_golden_posed_complex():
    """A Uni-FEP ligand given as SMILES, posed onto its series' reference (the reference
    layout's path): guards posing as well as the graphs."""
    from plgraph.data.build import featurize_record
    from plgraph.data.layouts import read_inputs

    config = FeaturizeConfig()
    data = DataConfig(root=str(POSED_ROOT), layout="reference")
    record = next(r for r in read_inputs(data, config).records if r.id == POSED_ID)
    return featurize_record(record, config)


def summarize(graph) -> dict:
    """Shape, dtype and content hash of every tensor of the graph, keyed ``store/attr``."""
    tensors = {}
    for key in graph.node_types + graph.edge_types:
        name = key if isinstance(key, str) else "|".join(key)
        for attr, value in graph[key].items():
            tensors[f"{name}/{attr}"] = {
                "shape": list(value.shape), "dtype": str(value.dtype),
                "sha256": hashlib.sha256(value.contiguous().numpy().tobytes()).hexdigest()}
    return tensors


def main() -> None:
    golden = {"data_processing_version": DATA_PROCESSING_VERSION,
              "featurize": FeaturizeConfig().to_dict(),
              "tensors": summarize(featurize_golden_complex()),
              "posed_tensors": summarize(featurize_golden_posed_complex())}
    GOLDEN_FILE.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {GOLDEN_FILE}")


if __name__ == "__main__":
    main()
