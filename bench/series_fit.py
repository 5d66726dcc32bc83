"""Linear fits on the validation series of unseen families: across series or within them (issue 25).

The network ranked unseen-family series about as well as a linear fit of its readout's inputs, so
this script asks, on the *validation* parts of ``experiment=transfer_budget``'s three family
splits (never their test parts), which linear fit of pK ranks best: on the Vina terms, the
ligand descriptors (``vocab.LIGAND_DESCRIPTORS``) with the heavy-atom count, or both; fitted on
the capped training part (4 ligands per series, what the network trains on) or on every train
complex; and fitted across series (ordinary least squares, as ``vina_terms_fit`` is) or within
series (``plgraph.training.anchor.series_fit``: inputs and pK centred per series, so the fit
learns what orders the ligands of one series, not which protein binds more tightly). Printed:
the mean per-series Spearman ρ of each fit on each split's validation part, and their mean.

Run from the repo root, with the transfer cache of ``DATA_PROCESSING_VERSION`` 8 in place
(``python main.py experiment=transfer prepare_only=true``): ``python bench/series_fit.py``
(about a minute, most of it reading the cache). ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from plgraph import vocab
from plgraph.cli import register_configs, to_config
from plgraph.data import UNCUT_TRAIN, capped_training, prepare_data
from plgraph.experiments.run import evaluate, seed_split
from plgraph.training.anchor import series_fit_predict, vina_fit_predict

CONF = Path(__file__).resolve().parents[1] / "conf"
INPUTS = ("vina terms", "descriptors + heavy atoms", "vina terms + descriptors + heavy atoms")


def columns(values: np.ndarray, inputs: str) -> np.ndarray:
    """The columns of ``series_fit_inputs`` rows (Vina terms, descriptors, heavy atoms) that
    the fit named ``inputs`` reads."""
    vina = len(vocab.VINA_TERMS)
    return {"vina terms": values[:, :vina], "descriptors + heavy atoms": values[:, vina:],
            "vina terms + descriptors + heavy atoms": values}[inputs]


def fit_predict(data, train: str, inputs: str, within: bool) -> np.ndarray:
    """One fit on part ``train`` (``train`` or ``UNCUT_TRAIN``), applied to the validation
    part."""
    x, y, series = data.series_fit_data(train)
    x, val = columns(x, inputs), columns(data.series_fit_inputs("val"), inputs)
    if within:
        return series_fit_predict(x, y, series, val)
    return vina_fit_predict(x, y, val, range(x.shape[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        config = to_config(compose(config_name="config", overrides=["experiment=transfer_budget"]))
    experiment = config.experiment
    figures: dict[str, list[float]] = {}
    for seed in experiment.seeds:
        data = capped_training(prepare_data(config.data, config.featurize,
                                            seed_split(config, seed)),
                               experiment.max_train_per_series, seed)
        val = {"ids": data.ids_of("val"), "measured": data.labels("val")}
        for inputs in INPUTS:
            for train in ("train", UNCUT_TRAIN):
                for within in (False, True):
                    name = (f"{inputs}; {'within' if within else 'across'} series; "
                            f"{'every train complex' if train == UNCUT_TRAIN else 'capped train'}")
                    found = {**val, "predicted": fit_predict(data, train, inputs, within)}
                    rho = evaluate(found, data.series_of, experiment.min_series_size)
                    figures.setdefault(name, []).append(rho["series_spearman"])
    print(f"mean per-series Spearman rho on the validation part of seeds {experiment.seeds}")
    for name, values in figures.items():
        print(f"  {name:75s} " + " ".join(f"{v:.3f}" for v in values)
              + f"  mean {np.mean(values):.3f}")
    if args.json:
        args.json.write_text(json.dumps({"seeds": list(experiment.seeds), "validation": figures},
                                        indent=1))
        print(f"written: {args.json}")


if __name__ == "__main__":
    main()
