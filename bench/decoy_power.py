"""Decoy power: does a trained model score the modelled pose above a decoy of it (issue 25)?

``trainer.decoy_weight`` trains the network to score every pose at least ``decoy_margin`` pK
above a decoy of it (``plgraph.featurize.decoys``: the ligand turned 45 degrees about its
centroid and moved 2 Å). This script asks each run's ``best.pt`` the question on its own test
part, complexes of protein families it never saw: one decoy per test complex, drawn from a
generator seeded by the complex's id (the same decoys for every run), scored like the pose.
Printed per run and seed: the share of test complexes whose pose scores above its decoy, the mean
gap (pose minus decoy, pK), and both again for the decoys that clash with the pocket (a protein
atom closer than ``CLASH`` Å) and those that do not. A model that reads no placement scores both
the same (a share of 0, a gap of 0).

Run from the repo root, after the runs: ``python bench/decoy_power.py outputs/recipe_ranknet
outputs/recipe_decoys [--seeds 0 1 2]`` (each ``<run>-seed<N>-full/checkpoints/best.pt`` with the
split named in its checkpoint, from the transfer cache).
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np
import torch

from plgraph.data.cache import ProcessedCache, read_meta
from plgraph.data.split import Split, split_path
from plgraph.experiments.run import full_model_run
from plgraph.featurize import INTERACTION
from plgraph.featurize.decoys import decoy_complex
from plgraph.inference.predictor import Predictor
from plgraph.training.checkpoint import read_checkpoint

CACHE = Path("outputs/processed/transfer-vina")
CLASH = 1.5  # Å: a protein atom this close to a ligand heavy atom is a clash
ROTATION, SHIFT = 45.0, 2.0  # the trainer's defaults (trainer.decoy_rotation, decoy_shift)


def test_part(cache: ProcessedCache, checkpoint: Path) -> tuple[list, float]:
    """The test part of the split the checkpoint's run trained on, as cached graphs, and the
    interaction cutoff they were featurized with (a decoy's edges are rebuilt with it)."""
    state = read_checkpoint(checkpoint, inference=True)
    split = Split.from_json(json.loads(split_path(cache, state["config"]["split"]["name"])
                                       .read_text()))
    position = {complex_id: i for i, complex_id in enumerate(cache.ids)}
    return ([cache[position[i]] for i in split.parts["test"]],
            state["featurize_config"]["interaction_cutoff"])


def best_of(run: Path, seed: int) -> Path:
    """The ``best.pt`` of an experiment run's full model for ``seed``."""
    return run.parent / full_model_run(run.name, seed) / "checkpoints" / "best.pt"


def decoys_of(graphs: list, cutoff: float) -> list:
    """One decoy per graph, seeded by its complex id: the same decoys whatever the run."""
    return [decoy_complex(g, ROTATION, SHIFT, cutoff, torch.Generator().manual_seed(
        zlib.crc32(g.complex_id.encode()))) for g in graphs]


def report(label: str, gap: np.ndarray) -> str:
    return (f"{label} n={len(gap):4d}  pose above decoy {np.mean(gap > 0):.3f}  "
            f"mean gap {gap.mean():+.3f} pK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = ProcessedCache(CACHE, read_meta(CACHE))
    for seed in args.seeds:
        graphs, cutoff = test_part(cache, best_of(args.runs[0], seed))
        decoys = decoys_of(graphs, cutoff)
        clash = np.array([bool((d[INTERACTION].distance < CLASH).any()) for d in decoys])
        for run in args.runs:
            predictor = Predictor.load([best_of(run, seed)], torch.device("cpu"))
            pose, _ = predictor.predict(graphs)
            decoy, _ = predictor.predict(decoys)
            gap = pose - decoy
            print(f"seed {seed} {run.name:24s} " + report("all     ", gap))
            print(f"seed {seed} {run.name:24s} " + report("clash   ", gap[clash]))
            print(f"seed {seed} {run.name:24s} " + report("no clash", gap[~clash]))


if __name__ == "__main__":
    main()
