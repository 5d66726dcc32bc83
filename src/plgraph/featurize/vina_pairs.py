"""Vina's and Vinardo's intermolecular terms as a plain sum over atom pairs, without the package.

The ``vina`` package (1.2) returns only weighted totals, and its in-place score needs maps whose
fixed cost (the pair tables of every type pair) is paid again for each weight set: seven map
computations per complex gave the five unweighted terms and Vinardo. This module computes the
same numbers from the two pdbqt texts in milliseconds, reproducing what Vina's ``score()`` does
with the receptor atoms (``non_cache::eval``; no grid is read for an in-place score):

- Atom typing (``model::assign_bonds`` and ``assign_types``, ``atom_constants.h``): bonds from
  distances, ``r < 1.1 * (covalent radius sum)`` between atoms whose distance the pdbqt tree fixes
  (all receptor atoms; ligand atoms of one rigid fragment, and the two atoms of a ``BRANCH``),
  unless a third such atom lies closer to both; then X-Score types: a carbon bonded to a
  heteroatom (neither C nor H) is polar (C_P), else hydrophobic (C_H); N and O are acceptors when
  typed NA / OA and donors when bonded to a polar hydrogen (HD); every metal is a donor (Met_D);
  F, Cl, Br, I are hydrophobic; hydrogens are not scored.
- The terms of a pair at distance r, surface distance d = r - R_i - R_j (X-Score vdW radii,
  Vinardo's own for Vinardo), cutoff 8 Å (Trott & Olson 2010, Table 1; Quiroga & Villarreal 2016
  for Vinardo): gauss1 exp(-(d/0.5)^2), gauss2 exp(-((d-3)/2)^2), repulsion d^2 (d < 0),
  hydrophobic 1 below d = 0.5 to 0 at 1.5 (both atoms hydrophobic), hbond 1 below d = -0.7 to 0
  at 0 (a donor-acceptor pair); Vinardo: gauss exp(-(d/0.8)^2), repulsion d^2, hydrophobic 1
  below 0 to 0 at 2.5, hbond 1 below -0.6 to 0 at 0.
- Vina's tabulation (``precalculate.h``): a pair is read from a table over r^2 in steps of 1/32
  Å^2, the entry being the mean of the term at the step's two ends; this module evaluates those
  two ends per pair, so it matches the table, not the continuous function.
- Per ligand atom, a positive energy is smoothed (``curl``: ``e * 1000 / (1000 + e)``).
- The rotatable-bond count of ``num_tors_div``: half of each BRANCH bond end whose other atom has
  more than one heavy neighbour.

What it does not do: flexible residues, macrocycle closure atoms (G0-G3; Meeko's rigid
macrocycles write none), atoms out of a box (there is none). ``vina_terms`` checks the weighted
sum against the package's own in-place total on every complex, so a typing difference cannot pass
silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.spatial import cKDTree

from plgraph.errors import FeaturizationError

CUTOFF = 8.0  # Å, Vina's and Vinardo's pair cutoff
TABLE_STEP = 1.0 / 32.0  # Å^2, the r^2 step of Vina's pair tables (``precalculate``, factor 32)
SMOOTHING = 1000.0  # ``curl``'s v: e * v / (v + e) for a positive per-atom energy
BOND_ALLOWANCE = 1.1  # ``assign_bonds``: bonded below 1.1 times the covalent radius sum
TERMS = ("gauss1", "gauss2", "repulsion", "hydrophobic", "hbond")
VINARDO_WEIGHTS = (-0.045, 0.8, -0.035, -0.6)  # gauss, repulsion, hydrophobic, hbond
ROTATABLE_WEIGHT = 0.05846  # score = inter / (1 + w * rotatable bonds), Vina and Vinardo

# AutoDock type -> (element class, covalent radius in Å), from atom_constants.h. Se is read as S;
# metals Vina knows only by name get the metal class and 1.75 Å.
_AUTODOCK = {
    "C": ("C", 0.77), "A": ("C", 0.77), "N": ("N", 0.75), "NA": ("N", 0.75),
    "O": ("O", 0.73), "OA": ("O", 0.73), "S": ("S", 1.02), "SA": ("S", 1.02),
    "Se": ("S", 1.02), "P": ("P", 1.06), "H": ("H", 0.37), "HD": ("H", 0.37),
    "F": ("F", 0.71), "Cl": ("Cl", 0.99), "Br": ("Br", 1.14), "I": ("I", 1.33),
    "Si": ("Si", 1.11), "At": ("At", 1.44), "Mg": ("Met", 1.30), "Mn": ("Met", 1.39),
    "Zn": ("Met", 1.31), "Ca": ("Met", 1.74), "Fe": ("Met", 1.25),
    **{name: ("Met", 1.75) for name in ("Cu", "Na", "K", "Hg", "Co", "U", "Cd", "Ni")},
}
# Element class -> (Vina's X-Score vdW radius, Vinardo's), Å.
_RADII = {
    "C": (1.9, 2.0), "N": (1.8, 1.7), "O": (1.7, 1.6), "S": (2.0, 2.0), "P": (2.1, 2.1),
    "F": (1.5, 1.5), "Cl": (1.8, 1.8), "Br": (2.0, 2.0), "I": (2.2, 2.2), "Si": (2.2, 2.2),
    "At": (2.3, 2.3), "Met": (1.2, 1.2),
}
_HALOGENS = frozenset({"F", "Cl", "Br", "I"})


@dataclass(frozen=True)
class PairTerms:
    """The intermolecular sums of one pose; energies in kcal/mol, terms in Vina's units."""

    terms: tuple[float, ...]  # unweighted, in the order of ``TERMS``
    vina_inter: float  # Vina's weighted sum (default weights), as ``score()[1]``
    vinardo_inter: float  # Vinardo's weighted sum
    rotatable_bonds: float  # Vina's ``num_tors``
    pairs: int  # ligand-receptor heavy-atom pairs within ``CUTOFF``

    @property
    def vinardo_score(self) -> float:
        """Vinardo's score in place: the sum over the rotatable-bond penalty."""
        return self.vinardo_inter / (1.0 + ROTATABLE_WEIGHT * self.rotatable_bonds)


@dataclass(frozen=True)
class _Typed:
    """Heavy atoms as Vina scores them: positions and per-atom flags."""

    xyz: np.ndarray  # [N, 3] Å
    radius: np.ndarray  # [N, 2] Vina's and Vinardo's vdW radius
    hydrophobic: np.ndarray  # [N] bool
    donor: np.ndarray
    acceptor: np.ndarray


def pair_terms(receptor_text: str, ligand_text: str, vina_weights: tuple[float, ...],
               source: str) -> PairTerms:
    """Vina's five unweighted terms, the weighted Vina and Vinardo sums and Vina's rotatable-bond
    count, from the receptor and ligand pdbqt texts Vina is given.

    Args:
        receptor_text: rigid receptor pdbqt (no ROOT/BRANCH records).
        ligand_text: ligand pdbqt with its torsion tree (Meeko's).
        vina_weights: Vina's weights, the five terms first.
        source: the complex, named in errors.

    Raises:
        FeaturizationError: an atom type Vina has none for, or no receptor atom within 8 Å.
    """
    receptor_atoms, receptor_tree = _parse(receptor_text, source)
    receptor = _typed(receptor_atoms, _bonds(receptor_atoms, receptor_tree))
    ligand_atoms, tree = _parse(ligand_text, source)
    ligand_bonds = _bonds(ligand_atoms, tree)
    found = _per_atom_terms(_typed(ligand_atoms, ligand_bonds), receptor)
    if found is None:
        raise FeaturizationError(f"{source}: no protein atom within Vina's {CUTOFF:g} Å cutoff "
                                 "of the ligand: nothing to score")
    pairs, per_atom = found
    vina_part, vinardo_part = per_atom[:, :len(TERMS)], per_atom[:, len(TERMS):]
    # Each term as Vina sums it with that weight alone: only repulsion is positive, so smoothed.
    terms = tuple(float((_curl(column) if name == "repulsion" else column).sum()) + 0.0
                  for name, column in zip(TERMS, vina_part.T, strict=True))
    vina_inter = float(_curl(vina_part @ np.asarray(vina_weights[:len(TERMS)])).sum())
    vinardo_inter = float(_curl(vinardo_part @ np.asarray(VINARDO_WEIGHTS)).sum())
    return PairTerms(terms, vina_inter, vinardo_inter,
                     _rotatable_bonds(ligand_atoms, tree, ligand_bonds), pairs)


def _curl(energy: np.ndarray) -> np.ndarray:
    """Vina's smoothing of positive per-atom energies."""
    return np.where(energy > 0, energy * SMOOTHING / (SMOOTHING + np.maximum(energy, 0)), energy)


@dataclass(frozen=True)
class _Atoms:
    xyz: np.ndarray  # [N, 3]
    element: list[str]  # element class of ``_AUTODOCK``
    autodock: list[str]
    covalent: np.ndarray  # [N] Å


@dataclass(frozen=True)
class _Tree:
    fragment: np.ndarray  # [N] rigid fragment of each atom (0 for a rigid receptor)
    rotors: np.ndarray  # [R, 2] atom indices of the BRANCH bonds


def _parse(text: str, source: str) -> tuple[_Atoms, _Tree]:
    """Atoms (columns as Vina reads them) and the torsion tree of a pdbqt text."""
    xyz, autodock, fragment, serial_index, branches = [], [], [], {}, []
    stack, fragments = [0], 0
    for line in text.splitlines():
        if line.startswith(("ATOM", "HETATM")):
            serial_index[int(line[6:11])] = len(xyz)
            xyz.append((float(line[30:38]), float(line[38:46]), float(line[46:54])))
            autodock.append(line[77:79].strip())
            fragment.append(stack[-1])
        elif line.startswith("BRANCH"):
            fragments += 1
            stack.append(fragments)
            branches.append(tuple(int(v) for v in line.split()[1:3]))
        elif line.startswith("ENDBRANCH"):
            stack.pop()
    unknown = sorted({t for t in autodock if t not in _AUTODOCK})
    if unknown:
        raise FeaturizationError(f"{source}: pdbqt atom type(s) {', '.join(unknown)} have no "
                                 "Vina type")
    atoms = _Atoms(np.array(xyz, dtype=np.float64).reshape(-1, 3),
                   [_AUTODOCK[t][0] for t in autodock], autodock,
                   np.array([_AUTODOCK[t][1] for t in autodock]))
    rotors = np.array([(serial_index[a], serial_index[b]) for a, b in branches],
                      dtype=np.int64).reshape(-1, 2)
    return atoms, _Tree(np.array(fragment, dtype=np.int64), rotors)


def _bonds(atoms: _Atoms, tree: _Tree) -> np.ndarray:
    """[B, 2] Vina's bonds (``model::assign_bonds``): within 1.1 times the covalent radius sum,
    between atoms whose distance the tree fixes, no third such atom closer to both."""
    n = len(atoms.covalent)
    reach = 2 * BOND_ALLOWANCE * float(atoms.covalent.max(initial=0.0))
    pairs = cKDTree(atoms.xyz).query_pairs(reach, output_type="ndarray").reshape(-1, 2)
    i, j = pairs[:, 0], pairs[:, 1]
    r2 = ((atoms.xyz[i] - atoms.xyz[j]) ** 2).sum(axis=1)
    fixed = tree.fragment[i] == tree.fragment[j]
    rotor_keys = set(map(tuple, np.sort(tree.rotors, axis=1).tolist()))
    rotor = np.array([(a, b) in rotor_keys for a, b in zip(i.tolist(), j.tolist(), strict=True)],
                     dtype=bool)
    linked = fixed | rotor
    bonded = linked & (r2 < (BOND_ALLOWANCE * (atoms.covalent[i] + atoms.covalent[j])) ** 2)
    # A third atom c, fixed relative to both, closer to each than they are to each other.
    near = csr_matrix((np.r_[r2[linked], r2[linked]], (np.r_[i[linked], j[linked]],
                                                       np.r_[j[linked], i[linked]])), (n, n))
    bi, bj, br2 = i[bonded], j[bonded], r2[bonded]
    closer_i, closer_j = near[bi], near[bj]  # [B, n] squared distances
    for rows in (closer_i, closer_j):
        rows.data = (rows.data < np.repeat(br2, np.diff(rows.indptr))).astype(np.float64)
        rows.eliminate_zeros()
    between = np.asarray(closer_i.multiply(closer_j).sum(axis=1)).ravel() > 0
    return np.stack([bi[~between], bj[~between]], axis=1)


def _typed(atoms: _Atoms, bonds: np.ndarray) -> _Typed:
    """The heavy atoms with Vina's X-Score flags (``model::assign_types``)."""
    element = np.array(atoms.element)
    hetero = ~np.isin(element, ("C", "H"))
    polar_h = np.array([t == "HD" for t in atoms.autodock])
    to_hetero = np.zeros(len(element), dtype=bool)
    to_hd = np.zeros(len(element), dtype=bool)
    for a, b in ((bonds[:, 0], bonds[:, 1]), (bonds[:, 1], bonds[:, 0])):
        to_hetero[a[hetero[b]]] = True
        to_hd[a[polar_h[b]]] = True
    heavy = element != "H"
    nitrogen_oxygen = np.isin(element, ("N", "O"))
    metal = element == "Met"
    acceptor = nitrogen_oxygen & np.isin(atoms.autodock, ("NA", "OA"))
    donor = (nitrogen_oxygen & to_hd) | metal
    hydrophobic = ((element == "C") & ~to_hetero) | np.isin(element, list(_HALOGENS))
    radius = np.array([_RADII.get(e, (0.0, 0.0)) for e in atoms.element]).reshape(-1, 2)
    return _Typed(atoms.xyz[heavy], radius[heavy], hydrophobic[heavy], donor[heavy],
                  acceptor[heavy])


def _per_atom_terms(ligand: _Typed, receptor: _Typed) -> tuple[int, np.ndarray] | None:
    """(pairs within the cutoff, [ligand heavy atoms, 9]): per ligand atom, the five Vina terms
    and the four Vinardo terms summed over receptor atoms, each pair read as Vina's table reads
    it (the mean of the term at the two ends of its r^2 step). None without any pair."""
    found = cKDTree(receptor.xyz).query_ball_point(ligand.xyz, CUTOFF)
    li = np.repeat(np.arange(len(found)), [len(f) for f in found])
    rj = np.concatenate([np.asarray(f, dtype=np.int64) for f in found] + [np.zeros(0, int)])
    r2 = ((ligand.xyz[li] - receptor.xyz[rj]) ** 2).sum(axis=1)
    keep = r2 < CUTOFF**2
    li, rj, r2 = li[keep], rj[keep], r2[keep]
    if not len(li):
        return None
    step = np.floor(r2 / TABLE_STEP)
    ends = (np.sqrt(step * TABLE_STEP), np.sqrt((step + 1) * TABLE_STEP))
    hydrophobic = ligand.hydrophobic[li] & receptor.hydrophobic[rj]
    hbond = ((ligand.donor[li] & receptor.acceptor[rj])
             | (ligand.acceptor[li] & receptor.donor[rj]))
    values = []
    for which, shape in ((0, _vina_pair), (1, _vinardo_pair)):
        optimal = ligand.radius[li, which] + receptor.radius[rj, which]
        values.append(sum(shape(r, optimal, hydrophobic, hbond) for r in ends) / 2)
    per_pair = np.concatenate(values, axis=1)
    per_atom = np.zeros((len(ligand.xyz), per_pair.shape[1]))
    np.add.at(per_atom, li, per_pair)
    return len(li), per_atom


def _slope_step(bad: float, good: float, x: np.ndarray) -> np.ndarray:
    """Vina's ``slope_step``: 1 at ``good`` and beyond, 0 at ``bad`` and beyond, linear between."""
    return np.clip((x - bad) / (good - bad), 0.0, 1.0)


def _vina_pair(r, optimal, hydrophobic, hbond) -> np.ndarray:
    """[pairs, 5] Vina's unweighted terms at distance ``r`` (``potentials.h``)."""
    inside = r < CUTOFF
    d = r - optimal
    return np.stack([np.exp(-((d / 0.5) ** 2)), np.exp(-(((d - 3.0) / 2.0) ** 2)),
                     np.where(d > 0, 0.0, d * d), hydrophobic * _slope_step(1.5, 0.5, d),
                     hbond * _slope_step(0.0, -0.7, d)], axis=1) * inside[:, None]


def _vinardo_pair(r, optimal, hydrophobic, hbond) -> np.ndarray:
    """[pairs, 4] Vinardo's unweighted terms at distance ``r``."""
    inside = r < CUTOFF
    d = r - optimal
    return np.stack([np.exp(-((d / 0.8) ** 2)), np.where(d > 0, 0.0, d * d),
                     hydrophobic * _slope_step(2.5, 0.0, d),
                     hbond * _slope_step(0.0, -0.6, d)], axis=1) * inside[:, None]


def _rotatable_bonds(atoms: _Atoms, tree: _Tree, bonds: np.ndarray) -> float:
    """Vina's ``num_tors``: for each BRANCH bond and each of its heavy ends, 1/2 when the other
    end is heavy with more than one heavy neighbour (a methyl or hydroxyl end counts once)."""
    heavy = np.array([e != "H" for e in atoms.element])
    degree = np.zeros(len(heavy), dtype=int)
    for a, b in ((bonds[:, 0], bonds[:, 1]), (bonds[:, 1], bonds[:, 0])):
        np.add.at(degree, a, heavy[b])
    bonded = {tuple(sorted(pair)) for pair in bonds.tolist()}
    count = 0.0
    for a, b in tree.rotors.tolist():
        if tuple(sorted((a, b))) not in bonded:
            continue
        for end, other in ((a, b), (b, a)):
            if heavy[end] and heavy[other] and degree[other] > 1:
                count += 0.5
    return count
