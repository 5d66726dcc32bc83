"""Which complexes share a protein target: clusters of protein files by chain sequence identity.

A grouped split by system or series still lets one target (BACE1, thrombin, CHK1...) sit in
train and test under different system names; the FEP benchmark has several such families. A
split meant to test on unseen targets groups by these clusters instead (``split.strategy=target``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from pathlib import Path

from Bio import BiopythonWarning
from Bio.Align import PairwiseAligner
from Bio.PDB import PDBParser, PPBuilder

from plgraph.errors import InputError

log = logging.getLogger(__name__)

MIN_CHAIN_LENGTH = 30  # shorter chains (peptides, fragments of a pocket) say nothing of the target


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


def target_clusters(proteins: Iterable[Path], threshold: float) -> dict[Path, str]:
    """Each protein file's cluster: files with a chain pair at ``threshold`` identity or more are
    linked, and linked files (transitively) form one cluster, named by its first file's stem."""
    files = sorted(set(proteins))
    chains = {path: chain_sequences(path) for path in files}
    parent = {path: path for path in files}

    def root(path: Path) -> Path:
        while parent[path] != path:
            parent[path] = parent[parent[path]]
            path = parent[path]
        return path

    aligner = _aligner()
    scores: dict[tuple[str, str], float] = {}
    for i, first in enumerate(files):
        for second in files[i + 1:]:
            if root(first) == root(second):
                continue
            for a in chains[first]:
                for b in chains[second]:
                    key = (a, b) if a <= b else (b, a)
                    if key not in scores:
                        scores[key] = 1.0 if a == b else identity(a, b, aligner)
                    if scores[key] >= threshold:
                        parent[root(second)] = root(first)
                        break
                else:
                    continue
                break
    members: dict[Path, list[Path]] = {}
    for path in files:
        members.setdefault(root(path), []).append(path)
    names = {path: cluster[0].stem.removesuffix("_protein")
             for cluster in members.values() for path in cluster}
    log.info("%d protein files form %d target clusters at %.0f%% sequence identity", len(files),
             len(members), 100 * threshold)
    return names
