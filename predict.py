"""Featurize inputs for prediction: ``python predict.py protein=P.pdb ligands=L.sdf``.

Every SDF record goes through the same ``featurize_complex`` as training data (the protein parsed
once) and gets one row in ``output`` with its status and, where it failed, the reason. Predicting
pK from a trained checkpoint is not implemented yet (issue #4); until then this command checks
which inputs a model would see. Exit code 1 when any record failed.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from plgraph.cli import register_configs, run_cli, to_config
from plgraph.errors import InputError
from plgraph.inference import featurize_all, read_protein_with_ligands, write_status_csv

log = logging.getLogger("plgraph")
register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    def job() -> int:
        config = to_config(cfg)
        protein, ligands = Path(config.protein), Path(config.ligands)
        for path in (protein, ligands):
            if not path.is_file():
                raise InputError(f"{path}: file not found")
        inputs = read_protein_with_ligands(protein, ligands)
        failures = write_status_csv(featurize_all(inputs, config.featurize), Path(config.output))
        total = len(inputs.records) + len(inputs.failures)
        log.info("featurized %d of %d records; status of each in %s", total - len(failures),
                 total, config.output)
        for failure in failures[:10]:
            log.warning("  failed %s: %s", failure.id, failure.reason)
        log.warning("no pK predicted: prediction from a checkpoint is not implemented yet "
                    "(issue #4)")
        return 1 if failures else 0

    sys.exit(run_cli(job))


if __name__ == "__main__":
    main()
