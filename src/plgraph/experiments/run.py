"""A reproducible experiment: one training config on several seeds against two baselines, and a
report of what the protein and interaction graphs add.

Per seed: a split of its own (``<split.name>-seed<N>``, seeded with N, so the test targets change
with the seed), the full model, the same network on the ligand graph alone
(``model.use_protein=false``), a linear fit of pK on the ligand's heavy-atom count on the
train part, and, where the cache holds the poses' Vina terms, the docking baselines
(:func:`docking_baselines`). Every training is an ordinary resumable run
(``<run_name>-seed<N>-full`` and ``-ligand_only``): an interrupted experiment run again skips
what is finished and resumes the rest. The report is ``<run_name>/results.json`` and ``report.md``.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from plgraph import vocab
from plgraph.config import AppConfig, SplitConfig
from plgraph.data import UNCUT_TRAIN, PreparedData, capped_training, prepare_data
from plgraph.data.records import dg_to_pk
from plgraph.errors import PlgraphError
from plgraph.experiments.few_shot import (
    run_few_shot,
)
from plgraph.experiments.learning_curve import (
    fewer_targets,
    train_targets,
)
from plgraph.experiments.report import LABELS, summarize, write_figures, write_report
from plgraph.experiments.trainings import fit_and_read_predictions
from plgraph.runtime.atomic import replace_atomically
from plgraph.runtime.stop import STOP
from plgraph.training.anchor import heavy_atom_fit, series_fit_predict, vina_fit_predict
from plgraph.training.metrics import score

log = logging.getLogger(__name__)

FEP_COLUMN = "fep_dG (kcal/mol)"
# An ensemble member's trainer seed is the experiment seed plus this times its number: apart from
# every experiment seed a user would pick, so no member repeats another seed's training.
ENSEMBLE_SEED_STRIDE = 1000


def full_model_run(run_name: str, key: int | str, member: int = 0) -> str:
    """The run directory name of an experiment's full model on trial ``key`` (a seed, or
    ``<seed>-fold<F>``, as :func:`trials` names it): ``<run_name>-seed<key>-full``, and for
    ensemble member ``member`` > 0 ``...-full-member<member>``."""
    return f"{run_name}-seed{key}-full" + (f"-member{member}" if member else "")


def run_experiment(config: AppConfig, resume_command: str) -> dict:
    """Train and evaluate every seed and method, then write the report; returns its content.

    A stop signal ends it at the next safe point with StopRequested (TrainingInterrupted in a
    training); finished trainings are kept and the next run skips them."""
    with STOP:  # main.py installed the handlers already; a library call installs them here
        return _run_experiment(config, resume_command)


def seed_split(config: AppConfig, seed: int, fold: int | None = None) -> SplitConfig:
    """Seed ``seed``'s own split: ``<split.name>-seed<N>``, seeded with N; with
    ``experiment.folds``, its fold ``fold`` (``-fold<F>``)."""
    if fold is None:
        return dataclasses.replace(config.split, name=f"{config.split.name}-seed{seed}",
                                   seed=seed)
    return dataclasses.replace(config.split, name=f"{config.split.name}-seed{seed}-fold{fold}",
                               seed=seed, folds=config.experiment.folds, fold=fold)


def trials(config: AppConfig) -> list[tuple[int | str, int, int | None]]:
    """(key, seed, fold) of each split the experiment trains on: a seed, or with
    ``experiment.folds`` each fold of each seed (key ``<seed>-fold<F>``)."""
    folds = config.experiment.folds
    if not folds:
        return [(seed, seed, None) for seed in config.experiment.seeds]
    return [(f"{seed}-fold{fold}", seed, fold) for seed in config.experiment.seeds
            for fold in range(folds)]


def prepare_experiment(config: AppConfig) -> None:
    """Build the cache and every seed's split, and train nothing (``prepare_only=true``)."""
    with STOP:
        for _, seed, fold in trials(config):
            prepare_data(config.data, config.featurize, seed_split(config, seed, fold))


def _run_experiment(config: AppConfig, resume_command: str) -> dict:
    experiment, started = config.experiment, time.monotonic()
    report_dir = config.run_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    per_seed, points = {}, {}
    for key, seed, fold in trials(config):
        split = seed_split(config, seed, fold)
        prefix = f"{config.run_name}-seed{key}"
        data = capped_training(prepare_data(config.data, config.featurize, split),
                               experiment.max_train_per_series, seed)
        series_of = data.series_of
        predictions = {"heavy_atoms": heavy_atom_baseline(data), **docking_baselines(data),
                       **descriptor_baselines(data)}
        physics = fep_reference(data)
        if physics is not None:
            predictions["fep"] = physics
        variants = {"full": True, "ligand_only": False}
        if not experiment.ligand_only_baseline:
            del variants["ligand_only"]
        for variant, use_protein in variants.items():
            predictions[variant] = _train(config, data, seed, f"{prefix}-{variant}",
                                          use_protein, LABELS[variant], resume_command,
                                          split=split)
        if experiment.ensemble > 1:
            predictions["full_ensemble"] = _ensemble(config, data, seed, split, key,
                                                     predictions["full"], resume_command)
        points[key] = predictions
        full_run = Path(config.output_root) / full_model_run(config.run_name, key)
        few_shot = (run_few_shot(config, data, seed, full_run, predictions["full"],
                                 resume_command)
                    if experiment.few_shot_k else None)
        per_seed[key] = {
            "test_series": sorted({series_of[i] for i in data.split.parts["test"]}),
            "test_complexes": len(data.split.parts["test"]),
            "clusters": cluster_counts(data),
            **{method: evaluate(found, series_of, experiment.min_series_size)
               for method, found in predictions.items()}}
        if few_shot is not None:
            per_seed[key]["few_shot"] = few_shot
        if experiment.learning_curve:
            per_seed[key]["learning_curve"] = _learning_curve(
                config, data, seed, per_seed[key]["full"], series_of, resume_command)
    report = summarize(config, per_seed, time.monotonic() - started)
    write_report(report, report_dir)
    write_figures(report, points, report_dir)
    if experiment.folds:
        # every trial reads the same cache: the last one's series_of knows every complex
        write_out_of_fold(points, series_of, report_dir / "out_of_fold_predictions.csv")
    return report


def _train(config: AppConfig, data: PreparedData, seed: int, run_name: str, use_protein: bool,
           label: str, resume_command: str, init_seed: int | None = None,
           split: SplitConfig | None = None) -> dict:
    """One training of the experiment on seed ``seed``'s split (skipped when finished, resumed
    when not), its trainer seeded with ``init_seed`` (default: ``seed``); its test
    predictions, with its wall time."""
    STOP.check(f"before the training {run_name}; finished trainings are kept, the next run "
               "skips them")
    run_config = dataclasses.replace(
        config, seed=seed if init_seed is None else init_seed,
        split=split or seed_split(config, seed),
        run_name=run_name,
        model=dataclasses.replace(config.model, use_protein=use_protein),
        experiment=dataclasses.replace(config.experiment, name=None))
    log.info("experiment %s, seed %d: %s", config.experiment.name, seed, label)
    results, found = fit_and_read_predictions(run_config, data, resume_command)
    found["wall_seconds"] = results["wall_seconds"]
    return found


def _ensemble(config: AppConfig, data: PreparedData, seed: int, split: SplitConfig,
              key: int | str, first: dict, resume_command: str) -> dict:
    """The mean test prediction of ``experiment.ensemble`` full models on the split ``split``
    (trial ``key``: seed ``seed``'s, or one of its folds) and its training part: its own full
    model (``first``) and the others, runs :func:`full_model_run` ``member`` with trainer seeds
    ``seed + ENSEMBLE_SEED_STRIDE * member``. ``wall_seconds`` counts the added members only
    (the first is the full model's)."""
    size = config.experiment.ensemble
    members = [first]
    for member in range(1, size):
        members.append(_train(config, data, seed, full_model_run(config.run_name, key, member),
                              True, f"full model, ensemble member {member + 1} of {size}",
                              resume_command, init_seed=seed + ENSEMBLE_SEED_STRIDE * member,
                              split=split))
    for found in members[1:]:
        if list(found["ids"]) != list(first["ids"]):
            raise PlgraphError(f"seed {seed}: the ensemble members' test predictions are not of "
                               "the same complexes in the same order; each run's "
                               "test_predictions.csv must come from this split (rerun with "
                               "fresh=true)")
    return {"ids": first["ids"], "measured": first["measured"],
            "predicted": np.mean([found["predicted"] for found in members], axis=0),
            "wall_seconds": sum(found["wall_seconds"] for found in members[1:])}


def _learning_curve(config: AppConfig, data: PreparedData, seed: int, full: dict,
                    series_of: dict[str, str], resume_command: str) -> dict:
    """The full model on each fraction of the training targets
    (plgraph.experiments.learning_curve); the
    whole training part is the experiment's own full model."""
    curve = {"1.0": {"train_targets": train_targets(data),
                     "train_complexes": len(data.split.parts["train"]), **full}}
    for fraction in sorted(config.experiment.learning_curve):
        fewer = fewer_targets(data, fraction, seed)
        found = _train(config, fewer, seed, f"{config.run_name}-seed{seed}-targets{fraction:g}",
                       True, f"full model on {fraction:g} of the training targets",
                       resume_command)
        curve[f"{fraction:g}"] = {"train_targets": train_targets(fewer),
                                  "train_complexes": len(fewer.split.parts["train"]),
                                  **evaluate(found, series_of,
                                             config.experiment.min_series_size)}
    return curve


def fep_reference(data: PreparedData) -> dict | None:
    """The physics reference on the test complexes whose input gives Uni-FEP's FEP prediction
    (``fep_dG``, ΔG in kcal/mol, as pK): reported beside the models, never trained on."""
    test = set(data.split.parts["test"])
    entries = [e for e in data.cache.entries if e.id in test and FEP_COLUMN in e.extras]
    if not entries:
        return None
    return {"ids": [e.id for e in entries],
            "predicted": np.array([dg_to_pk(e.extras[FEP_COLUMN]) for e in entries]),
            "measured": np.array([e.label for e in entries])}


def cluster_counts(data: PreparedData) -> dict:
    """How many targets (or families, for ``split.strategy=family``) and series each part has."""
    cluster_of = (data.split.target_of or {})
    series_of = data.series_of
    return {part: {"complexes": len(ids), "series": len({series_of[i] for i in ids}),
                   "clusters": len({cluster_of[i] for i in ids}) if cluster_of else None}
            for part, ids in data.split.parts.items()}


def labels_of(data: PreparedData, part: str) -> np.ndarray:
    """The measured pK of split part ``part``, in its order, from the cache's meta.json; rounded
    through float32 as the graphs store them, so a baseline is scored on the very values the
    trainings are."""
    return data.labels(part).astype(np.float32).astype(float)


def heavy_atom_baseline(data: PreparedData) -> dict:
    """pK = a * heavy atoms + b, fitted by least squares on the train part, applied to test.

    The counts come from the cache's shard offsets and the labels from its meta.json: no graph
    is rebuilt to count its ligand's nodes."""
    def counts_and_labels(part: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        return (list(data.split.parts[part]), np.array(data.ligand_sizes(part), float),
                labels_of(data, part))

    _, train_counts, train_labels = counts_and_labels("train")
    slope, intercept = heavy_atom_fit(train_counts, train_labels)
    ids, test_counts, test_labels = counts_and_labels("test")
    return {"ids": ids, "predicted": slope * test_counts + intercept, "measured": test_labels,
            "fit": {"slope": float(slope), "intercept": float(intercept)}}


def docking_baselines(data: PreparedData) -> dict[str, dict]:
    """The docking baselines on the test part, where the cache holds the poses' Vina terms
    (``featurize.vina_terms=true``; none otherwise, and the report says what they need):
    ``vina`` (in place), ``vina_optimized`` and ``vinardo`` read as ΔG in kcal/mol, so
    pK = -score / (RT ln 10) = -score / 1.364 at 298.15 K, as the labels are converted (a more
    negative score, a better binder, is a higher pK: the sign every per-series Spearman ρ
    depends on); and ``vina_terms_fit``, the least-squares fit of pK on all the standardized
    terms of the train part (:func:`plgraph.training.anchor.vina_fit`)."""
    if not data.cache.has_vina_terms:
        return {}
    ids, labels = list(data.split.parts["test"]), labels_of(data, "test")
    train_labels = labels_of(data, "train")
    terms, train_terms = data.vina_terms("test"), data.vina_terms("train")
    found = {method: dg_to_pk(terms[:, vocab.VINA_TERMS.index(column)])
             for method, column in vocab.DOCKING_SCORES.items()}
    found["vina_terms_fit"] = vina_fit_predict(train_terms, train_labels, terms,
                                               range(len(vocab.VINA_TERMS)))
    return {method: {"ids": ids, "predicted": predicted, "measured": labels}
            for method, predicted in found.items()}


def descriptor_baselines(data: PreparedData) -> dict[str, dict]:
    """The linear fits on the ligand's descriptors, on the test part: ``descriptors_fit``, the
    least-squares fit of pK on the standardized ``vocab.LIGAND_DESCRIPTORS`` and the heavy-atom
    count of the train part; and, where the cache holds the poses' Vina terms,
    ``vina_descriptors_fit``, the same with the Vina terms beside them: the linear reading of
    what ``model.descriptor_readout`` and ``model.vina_readout`` give the network; and
    ``series_fit``, the within-series fit on both and the heavy-atom count, on every train
    complex (a cap's left-out ones too; ``plgraph.training.anchor.series_fit``), where
    ``model.anchor=vina_descriptors`` starts."""
    def inputs(part: str) -> np.ndarray:
        return np.hstack([data.ligand_descriptors(part),
                          np.array(data.ligand_sizes(part), float)[:, None]])

    ids, labels = list(data.split.parts["test"]), labels_of(data, "test")
    train, test, train_labels = inputs("train"), inputs("test"), labels_of(data, "train")
    found = {"descriptors_fit": vina_fit_predict(train, train_labels, test,
                                                 range(train.shape[1]))}
    if data.cache.has_vina_terms:
        train, test = data.series_fit_inputs("train"), data.series_fit_inputs("test")
        found["vina_descriptors_fit"] = vina_fit_predict(train, train_labels, test,
                                                         range(train.shape[1]))
        found["series_fit"] = series_fit_predict(*data.series_fit_data(UNCUT_TRAIN), test)
    return {method: {"ids": ids, "predicted": predicted, "measured": labels}
            for method, predicted in found.items()}


def evaluate(found: dict, series_of: dict[str, str], min_series_size: int) -> dict:
    """Global Pearson R and RMSE, and the mean over test series (a congeneric series of one
    target) of the Spearman ρ within the series, for series with ``min_series_size`` ligands
    and more whose measured values are not all equal. A method that predicts one value for the
    whole series (the heavy-atom fit on same-size ligands) ranks nothing: ρ = 0 there, rather
    than leaving the series out and scoring the method on the easier rest."""
    metrics = score(found["predicted"], found["measured"], [series_of[i] for i in found["ids"]],
                    min_series_size, per_series=True)
    result = {key: metrics[key] for key in ("pearson", "rmse", "series_spearman",
                                            "series_evaluated", "per_series_spearman")}
    for key in ("fit", "wall_seconds"):
        if key in found:
            result[key] = found[key]
    return result


def input_names(complex_id: str, series: str) -> tuple[str, str]:
    """(series, ligand name) as the input names them: a source's ``name:`` prefix dropped
    (``unifep:ChEMBL|ADK|X/lig1`` in series ``unifep:ChEMBL|ADK|X`` -> ``ChEMBL|ADK|X``,
    ``lig1``)."""
    source, colon, rest = series.partition(":")
    if colon and complex_id.startswith(f"{source}:"):
        series, complex_id = rest, complex_id[len(source) + 1:]
    name = (complex_id[len(series) + 1:] if complex_id.startswith(f"{series}/")
            else complex_id)
    return series, name


def write_out_of_fold(points: dict, series_of: dict[str, str], path: Path) -> None:
    """The full model's test predictions over every fold, one row per complex: ``series``
    and ``ligand_name`` (:func:`input_names`), the complex ``id``, the ``trial`` (seed and
    fold) that tested it, ``model_pk`` and ``measured_pk``. With ``experiment.ensemble`` > 1,
    ``model_pk`` is the ensemble's mean: the prior a user of that ensemble would get."""
    rows = []
    for trial, predictions in points.items():
        found = predictions.get("full_ensemble", predictions["full"])
        for complex_id, predicted, measured in zip(found["ids"], found["predicted"],
                                                   found["measured"], strict=True):
            series, name = input_names(complex_id, series_of[complex_id])
            rows.append([series, name, complex_id, trial, f"{predicted:.4f}", f"{measured:.4f}"])

    def write(target: Path) -> None:
        with open(target, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["series", "ligand_name", "id", "trial", "model_pk", "measured_pk"])
            writer.writerows(rows)

    replace_atomically(path, write)
    log.info("out-of-fold predictions of %d complexes: %s", len(rows), path)
