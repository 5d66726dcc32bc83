"""The few-shot arm of an experiment: rank the rest of a new series after k measured ligands.

A chemist with a new target has a structure and 5-20 measured ligands and wants the rest of the
series ranked. For each seed, each test series with at least ``k + experiment.min_series_size``
ligands (the largest ``experiment.few_shot_max_series`` of them), each ``k`` in
``experiment.few_shot_k`` and each of ``experiment.few_shot_draws`` draws, k ligands are drawn at
random (seeded by the seed, the series, k and the draw) and every method predicts the series'
other ligands (the query), scored by Spearman ρ on them:

- ``pretrained``: the seed's full model as trained; the k are not used;
- ``fine_tuned``: that model fine-tuned on the k (``init_from`` its ``best.pt``: a new run with a
  fresh optimizer, the target standardization kept);
- ``scratch``: the same network trained from random weights on the k alone;
- ``heavy_atoms``: pK = a * heavy atoms + b, fitted on the k;
- ``fingerprints``: a random forest on Morgan fingerprints (radius 2, 2048 bits) of the k, the
  classic cheminformatics answer.

No ligand is left to validate on in this regime, so both trainings have a fixed budget
(``few_shot_epochs`` epochs, no early stopping) and keep the epoch that fits the k best. Each is
an ordinary resumable run, ``<run_name>-seed<N>-fewshot/<series>-k<k>-draw<d>-<method>``: an
interrupted experiment run again skips what is finished.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np  # noqa: E402
from rdkit import Chem  # noqa: E402
from rdkit.Chem import rdFingerprintGenerator  # noqa: E402
from sklearn.ensemble import RandomForestRegressor  # noqa: E402

from plgraph.config import AppConfig  # noqa: E402
from plgraph.data import PreparedData  # noqa: E402
from plgraph.data.layouts import read_inputs  # noqa: E402
from plgraph.data.records import ComplexRecord  # noqa: E402
from plgraph.experiments.comparison import (  # noqa: E402
    bootstrap_interval,
    format_interval,
    format_mean_std,
    mean_std,
)
from plgraph.experiments.trainings import fit_and_read_predictions  # noqa: E402
from plgraph.featurize import parse_ligand_block, read_ligand_files  # noqa: E402
from plgraph.featurize.posing import parse_smiles  # noqa: E402
from plgraph.runtime.files import file_safe  # noqa: E402
from plgraph.runtime.stop import STOP  # noqa: E402
from plgraph.training.init_from import adopt_checkpoint_configs  # noqa: E402
from plgraph.training.metrics import series_rho  # noqa: E402
from plgraph.training.tracking import local_store_uri  # noqa: E402

log = logging.getLogger(__name__)

METHODS = ("pretrained", "fine_tuned", "scratch", "heavy_atoms", "fingerprints")
LABELS = {"pretrained": "pretrained full model (the k unused)",
          "fine_tuned": "full model fine-tuned on the k",
          "scratch": "same network trained on the k alone",
          "heavy_atoms": "heavy-atom count fitted on the k",
          "fingerprints": "random forest on Morgan fingerprints of the k"}
MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)


def run_few_shot(config: AppConfig, data: PreparedData, seed: int, pretrained_run: Path,
                 pretrained_found: dict, resume_command: str) -> dict:
    """Every draw of every k on the seed's eligible test series, ``pretrained_run`` being the
    seed's full model and ``pretrained_found`` its test predictions (``ids``, ``predicted``);
    returns
    ``{k: {method: {"series_spearman": mean over series, "per_series": {series: mean over
    draws}}}}``."""
    experiment = config.experiment
    series_of, label_of = data.series_of, data.label_of
    members: dict[str, list[str]] = defaultdict(list)
    for complex_id in data.split.parts["test"]:
        members[series_of[complex_id]].append(complex_id)
    pretrained = dict(zip(pretrained_found["ids"], pretrained_found["predicted"], strict=True))
    molecules = ligand_molecules(config, [i for ids in members.values() for i in ids])
    heavy_atoms = {i: molecules[i].GetNumAtoms() for i in molecules}
    scores: dict = {k: {m: defaultdict(list) for m in METHODS} for k in experiment.few_shot_k}
    for k in experiment.few_shot_k:
        eligible = sorted((s for s in members
                           if len(members[s]) >= k + experiment.min_series_size),
                          key=lambda s: (-len(members[s]), s))[:experiment.few_shot_max_series]
        for series in eligible:
            for draw in range(experiment.few_shot_draws):
                ids = sorted(members[series])
                rng = np.random.default_rng([seed, k, draw, _stable_number(series)])
                chosen = sorted(ids[i] for i in rng.choice(len(ids), k, replace=False))
                query = [i for i in ids if i not in set(chosen)]
                measured = np.array([label_of[i] for i in query])
                if np.ptp(measured) == 0:
                    continue
                known = np.array([label_of[i] for i in chosen])
                found = {
                    "pretrained": np.array([pretrained[i] for i in query]),
                    "heavy_atoms": _heavy_atom_fit(chosen, known, query, heavy_atoms),
                    "fingerprints": _fingerprint_forest(chosen, known, query, molecules, seed)}
                for method, init_from in (("fine_tuned", pretrained_run / "checkpoints"
                                           / "best.pt"), ("scratch", None)):
                    name = f"{file_safe(series, limit=100)}-k{k}-draw{draw}-{method}"
                    found[method] = _train_on_k(config, data, seed, name, chosen, query,
                                                init_from, resume_command)
                for method, predicted in found.items():
                    scores[k][method][series].append(series_rho(predicted, measured))
    return {k: {m: {"series_spearman": float(np.mean([np.mean(v) for v in per.values()]))
                    if per else float("nan"),
                    "per_series": {s: float(np.mean(v)) for s, v in per.items()}}
                for m, per in by_method.items()}
            for k, by_method in scores.items()}


def ligand_molecules(config: AppConfig, ids: list[str]) -> dict[str, Chem.Mol]:
    """The ligands of ``ids`` as RDKit molecules (heavy atoms), read again from the input: the
    fingerprints are of the molecule as given, not of its graph."""
    wanted = set(ids)
    records = [r for r in read_inputs(config.data, config.featurize).records if r.id in wanted]
    return {record.id: _molecule(record) for record in records}


def _molecule(record: ComplexRecord) -> Chem.Mol:
    if record.smiles is not None:
        return parse_smiles(record.smiles, record.id)
    if record.ligand_block is not None:
        mol = parse_ligand_block(record.ligand_block, record.ligand_format,
                                 f"{record.id}: {record.ligand_source}", record.ligand_line)
    else:
        mol = read_ligand_files(record.ligand_files, record.id)
    # The file readers leave ring perception to the featurizer; Morgan environments need it.
    Chem.GetSymmSSSR(mol)
    return mol


def _heavy_atom_fit(chosen: list[str], known: np.ndarray, query: list[str],
                    heavy_atoms: dict[str, int]) -> np.ndarray:
    counts = np.array([heavy_atoms[i] for i in chosen], float)
    if np.ptp(counts) == 0:  # one size among the k: no slope to fit, every query ranks equal
        return np.full(len(query), known.mean())
    slope, intercept = np.polyfit(counts, known, 1)
    return slope * np.array([heavy_atoms[i] for i in query], float) + intercept


def _fingerprint_forest(chosen: list[str], known: np.ndarray, query: list[str],
                        molecules: dict[str, Chem.Mol], seed: int) -> np.ndarray:
    def bits(ids: list[str]) -> np.ndarray:
        return np.array([MORGAN.GetFingerprintAsNumPy(molecules[i]) for i in ids], bool)

    forest = RandomForestRegressor(n_estimators=300, random_state=seed, n_jobs=1)
    return forest.fit(bits(chosen), known).predict(bits(query))


def _train_on_k(config: AppConfig, data: PreparedData, seed: int, name: str, chosen: list[str],
                query: list[str], init_from: Path | None, resume_command: str) -> np.ndarray:
    """Train (or fine-tune) on the k ligands for the fixed budget and predict the query."""
    STOP.check(f"before the few-shot training {name}; finished trainings are kept, the next run "
               "skips them")
    epochs = config.experiment.few_shot_epochs
    # The seed's few-shot runs live together in <run_name>-seed<N>-fewshot/, tracked in the
    # experiment's own MLflow store.
    tracking = config.tracking
    if tracking.uri is None:
        tracking = dataclasses.replace(tracking, uri=local_store_uri(Path(config.output_root)))
    run_config = dataclasses.replace(
        config, seed=seed, run_name=name, tracking=tracking,
        output_root=str(Path(config.output_root) / f"{config.run_name}-seed{seed}-fewshot"),
        init_from=str(init_from) if init_from else None,
        trainer=dataclasses.replace(config.trainer, max_epochs=epochs,
                                    lr=config.experiment.few_shot_lr,
                                    early_stopping_patience=epochs,
                                    warmup_steps=min(config.trainer.warmup_steps, epochs)),
        experiment=dataclasses.replace(config.experiment, name=None))
    if init_from is not None:
        run_config = adopt_checkpoint_configs(run_config, overridden=set())
    # The k are also the validation part: nothing else is known in this regime (module doc).
    parts = {"train": chosen, "val": chosen, "test": query}
    few = data.with_parts(parts)
    _, found = fit_and_read_predictions(run_config, few, resume_command)
    predicted = dict(zip(found["ids"], found["predicted"].tolist(), strict=True))
    return np.array([predicted[i] for i in query])


def _stable_number(text: str) -> int:
    """A seed component from a series name that is the same in every process (unlike hash())."""
    return int.from_bytes(text.encode(), "little") % (2**32)


def summarize_few_shot(per_seed: dict) -> dict:
    """Over seeds, per k: each method's mean per-series ρ (mean, std, per-seed values), and the
    fine-tuned model paired against every other method: per (seed, series) difference in ρ, its
    mean and 95 % bootstrap interval."""
    results = {seed: r["few_shot"] for seed, r in per_seed.items() if "few_shot" in r}
    ks = sorted({k for result in results.values() for k in result})
    summary = {}
    for k in ks:
        by_method = {}
        for method in METHODS:
            values = [result[k][method]["series_spearman"] for result in results.values()
                      if k in result and result[k][method]["per_series"]]
            by_method[method] = {**mean_std(values), "values": values}
        paired = {}
        for other in (m for m in METHODS if m != "fine_tuned"):
            differences = [per["fine_tuned"]["per_series"][s] - per[other]["per_series"][s]
                           for result in results.values() if k in result
                           for per in [result[k]] for s in per["fine_tuned"]["per_series"]]
            paired[other] = bootstrap_interval(differences)
        summary[k] = {"methods": by_method, "fine_tuned_minus": paired}
    return summary


def few_shot_markdown(summary: dict) -> list[str]:
    lines = ["## A new series after k measured ligands", "",
             "Mean per-series Spearman ρ on the series' other ligands, mean ± std over seeds "
             "(`plgraph.experiments.few_shot`; figure `few_shot.png`):", "",
             "| method | " + " | ".join(f"k = {k}" for k in summary) + " |",
             "|---|" + "---:|" * len(summary)]
    for method in METHODS:
        cells = [summary[k]["methods"][method] for k in summary]
        lines.append(f"| {LABELS[method]} | "
                     + " | ".join(format_mean_std(c) for c in cells) + " |")
    lines += ["", "Paired: the fine-tuned model's ρ minus the other's, per series and seed, "
              "mean and 95 % bootstrap interval:", "",
              "| fine-tuned minus | " + " | ".join(f"k = {k}" for k in summary) + " |",
              "|---|" + "---:|" * len(summary)]
    for other in (m for m in METHODS if m != "fine_tuned"):
        cells = [summary[k]["fine_tuned_minus"][other] for k in summary]
        lines.append(f"| {LABELS[other]} | " + " | ".join(
            f"{c['mean']:+.3f} {format_interval(c)} (n={c['n']})" for c in cells)
            + " |")
    return [*lines, ""]
