"""Series mode of predict.py: the library's predictions adjusted by the series' measured ligands.

The model predicts every library ligand as usual; this sink keeps those rows, matches the
measured ligands to them (by id or name, else by structure), predicts the measured ligands that
are not in the library (from their own pose, or posed on ``reference=`` from SMILES), and fits
the series method of :mod:`plgraph.inference.series` with the model as the prior. Each query
row's ``predicted_pk`` is then the series-adjusted value with its ``predicted_pk_std`` and the
central 68 and 95 % intervals of its predictive (``predicted_pk_low68`` ... ``_high95``); a
measured ligand's row has status ``measured`` and its value in ``measured_pk``. ``model_pk``
keeps the model alone, ``nearest_measured`` / ``nearest_similarity`` the most similar measured
ligand (Tanimoto on Morgan counts), and ``suggest_rank`` the ligands to make next.

The default method, ``auto``, follows the model's record on series of protein families it never
saw (its validation series under a family split, :func:`plgraph.inference.predictor.
series_record`): no record or a useless one, the fingerprint GP alone; a record like today's
model's, ``blend``; FEP's level, ``blend`` mixing anchoring in always. ``blend`` and the default
acquisition, ``ucb``, were chosen on the dev part of bench/series_mode.py (bench/README.md):
with today's model as the prior, ``blend`` gained over the fingerprint GP at k = 5 and was not
measurably below it at k = 10 and 20, where anchoring alone loses 0.06 ρ at k = 20 and
``gp_prior`` (the conservative choice, for a prior one does not trust) gains nothing; UCB
reached the top 5 % of a series in fewer rounds than expected improvement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem

from plgraph.data.records import ComplexRecord
from plgraph.errors import InputError
from plgraph.inference.inputs import Featurized
from plgraph.inference.measured import Measured, structure_key
from plgraph.inference.series import (
    METHODS,
    MIN_PREDICTIVE_DOF,
    SeriesPrediction,
    count_fingerprints,
    method_for_record,
    predictive_dof,
    suggest,
    tanimoto,
)
from plgraph.inference.writers import INTERVAL_LEVELS, PredictionWriter, SeriesColumns

log = logging.getLogger(__name__)

# Series mode holds every library row (graph included, for the domain checks) until the end.
MAX_LIBRARY = 20_000
WHY_METHOD = {
    "blend": "the fingerprint GP mixed with anchoring on the model's differences (shrunk "
             "where the measured ligands say they are too wide), where anchoring predicts the "
             "measured ligands no worse than the GP (best of the methods with today's model at "
             "k = 5-10 on Uni-FEP series of unseen families)",
    "gp_prior": "the fingerprint GP around the model, which it uses only where the measured "
                "ligands support it (never measurably below the GP alone on 60 Uni-FEP series)",
    "gp_alone": "the fingerprint GP alone; the model is not used",
    "anchored": "each measured ligand's pK plus the model's difference, weighted by similarity "
                "(best with a strong prior; with a weak one it loses to the GP at k = 20)",
    "gp_anchored": "the fingerprint GP on the model's residuals (best with a strong prior)",
}
WHY_ACQUISITION = {
    "ucb": "upper confidence bound (mean + 1 std): in the simulated campaigns it reached the "
           "top 5 % of a series in fewer rounds than expected improvement",
    "ei": "expected improvement over the best measured pK",
}

Predict = Callable[[list[ComplexRecord]], list[tuple[Featurized, float | None, float | None]]]


@dataclass
class _Row:
    row: Featurized
    predicted: float | None
    spread: float | None
    measured: Measured | None = None
    columns: SeriesColumns | None = None


class SeriesRanking:
    """A prediction sink (``write`` / ``close``) that writes through ``writer`` at the end.

    Args:
        writer: the output CSV, opened with the series columns.
        measured: the measured ligands (:func:`plgraph.inference.measured.read_measured`).
        method: a name of :data:`plgraph.inference.series.METHODS`, or ``auto``: the method
            the model's ``record`` earns (:func:`plgraph.inference.series.method_for_record`).
        record: the model's mean per-series rho on series of unseen protein families
            (:func:`plgraph.inference.predictor.series_record`), or None.
        suggestions: how many ligands to suggest (0: none).
        acquisition: ``ucb`` or ``ei``.
        records_for: the records that predict a measured ligand absent from the library, or a
            reason why it cannot be predicted.
        predict: featurizes and predicts such records with the model.
    """

    def __init__(self, writer: PredictionWriter, measured: list[Measured], method: str,
                 record: float | None, suggestions: int, acquisition: str,
                 records_for: Callable[[Measured], ComplexRecord | str], predict: Predict):
        self.writer, self.measured = writer, measured
        if method == "auto":
            choice = method_for_record(record)
            self.method, self.options = choice.method, choice.options
            self.why = f"auto: {choice.why}"
        else:
            self.method, self.options, self.why = method, {}, WHY_METHOD[method]
        self.suggestions, self.acquisition = suggestions, acquisition
        self.records_for, self.predict = records_for, predict
        self.rows: list[_Row] = []
        self.unmatched: list[Measured] = []  # measured ligands absent from the library
        self.left_out: list[tuple[Measured, str]] = []

    def write(self, row: Featurized, predicted: float | None, spread: float | None) -> None:
        if len(self.rows) == MAX_LIBRARY:
            raise InputError(f"series mode (measured=) ranks one series and holds it in "
                             f"memory: at most {MAX_LIBRARY} ligands; split the library")
        self.rows.append(_Row(row, predicted, spread))

    def close(self, complete: bool) -> None:
        try:
            if complete:
                self._rank()
                for entry in self.rows:
                    self._write(entry)
        finally:
            self.writer.close(complete)

    # --- the steps --------------------------------------------------------------------------
    def _rank(self) -> None:
        self._match()
        self._add_unmatched()
        for measured, reason in self.left_out:
            log.warning("measured ligand %s (%s) left out: %s", measured.name or measured.smiles,
                        measured.where, reason)
        known = [e for e in self.rows if e.measured is not None]
        queries = [e for e in self.rows if e.measured is None and e.predicted is not None]
        self._warn_about_k(len(known))
        if not queries:
            return
        fps = count_fingerprints([e.row.ligand for e in known + queries])
        known_fps, query_fps = fps[:len(known)], fps[len(known):]
        result = METHODS[self.method](
            known_fps, np.array([e.measured.pk for e in known]), query_fps,
            np.array([e.predicted for e in known]), np.array([e.predicted for e in queries]),
            **self.options)
        self._say_how_the_model_was_used(len(known), result)
        self._keep(queries, result, known, known_fps, query_fps)

    def _say_how_the_model_was_used(self, k: int, result: SeriesPrediction) -> None:
        """Whether the model shaped the ranking: a user must know when it was left out."""
        if k < 2 or self.method in ("gp_alone", "anchored", "gp_anchored"):
            return
        if result.prior_scale == 0:
            log.info("series mode: the measured ligands do not support the model here; the "
                     "ranking is the fingerprint GP's alone (model_pk keeps the model's values)")
        else:
            log.info("series mode: the measured ligands support the model; it shapes the "
                     "ranking (prior scale %.2f)", result.prior_scale)

    def _match(self) -> None:
        """Each measured ligand onto its library row: by id or ligand name, else structure."""
        by_name = {}
        for entry in self.rows:
            for name in (entry.row.id, entry.row.ligand_name):
                by_name.setdefault(name, entry)
        by_structure: dict[str, _Row] | None = None  # InChIs only if a name does not match
        for measured in self.measured:
            entry = by_name.get(measured.name) if measured.name else None
            if entry is None and measured.structure_key:
                if by_structure is None:
                    by_structure = self._by_structure()
                entry = by_structure.get(measured.structure_key)
            if entry is None:
                self.unmatched.append(measured)
            elif entry.predicted is None:
                self.left_out.append((measured, f"its library row {entry.row.id} failed: "
                                                f"{entry.row.error}"))
            elif entry.measured is not None:
                self.left_out.append((measured, f"matches {entry.row.id}, already matched by "
                                                f"{entry.measured.where}"))
            else:
                entry.measured = measured

    def _by_structure(self) -> dict[str, _Row]:
        found: dict[str, _Row] = {}
        for entry in self.rows:
            key = structure_key(entry.row.ligand) if entry.row.ligand is not None else None
            if key:
                found.setdefault(key, entry)
        return found

    def _add_unmatched(self) -> None:
        """Measured ligands outside the library: predicted from their pose, or left out."""
        records, owners = [], []
        for measured in self.unmatched:
            record = self.records_for(measured)
            if isinstance(record, str):
                self.left_out.append((measured, record))
            else:
                records.append(record)
                owners.append(measured)
        for measured, (row, predicted, spread) in zip(owners, self.predict(records),
                                                      strict=True):
            if predicted is None:
                self.left_out.append((measured, row.error))
            else:
                self.rows.append(_Row(row, predicted, spread, measured))

    def _warn_about_k(self, k: int) -> None:
        if k == 0:
            log.warning("measured=: no measured ligand could be used: the model alone, with a "
                        "std of 1 pK (the spread of a series)")
        elif k == 1:
            log.warning("measured=: one measured ligand: the model's values shifted through it "
                        "(an offset only), with a std of 1 pK")
        else:
            log.info("series mode: %d measured ligands; method %s: %s", k, self.method,
                     self.why)
            log.info("series mode: predicted_pk_std is the std of a Student-t with %d degrees "
                     "of freedom (k - 1, at least %d); predicted_pk_low68 .. high95 are its "
                     "central 68 and 95 %% intervals", predictive_dof(k), MIN_PREDICTIVE_DOF)

    def _keep(self, queries: list[_Row], result: SeriesPrediction, known: list[_Row],
              known_fps: np.ndarray, query_fps: np.ndarray) -> None:
        similarity = (tanimoto(query_fps, known_fps) if known
                      else np.zeros((len(queries), 0)))
        ranks = self._suggested(result, known)
        bounds = [result.interval(level / 100) for level in INTERVAL_LEVELS]
        for index, entry in enumerate(queries):
            nearest = known[int(similarity[index].argmax())] if known else None
            entry.columns = SeriesColumns(
                model_pk=entry.predicted,
                intervals=tuple((float(low[index]), float(high[index])) for low, high in bounds),
                nearest=(nearest.row.ligand_name or nearest.row.id) if nearest else "",
                similarity=float(similarity[index].max()) if nearest else None,
                suggest_rank=ranks.get(index))
            entry.predicted, entry.spread = float(result.mean[index]), float(result.std[index])

    def _suggested(self, result: SeriesPrediction, known: list[_Row]) -> dict[int, int]:
        if not self.suggestions:
            return {}
        count = min(self.suggestions, len(result.mean))
        if count < self.suggestions:
            log.warning("suggest=%d: only %d ligands to choose from", self.suggestions, count)
        best = max((e.measured.pk for e in known), default=float(np.max(result.mean)))
        chosen = suggest(result.mean, result.std, count, best, self.acquisition)
        log.info("suggest=%d by %s", count, WHY_ACQUISITION[self.acquisition])
        return {int(index): rank for rank, index in enumerate(chosen, start=1)}

    def _write(self, entry: _Row) -> None:
        if entry.measured is not None:
            self.writer.write(entry.row, None, None, series=SeriesColumns(
                model_pk=entry.predicted, measured_pk=entry.measured.pk))
            return
        self.writer.write(entry.row, entry.predicted, entry.spread,
                          series=entry.columns or SeriesColumns(model_pk=entry.predicted))


def measured_records(protein: Path | None, reference: Path | None
                     ) -> Callable[[Measured], ComplexRecord | str]:
    """How a measured ligand absent from the library gets a record: its own pose (an SDF's)
    in ``protein``, or its SMILES posed on ``reference``; otherwise the reason it cannot."""
    def record_for(measured: Measured) -> ComplexRecord | str:
        name = measured.name or measured.smiles
        if protein is None:
            return ("not in the input, and only protein= ligands= (with reference= for SMILES) "
                    "can predict a ligand from outside it")
        if measured.mol is not None:
            return ComplexRecord(f"measured/{name}", protein,
                                 ligand_block=Chem.MolToMolBlock(measured.mol),
                                 ligand_name=name, ligand_source=measured.where)
        if measured.smiles and reference is not None:
            return ComplexRecord(f"measured/{name}", protein, smiles=measured.smiles,
                                 reference_files=(reference,), ligand_name=name,
                                 ligand_source=measured.where)
        if measured.smiles:
            return ("not in the library and has no pose: give reference= to pose its SMILES, "
                    "or measured= as an SDF with its pose")
        return "its id is not in the library, and the file gives no structure for it"

    return record_for
