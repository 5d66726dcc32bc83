"""The ligand's whole-molecule descriptors: computed by the one featurizer, kept by the cache,
standardized on the train part and read by ``model.descriptor_readout``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL
from rdkit import Chem
from torch_geometric.loader import DataLoader

from plgraph import vocab
from plgraph.config import AppConfig, ModelConfig, TrackingConfig, TrainConfig
from plgraph.experiments.run import descriptor_baselines, labels_of
from plgraph.featurize.ligand import ligand_descriptors
from plgraph.model import PLGraphNet
from plgraph.training.checkpoint import read_checkpoint
from plgraph.training.run_dir import RunDirectory
from plgraph.training.trainer import Trainer

READOUT_MODEL = dataclasses.replace(TINY_MODEL, descriptor_readout=True)


def descriptor(values: np.ndarray, name: str) -> float:
    return float(values[vocab.LIGAND_DESCRIPTORS.index(name)])


@pytest.mark.parametrize("smiles, expected", [
    # benzoate: one aromatic ring, two acceptors, no donor, net charge -1, C7H5O2- 121.11 g/mol
    ("c1ccccc1C(=O)[O-]", {"aromatic_rings": 1, "rings": 1, "h_acceptors": 2, "h_donors": 0,
                           "formal_charge": -1, "halogens": 0, "fraction_csp3": 0.0}),
    # 4-chloro-N-cyclohexylbenzamide: one of its two rings aromatic, one amide donor, 6 of 13
    # carbons sp3, one chlorine
    ("Clc1ccc(cc1)C(=O)NC1CCCCC1", {"aromatic_rings": 1, "rings": 2, "h_donors": 1,
                                    "halogens": 1, "formal_charge": 0,
                                    "fraction_csp3": 6 / 13}),
])
def test_the_descriptors_count_what_their_names_say(smiles, expected):
    values = ligand_descriptors(Chem.MolFromSmiles(smiles))
    assert values.shape == (len(vocab.LIGAND_DESCRIPTORS),) and values.dtype == np.float32
    for name, value in expected.items():
        assert descriptor(values, name) == pytest.approx(value, abs=1e-6), name


def test_benzoate_weighs_and_partitions_as_rdkit_says():
    values = ligand_descriptors(Chem.MolFromSmiles("c1ccccc1C(=O)[O-]"))
    assert descriptor(values, "molecular_weight") == pytest.approx(121.11, abs=0.01)
    assert descriptor(values, "tpsa") == pytest.approx(40.13, abs=0.01)  # C=O and O-
    # the charged acid is less lipophilic than benzoic acid
    acid = ligand_descriptors(Chem.MolFromSmiles("c1ccccc1C(=O)O"))
    assert descriptor(values, "crippen_logp") < descriptor(acid, "crippen_logp")


def test_every_cached_graph_carries_its_ligands_descriptors(twenty_prepared):
    _, prepared = twenty_prepared
    stacked = prepared.cache.ligand_descriptors()
    assert stacked.shape == (len(prepared.cache), len(vocab.LIGAND_DESCRIPTORS))
    assert torch.isfinite(stacked).all()
    assert (stacked[:, vocab.LIGAND_DESCRIPTORS.index("molecular_weight")] > 50).all()
    for index in (0, 7):
        assert torch.equal(prepared.cache[index].descriptors, stacked[index:index + 1])
    train = prepared.ligand_descriptors("train")
    position = {complex_id: i for i, complex_id in enumerate(prepared.cache.ids)}
    first = prepared.split.parts["train"][0]
    np.testing.assert_array_equal(train[0], stacked[position[first]].double().numpy())


def readout_config(twenty_prepared, tmp_path, model: ModelConfig = READOUT_MODEL) -> AppConfig:
    data, _ = twenty_prepared
    return AppConfig(data=data, model=model, output_root=str(tmp_path),
                     tracking=TrackingConfig(enabled=False),
                     trainer=TrainConfig(max_epochs=1, batch_size=4, warmup_steps=2))


def test_a_new_run_standardizes_the_descriptors_on_its_train_part(twenty_prepared, tmp_path):
    _, prepared = twenty_prepared
    config = readout_config(twenty_prepared, tmp_path)
    with RunDirectory(config.run_dir) as run:
        trainer = Trainer(config, prepared, run, "python main.py")
        trainer.start()
        train = prepared.ligand_descriptors("train")
        spread = train.std(axis=0)
        np.testing.assert_allclose(trainer.model.descriptor_mean.numpy(), train.mean(axis=0),
                                   rtol=1e-5)
        np.testing.assert_allclose(trainer.model.descriptor_std.numpy(),
                                   np.where(spread > 0, spread, 1.0), rtol=1e-5)
        trainer.fit()
    saved = read_checkpoint(config.run_dir / "checkpoints" / "last.pt")["model"]
    assert torch.equal(saved["descriptor_mean"], trainer.model.descriptor_mean)


def first_batch(prepared):
    return next(iter(DataLoader(prepared.part("train"), batch_size=4)))


def test_the_readout_reads_the_descriptors_and_a_plain_model_ignores_them(twenty_prepared):
    _, prepared = twenty_prepared
    batch = first_batch(prepared)
    changed = batch.clone()
    changed.descriptors = batch.descriptors.clone()
    changed.descriptors[:, vocab.LIGAND_DESCRIPTORS.index("crippen_logp")] += 2.0
    torch.manual_seed(0)
    reading = PLGraphNet(READOUT_MODEL).eval()
    torch.manual_seed(0)
    plain = PLGraphNet(TINY_MODEL).eval()
    with torch.no_grad():
        assert not torch.allclose(reading(batch), reading(changed))
        assert torch.equal(plain(batch), plain(changed))


def test_a_model_that_reads_descriptors_refuses_graphs_without_them(twenty_prepared):
    _, prepared = twenty_prepared
    batch = first_batch(prepared)
    del batch.descriptors  # as a graph of DATA_PROCESSING_VERSION 7 or before
    model = PLGraphNet(READOUT_MODEL).eval()
    with pytest.raises(ValueError, match="DATA_PROCESSING_VERSION 8"):
        model(batch)


def test_descriptor_standardization_refuses_a_zero_spread():
    model = PLGraphNet(READOUT_MODEL)
    size = len(vocab.LIGAND_DESCRIPTORS)
    with pytest.raises(ValueError, match="stds > 0"):
        model.set_descriptor_normalization(torch.zeros(size), torch.zeros(size))
    with pytest.raises(ValueError, match="descriptor_readout"):
        PLGraphNet(TINY_MODEL).set_descriptor_normalization(torch.zeros(size), torch.ones(size))


def test_the_descriptor_fits_are_least_squares_on_train_applied_to_test(twenty_prepared,
                                                                        vina_prepared):
    _, prepared = twenty_prepared
    found = descriptor_baselines(prepared)
    assert set(found) == {"descriptors_fit"}  # no Vina terms in this cache
    test = list(prepared.split.parts["test"])
    assert found["descriptors_fit"]["ids"] == test
    np.testing.assert_allclose(found["descriptors_fit"]["measured"], labels_of(prepared, "test"))

    def design(part: str) -> np.ndarray:
        return np.hstack([prepared.ligand_descriptors(part),
                          np.array(prepared.ligand_sizes(part), float)[:, None]])

    train = design("train")
    varying = train.std(axis=0) > 0  # a constant column carries nothing, standardized or not
    raw = np.hstack([np.ones((len(train), 1)), train[:, varying]])
    solution = np.linalg.pinv(raw) @ labels_of(prepared, "train")
    expected = np.hstack([np.ones((len(test), 1)), design("test")[:, varying]]) @ solution
    np.testing.assert_allclose(found["descriptors_fit"]["predicted"], expected, rtol=1e-6)

    _, _, with_vina = vina_prepared
    assert set(descriptor_baselines(with_vina)) == {"descriptors_fit", "vina_descriptors_fit",
                                                    "series_fit"}
