"""Typed configuration. Library code receives these dataclasses, never a Hydra DictConfig.

Every ``__post_init__`` only validates; a message names the key, the rule and the value, so a
bad command line fails in milliseconds instead of after hours of processing.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

LAYOUTS = ("pdbbind", "series", "manifest", "reference")
LABEL_KINDS = ("pk", "dg_kcal_mol")
SPLIT_STRATEGIES = ("random", "grouped", "target", "family", "ids")
SCHEDULERS = ("cosine", "plateau", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OBJECTIVES = ("absolute", "within_series")
MONITORS = ("rmse", "series_spearman")
RELATIVE_LOSSES = ("squared", "pairwise_logistic", "both")
ANCHORS = ("none", "heavy_atoms", "vina", "vina_terms", "vina_descriptors")
LIGAND_FORMATS = ("sdf", "mol2", "pdbqt")
SMILES_SUFFIXES = (".smi", ".smiles", ".csv")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _require_choice(key: str, value: str, choices) -> None:
    """``key``'s ``value`` is one of ``choices`` (a name -> thing dict, or a tuple)."""
    _require(value in choices, f"{key} must be one of {', '.join(choices)} (got {value!r})")


def _require_device(key: str, value: str) -> None:
    _require(value in ("auto", "cpu") or re.fullmatch(r"cuda(:\d+)?", value) is not None,
             f"{key} must be auto, cpu, cuda or cuda:N (got {value!r})")


@dataclass
class PosingConfig:
    """How a ligand given as SMILES is posed onto its system's reference ligand
    (``plgraph.featurize.posing``). Part of the featurization config, so of the cache key and of
    every checkpoint.

    Args:
        mcs_steps: progress reports (steps) rdFMCS's core search may make; a search that
            reaches it is a failure. A count of steps is the same on every machine (for one
            RDKit release), so the ligands it fails do not depend on the machine's speed or load.
        mcs_timeout: seconds either search (RASCAL's seed, rdFMCS's core) may take, a backstop
            well above what ``mcs_steps`` takes on a slow machine; a search that reaches it is a
            failure that another machine might not have (it is warned about).
        min_core_atoms, min_core_fraction: the common substructure must have at least this many
            heavy atoms and this fraction of the ligand's heavy atoms.
        attempts: seeded ETKDG embeddings tried per ligand at most (the search stops at the
            first clash-free one); the least clashing one is kept.
        seed: the embeddings' random seed.
        clash_distance: a new ligand heavy atom closer than this (Å) to a protein heavy atom
            (ions excepted) is a clash.
        max_clashes: a pose with more clashing pairs than this is a failure.
        relax: relax the new atoms with MMFF94, the core held fixed.
        relax_iterations: MMFF94 minimization steps.
    """

    # 160,000: above the 152,288 steps of the longest search that finished in 2 s on an idle
    # 2-core guest (the former time limit); 81 s at the slowest rate measured (5.1e-4 s a step),
    # so 600 s leaves a machine 7x slower the same results (bench/mcs_search.py).
    mcs_steps: int = 160_000
    mcs_timeout: float = 600.0
    min_core_atoms: int = 5
    min_core_fraction: float = 0.3
    attempts: int = 8
    seed: int = 20240
    clash_distance: float = 2.2
    max_clashes: int = 2
    relax: bool = True
    relax_iterations: int = 200

    def __post_init__(self) -> None:
        _require(self.mcs_steps >= 1, "featurize.posing.mcs_steps must be >= 1 "
                 f"(got {self.mcs_steps})")
        _require(self.mcs_timeout >= 1, "featurize.posing.mcs_timeout must be >= 1 s "
                 f"(got {self.mcs_timeout})")
        _require(self.min_core_atoms >= 3, "featurize.posing.min_core_atoms must be >= 3: "
                 f"fewer atoms fix no orientation in the site (got {self.min_core_atoms})")
        _require(self.attempts >= 1, f"featurize.posing.attempts must be >= 1 "
                 f"(got {self.attempts})")
        _require(0.0 <= self.min_core_fraction <= 1.0, "featurize.posing.min_core_fraction "
                 f"must be in [0, 1] (got {self.min_core_fraction})")
        _require(self.clash_distance > 0, "featurize.posing.clash_distance must be > 0 Å "
                 f"(got {self.clash_distance})")
        for name in ("max_clashes", "relax_iterations", "seed"):
            value = getattr(self, name)
            _require(value >= 0, f"featurize.posing.{name} must be >= 0 (got {value})")


@dataclass
class FeaturizeConfig:
    """How a complex becomes graphs. Part of the cache key and of every checkpoint.

    Args:
        interaction_cutoff: ligand-protein atom pairs closer than this (Å) become interaction edges.
        protein_edge_cutoff: protein atom pairs closer than this (Å) become protein edges.
        pocket_cutoff: a full protein is cut to the residues with a heavy atom within this
            distance (Å) of a ligand heavy atom. Files named ``*_pocket.pdb`` are used as given.
        keep_waters: keep HOH/WAT/DOD residues as protein atoms (default: drop them).
        keep_hetero: keep ions, cofactors and modified residues (HETATM other than water).
        ligand_formats: the order in which ligand files are tried; the next format is the fallback
            when one fails to parse or sanitize.
        posing: how ligands given as SMILES get their pose (the ``reference`` layout).
        vina_terms: also score every pose with AutoDock Vina and Vinardo
            (``plgraph.featurize.vina_terms``) and store the terms with its graph, for
            ``model.anchor=vina`` / ``vina_terms``, ``model.vina_readout`` and the docking
            baselines of experiment reports. Off by default: it costs ~0.46 s per complex
            (median; bench/README.md) against ~8 ms for the graphs, half a day for a 100k-ligand
            screen. A pose Vina cannot score (an element it has no type for, such as boron; a
            clash) is then a featurization failure with Vina's reason, like any other.
    """

    interaction_cutoff: float = 5.0
    protein_edge_cutoff: float = 4.5
    pocket_cutoff: float = 10.0
    keep_waters: bool = False
    keep_hetero: bool = True
    ligand_formats: list[str] = field(default_factory=lambda: ["sdf", "mol2"])
    posing: PosingConfig = field(default_factory=PosingConfig)
    vina_terms: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.posing, dict):  # rebuilt from a cache's meta.json or a checkpoint
            self.posing = PosingConfig(**self.posing)
        for name in ("interaction_cutoff", "protein_edge_cutoff", "pocket_cutoff"):
            value = getattr(self, name)
            _require(value > 0, f"featurize.{name} must be > 0 Å (got {value})")
        _require(
            self.pocket_cutoff >= self.interaction_cutoff,
            f"featurize.pocket_cutoff ({self.pocket_cutoff}) must be >= featurize."
            f"interaction_cutoff ({self.interaction_cutoff}): the cut pocket must hold every "
            "interaction partner",
        )
        unknown = [f for f in self.ligand_formats if f not in LIGAND_FORMATS]
        _require(
            bool(self.ligand_formats) and not unknown,
            f"featurize.ligand_formats must be a non-empty list of {list(LIGAND_FORMATS)} "
            f"(got {list(self.ligand_formats)})",
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ReferenceLayoutConfig:
    """The ``reference`` layout's file and column names: ``<root>/<system>/`` holds the protein,
    one posed reference ligand and a CSV of ligands as SMILES. The defaults read Uni-FEP's
    benchmark folders as they are.

    Args:
        protein: the protein PDB in each system folder.
        ligand: the posed reference ligand, the first that exists and parses (SDF, mol2).
        table: the CSV of ligands.
        smiles_column, name_column, label_column: its columns; the label is read as
            ``label_kind`` (ΔG in kcal/mol by default). Every other numeric column is kept with
            the record (e.g. ``fep_dG (kcal/mol)``, a physics prediction to compare with).
    """

    protein: str = "protein.pdb"
    ligand: list[str] = field(default_factory=lambda: ["ref_ligand.sdf", "ref_ligand.mol2"])
    table: str = "result_dG.csv"
    smiles_column: str = "ligand_smiles"
    name_column: str = "ligand_name"
    label_column: str = "exp_dG (kcal/mol)"


@dataclass
class SourceConfig:
    """One dataset directory and how to read it.

    Args:
        name: names the source when ``data.sources`` lists several; its complex ids become
            ``<name>:<id>``.
        root: the dataset directory.
        layout: ``pdbbind`` (``<root>/<id>/<id>_pocket.pdb`` ...), ``series`` (protein PDB +
            multi-ligand SDF per system), ``manifest`` (a CSV of id, protein, ligand, label) or
            ``reference`` (protein + one posed reference ligand + a CSV of SMILES per system).
        labels: a PDBbind INDEX file or ``id,pK`` CSV (pdbbind), or the manifest CSV (manifest).
            Default for pdbbind: ``<root>/labels.csv``.
        label_property: series layout: the SDF property holding the label.
        label_kind: ``dg_kcal_mol`` (converted to pK at 298.15 K) or ``pk``.
        reference: the ``reference`` layout's file and column names.
    """

    name: str = ""
    root: str = "data/sample"
    layout: str = "pdbbind"
    labels: str | None = None
    label_property: str = "r_exp_dg"
    label_kind: str = "dg_kcal_mol"
    reference: ReferenceLayoutConfig = field(default_factory=ReferenceLayoutConfig)

    def __post_init__(self) -> None:
        if isinstance(self.reference, dict):
            self.reference = ReferenceLayoutConfig(**self.reference)

    def check(self, key: str) -> None:
        """Validate, naming keys under ``key`` (``data`` or ``data.sources[i]``)."""
        _require_choice(f"{key}.layout", self.layout, LAYOUTS)
        _require_choice(f"{key}.label_kind", self.label_kind, LABEL_KINDS)
        _require(self.layout != "manifest" or bool(self.labels),
                 f"{key}.labels must name the manifest CSV when {key}.layout=manifest")
        _require(bool(self.reference.ligand), f"{key}.reference.ligand must name at least one "
                 "reference ligand file")

    @property
    def root_path(self) -> Path:
        return Path(self.root)


@dataclass
class DataConfig(SourceConfig):
    """Where the complexes are, how to read them, and how to build the processed cache.

    The source keys (``root``, ``layout``, ...: :class:`SourceConfig`) describe the one dataset,
    unless ``sources`` lists several to train on together.

    Args:
        sources: several datasets read as one (e.g. uni-fep and fep-benchmark): each needs a
            unique ``name``, and ``processed_dir`` must be set. The same ligand on the same
            target (canonical SMILES equal, proteins at ``duplicate_identity`` sequence identity
            or more) in two sources is kept once, from the source listed first.
        duplicate_identity: see ``sources``.
        processed_dir: where the processed cache lives (default ``<root>/processed``).
        workers: processes for featurization; 0 means one per CPU core.
        max_failure_fraction: processing aborts when more complexes than this fraction fail.
        shard_size: complexes per cache shard file.
    """

    sources: list[SourceConfig] = field(default_factory=list)
    duplicate_identity: float = 0.9
    processed_dir: str | None = None
    workers: int = 0
    max_failure_fraction: float = 0.1
    shard_size: int = 512

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sources:
            self.sources = [SourceConfig(**s) if isinstance(s, dict) else s
                            for s in self.sources]
            for index, source in enumerate(self.sources):
                source.check(f"data.sources[{index}]")
                _require(bool(source.name) and source.name.replace("-", "").replace(
                    "_", "").isalnum(), f"data.sources[{index}].name must be a name of letters, "
                    f"digits, '-' and '_' (got {source.name!r}): it prefixes the complex ids")
            names = [source.name for source in self.sources]
            _require(len(set(names)) == len(names),
                     f"data.sources names must be unique (got {names})")
            _require(bool(self.processed_dir), "data.processed_dir must be set when "
                     "data.sources lists several datasets (no one root owns the cache)")
        else:
            self.check("data")
        _require(0.0 < self.duplicate_identity <= 1.0, "data.duplicate_identity must be in "
                 f"(0, 1] (got {self.duplicate_identity})")
        _require(self.workers >= 0,
                 f"data.workers must be >= 0, 0 = all cores (got {self.workers})")
        _require(0.0 <= self.max_failure_fraction <= 1.0,
                 f"data.max_failure_fraction must be in [0, 1] (got {self.max_failure_fraction})")
        _require(self.shard_size >= 1, f"data.shard_size must be >= 1 (got {self.shard_size})")

    @property
    def input_sources(self) -> list[SourceConfig]:
        """The datasets to read: ``sources``, or this config's own source keys."""
        return list(self.sources) or [self]

    @property
    def processed_path(self) -> Path:
        return Path(self.processed_dir) if self.processed_dir else self.root_path / "processed"

    @property
    def num_workers(self) -> int:
        """``workers``, or the cores this process may use (a Slurm job's, not the node's)."""
        if self.workers:
            return self.workers
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1


@dataclass
class SplitConfig:
    """The train / val / test split, saved beside the cache under ``splits/<name>.json``.

    Args:
        name: the saved split to use or create; a new name makes a new split.
        strategy: ``random`` by complex, ``grouped`` (a protein / series never straddles two
            parts), ``target`` (complexes whose proteins share a chain at ``target_identity``
            sequence identity or more never straddle two parts: unseen targets in test) or
            ``ids`` (test and optionally val ids from files; the rest split at random).
        train, val, test: fractions, summing to 1.
        seed: the split's own seed, independent of the training seed.
        test_ids, val_ids: files with one id per line (strategy ``ids``).
        target_identity: strategy ``target``: the sequence identity that makes two proteins
            one target.
        family_similarity: strategy ``family``: proteins whose chains align (local, BLOSUM62)
            with at least this fraction of the smaller chain's self-score are one family
            (``plgraph.data.targets.family_clusters``); families never straddle two parts.
        folds, fold: cross-fitting for the grouped strategies (0: off): the groups (series,
            targets or families) are dealt into ``folds`` folds of near-equal size; fold
            ``fold`` is the test part (``split.test`` is then unused: about 1 / folds), the
            validation part is drawn from the other folds (``split.val`` of all complexes) and
            the rest trains. Over folds 0..folds-1 every complex is tested exactly once, by a
            model that never saw its group.
    """

    name: str = "default"
    strategy: str = "random"
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 0
    test_ids: str | None = None
    val_ids: str | None = None
    target_identity: float = 0.9
    family_similarity: float = 0.2
    folds: int = 0
    fold: int = 0

    def __post_init__(self) -> None:
        _require_choice("split.strategy", self.strategy, SPLIT_STRATEGIES)
        for part in ("train", "val", "test"):
            value = getattr(self, part)
            _require(0.0 <= value <= 1.0, f"split.{part} must be in [0, 1] (got {value})")
        total = self.train + self.val + self.test
        _require(abs(total - 1.0) < 1e-6, f"split.train + split.val + split.test must be 1 "
                 f"(got {self.train} + {self.val} + {self.test} = {total:g})")
        _require(self.train > 0, f"split.train must be > 0 (got {self.train})")
        _require(0.0 < self.target_identity <= 1.0, f"split.target_identity must be in (0, 1] "
                 f"(got {self.target_identity})")
        _require(0.0 < self.family_similarity <= 1.0, "split.family_similarity must be in "
                 f"(0, 1] (got {self.family_similarity})")
        _require(self.folds == 0 or self.folds >= 2, f"split.folds must be 0 (off) or >= 2 "
                 f"(got {self.folds})")
        _require(self.folds == 0 or 0 <= self.fold < self.folds, f"split.fold must be in "
                 f"0..{self.folds - 1} for split.folds={self.folds} (got {self.fold})")
        _require(self.folds == 0 or self.strategy in ("grouped", "target", "family"),
                 f"split.folds deals groups into folds: use split.strategy=grouped, target or "
                 f"family (got {self.strategy})")
        _require(self.strategy != "ids" or bool(self.test_ids),
                 "split.test_ids must name a file of test ids when split.strategy=ids")
        _require(self.name.replace("-", "").replace("_", "").isalnum(),
                 f"split.name must use letters, digits, '-' and '_' only (got {self.name!r})")

    def fractions(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass
class ModelConfig:
    """The ViSNet-style network. Stored in every checkpoint; predict.py rebuilds the model from it.

    Args:
        hidden_channels: width of the scalar and vector node features.
        num_layers: message-passing layers.
        num_heads: attention heads (must divide ``hidden_channels``).
        num_rbf: radial basis functions for edge lengths.
        lmax: degree of the spherical harmonics of edge directions (1 or 2).
        cutoff: radius (Å) of the cosine cutoff on edge lengths; must cover the featurization's
            edge cutoffs, or the longest edges would be switched off.
        dropout: dropout in the output head.
        use_protein: False trains a ligand-only model on the bond graph alone (a baseline).
        pair_energy: add a physics-shaped term: a learned function of the two atoms' elements
            and their distance, summed over the ligand-protein interaction edges, as the terms
            of empirical scoring functions are (``plgraph.model.terms``). The ligand-only model
            has no interactions and ignores it.
        size_term: add a learned per-heavy-atom term (pK grows with ligand size), outside the
            message passing, so no normalization can shrink it.
        anchor: ``none``, or ``heavy_atoms``: a new run starts as the heavy-atom fit on its
            train part (the size term holds the fit's slope, the standardization's mean its
            intercept, the network's output layer is zero), so the network learns the residual
            over that baseline instead of first rediscovering it. Needs ``size_term``; a run
            started with ``init_from`` keeps the checkpoint's weights instead. ``vina``: the
            same with the least-squares line pK = a + b * Vina score (in place) on the train
            part, a learned Vina term holding the slope. ``vina_terms``: a linear fit on all
            the Vina terms (``vocab.VINA_TERMS``), a learned linear layer over them holding its
            coefficients. Both need ``featurize.vina_terms=true``. ``vina_descriptors``: the
            within-series least-squares fit on the Vina terms, the ligand descriptors
            (``vocab.LIGAND_DESCRIPTORS``) and the heavy-atom count, on every complex of the
            train part, also those ``experiment.max_train_per_series`` leaves out of training
            (``plgraph.training.anchor.series_fit``): a linear term over the terms and
            descriptors holds its coefficients, the size term its heavy-atom one. Needs
            ``size_term`` and ``featurize.vina_terms=true``.
        vina_readout: the pose's Vina terms, standardized on the train part, as an input of the
            readout (added to every ligand atom's features before the head). Needs
            ``featurize.vina_terms=true``.
        descriptor_readout: the ligand's whole-molecule descriptors
            (``vocab.LIGAND_DESCRIPTORS``: logP, TPSA, donors, acceptors, ...), standardized on
            the train part, as an input of the readout, as ``vina_readout`` does with the Vina
            terms. Every graph carries them (``DATA_PROCESSING_VERSION`` 8 and later).
    """

    hidden_channels: int = 64
    num_layers: int = 3
    num_heads: int = 8
    num_rbf: int = 32
    lmax: int = 2
    cutoff: float = 5.0
    dropout: float = 0.0
    use_protein: bool = True
    pair_energy: bool = False
    size_term: bool = False
    anchor: str = "none"
    vina_readout: bool = False
    descriptor_readout: bool = False

    def __post_init__(self) -> None:
        for name in ("hidden_channels", "num_layers", "num_heads", "num_rbf"):
            value = getattr(self, name)
            _require(value >= 1, f"model.{name} must be >= 1 (got {value})")
        _require(self.hidden_channels % self.num_heads == 0,
                 f"model.hidden_channels ({self.hidden_channels}) must be divisible by "
                 f"model.num_heads ({self.num_heads})")
        _require(self.lmax in (1, 2), f"model.lmax must be 1 or 2 (got {self.lmax})")
        _require(self.cutoff > 0, f"model.cutoff must be > 0 Å (got {self.cutoff})")
        _require(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1) (got {self.dropout})")
        _require_choice("model.anchor", self.anchor, ANCHORS)
        _require(self.anchor not in ("heavy_atoms", "vina_descriptors") or self.size_term,
                 f"model.anchor={self.anchor} sets the size term's weight: it needs "
                 "model.size_term=true")

    @property
    def uses_vina(self) -> bool:
        """Whether the network reads the graphs' Vina terms (``featurize.vina_terms``)."""
        return self.anchor in ("vina", "vina_terms", "vina_descriptors") or self.vina_readout

    @property
    def uses_descriptors(self) -> bool:
        """Whether the network reads the ligands' descriptors (version 8 graphs)."""
        return self.anchor == "vina_descriptors" or self.descriptor_readout

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig:
    """The training loop, its checkpoints and its stopping rules.

    Args:
        max_epochs: epochs to train (raising it on a finished or resumed run trains on).
        batch_size: complexes per batch (per optimizer step: times ``grad_accumulation``).
        grad_accumulation: batches whose gradients are summed before one optimizer step.
        lr: peak learning rate of AdamW; weight_decay: its decoupled weight decay.
        scheduler: ``cosine`` (linear warm-up, cosine decay to ``min_lr_ratio``), ``plateau``
            (warm-up, then times ``plateau_factor`` after ``plateau_patience`` epochs without
            validation improvement) or ``constant`` (warm-up only).
        warmup_steps: optimizer steps of linear warm-up.
        grad_clip: max gradient norm (0 disables clipping).
        early_stopping_patience: stop after this many epochs without validation improvement
            (0 disables).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (bf16 autocast on CUDA if supported, else fp16 with a GradScaler; fp32
            on CPU), ``fp32``, ``bf16`` or ``fp16`` (with a GradScaler); bf16 and fp16 run on CPU
            too, slower than fp32 there (a way to test the mixed-precision paths without a GPU).
        checkpoint_every_n_steps: write ``last.pt`` every N optimizer steps (and at epoch ends).
        keep_periodic: periodic ``step_*.pt`` checkpoints kept (0 keeps none).
        periodic_every_n_steps: write a periodic checkpoint every N steps (0 disables).
        loader_workers: DataLoader worker processes (0 loads in the training process).
        deterministic: deterministic kernels (``torch.use_deterministic_algorithms``); default
            (null) on for CPU, where multithreaded scatter sums otherwise differ in the last bit
            from run to run, and off on CUDA, where it costs speed.
        objective: ``absolute``: mean squared error of the standardized pK. ``within_series``:
            batches are made of groups of ``series_group_size`` ligands of one congeneric series
            (``plgraph.training.objective``), and the loss is mostly the error of the pK
            differences inside each group, plus ``absolute_weight`` times the absolute error,
            which keeps predictions on the pK scale. It asks the network for what a chemist
            ranks by (which ligand of the series binds better), not for each protein's mean
            affinity, which a few hundred training proteins cannot teach.
        series_group_size: ligands of one series per group (``within_series``); ``batch_size``
            must be a multiple of it.
        absolute_weight: the absolute error's share of the ``within_series`` loss, in [0, 1].
        relative_loss: what ``within_series`` compares inside a group: ``squared``, the pK
            differences' squared error; ``pairwise_logistic``, each pair's order (RankNet,
            weighted by the measured gap); ``both``, their sum.
        monitor: the validation figure that chooses ``best.pt`` and drives early stopping and
            the plateau scheduler: ``rmse``, or ``series_spearman`` (the mean Spearman ρ within
            the validation series, which needs series: the series and reference layouts, or a
            manifest's group column).
        coordinate_noise: standard deviation (Å) of Gaussian noise added to every atom position
            of each training batch (``plgraph.training.augment``); 0 trains on the poses as
            they are. Validation, test and prediction never see noise.
        decoy_weight: the weight of the decoy margin term (0: none): every training complex is
            also seen as a decoy, its ligand rotated by ``decoy_rotation`` degrees about its
            centroid and shifted by ``decoy_shift`` Å (``plgraph.featurize.decoys``), and the
            loss adds ``decoy_weight`` times the mean of ``max(0, decoy_margin - (pose -
            decoy))`` in pK (``plgraph.training.objective.decoy_margin_loss``). It doubles the
            graphs of every training batch; validation, test and prediction see no decoy, nor
            does a ligand-only model (``model.use_protein=false``), which reads no placement.
        decoy_margin: pK by which each modelled pose should beat its decoy.
        decoy_rotation: degrees (0-180) the decoy's ligand is turned about a random axis.
        decoy_shift: Å the decoy's ligand is moved in a random direction; at most
            ``featurize.pocket_cutoff - featurize.interaction_cutoff`` so that the pocket cut
            around the pose still holds every protein atom the decoy's edges would reach.
    """

    max_epochs: int = 30
    batch_size: int = 8
    grad_accumulation: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    scheduler: str = "cosine"
    warmup_steps: int = 20
    min_lr_ratio: float = 0.05
    plateau_patience: int = 3
    plateau_factor: float = 0.5
    grad_clip: float = 10.0
    early_stopping_patience: int = 10
    device: str = "auto"
    precision: str = "auto"
    checkpoint_every_n_steps: int = 50
    periodic_every_n_steps: int = 0
    keep_periodic: int = 3
    loader_workers: int = 0
    deterministic: bool | None = None
    objective: str = "absolute"
    series_group_size: int = 4
    absolute_weight: float = 0.1
    relative_loss: str = "squared"
    monitor: str = "rmse"
    coordinate_noise: float = 0.0
    decoy_weight: float = 0.0
    decoy_margin: float = 1.0
    decoy_rotation: float = 45.0
    decoy_shift: float = 2.0

    def __post_init__(self) -> None:
        for name in ("max_epochs", "batch_size", "grad_accumulation", "checkpoint_every_n_steps"):
            value = getattr(self, name)
            _require(value >= 1, f"trainer.{name} must be >= 1 (got {value})")
        for name in ("warmup_steps", "grad_clip", "early_stopping_patience", "keep_periodic",
                     "periodic_every_n_steps", "loader_workers", "weight_decay",
                     "coordinate_noise", "decoy_weight", "decoy_margin", "decoy_shift"):
            value = getattr(self, name)
            _require(value >= 0, f"trainer.{name} must be >= 0 (got {value})")
        _require(self.lr > 0, f"trainer.lr must be > 0 (got {self.lr})")
        _require(0 <= self.min_lr_ratio <= 1, f"trainer.min_lr_ratio must be in [0, 1] "
                 f"(got {self.min_lr_ratio})")
        _require(0 < self.plateau_factor < 1, f"trainer.plateau_factor must be in (0, 1) "
                 f"(got {self.plateau_factor})")
        _require_choice("trainer.scheduler", self.scheduler, SCHEDULERS)
        _require_choice("trainer.precision", self.precision, PRECISIONS)
        _require_device("trainer.device", self.device)
        _require_choice("trainer.objective", self.objective, OBJECTIVES)
        _require_choice("trainer.monitor", self.monitor, MONITORS)
        _require_choice("trainer.relative_loss", self.relative_loss, RELATIVE_LOSSES)
        _require(0 <= self.absolute_weight <= 1, f"trainer.absolute_weight must be in [0, 1] "
                 f"(got {self.absolute_weight})")
        _require(0 <= self.decoy_rotation <= 180, f"trainer.decoy_rotation must be in [0, 180] "
                 f"degrees (got {self.decoy_rotation})")
        if self.decoy_weight > 0:
            _require(self.decoy_rotation > 0 or self.decoy_shift > 0, "trainer.decoy_weight > 0 "
                     "needs a decoy off the pose: trainer.decoy_rotation or trainer.decoy_shift "
                     "> 0")
        if self.objective == "within_series":
            _require(self.series_group_size >= 2, "trainer.series_group_size must be >= 2: a "
                     f"difference needs two ligands (got {self.series_group_size})")
            _require(self.batch_size % self.series_group_size == 0,
                     f"trainer.batch_size ({self.batch_size}) must be a multiple of "
                     f"trainer.series_group_size ({self.series_group_size}) under "
                     "trainer.objective=within_series")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrackingConfig:
    """Experiment tracking with MLflow (see ``plgraph.training.tracking``); training never depends
    on it.

    Args:
        enabled: log parameters, per-epoch metrics, checkpoint paths and ``results.json``.
        uri: an MLflow tracking URI (``http(s)://host:port`` for a server, ``sqlite:///path.db``);
            null: a local SQLite store ``<output_root>/mlflow.db`` with artifacts under
            ``<output_root>/mlruns/``.
        experiment: the MLflow experiment the runs go to (created when missing).
    """

    enabled: bool = True
    uri: str | None = None
    experiment: str = "plgraph"

    def __post_init__(self) -> None:
        _require(self.uri is None or bool(self.uri.strip()),
                 "tracking.uri must be a tracking URI such as http://host:5000 or "
                 "sqlite:///path/mlflow.db, or null for the local store under output_root "
                 f"(got {self.uri!r})")
        _require(bool(self.experiment.strip()),
                 f"tracking.experiment must be a non-empty name (got {self.experiment!r})")


@dataclass
class ExperimentConfig:
    """Several seeds of one training against two baselines, with one report
    (``plgraph.experiments.run``; ``conf/experiment/``).

    Args:
        name: null: ``main.py`` trains one run (the default); a name: it runs the experiment.
        seeds: training seeds; each also seeds a split of its own (``<split.name>-seed<N>``),
            so the test targets change with the seed.
        ligand_only_baseline: also train the same network on the ligand graph alone.
        min_series_size: test series with fewer ligands are left out of the per-series
            Spearman ρ.
        max_train_per_series: train on at most this many complexes of each series (drawn
            with the seed; 0: all), validation and test whole: the budget knob of a CPU run.
            A single training (``name`` null) honours it too, drawn with its ``seed``.
        few_shot_k: the few-shot arm (``plgraph.experiments.few_shot``): for each k, k measured
            ligands of a test series are given and the rest ranked (empty: no few-shot arm).
        few_shot_draws: random draws of the k ligands per series and k.
        few_shot_max_series: the largest this many eligible test series per seed take part.
        few_shot_epochs: the fixed training budget on the k ligands (fine-tuned and scratch).
        few_shot_lr: the peak learning rate of those trainings.
        learning_curve: fractions of the training targets (each in (0, 1)) to train the full
            model on again, for the learning curve (``plgraph.experiments.learning_curve``; empty:
            none).
        ensemble: full models per seed (1: none more). With N > 1 the seed's full model and
            N - 1 more, on the same split and training part but each with its own
            initialization and batch order, are averaged, and the mean is reported as a
            method of its own (what ``predict.py`` does with several checkpoints).
        folds: cross-fitting (0: off): each seed's groups are dealt into this many folds
            (``split.folds``) and the models are trained once per fold, so that every series
            is tested exactly once by a model that never saw its group (family, for
            ``split.strategy=family``); the full model's predictions over all folds are
            written to ``out_of_fold_predictions.csv`` (the prior of bench/series_mode.py).
            Without the few-shot arm, the learning curve and ensembles.
    """

    name: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    ligand_only_baseline: bool = True
    min_series_size: int = 3
    max_train_per_series: int = 0
    few_shot_k: list[int] = field(default_factory=list)
    few_shot_draws: int = 3
    few_shot_max_series: int = 6
    few_shot_epochs: int = 20
    few_shot_lr: float = 3e-4
    learning_curve: list[float] = field(default_factory=list)
    ensemble: int = 1
    folds: int = 0

    def __post_init__(self) -> None:
        _require(self.folds == 0 or self.folds >= 2, f"experiment.folds must be 0 (off) or >= 2 "
                 f"(got {self.folds})")
        _require(not self.folds or not (self.few_shot_k or self.learning_curve),
                 "experiment.folds trains one model (or one ensemble) per fold: it goes without "
                 "few_shot_k and learning_curve (bench/series_mode.py is the few-shot arm)")
        _require(len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds),
                 f"experiment.seeds must be distinct seeds, at least one (got {self.seeds})")
        _require(self.min_series_size >= 2, f"experiment.min_series_size must be >= 2 (got "
                 f"{self.min_series_size}): a rank correlation needs two ligands")
        _require(self.max_train_per_series >= 0, "experiment.max_train_per_series must be >= 0, "
                 f"0 = all (got {self.max_train_per_series})")
        _require(all(k >= 2 for k in self.few_shot_k), "experiment.few_shot_k must be >= 2 "
                 f"each: a fit needs two measured ligands (got {self.few_shot_k})")
        for name in ("few_shot_draws", "few_shot_max_series", "few_shot_epochs"):
            _require(getattr(self, name) >= 1, f"experiment.{name} must be >= 1 "
                     f"(got {getattr(self, name)})")
        _require(self.few_shot_lr > 0, f"experiment.few_shot_lr must be > 0 "
                 f"(got {self.few_shot_lr})")
        _require(all(0 < f < 1 for f in self.learning_curve), "experiment.learning_curve: "
                 f"fractions in (0, 1); the whole training part is its last point (got "
                 f"{self.learning_curve})")
        _require(self.ensemble >= 1, f"experiment.ensemble must be >= 1 full models per seed "
                 f"(got {self.ensemble})")


@dataclass
class AppConfig:
    """The whole command line of ``main.py``.

    Args:
        seed: the training seed (weights, data order, dropout); the split has its own.
        run_name: the run directory is ``outputs/<run_name>/``.
        fresh: start the run over; old checkpoints are moved aside, never deleted.
        prepare_only: build the processed cache and split, then exit.
        init_from: a checkpoint to start a new run from (fine-tuning): its weights, target
            standardization, model and featurization configs (``plgraph.training.init_from``).
    """

    data: DataConfig = field(default_factory=DataConfig)
    featurize: FeaturizeConfig = field(default_factory=FeaturizeConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    seed: int = 0
    run_name: str = "default"
    output_root: str = "outputs"
    fresh: bool = False
    prepare_only: bool = False
    init_from: str | None = None

    def __post_init__(self) -> None:
        longest = max(self.featurize.interaction_cutoff, self.featurize.protein_edge_cutoff)
        _require(self.model.cutoff >= longest,
                 f"model.cutoff ({self.model.cutoff} Å) must be >= the longest featurized edge "
                 f"({longest} Å, featurize.interaction_cutoff / protein_edge_cutoff), or those "
                 "edges would carry no signal")
        _require(not self.model.uses_vina or self.featurize.vina_terms,
                 f"model.anchor={self.model.anchor} / model.vina_readout="
                 f"{str(self.model.vina_readout).lower()} read the poses' Vina terms: they need "
                 "featurize.vina_terms=true (the cache then scores every complex with Vina, "
                 "~0.5 s each)")
        reach = self.featurize.pocket_cutoff - self.featurize.interaction_cutoff
        _require(self.trainer.decoy_weight == 0 or self.trainer.decoy_shift <= reach,
                 f"trainer.decoy_shift ({self.trainer.decoy_shift} Å) must be <= featurize."
                 f"pocket_cutoff - featurize.interaction_cutoff ({reach} Å): the pocket cut "
                 "around the pose must hold every protein atom a decoy's edges reach")
        _require(bool(self.run_name) and "/" not in self.run_name and self.run_name[0] != ".",
                 f"run_name must be a plain directory name (got {self.run_name!r})")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_root) / self.run_name


POSE_AGGREGATIONS = ("mean", "best", "first")
# inference.series.METHODS
SERIES_METHODS = ("auto", "blend", "gp_prior", "gp_alone", "anchored", "gp_anchored")
ACQUISITIONS = ("ucb", "ei")  # inference.series.ACQUISITIONS
DOCKING_BASELINES = ("auto", "all", "off")  # inference.docking_baselines.MODES


@dataclass
class PredictConfig:
    """The command line of ``predict.py``: checkpoints, one kind of input, the output CSV.

    Args:
        checkpoint: a checkpoint; default: ``best.pt`` of the latest run under ``output_root``,
            and where there is none (and no ``ensemble``) the shipped model in ``shipped_dir``.
        ensemble: more checkpoints; predictions are their mean and standard deviation.
        shipped_dir: the directory of the shipped model (``shipped.json`` and its files,
            :mod:`plgraph.inference.shipped`); default: ``models/`` beside predict.py.
        protein, ligands: one protein (pocket or full) and a multi-ligand SDF, or, with
            ``reference``, a SMILES library: ``.smi`` (SMILES and an optional name per line) or
            ``.csv`` (columns ``smiles`` and optional ``name``; ``smiles_column`` /
            ``name_column`` rename them).
        reference: a posed reference ligand (SDF or mol2) in ``protein``'s binding site: each
            SMILES is posed onto it exactly as in training (``featurize.posing`` of the
            checkpoint).
        poses: with ``reference``, an SDF to write every posed ligand to, with its prediction
            as SDF properties.
        label_property, label_kind: with protein + ligands, the SDF property holding measured
            values (e.g. ``r_exp_dg``), for metrics; optional.
        root, labels: a PDBbind-layout directory and, optionally, its labels.
        manifest: a manifest CSV (``id,protein,ligand[,label]``).
        chunk_size: records read, featurized and predicted together (memory stays bounded
            for a library of any size; the rows do not depend on it).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        explain: also write each predicted ligand's atom contributions (``X_atoms.csv``) and
            contribution maps (``X_maps/``) beside ``output=X.csv``
            (:mod:`plgraph.inference.explain`).
        explain_top: the grid picture shows this many ligands predicted best.
        pose_aggregation: consecutive SDF/mol2 records with the same name are poses of one
            ligand (as docking programs write them): each pose is predicted and the ligand's
            row gets ``mean`` (default), ``best`` (the highest) or ``first`` (the docking
            program's top pose) of them; every pose's row goes to ``X_poses.csv``.
        measured: series mode: a CSV (``id`` / ``name`` or ``smiles``, and ``pK`` or ``value``
            + ``unit``) or an SDF (``measured_property``, ``measured_kind``) of measured
            ligands of the same series; the predictions are adjusted to them
            (:mod:`plgraph.inference.series_ranking`).
        series_method: how: ``auto`` (default: by the model's record on series of unseen
            protein families, ``plgraph.inference.series.method_for_record``), ``blend``,
            ``gp_prior``, ``gp_alone``, ``anchored``, ``gp_anchored``
            (:mod:`plgraph.inference.series`).
        suggest: with ``measured``, rank this many ligands to make next (``suggest_rank``).
        acquisition: how they are chosen: ``ucb`` (default) or ``ei``.
        docking_baselines: with measured values (labels or ``measured``), the summary ranks the
            measured ligands by Vina's scores beside the model and the heavy-atom count
            (:mod:`plgraph.inference.docking_baselines`): ``auto`` scores up to 50 ligands with
            Vina where the model's graphs carry no Vina terms (about 0.5 s each), ``all`` any
            number, ``off`` none.
    """

    checkpoint: str | None = None
    ensemble: list[str] = field(default_factory=list)
    shipped_dir: str | None = None
    protein: str | None = None
    ligands: str | None = None
    reference: str | None = None
    smiles_column: str = "smiles"
    name_column: str = "name"
    poses: str | None = None
    label_property: str | None = None
    label_kind: str = "dg_kcal_mol"
    root: str | None = None
    labels: str | None = None
    manifest: str | None = None
    output: str = "predictions.csv"
    output_root: str = "outputs"
    batch_size: int = 32
    chunk_size: int = 512
    device: str = "auto"
    explain: bool = False
    explain_top: int = 24
    pose_aggregation: str = "mean"
    measured: str | None = None
    measured_property: str | None = None
    measured_kind: str = "pk"
    series_method: str = "auto"
    suggest: int = 0
    acquisition: str = "ucb"
    docking_baselines: str = "auto"

    def __post_init__(self) -> None:
        _require_choice("pose_aggregation", self.pose_aggregation, POSE_AGGREGATIONS)
        _require_device("device", self.device)
        _require(self.explain_top >= 1, f"explain_top must be >= 1 (got {self.explain_top})")
        kinds = [name for name, given in (("protein + ligands", self.protein or self.ligands),
                                          ("root", self.root), ("manifest", self.manifest))
                 if given]
        _require(len(kinds) == 1, "give exactly one input: protein=P.pdb ligands=L.sdf, "
                 f"root=DIR (PDBbind layout) or manifest=CSV (got {kinds or 'none'})")
        _require(not (self.protein or self.ligands) or bool(self.protein and self.ligands),
                 "protein= and ligands= go together")
        smiles_library = bool(self.ligands) and Path(self.ligands).suffix.lower() in (
            SMILES_SUFFIXES)
        _require(not smiles_library or bool(self.reference),
                 f"ligands={self.ligands} is a SMILES library: give reference=REF.sdf, a posed "
                 "ligand in the protein's binding site, to pose each SMILES onto")
        _require(not self.reference or smiles_library, "reference= poses a SMILES library: "
                 f"give ligands= as one of {list(SMILES_SUFFIXES)} (got {self.ligands})")
        _require(not self.poses or bool(self.reference),
                 "poses= writes the poses made from SMILES: it needs reference= and a SMILES "
                 "library as ligands=")
        _require_choice("label_kind", self.label_kind, LABEL_KINDS)
        _require(self.batch_size >= 1, f"batch_size must be >= 1 (got {self.batch_size})")
        _require(self.chunk_size >= 1, f"chunk_size must be >= 1 (got {self.chunk_size})")
        _require_choice("measured_kind", self.measured_kind, LABEL_KINDS)
        _require_choice("series_method", self.series_method, SERIES_METHODS)
        _require_choice("acquisition", self.acquisition, ACQUISITIONS)
        _require_choice("docking_baselines", self.docking_baselines, DOCKING_BASELINES)
        _require(self.suggest >= 0, f"suggest must be >= 0 (got {self.suggest})")
        _require(not self.suggest or bool(self.measured),
                 "suggest= ranks what to make next from measured ligands: give measured=FILE")
