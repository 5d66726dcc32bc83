"""PLGraphNet on real complexes: invariances, batching, every config in conf/model, the
ligand-only baseline, target normalization and the model's import boundary."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys

import pytest
import torch
from conftest import GOOD_IDS, REPO, SAMPLE
from omegaconf import OmegaConf
from torch_geometric.data import Batch, HeteroData
from torch_geometric.loader import DataLoader
from torch_geometric.nn.models.visnet import Sphere, ViS_MP

from plgraph import featurize, vocab
from plgraph.config import DataConfig, FeaturizeConfig, ModelConfig
from plgraph.data.featurizer import featurize_record
from plgraph.data.layouts import read_inputs
from plgraph.model import PLGraphNet
from plgraph.model import graph as model_graph
from plgraph.model.graph import BOND, CONTACT, INTERACTION, LIGAND, PROTEIN
from plgraph.model.layers import ViSLayer

# Small enough for fast tests, lmax 2 so that the degree-2 harmonics are exercised.
TINY = ModelConfig(hidden_channels=32, num_layers=2, num_heads=4, num_rbf=16, lmax=2)
MODEL_CONFIGS = sorted((REPO / "conf" / "model").glob("*.yaml"))
MODEL_SOURCES = sorted((REPO / "src" / "plgraph" / "model").glob("*.py"))


@pytest.fixture(scope="module")
def graphs() -> list[HeteroData]:
    """Four featurized pocket complexes from data/sample, in GOOD_IDS order."""
    config = FeaturizeConfig()
    records = {r.id: r for r in read_inputs(DataConfig(root=str(SAMPLE), workers=1),
                                            config).records}
    return [featurize_record(records[complex_id], config) for complex_id in GOOD_IDS]


def build(config: ModelConfig = TINY, seed: int = 0) -> PLGraphNet:
    torch.manual_seed(seed)
    return PLGraphNet(config).eval()


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    """A random proper rotation (det +1), built in float64."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def moved(data: HeteroData, rotation: torch.Tensor, shift: torch.Tensor) -> HeteroData:
    out = data.clone()
    for node_type in (LIGAND, PROTEIN):
        out[node_type].pos = (data[node_type].pos.double() @ rotation.T + shift).float()
    return out


def permuted(data: HeteroData, generator: torch.Generator) -> HeteroData:
    """The same complex with its ligand atoms, protein atoms and every edge list reordered."""
    out, inverse = data.clone(), {}
    for node_type in (LIGAND, PROTEIN):
        count = data[node_type].num_nodes
        order = torch.randperm(count, generator=generator)
        out[node_type].x, out[node_type].pos = data[node_type].x[order], data[node_type].pos[order]
        inverse[node_type] = torch.empty_like(order)
        inverse[node_type][order] = torch.arange(count)
    for edge_type in (BOND, CONTACT, INTERACTION):
        store = data[edge_type]
        order = torch.randperm(store.num_edges, generator=generator)
        source, target = store.edge_index[:, order]
        out[edge_type].edge_index = torch.stack([inverse[edge_type[0]][source],
                                                 inverse[edge_type[2]][target]])
        for key in ("edge_attr", "distance"):
            if key in store:
                out[edge_type][key] = store[key][order]
    return out


@pytest.mark.parametrize("lmax", [1, 2])
def test_prediction_is_invariant_to_rotation_and_translation(graphs, lmax):
    model = build(dataclasses.replace(TINY, lmax=lmax))
    generator = torch.Generator().manual_seed(lmax)
    batch = Batch.from_data_list(graphs)
    before = model(batch)
    rotation = random_rotation(generator)
    shift = torch.randn(3, generator=generator, dtype=torch.float64) * 20.0
    after = model(Batch.from_data_list([moved(g, rotation, shift) for g in graphs]))
    assert before.std() > 1e-2, "the output is constant: this test could not fail"
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


def test_prediction_is_invariant_to_atom_and_edge_order(graphs):
    model = build()
    generator = torch.Generator().manual_seed(0)
    before = model(Batch.from_data_list(graphs))
    after = model(Batch.from_data_list([permuted(g, generator) for g in graphs]))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


def test_batched_predictions_match_each_complex_alone(graphs):
    model = build()
    alone = torch.cat([model(g) for g in graphs])  # un-batched HeteroData: one graph each
    batched = torch.cat([model(batch) for batch in DataLoader(graphs, batch_size=len(graphs))])
    assert alone.shape == batched.shape == (len(graphs),)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


def test_conf_model_holds_the_small_and_large_configs():
    assert {path.stem for path in MODEL_CONFIGS} >= {"small", "large"}


# The large network trains for seconds on a CPU: in the slow set.
@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.stem == "large"
                                  else p for p in MODEL_CONFIGS], ids=lambda path: path.stem)
def test_every_model_config_builds_and_trains(graphs, path):
    values = OmegaConf.to_container(OmegaConf.load(path))
    assert set(values) == {f.name for f in dataclasses.fields(ModelConfig)}
    model = build(ModelConfig(**values)).train()
    prediction = model(Batch.from_data_list(graphs[:2]))
    assert prediction.shape == (2,) and torch.isfinite(prediction).all()
    prediction.square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} receives no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"


def test_ligand_only_model_ignores_the_protein(graphs):
    ligand_only, full = build(dataclasses.replace(TINY, use_protein=False)), build()
    batch = Batch.from_data_list(graphs)
    shaken = batch.clone()
    generator = torch.Generator().manual_seed(0)
    shaken[PROTEIN].pos = batch[PROTEIN].pos + torch.randn(batch[PROTEIN].pos.shape,
                                                           generator=generator)
    assert torch.equal(ligand_only(shaken), ligand_only(batch))
    assert not torch.allclose(full(shaken), full(batch), atol=1e-3)
    ligand_graph = HeteroData()
    for key, value in graphs[0][LIGAND].items():
        ligand_graph[LIGAND][key] = value
    for key, value in graphs[0][BOND].items():
        ligand_graph[BOND][key] = value
    assert torch.equal(ligand_only(ligand_graph), ligand_only(graphs[0]))


def test_target_normalization_round_trips_through_state_dict(graphs):
    model = build()
    assert (model.target_mean.item(), model.target_std.item()) == (0.0, 1.0)
    model.set_target_normalization(6.25, 1.5)
    fresh = build(seed=1)
    fresh.load_state_dict(model.state_dict())
    batch = Batch.from_data_list(graphs)
    assert torch.equal(fresh.predict_pk(batch), model.predict_pk(batch))
    torch.testing.assert_close(model.predict_pk(batch), model(batch) * 1.5 + 6.25)


def test_target_normalization_rejects_a_zero_std():
    with pytest.raises(ValueError, match="std > 0"):
        build().set_target_normalization(6.0, 0.0)


def _feature_row(data: HeteroData, store: str | tuple) -> int:
    """A row of ``store`` within two message-passing steps of the first interacting ligand
    atom: the atom itself, its first protein partner, the first bond, a contact into the
    partner."""
    source, partner = data[INTERACTION].edge_index
    partner = int(partner[0])
    if store == PROTEIN:
        return partner
    if store == CONTACT:
        return int((data[CONTACT].edge_index[1] == partner).nonzero()[0, 0])
    return int(source[0]) if store == LIGAND else 0


@pytest.mark.parametrize(("store", "attr", "features", "column"), [
    (LIGAND, "x", vocab.LIGAND_ATOM_FEATURES, "element"),
    (PROTEIN, "x", vocab.PROTEIN_ATOM_FEATURES, "residue_type"),
    (BOND, "edge_attr", vocab.LIGAND_BOND_FEATURES, "bond_type"),
    (CONTACT, "edge_attr", vocab.PROTEIN_EDGE_FEATURES, "covalent"),
], ids=["ligand-atom", "protein-atom", "bond", "contact"])
def test_changing_one_categorical_feature_changes_the_prediction(graphs, store, attr, features,
                                                                 column):
    model, data = build(), graphs[0]
    changed = data.clone()
    values = data[store][attr].clone()
    row, col = _feature_row(data, store), list(features).index(column)
    values[row, col] = (values[row, col] + 1) % features[column]
    changed[store][attr] = values
    assert not torch.allclose(model(changed), model(data), atol=1e-6)


def _single_atom_ligand(data: HeteroData) -> HeteroData:
    """One interacting ligand atom alone (no bonds), with a protein partner moved onto it."""
    source, target = data[INTERACTION].edge_index
    atom = int(source[0])
    partners = target[source == atom]
    out = HeteroData()
    out[LIGAND].x = data[LIGAND].x[atom:atom + 1]
    out[LIGAND].pos = data[LIGAND].pos[atom:atom + 1].clone()
    out[PROTEIN].x, out[PROTEIN].pos = data[PROTEIN].x, data[PROTEIN].pos.clone()
    out[PROTEIN].pos[partners[0]] = out[LIGAND].pos[0]
    out[BOND].edge_index = torch.zeros(2, 0, dtype=torch.long)
    out[BOND].edge_attr = torch.zeros(0, len(vocab.LIGAND_BOND_FEATURES), dtype=torch.long)
    out[CONTACT].edge_index, out[CONTACT].edge_attr = (data[CONTACT].edge_index,
                                                       data[CONTACT].edge_attr)
    out[INTERACTION].edge_index = torch.stack([torch.zeros_like(partners), partners])
    out[INTERACTION].distance = (out[PROTEIN].pos[partners] - out[LIGAND].pos).norm(dim=-1)
    return out


@pytest.mark.parametrize("use_protein", [True, False])
def test_single_atom_ligand_and_zero_length_edge_stay_finite(graphs, use_protein):
    model = build(dataclasses.replace(TINY, use_protein=use_protein)).train()
    single = _single_atom_ligand(graphs[0])
    batch = Batch.from_data_list([single, graphs[1]])
    for node_type in (LIGAND, PROTEIN):
        batch[node_type].pos.requires_grad_(True)
    prediction = model(batch)
    prediction.sum().backward()
    assert prediction.shape == (2,) and torch.isfinite(prediction).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(batch[LIGAND].pos.grad).all()


def test_same_seed_gives_identical_models_and_predictions(graphs):
    batch = Batch.from_data_list(graphs)
    assert torch.equal(build(seed=3)(batch), build(seed=3)(batch))


def test_bf16_autocast_stays_close_to_fp32(graphs):
    model, batch = build(), Batch.from_data_list(graphs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(batch)
    assert torch.isfinite(low).all()
    # Measured: at most 0.008 (standardized units) over seeds 0-2 of this model on these four
    # complexes, with outputs up to 1.7; bf16 keeps 8 bits of mantissa (relative 0.4 %).
    torch.testing.assert_close(low.float(), model(batch), atol=0.02, rtol=0)


@pytest.mark.parametrize("lmax", [1, 2])
def test_layer_is_pyg_vis_mp_with_scaled_attention(lmax):
    torch.manual_seed(0)
    nodes, edges, hidden, heads = 20, 90, 16, 4
    reference = ViS_MP(heads, hidden, 5.0, vecnorm_type=None, trainable_vecnorm=False)
    layer = ViSLayer(heads, hidden, 5.0)
    layer.load_state_dict(reference.state_dict())
    scale = (hidden // heads) ** -0.5
    reference.q_proj.weight.data.mul_(scale)
    reference.q_proj.bias.data.mul_(scale)
    direction = torch.nn.functional.normalize(torch.randn(edges, 3), dim=-1)
    inputs = (torch.randn(nodes, hidden), torch.randn(nodes, (lmax + 1) ** 2 - 1, hidden),
              torch.randint(0, nodes, (2, edges)), torch.rand(edges) * 5.0,
              torch.randn(edges, hidden), Sphere(lmax)(direction))
    for ours, theirs in zip(layer(*inputs), reference(*inputs), strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_edge_type_names_match_featurization():
    assert (model_graph.LIGAND, model_graph.PROTEIN) == (featurize.LIGAND, featurize.PROTEIN)
    assert (model_graph.BOND, model_graph.CONTACT, model_graph.INTERACTION) == (
        featurize.BOND, featurize.CONTACT, featurize.INTERACTION)


def _imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("path", MODEL_SOURCES, ids=lambda path: path.name)
def test_model_imports_only_the_standard_library_torch_pyg_and_plgraph_below_it(path):
    # Featurization decides the graphs; the model must not reach for RDKit or Biopython.
    # jinja2 is PyG's template engine (model/generated.py renders PyG's templates).
    allowed = ("torch", "torch_geometric.", "jinja2.", "plgraph.config.", "plgraph.vocab",
               "plgraph.runtime.", "plgraph.model.")
    strays = sorted(name for name in _imports(path) if not name.startswith(allowed)
                    and name.split(".")[0] not in sys.stdlib_module_names)
    assert not strays, f"{path.name} imports {strays}"


@pytest.mark.slow  # a Python process of its own, importing torch
def test_importing_the_model_loads_neither_rdkit_nor_biopython():
    # A fresh interpreter: this test process has imported featurization already.
    code = "import sys, plgraph.model; print(sorted({'rdkit', 'Bio'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


TERMS = dataclasses.replace(TINY, pair_energy=True, size_term=True)


def test_pair_and_size_terms_start_at_zero_and_keep_the_invariances(graphs):
    """Both terms start at exactly zero (a model with them predicts as one without), and once
    trained away from zero the prediction stays invariant to rotation, translation and order."""
    batch = Batch.from_data_list(graphs)
    plain, with_terms = build(TINY), build(TERMS)
    with_terms.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(with_terms(batch), plain(batch), atol=0, rtol=0)
    with torch.no_grad():
        torch.nn.init.normal_(with_terms.pair_energy.protein.weight, std=0.1)
        with_terms.size_term.weight.fill_(0.05)
    before = with_terms(batch)
    generator = torch.Generator().manual_seed(3)
    rotation, shift = random_rotation(generator), torch.randn(3, dtype=torch.float64) * 20.0
    after = with_terms(Batch.from_data_list([moved(g, rotation, shift) for g in graphs]))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    shuffled = with_terms(Batch.from_data_list([permuted(g, generator) for g in graphs]))
    torch.testing.assert_close(shuffled, before, atol=1e-5, rtol=0)


def test_the_size_term_adds_its_weight_per_heavy_atom(graphs):
    model = build(dataclasses.replace(TINY, size_term=True))
    batch = Batch.from_data_list(graphs)
    before = model(batch)
    with torch.no_grad():
        model.size_term.weight.fill_(0.25)
    atoms = torch.tensor([g["ligand"].num_nodes for g in graphs], dtype=torch.float32)
    torch.testing.assert_close(model(batch) - before, 0.25 * atoms / 25.0, atol=1e-5, rtol=0)


def test_the_pair_energy_sees_a_protein_atom_inside_the_cutoff_only(graphs):
    """Moving one contacting protein atom changes the pair term; the term is a sum over the
    featurized interaction edges, so a protein atom without one adds nothing."""
    from plgraph.model.graph import flatten
    from plgraph.model.terms import PairEnergy

    graph = graphs[0]
    energy = PairEnergy(TINY.num_rbf)
    torch.nn.init.normal_(energy.protein.weight, std=0.1)
    model = build(TINY)

    def term(data):
        flat = flatten(data)
        return energy.per_ligand_atom(flat, model.encode(flat)[2])

    base = term(graph)
    contacting = int(graph[INTERACTION].edge_index[1, 0])
    lonely = sorted(set(range(graph[PROTEIN].num_nodes))
                    - set(graph[INTERACTION].edge_index[1].tolist()))[0]
    for atom, changes in ((contacting, True), (lonely, False)):
        shifted = graph.clone()
        shifted[PROTEIN].pos = graph[PROTEIN].pos.clone()
        shifted[PROTEIN].pos[atom] += torch.tensor([0.3, 0.0, 0.0])
        assert bool((term(shifted) != base).any()) is changes


def test_atom_contributions_sum_with_the_intercept_to_the_predicted_pk(graphs):
    """Per graph of a batch, the ligand atoms' contributions (head, pair and size terms alike)
    plus target_mean are the predicted pK; an atom's own terms are in its contribution."""
    model = build(TERMS)
    with torch.no_grad():
        torch.nn.init.normal_(model.pair_energy.protein.weight, std=0.1)
        model.size_term.weight.fill_(0.05)
    model.set_target_normalization(6.5, 1.7)
    batch = Batch.from_data_list(graphs)
    contributions, owner = model.atom_contributions(batch)
    assert contributions.shape == (sum(g[LIGAND].num_nodes for g in graphs),)
    sums = torch.zeros(len(graphs)).index_add_(0, owner, contributions)
    torch.testing.assert_close(sums + 6.5, model.predict_pk(batch), atol=1e-5, rtol=0)
    alone, _ = model.atom_contributions(graphs[1])  # a complex alone: the same atoms' values
    torch.testing.assert_close(alone, contributions[owner == 1], atol=1e-5, rtol=0)
    without_size = model.atom_contributions(batch)[0]
    with torch.no_grad():
        model.size_term.weight.fill_(0.0)
    torch.testing.assert_close(without_size - model.atom_contributions(batch)[0],
                               torch.full_like(contributions, 0.05 * 1.7 / 25.0), atol=1e-6,
                               rtol=0)
