"""Atom contribution maps: which atoms of a ligand the model credits, in pK units.

The prediction is a sum over the ligand's heavy atoms (``PLGraphNet.atom_contributions``): each
atom's contribution, plus the intercept (the training labels' mean pK), is the predicted pK
exactly. For an ensemble, the contributions are the members' mean. This is the model's own
additive decomposition: it says what the model's sum is made of, not which atoms bind, and it is
not a free-energy decomposition (an atom's value depends on its neighbours through message
passing, so removing the atom does not remove its value).

``predict.py explain=true`` writes beside ``output=X.csv``:

- ``X_atoms.csv``: one row per heavy atom of every predicted ligand, ``atom_index`` being the
  atom's index in the input file (hydrogens counted, as any viewer numbers them; for a SMILES,
  the heavy atom's position among the SMILES' heavy atoms);
- ``X_maps/``: per ligand a 2D depiction (PNG, and SVG for publication) with each heavy atom
  circled in red (raises the pK) or blue (lowers it), the colour scale symmetric around zero and
  the same for every picture of the run, the predicted pK and the scale in the legend; and
  ``top_<N>.png``, a grid of the N ligands predicted best.
"""

from __future__ import annotations

import csv
import heapq
from pathlib import Path

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDepictor
from rdkit.Chem.Draw import rdMolDraw2D

from plgraph.featurize.ligand import INPUT_INDEX
from plgraph.runtime.atomic import Staged
from plgraph.runtime.files import file_safe
from plgraph.training.plots import colormap

ATOM_COLUMNS = ("id", "ligand_name", "atom_index", "element", "contribution_pk")
PICTURE_SIZE = (420, 360)
# pK per atom at which the colour is full: contributions beyond it are drawn at full colour. One
# scale for every picture of a run, so that two pictures compare at a glance.
FULL_COLOUR_PK = 0.5
_COLOURS = colormap("bwr")


def input_atom_indices(ligand: Chem.Mol) -> list[int]:
    """Each heavy atom's index in the input (``INPUT_INDEX``, else its own index)."""
    return [atom.GetIntProp(INPUT_INDEX) if atom.HasProp(INPUT_INDEX) else atom.GetIdx()
            for atom in ligand.GetAtoms()]


def depiction(ligand: Chem.Mol, contributions: np.ndarray, legend: str, svg: bool) -> bytes:
    """A 2D drawing of ``ligand`` with every heavy atom circled in its contribution's colour."""
    mol = _flat(ligand)
    drawer = (rdMolDraw2D.MolDraw2DSVG(*PICTURE_SIZE) if svg
              else rdMolDraw2D.MolDraw2DCairo(*PICTURE_SIZE))
    _draw(drawer, mol, contributions, legend)
    drawer.FinishDrawing()
    text = drawer.GetDrawingText()
    return text.encode() if svg else text


def grid(ligands: list[Chem.Mol], contributions: list[np.ndarray], legends: list[str],
         per_row: int = 4) -> bytes:
    """PNG of several depictions side by side, in the given order."""
    mols = [_flat(ligand) for ligand in ligands]
    rows = -(-len(mols) // per_row)
    width, height = PICTURE_SIZE
    drawer = rdMolDraw2D.MolDraw2DCairo(width * min(per_row, len(mols)), height * rows,
                                        width, height)
    _options(drawer)
    colours = [_atom_colours(c) for c in contributions]
    drawer.DrawMolecules(mols, highlightAtoms=[list(c) for c in colours],
                         highlightAtomColors=colours,
                         highlightAtomRadii=[dict.fromkeys(c, 0.45) for c in colours],
                         highlightBonds=[[] for _ in mols], legends=legends)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()


def _flat(ligand: Chem.Mol) -> Chem.Mol:
    """A copy to draw: 2D coordinates (the 3D pose would be drawn as its projection), Kekulé
    bonds and wedges as RDKit's drawing prepares them; atom order kept."""
    mol = Chem.Mol(ligand)
    mol.RemoveAllConformers()
    # The readers remove hydrogens unsanitized: the aromatic flags Kekulé drawing needs are
    # set again here (errors caught: a drawing never fails a prediction).
    Chem.SanitizeMol(mol, catchErrors=True)
    rdDepictor.Compute2DCoords(mol)
    return rdMolDraw2D.PrepareMolForDrawing(mol, addChiralHs=False)


def _draw(drawer, mol: Chem.Mol, contributions: np.ndarray, legend: str) -> None:
    _options(drawer)
    colours = _atom_colours(contributions)
    drawer.DrawMolecule(mol, highlightAtoms=list(colours), highlightAtomColors=colours,
                        highlightAtomRadii=dict.fromkeys(colours, 0.45), highlightBonds=[],
                        legend=legend)


def _options(drawer) -> None:
    options = drawer.drawOptions()
    options.fillHighlights = True
    options.legendFontSize = 14
    options.legendFraction = 0.16
    options.clearBackground = True


def _atom_colours(contributions: np.ndarray) -> dict[int, tuple[float, float, float]]:
    """Blue (lowers the pK) - white (0) - red (raises it), saturated at ``FULL_COLOUR_PK``."""
    scaled = np.clip(0.5 + 0.5 * np.asarray(contributions) / FULL_COLOUR_PK, 0.0, 1.0)
    return {i: tuple(float(v) for v in _COLOURS(s)[:3]) for i, s in enumerate(scaled)}


def legend_text(name: str, predicted: float) -> str:
    return (f"{name}   predicted pK {predicted:.2f}\nred raises, blue lowers the pK; "
            f"full colour = {FULL_COLOUR_PK} pK per atom")


class ExplainWriter:
    """Writes ``X_atoms.csv`` and ``X_maps/`` for ``output=X.csv`` (module doc), to temporary
    names renamed into place by ``close(complete=True)``, as the prediction CSV is."""

    def __init__(self, output: Path, top: int):
        stem = output.with_suffix("")
        self.atoms_path = stem.with_name(f"{stem.name}_atoms.csv")
        self.maps_path = stem.with_name(f"{stem.name}_maps")
        self._atoms = Staged(self.atoms_path)
        self._maps = Staged(self.maps_path, directory=True)
        self._handle = open(self._atoms.partial, "w", newline="")  # noqa: SIM115 (close())
        self._writer = csv.writer(self._handle)
        self._writer.writerow(ATOM_COLUMNS)
        self.top = top
        self._best: list[tuple[float, int, str, Chem.Mol, np.ndarray]] = []  # a min-heap
        self.count = 0

    def write(self, row_id: str, name: str, ligand: Chem.Mol, predicted: float,
              contributions: np.ndarray) -> None:
        indices = input_atom_indices(ligand)
        for atom, index, value in zip(ligand.GetAtoms(), indices, contributions, strict=True):
            self._writer.writerow([row_id, name, index, atom.GetSymbol(), f"{value:.4f}"])
        legend = legend_text(name or row_id, predicted)
        file_stem = f"{self.count:05d}_{file_safe(name or row_id)}"
        for svg, suffix in ((False, ".png"), (True, ".svg")):
            (self._maps.partial / f"{file_stem}{suffix}").write_bytes(
                depiction(ligand, contributions, legend, svg))
        entry = (predicted, -self.count, f"{name or row_id}  pK {predicted:.2f}", ligand,
                 contributions)
        if len(self._best) < self.top:
            heapq.heappush(self._best, entry)
        elif entry[:2] > self._best[0][:2]:
            heapq.heapreplace(self._best, entry)
        self.count += 1

    def close(self, complete: bool) -> None:
        self._handle.close()
        if not complete:
            self._atoms.discard()
            self._maps.discard()
            return
        if self._best:
            best = sorted(self._best, key=lambda e: e[:2], reverse=True)
            (self._maps.partial / f"top_{len(best)}.png").write_bytes(
                grid([e[3] for e in best], [e[4] for e in best], [e[2] for e in best]))
        self._atoms.commit()
        self._maps.commit(replace_directory=True)  # an earlier run's pictures: replaced whole

