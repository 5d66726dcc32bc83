"""The cost of Vina terms per complex (``plgraph.featurize.vina_terms``), on data/sample.

Each PDBbind complex of ``data/sample`` (pocket file, crystal ligand) is timed step by step:
receptor pdbqt (``receptor_pdbqt``), ligand pdbqt (Meeko, ``ligand_pdbqt``), the Vina object
(receptor, ligand: the package tabulates the ligand's atom pairs) and its 0.375 Å maps, Vina's
in-place score (``score``), the local optimization (``optimize``), the pairwise terms
(``pair_terms``: the five unweighted terms, Vinardo, the rotatable bonds), and the whole
``vina_terms`` call. The Vina steps call the ``vina`` package directly with the module's public
constants, the same calls ``vina_terms`` makes. Printed: the median and mean seconds of each
step beside posing's (``POSING_S``), sample scores, failures by reason; with ``--check``, also
``vina_terms_by_package`` (every number from the package, seven map computations) and the
largest and median difference of each value; with ``--obabel``, the in-place score again with
Open Babel's receptor (``obabel -xr`` on the pocket, waters removed) beside this module's.

Run from the repo root: ``python bench/vina_cost.py [--limit N] [--check] [--obabel]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from _common import SAMPLE, print_table
from vina import Vina

from plgraph.errors import FeaturizationError
from plgraph.featurize import read_ligand_files
from plgraph.featurize.vina_pairs import pair_terms
from plgraph.featurize.vina_receptor import receptor_pdbqt
from plgraph.featurize.vina_terms import (
    BOX_PADDING,
    GRID_SPACING,
    SEED,
    VINA_WEIGHTS,
    VinaTerms,
    ligand_pdbqt,
    vina_terms,
    vina_terms_by_package,
)

STEPS = ("receptor pdbqt", "ligand pdbqt", "Vina object (set_ligand)", "0.375 Å maps",
         "score", "optimize", "pairwise terms", "vina_terms (all)", "vina_terms_by_package")
# Seconds per ligand of plgraph's posing (bench/posing_throughput.py, "Posing, third version" in
# bench/README.md: one idle core): the cost the issue set as the goal.
POSING_S = {"median": 0.10, "mean": 0.19}


def in_place(receptor: Path, ligand_text: str, pos: np.ndarray, timings: dict) -> float:
    """Vina's in-place score, then its optimization, each step timed into ``timings``."""
    started = time.perf_counter()
    vina = Vina(sf_name="vina", cpu=1, seed=SEED, verbosity=0)
    vina.set_weights(list(VINA_WEIGHTS))
    vina.set_receptor(str(receptor))
    vina.set_ligand_from_string(ligand_text)
    timings["Vina object (set_ligand)"].append(time.perf_counter() - started)
    started = time.perf_counter()
    vina.compute_vina_maps(center=list(pos.mean(axis=0)),
                           box_size=list(np.ptp(pos, axis=0) + BOX_PADDING), spacing=GRID_SPACING)
    timings["0.375 Å maps"].append(time.perf_counter() - started)
    started = time.perf_counter()
    score = float(vina.score()[0])
    timings["score"].append(time.perf_counter() - started)
    started = time.perf_counter()
    vina.optimize()
    timings["optimize"].append(time.perf_counter() - started)
    return score


def obabel_receptor(pocket: Path, folder: Path) -> Path:
    """Open Babel's receptor pdbqt of ``pocket`` without its waters."""
    dry = folder / "dry.pdb"
    dry.write_text("".join(line for line in pocket.read_text().splitlines(keepends=True)
                           if line[17:20] not in ("HOH", "WAT")))
    out = folder / "obabel.pdbqt"
    subprocess.run(["obabel", str(dry), "-xr", "-O", str(out)], check=True, capture_output=True)
    return out


def measure(complex_id: str, args, timings: dict, rows: list, folder: Path,
            differences: list) -> None:
    """Every step on one complex; a FeaturizationError propagates with its reason."""
    directory = SAMPLE / complex_id
    ligand = read_ligand_files([directory / f"{complex_id}_ligand.sdf",
                                directory / f"{complex_id}_ligand.mol2"], complex_id)
    pocket = directory / f"{complex_id}_pocket.pdb"
    pos = ligand.GetConformer().GetPositions()
    started = time.perf_counter()
    receptor = folder / "receptor.pdbqt"
    receptor.write_text(receptor_pdbqt(pocket, pos, complex_id))
    timings["receptor pdbqt"].append(time.perf_counter() - started)
    started = time.perf_counter()
    ligand_text = ligand_pdbqt(ligand, complex_id)
    timings["ligand pdbqt"].append(time.perf_counter() - started)
    score = in_place(receptor, ligand_text, pos, timings)
    started = time.perf_counter()
    pair_terms(receptor.read_text(), ligand_text, VINA_WEIGHTS, complex_id)
    timings["pairwise terms"].append(time.perf_counter() - started)
    started = time.perf_counter()
    terms = vina_terms(pocket, ligand, complex_id)
    timings["vina_terms (all)"].append(time.perf_counter() - started)
    if args.check:
        started = time.perf_counter()
        reference = vina_terms_by_package(pocket, ligand, complex_id)
        timings["vina_terms_by_package"].append(time.perf_counter() - started)
        differences.append(terms.vector() - reference.vector())
    obabel = float("nan")
    if args.obabel:
        obabel = in_place(obabel_receptor(pocket, folder), ligand_text, pos,
                          {step: [] for step in STEPS})
    rows.append([complex_id, f"{score:.2f}", f"{terms.vina_optimized:.2f}",
                 f"{terms.vinardo_score:.2f}", f"{terms.rotatable_bonds:g}", f"{obabel:.2f}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="the first N complexes")
    parser.add_argument("--check", action="store_true",
                        help="also run vina_terms_by_package and print the differences")
    parser.add_argument("--obabel", action="store_true",
                        help="also score with Open Babel's receptor (needs obabel on PATH)")
    args = parser.parse_args()
    if args.obabel and shutil.which("obabel") is None:
        raise SystemExit("--obabel: no obabel on PATH (pip install openbabel-wheel)")
    ids = sorted(p.name for p in SAMPLE.iterdir() if p.is_dir())[:args.limit]
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    timings = {step: [] for step in STEPS}
    rows, failures, differences = [], Counter(), []
    with tempfile.TemporaryDirectory(prefix="vina-cost-") as folder:
        for complex_id in ids:
            try:
                measure(complex_id, args, timings, rows, Path(folder), differences)
            except FeaturizationError as error:
                failures[str(error).split(": ", 1)[-1][:45]] += 1
                print(f"{complex_id}: {error}")
    print_table(["step", "median s", "mean s", "complexes"],
                [[step, f"{np.median(v):.3f}", f"{np.mean(v):.3f}", str(len(v))]
                 for step, v in timings.items() if v]
                + [["posing one ligand (bench/README.md)", f"{POSING_S['median']:.3f}",
                    f"{POSING_S['mean']:.3f}", "-"]])
    print()
    if differences:
        gaps = np.abs(np.array(differences))
        print_table(["value", "max |fast - package|", "median"],
                    [[name, f"{gaps[:, i].max():.5f}", f"{np.median(gaps[:, i]):.5f}"]
                     for i, name in enumerate(VinaTerms.names())])
        print()
    print_table(["complex", "vina in place", "optimized", "vinardo", "rot. bonds",
                 "vina, obabel receptor"], rows)
    scores = np.array([float(r[1]) for r in rows])
    print(f"\nin-place Vina score: median {np.median(scores):.2f}, range {scores.min():.2f} to "
          f"{scores.max():.2f} kcal/mol; failed {sum(failures.values())} {dict(failures)}")
    if args.obabel:
        other = np.array([float(r[5]) for r in rows])
        print(f"Open Babel receptor: |difference| median {np.median(abs(scores - other)):.2f}, "
              f"max {np.max(abs(scores - other)):.2f}; Pearson r "
              f"{np.corrcoef(scores, other)[0, 1]:.3f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
