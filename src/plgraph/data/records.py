"""What the input readers produce: one record per complex to featurize, one failure per reject."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

# ΔG -> pK at 298.15 K: pK = -ΔG / (R T ln 10), R in kcal/(mol K).
GAS_CONSTANT_KCAL = 1.987204259e-3
TEMPERATURE_K = 298.15
KCAL_PER_PK = GAS_CONSTANT_KCAL * TEMPERATURE_K * 2.302585092994046


# The pK a binding measurement can have: Kd above 10 M is no binding, below 1e-16 M tighter than
# any measured complex (streptavidin-biotin ~1e-14 M). A label outside is a unit mistake (a Kd in
# nM given as pK, a ΔG in J/mol) or a placeholder (-1e300), never data.
PLAUSIBLE_PK = (-1.0, 16.0)


def dg_to_pk(dg_kcal_mol: float) -> float:
    """Binding free energy (kcal/mol) to pK = -log10(Kd) at 298.15 K."""
    return -dg_kcal_mol / KCAL_PER_PK


def implausible_label(pk: float | None) -> str | None:
    """Why the label ``pk`` cannot be a measured pK, or None when it can (or there is none)."""
    low, high = PLAUSIBLE_PK
    if pk is None or low <= pk <= high:
        return None
    return (f"label pK {pk:.4g} is outside the plausible range {low:g} to {high:g} (a Kd in nM "
            "given as pK, or the wrong label_kind?)")


@dataclass(frozen=True)
class ComplexRecord:
    """One protein-ligand complex, as found in the input, before featurization.

    Args:
        id: unique id (PDB code, ``system/ligand`` for series, the manifest's id).
        protein: the protein or pocket PDB file.
        ligand_files: ligand files to try in order (fallbacks); empty when ``ligand_block`` is set.
        ligand_block: one record of a multi-ligand SDF (series layout) or mol2 file.
        ligand_format: the format of ``ligand_block``: ``sdf`` or ``mol2``.
        ligand_name: the ligand's name (SDF title line) where known.
        ligand_index: the record's position in its SDF (0-based), -1 for single-ligand files.
        ligand_source: where the record is, for messages (SDF file and record).
        ligand_line: the file line the record starts on, so messages give file lines.
        label: pK, or None where the input has none (prediction).
        group: what a grouped split keeps together (protein / series); "" when unknown.
        smiles: the ligand as SMILES, to be posed onto ``reference_files`` (reference layout);
            then ``ligand_files`` and ``ligand_block`` are empty.
        reference_files: the system's posed reference ligand, with its fallbacks.
        extras: other numeric values the input gives for the record, e.g. Uni-FEP's
            ``fep_dG (kcal/mol)``: kept for reports, never a label.
    """

    id: str
    protein: Path
    ligand_files: tuple[Path, ...] = ()
    ligand_block: str | None = None
    ligand_format: str = "sdf"
    ligand_name: str = ""
    ligand_index: int = -1
    ligand_source: str = ""
    ligand_line: int = 1
    label: float | None = None
    group: str = ""
    smiles: str | None = None
    reference_files: tuple[Path, ...] = ()
    extras: tuple[tuple[str, float], ...] = ()

    def fingerprint_fields(self, stamp: Callable[[Path], list] | None = None) -> list:
        """What identifies this record's input; a changed value makes a cache stale.
        ``stamp`` says how a file is identified: by default its name, size and modification
        time (:func:`_file_stamp`)."""
        stamp = stamp or _file_stamp
        if self.smiles is not None:
            ligand = [self.smiles, [stamp(p) for p in self.reference_files]]
        elif self.ligand_block is not None:
            ligand = [hashlib.sha256(self.ligand_block.encode()).hexdigest()]
            ligand += [self.ligand_format] if self.ligand_format != "sdf" else []
        else:
            ligand = [stamp(p) for p in self.ligand_files]
        fields = [self.id, stamp(self.protein), ligand, self.label, self.group]
        return fields + [list(map(list, self.extras))] if self.extras else fields


@dataclass(frozen=True)
class Failure:
    """A complex that could not be used, and why (the reason names the file / line / rule).
    ``ligand_name`` / ``ligand_index``: a failed record of a multi-ligand file, for its row."""

    id: str
    reason: str
    ligand_name: str = ""
    ligand_index: int = -1


@dataclass
class ReadResult:
    """Everything an input reader found. ``duplicates`` are records dropped as copies of a
    record of an earlier source (``data.sources``): not failures, but listed with the reason."""

    records: list[ComplexRecord] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    duplicates: list[Failure] = field(default_factory=list)

    def fingerprint(self, content: bool = False) -> str:
        """A hash of every record's input, every reader failure and every dropped duplicate.

        Args:
            content: identify files by their SHA-256 rather than by size and modification time:
                it reads every input file once (seconds per GB), so it is the second check, for
                inputs whose times changed (a copy, a restaged dataset) but whose content may not
                have (:meth:`plgraph.data.cache.ProcessedCache.open`).
        """
        stamp = _ContentStamps() if content else None
        payload = [r.fingerprint_fields(stamp) for r in self.records]
        payload.append(sorted([f.id, f.reason] for f in self.failures))
        if self.duplicates:
            payload.append(sorted([f.id, f.reason] for f in self.duplicates))
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def _file_stamp(path: Path) -> list:
    # Name, size and modification time (ns), not content: hashing ~1 GB of PDBbind on every start
    # would cost seconds, and an edit in place (a fixed coordinate keeps the size) changes the
    # time. A copy that does not keep times (cp without -p) makes a cache stale: rebuilt, never
    # wrongly reused. Caches built before the time was part of it are stale once.
    try:
        stat = path.stat()
    except OSError:
        return [path.name, None, None]
    return [path.name, stat.st_size, stat.st_mtime_ns]


class _ContentStamps:
    """A file's name and SHA-256, each file read once however many records share it (a
    series' protein)."""

    def __init__(self) -> None:
        self._digests: dict[Path, str | None] = {}

    def __call__(self, path: Path) -> list:
        if path not in self._digests:
            self._digests[path] = _sha256(path)
        return [path.name, self._digests[path]]


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None  # as _file_stamp: a missing file is part of the identity, not an error here
    return digest.hexdigest()


def find_duplicates(ids: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    duplicates = set()
    for complex_id in ids:
        (duplicates if complex_id in seen else seen).add(complex_id)
    return duplicates
