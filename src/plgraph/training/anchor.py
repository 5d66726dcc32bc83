"""The heavy-atom fit and the Vina fits, as baselines and as the starting point of an anchored
model.

Within a congeneric series, larger ligands tend to bind more tightly; across unseen proteins a
straight line in the ligand's heavy-atom count ranks a series better than a network that has
memorized its training proteins (bench/README.md). ``model.anchor=heavy_atoms`` starts the
network exactly on that line, fitted on the run's train part, so that what it learns is the
residual: training can only take it away from the baseline as far as the data (and early
stopping on validation) allow. ``model.anchor=vina`` does the same with the line in the pose's
Vina score, ``vina_terms`` with a linear fit on all of its Vina terms
(``featurize.vina_terms=true``).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from plgraph import vocab

log = logging.getLogger(__name__)


def heavy_atom_fit(counts, labels) -> tuple[float, float]:
    """``(slope, intercept)`` of the least-squares line pK = slope * heavy atoms + intercept.
    Where every ligand has the same size the slope is 0 and the intercept the mean label (a
    line through one x is undetermined; this is the fit's least-norm answer)."""
    counts, labels = np.asarray(counts, float), np.asarray(labels, float)
    if len(labels) == 0:
        raise ValueError("the heavy-atom fit needs at least one labelled complex")
    if np.ptp(counts) == 0:
        return 0.0, float(labels.mean())
    slope, intercept = np.polyfit(counts, labels, 1)
    return float(slope), float(intercept)


def start_on_heavy_atom_line(model, counts, labels) -> None:
    """Start ``model`` as the heavy-atom fit on the train part (``model.anchor=heavy_atoms``):
    ``counts`` and ``labels`` of the train complexes."""
    slope, intercept = heavy_atom_fit(counts, labels)
    model.anchor_to_heavy_atoms(slope, intercept)
    log.info("model.anchor=heavy_atoms: starting as pK = %.4f * heavy atoms + %.3f (the "
             "least-squares line on %d train complexes)", slope, intercept, len(counts))


def vina_standardization(terms) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each Vina term over ``terms`` ``[complexes, terms]``; a
    term that does not vary gets std 1 (it is then 0 everywhere once centred)."""
    terms = np.asarray(terms, float)
    std = terms.std(axis=0)
    return terms.mean(axis=0), np.where(std > 0, std, 1.0)


def standardized_columns(terms, reference, columns) -> np.ndarray:
    """``terms`` standardized by :func:`vina_standardization` of ``reference``, in
    ``columns``."""
    mean, std = vina_standardization(reference)
    return ((np.asarray(terms, float) - mean) / std)[:, list(columns)]


def vina_fit(terms, labels, columns) -> tuple[np.ndarray, float]:
    """The least-squares fit pK = intercept + coefficients . z of ``labels`` on the
    standardized Vina terms ``z`` (:func:`vina_standardization` of ``terms`` itself) in
    ``columns``; ``(coefficients, intercept)``. As z is centred, the intercept is the mean
    label; collinear terms (Vina's score is a weighted sum of the others) get numpy's
    least-norm answer."""
    terms, labels = np.asarray(terms, float), np.asarray(labels, float)
    if len(labels) == 0:
        raise ValueError("a Vina fit needs at least one labelled complex")
    z = standardized_columns(terms, terms, columns)
    design = np.hstack([np.ones((len(labels), 1)), z])
    solution = np.linalg.lstsq(design, labels, rcond=None)[0]
    return solution[1:], float(solution[0])


def vina_fit_predict(train_terms, train_labels, terms, columns) -> np.ndarray:
    """:func:`vina_fit` on the train complexes, applied to ``terms`` (the test part's)."""
    coefficients, intercept = vina_fit(train_terms, train_labels, columns)
    return intercept + standardized_columns(terms, train_terms, columns) @ coefficients


def start_on_vina_fit(model, terms, labels) -> None:
    """Start ``model`` as the Vina fit on the train part (``model.anchor=vina`` or
    ``vina_terms``); ``terms`` and ``labels`` of the train complexes, the model's Vina
    standardization already set from the same terms."""
    columns = model.vina_term.columns
    coefficients, intercept = vina_fit(terms, labels, columns)
    model.anchor_to_vina(coefficients, intercept)
    if model.config.anchor == "vina":
        _, std = vina_standardization(terms)
        log.info("model.anchor=vina: starting as pK = %.3f %+.4f * (Vina score - its train "
                 "mean) (the least-squares line on %d train complexes)", intercept,
                 coefficients[0] / std[columns[0]], len(labels))
    else:
        log.info("model.anchor=vina_terms: starting as the least-squares fit on the %d Vina "
                 "terms of %d train complexes (intercept %.3f)", len(columns), len(labels),
                 intercept)


def start_new_model(model, train_labels: list[float], train_sizes: list[int],
                    train_vina=None) -> None:
    """A new run's model: its output standardized on the train part's labels, its Vina terms
    (``train_vina`` ``[complexes, terms]``, where the model reads them) on the train part's
    terms, and started on the fit ``model.anchor`` names."""
    labels = torch.tensor(train_labels)
    std = labels.std().item() if len(labels) > 1 else 1.0
    model.set_target_normalization(labels.mean().item(), std if std > 0 else 1.0)
    if model.config.uses_vina:
        if train_vina is None:
            raise ValueError(f"model.anchor={model.config.anchor} / model.vina_readout need the "
                             "train part's Vina terms (featurize.vina_terms=true)")
        assert np.shape(train_vina)[1] == len(vocab.VINA_TERMS)
        mean, spread = vina_standardization(train_vina)
        model.set_vina_normalization(torch.tensor(mean, dtype=torch.float32),
                                     torch.tensor(spread, dtype=torch.float32))
    if model.config.anchor == "heavy_atoms":
        start_on_heavy_atom_line(model, train_sizes, labels.numpy())
    elif model.config.anchor in ("vina", "vina_terms"):
        start_on_vina_fit(model, train_vina, labels.numpy())
