"""The baselines of predict.py's summary: the measured ligands ranked by what a chemist has anyway.

When predict.py knows measured values (labels of the input, or series mode's ``measured=``), the
first question about the model's figure is *does it beat docking?* The summary answers it on the
same ligands: the Spearman ρ against the measured pK of the model, of the ligand's heavy-atom
count (the size baseline every affinity model must beat), and of AutoDock Vina's score in place,
after a local optimization and Vinardo's (:mod:`plgraph.featurize.vina_terms`; a more negative
score ranks higher). A model featurized with ``featurize.vina_terms`` carries the terms in its
graphs; otherwise Vina scores each measured ligand here, about 0.5 s each on a CPU core, which
``docking_baselines=auto`` does for up to ``AUTO_LIMIT`` ligands (a series) and
``docking_baselines=all`` for any number. A ligand Vina cannot score is named with its reason
and the docking figures are over the ligands it scored, the model's figure beside them on the
same ones.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem

from plgraph import vocab
from plgraph.errors import FeaturizationError
from plgraph.featurize.vina_terms import vina_terms
from plgraph.training.metrics import regression_metrics

log = logging.getLogger(__name__)

MODES = ("auto", "all", "off")  # config.DOCKING_BASELINES
AUTO_LIMIT = 50  # measured ligands Vina scores unasked: a series' worth, seconds
LABELS = {"vina": "Vina in place", "vina_optimized": "Vina optimized", "vinardo": "Vinardo"}


@dataclass(frozen=True)
class MeasuredLigand:
    """What the summary needs of one ligand with a measured value (no graph is kept)."""

    id: str
    model_pk: float
    measured_pk: float
    heavy_atoms: int
    protein: Path | None
    ligand: Chem.Mol | None
    vina: np.ndarray | None  # the graph's Vina terms (featurize.vina_terms), else None


def measured_ligand(row, model_pk: float, measured_pk: float) -> MeasuredLigand:
    """A :class:`plgraph.inference.inputs.Featurized` row's summary entry."""
    graph = row.graph
    vina = (graph.vina[0].double().numpy() if graph is not None and "vina" in graph else None)
    heavy = row.ligand.GetNumHeavyAtoms() if row.ligand is not None else 0
    return MeasuredLigand(row.id, model_pk, measured_pk, heavy, row.protein, row.ligand, vina)


def summarize(ligands: list[MeasuredLigand], mode: str) -> None:
    """Log each score's Spearman ρ against the measured pK of ``ligands`` (two or more)."""
    if len(ligands) < 2:
        return
    model = np.array([x.model_pk for x in ligands])
    measured = np.array([x.measured_pk for x in ligands])
    sizes = np.array([x.heavy_atoms for x in ligands], dtype=float)
    log.info("ranking the %d measured ligands (Spearman ρ against the measured pK): the model "
             "%s, the heavy-atom count %s", len(ligands), _rho(model, measured),
             _rho(sizes, measured))
    terms = _vina_terms(ligands, mode)
    if terms is None:
        return
    scored = [i for i, row in enumerate(terms) if row is not None]
    if len(scored) < 2:
        log.info("docking baselines: Vina scored %d of the %d measured ligands, too few to rank",
                 len(scored), len(ligands))
        return
    table = np.array([terms[i] for i in scored])
    parts = [f"{LABELS[method]} "
             f"{_rho(-table[:, vocab.VINA_TERMS.index(column)], measured[scored])}"
             for method, column in vocab.DOCKING_SCORES.items()]
    log.info("docking baselines on the %d of them Vina scored: %s; the model %s on the same",
             len(scored), ", ".join(parts), _rho(model[scored], measured[scored]))


def _vina_terms(ligands: list[MeasuredLigand], mode: str) -> list[np.ndarray | None] | None:
    """Each ligand's Vina terms (None where Vina refuses it), or None where the mode says not
    to score them here."""
    if all(x.vina is not None for x in ligands):
        return [x.vina for x in ligands]
    if mode == "off":
        return None
    if mode == "auto" and len(ligands) > AUTO_LIMIT:
        log.info("docking baselines: not scored (%d measured ligands, about %.0f s with Vina; "
                 "docking_baselines=all scores them)", len(ligands), 0.5 * len(ligands))
        return None
    terms: list[np.ndarray | None] = []
    for x in ligands:
        if x.vina is not None:
            terms.append(x.vina)
            continue
        if x.protein is None or x.ligand is None:
            terms.append(None)
            continue
        try:
            terms.append(vina_terms(x.protein, x.ligand, x.id).vector())
        except FeaturizationError as error:
            log.warning("docking baselines: %s", error)
            terms.append(None)
    return terms


def _rho(values: np.ndarray, measured: np.ndarray) -> str:
    rho = regression_metrics(values, measured)["spearman"]  # NaN where undefined
    return f"{rho:.3f}" if math.isfinite(rho) else "undefined (constant values)"
