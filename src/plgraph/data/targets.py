"""Which complexes share a protein target: clusters of protein files by chain sequence identity.

A grouped split by system or series still lets one target (BACE1, thrombin, CHK1...) sit in
train and test under different system names; the FEP benchmark has several such families. A
split meant to test on unseen targets groups by these clusters instead (``split.strategy=target``).
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from Bio import BiopythonWarning
from Bio.Align import PairwiseAligner, substitution_matrices
from Bio.PDB import PDBParser, PPBuilder

from plgraph.errors import InputError

log = logging.getLogger(__name__)

MIN_CHAIN_LENGTH = 30  # shorter chains (peptides, fragments of a pocket) say nothing of the target


def _remembered(clusters: Callable[[list[Path], float], dict[Path, str]]):
    """Clusters computed once per process for the same files (by path, size and modification
    time) and threshold: an experiment makes one split per seed of the same proteins, and the
    family clustering of Uni-FEP's 468 protein files takes about 1.8 min."""
    @functools.lru_cache(maxsize=4)
    def by_state(state: tuple, threshold: float) -> dict[Path, str]:
        return clusters([Path(path) for path, _, _ in state], threshold)

    @functools.wraps(clusters)
    def remembered(proteins: Iterable[Path], threshold: float) -> dict[Path, str]:
        files = sorted(set(proteins))
        state = tuple((str(f), stat.st_size, stat.st_mtime_ns)
                      for f, stat in ((f, f.stat()) for f in files))
        return dict(by_state(state, threshold))

    remembered.cache_info = by_state.cache_info  # type: ignore[attr-defined]
    return remembered


def chain_sequences(path: Path) -> list[str]:
    """One-letter sequences of the protein chains of the first model (gaps split a chain)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BiopythonWarning)
        try:
            structure = PDBParser(QUIET=True).get_structure(path.stem, str(path))
        except (ValueError, IndexError) as error:
            raise InputError(f"{path}: cannot read the protein to find its target: "
                             f"{error}") from None
    model = next(iter(structure), None)
    if model is None:
        raise InputError(f"{path}: no model, so no sequence to find its target")
    by_chain: dict[str, str] = {}
    for peptide in PPBuilder().build_peptides(model):
        chain = peptide[0].get_parent().id
        by_chain[chain] = by_chain.get(chain, "") + str(peptide.get_sequence())
    return [sequence for sequence in by_chain.values() if len(sequence) >= MIN_CHAIN_LENGTH]


def _aligner() -> PairwiseAligner:
    """Scores count identical aligned residues (no penalties): a global alignment's score over
    the shorter chain's length is its identity. Unrelated proteins stay far below 0.5."""
    aligner = PairwiseAligner()
    aligner.mode = "global"
    aligner.match_score, aligner.mismatch_score = 1.0, 0.0
    aligner.open_gap_score = aligner.extend_gap_score = 0.0
    return aligner


def identity(first: str, second: str, aligner: PairwiseAligner | None = None) -> float:
    """Fraction of the shorter sequence aligned to identical residues of the other."""
    aligner = aligner or _aligner()
    return aligner.score(first, second) / min(len(first), len(second))


@_remembered
def target_clusters(proteins: Iterable[Path], threshold: float) -> dict[Path, str]:
    """Each protein file's cluster: files with a chain pair at ``threshold`` identity or more are
    linked, and linked files (transitively) form one cluster, named by its first file's stem."""
    aligner = _aligner()
    scores: dict[tuple[str, str], float] = {}

    def linked(a: str, b: str) -> bool:
        key = (a, b) if a <= b else (b, a)
        if key not in scores:
            scores[key] = 1.0 if a == b else identity(a, b, aligner)
        return scores[key] >= threshold

    names = _clusters(sorted(set(proteins)), linked)
    log.info("%d protein files form %d target clusters at %.0f%% sequence identity",
             len(names), len(set(names.values())), 100 * threshold)
    return names


def _family_aligner() -> PairwiseAligner:
    """Local alignment with BLOSUM62 and EMBOSS's gap penalties: homologous domains score high
    however different the rest of the chains; free gaps (as in :func:`_aligner`) would let
    unrelated proteins look 30-40 % identical, which is no use at family level."""
    aligner = PairwiseAligner()
    aligner.mode = "local"
    aligner.substitution_matrix = substitution_matrices.load("BLOSUM62")
    aligner.open_gap_score, aligner.extend_gap_score = -10.0, -0.5
    return aligner


@_remembered
def family_clusters(proteins: Iterable[Path], threshold: float) -> dict[Path, str]:
    """Like :func:`target_clusters` at the level of protein families: two files are linked when a
    chain pair's local BLOSUM62 alignment score is at least ``threshold`` of the smaller chain's
    score against itself. On Uni-FEP's ~160 targets, 0.2 joins the protein kinases into one
    family (CDK2 and p38: 0.25), the trypsin-like serine proteases (FXa and thrombin: 0.37),
    PDEs, nuclear receptors, bromodomains; unrelated pairs score 0.03 (median), 0.1 (90th
    percentile)."""
    aligner = _family_aligner()
    self_scores: dict[str, float] = {}
    scores: dict[tuple[str, str], float] = {}

    def linked(a: str, b: str) -> bool:
        key = (a, b) if a <= b else (b, a)
        if key not in scores:
            for chain in key:
                if chain not in self_scores:
                    self_scores[chain] = aligner.score(chain, chain)
            scores[key] = aligner.score(a, b) / min(self_scores[a], self_scores[b])
        return scores[key] >= threshold

    names = _clusters(sorted(set(proteins)), linked)
    log.info("%d protein files form %d families at a normalized alignment score of %.2f",
             len(names), len(set(names.values())), threshold)
    return names


def _clusters(files: list[Path], linked) -> dict[Path, str]:
    """Single-linkage clusters of ``files``: two are joined when any chain pair is ``linked``.
    Chains are compared once per distinct pair of sequences (many files share a protein)."""
    chains = {path: chain_sequences(path) for path in files}
    parent = {path: path for path in files}

    def root(path: Path) -> Path:
        while parent[path] != path:
            parent[path] = parent[parent[path]]
            path = parent[path]
        return path

    for i, first in enumerate(files):
        for second in files[i + 1:]:
            if root(first) != root(second) and any(
                    a == b or linked(a, b) for a in chains[first] for b in chains[second]):
                parent[root(second)] = root(first)
    members: dict[Path, list[Path]] = {}
    for path in files:
        members.setdefault(root(path), []).append(path)
    return {path: _cluster_name(cluster[0]) for cluster in members.values() for path in cluster}


def _cluster_name(path: Path) -> str:
    """The first file's stem, or its folder's name where every system names its file alike
    (the reference layout's ``<system>/protein.pdb``)."""
    stem = path.stem.removesuffix("_protein")
    return path.parent.name if stem == "protein" else stem
