"""The heavy-atom fit and the Vina fits, as baselines and as the starting point of an anchored
model.

Within a congeneric series, larger ligands tend to bind more tightly; across unseen proteins a
straight line in the ligand's heavy-atom count ranks a series better than a network that has
memorized its training proteins (bench/README.md). ``model.anchor=heavy_atoms`` starts the
network exactly on that line, fitted on the run's train part, so that what it learns is the
residual: training can only take it away from the baseline as far as the data (and early
stopping on validation) allow. ``model.anchor=vina`` does the same with the line in the pose's
Vina score, ``vina_terms`` with a linear fit on all of its Vina terms
(``featurize.vina_terms=true``), and ``vina_descriptors`` with the within-series fit on the Vina
terms, the ligand's descriptors and its heavy-atom count (:func:`series_fit`).
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


def series_fit(inputs, labels, series) -> tuple[np.ndarray, float]:
    """The within-series least-squares fit pK = intercept + coefficients . inputs (raw units);
    ``(coefficients, intercept)``.

    Inputs and labels are centred within each series (``series``, one name per complex) before
    the fit, so the coefficients say how pK changes with each input *among the ligands of one
    series*, which is what ranking a series needs; an ordinary fit also learns why one protein's
    series bind more tightly than another's, which does not carry to an unseen protein. On
    version 7's family splits the fit on the Vina terms, the ligand descriptors and the
    heavy-atom count ranks the validation series at 0.353 against 0.275 for the same fit across
    series (bench/README.md, "A within-series fit"). A series of one complex adds nothing. The
    intercept puts the mean prediction on the mean label. Inputs are standardized for the
    solve; collinear ones get numpy's least-norm answer."""
    inputs, labels = np.asarray(inputs, float), np.asarray(labels, float)
    names = np.asarray(series, dtype=object)
    if len(labels) == 0 or len(names) != len(labels) or len(inputs) != len(labels):
        raise ValueError(f"the series fit needs one input row and one series name per label "
                         f"(got {len(inputs)} rows, {len(names)} names, {len(labels)} labels)")
    mean, std = vina_standardization(inputs)
    z, y = (inputs - mean) / std, labels.copy()
    for name in set(names.tolist()):
        members = names == name
        z[members] -= z[members].mean(axis=0)
        y[members] -= y[members].mean()
    if not np.any(z):
        raise ValueError("the series fit needs a series of at least two complexes that differ")
    coefficients = np.linalg.lstsq(z, y, rcond=None)[0] / std
    return coefficients, float(labels.mean() - mean @ coefficients)


def series_fit_predict(train_inputs, train_labels, train_series, inputs) -> np.ndarray:
    """:func:`series_fit` on the train complexes, applied to ``inputs``."""
    coefficients, intercept = series_fit(train_inputs, train_labels, train_series)
    return intercept + np.asarray(inputs, float) @ coefficients


def start_on_series_fit(model, inputs, labels, series) -> None:
    """Start ``model`` as :func:`series_fit` (``model.anchor=vina_descriptors``): ``inputs``
    (``vocab.SERIES_FIT_INPUTS``), ``labels`` and ``series`` of every train complex, the cut
    ones too."""
    coefficients, intercept = series_fit(inputs, labels, series)
    model.anchor_to_series_fit(coefficients, intercept)
    log.info("model.anchor=vina_descriptors: starting as the within-series least-squares fit on "
             "the Vina terms, the ligand descriptors and the heavy-atom count of %d train "
             "complexes in %d series", len(labels), len(set(series)))


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
                    train_vina=None, train_descriptors=None, series_fit_data=None) -> None:
    """A new run's model: its output standardized on the train part's labels, its Vina terms
    (``train_vina`` ``[complexes, terms]``, where the model reads them) on the train part's
    terms, its ligand descriptors (``train_descriptors``, where it reads them) on the train
    part's, and started on the fit ``model.anchor`` names; ``series_fit_data`` is
    :func:`series_fit`'s ``(inputs, labels, series)`` for ``vina_descriptors``."""
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
    if model.config.uses_descriptors:
        if train_descriptors is None:
            raise ValueError(f"model.anchor={model.config.anchor} / model.descriptor_readout="
                             f"{model.config.descriptor_readout} need the train part's ligand "
                             "descriptors")
        assert np.shape(train_descriptors)[1] == len(vocab.LIGAND_DESCRIPTORS)
        mean, spread = vina_standardization(train_descriptors)  # the same column statistics
        model.set_descriptor_normalization(torch.tensor(mean, dtype=torch.float32),
                                           torch.tensor(spread, dtype=torch.float32))
    if model.config.anchor == "heavy_atoms":
        start_on_heavy_atom_line(model, train_sizes, labels.numpy())
    elif model.config.anchor in ("vina", "vina_terms"):
        start_on_vina_fit(model, train_vina, labels.numpy())
    elif model.config.anchor == "vina_descriptors":
        if series_fit_data is None:
            raise ValueError("model.anchor=vina_descriptors needs the train part's series-fit "
                             "inputs, labels and series")
        start_on_series_fit(model, *series_fit_data)
