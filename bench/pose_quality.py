"""Pose quality: re-pose every FEP+ benchmark ligand from its SMILES, compare with its given pose.

``../shared/data/fep-benchmark`` has a modelled pose for every ligand of every series. Each
ligand is re-posed by ``plgraph.featurize.posing`` from its own SMILES (RDKit, from the SDF
record: stereo from the 3D pose, explicit charges) onto the series' first ligand as the
reference, in the series' protein, with the default featurization config. Reported over all
series:

- heavy-atom RMSD to the given pose, in place (no re-alignment), symmetry-aware
  (``rdMolAlign.CalcRMS``): median, 90th percentile, fraction under 2 Å;
- the common core's share of the ligand's heavy atoms;
- the posing time per ligand (median, 90th percentile, max) and ligands/s on one core;
- failures by reason. The reference ligand itself (index 0) is left out: it is placed exactly.

Target: median RMSD under 1.5 Å.

Run from the repo root: ``python bench/pose_quality.py [--limit N] [--per-series K]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
from _common import fep_systems, print_table
from rdkit import Chem
from rdkit.Chem import rdMolAlign

from plgraph.config import FeaturizeConfig
from plgraph.errors import FeaturizationError
from plgraph.featurize import load_protein, parse_ligand_block
from plgraph.featurize.posing import PosingSite, parse_smiles, pose_ligand

CONFIG = FeaturizeConfig()


def series_records(sdf: Path) -> list[Chem.Mol]:
    """The series' ligands as featurization reads them (sanitized, heavy atoms, given pose)."""
    blocks = [b for b in re.split(r"^\$\$\$\$[^\n]*\n", sdf.read_text(), flags=re.M) if b.strip()]
    mols = []
    for index, block in enumerate(blocks):
        try:
            mols.append(parse_ligand_block(block, "sdf", f"{sdf.name}:{index}"))
        except FeaturizationError:
            continue
    return mols


def repose_series(sdf: Path, per_series: int | None) -> tuple[list[dict], Counter]:
    protein = load_protein(sdf.with_name(sdf.name.replace("_ligands.sdf", "_protein.pdb")),
                           CONFIG)
    mols = series_records(sdf)
    if len(mols) < 2:
        return [], Counter()
    site = PosingSite.build(mols[0], protein, f"{sdf.name}:0")
    rows, failures = [], Counter()
    for index, given in enumerate(mols[1:per_series and per_series + 1], start=1):
        smiles = Chem.MolToSmiles(given)
        started = time.perf_counter()
        try:
            pose = pose_ligand(parse_smiles(smiles, "bench"), site, CONFIG.posing,
                               f"{sdf.stem}:{index}")
        except FeaturizationError as error:
            failures[_reason(str(error))] += 1
            continue
        seconds = time.perf_counter() - started
        posed = pose.heavy
        rmsd = rdMolAlign.CalcRMS(posed, given)
        rows.append({"series": sdf.stem, "rmsd": rmsd, "seconds": seconds,
                     "core": len(pose.core) / posed.GetNumAtoms(), "clashes": pose.clashes})
    return rows, failures


def _reason(message: str) -> str:
    """The rule a failure broke, without the ligand-specific numbers."""
    for key in ("shares", "did not finish", "no 3D embedding", "stereo", "still clashes",
                "cannot parse", "disconnected"):
        if key in message:
            return key
    return message[:60]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, help="only the first N series")
    parser.add_argument("--per-series", type=int, help="only the first K ligands of each series")
    args = parser.parse_args()
    rows, failures = [], Counter()
    started = time.perf_counter()
    for sdf in fep_systems()[:args.limit]:
        series_rows, series_failures = repose_series(sdf, args.per_series)
        rows += series_rows
        failures += series_failures
        if series_rows:
            rmsd = [r["rmsd"] for r in series_rows]
            print(f"{sdf.stem:40s} n={len(rmsd):3d} median RMSD {np.median(rmsd):5.2f} Å "
                  f"failed {sum(series_failures.values())}", flush=True)
    wall = time.perf_counter() - started
    rmsd = np.array([r["rmsd"] for r in rows])
    seconds = np.array([r["seconds"] for r in rows])
    attempted = len(rows) + sum(failures.values())
    print()
    print_table(["figure", "value"], [
        ["ligands re-posed", f"{len(rows)} of {attempted}"],
        ["median RMSD (Å)", f"{np.median(rmsd):.2f}"],
        ["90th percentile RMSD (Å)", f"{np.percentile(rmsd, 90):.2f}"],
        ["fraction under 2 Å", f"{np.mean(rmsd < 2.0):.3f}"],
        ["median core share", f"{statistics.median(r['core'] for r in rows):.2f}"],
        ["posing s/ligand: median / p90 / max",
         f"{np.median(seconds):.3f} / {np.percentile(seconds, 90):.3f} / {seconds.max():.2f}"],
        ["ligands/s on one core (posed only)", f"{len(rows) / seconds.sum():.1f}"],
        ["wall time (s), protein parsing included", f"{wall:.0f}"],
    ])
    if failures:
        print("\nfailures by rule:", dict(failures))


if __name__ == "__main__":
    main()
