"""The seeded train / val / test split, saved beside the cache and verified on every load.

A split is made once, from the cache's ids, and saved as ``<processed>/splits/<name>.json``. Later
runs reuse it; asking for another seed, fractions or strategy under the same name is an error, so
a resumed training run can never see its data move between train and test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plgraph.config import SplitConfig
from plgraph.data.cache import ProcessedCache
from plgraph.data.labels import read_id_list
from plgraph.data.targets import family_clusters, target_clusters
from plgraph.errors import SplitError
from plgraph.runtime.atomic import replace_atomically

PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """A split as saved in ``splits/<name>.json``.

    Args:
        name: ``split.name``.
        recipe: everything that decided its content (:func:`split_recipe`).
        parts: the complex ids of ``train``, ``val`` and ``test``.
        fingerprint: SHA-256 of the parts (:func:`split_fingerprint`); checkpoints record it.
        target_of: each complex's target (or family) cluster, for target and family splits.
    """

    name: str
    recipe: dict
    parts: dict[str, list[str]]
    fingerprint: str
    target_of: dict[str, str] | None = None

    @classmethod
    def from_json(cls, payload: dict) -> Split:
        return cls(payload["name"], payload["recipe"], payload["parts"], payload["fingerprint"],
                   payload.get("target_of"))

    def to_json(self) -> dict:
        """The file's content, keys in the order the file has always had them."""
        payload = {"name": self.name, "recipe": self.recipe, "parts": self.parts}
        if self.target_of is not None:
            payload["target_of"] = self.target_of
        payload["fingerprint"] = self.fingerprint
        return payload

    def with_parts(self, parts: dict[str, list[str]]) -> Split:
        """This split with other parts (a cut training part) and their own fingerprint, so a
        run on it checks it like any other; never saved."""
        return dataclasses.replace(self, parts=parts, fingerprint=split_fingerprint(parts))


def split_path(cache: ProcessedCache, name: str) -> Path:
    return cache.path / "splits" / f"{name}.json"


def load_or_make_split(cache: ProcessedCache, config: SplitConfig,
                       proteins: dict[str, Path] | None = None) -> Split:
    """The saved split ``config.name``, verified; made and saved first if it does not exist.

    ``proteins`` (complex id to protein file) is needed to make a ``target`` split. The caller
    holds the cache lock, so two runs never write the same split.
    """
    path = split_path(cache, config.name)
    wanted = split_recipe(config)
    if path.exists():
        split = Split.from_json(json.loads(path.read_text()))
        if split.recipe != wanted:
            differences = [f"{k}: saved {split.recipe.get(k)!r}, asked {wanted.get(k)!r}"
                           for k in wanted if split.recipe.get(k) != wanted.get(k)]
            raise SplitError(f"split '{config.name}' at {path} was made differently ("
                             + "; ".join(differences) + "). A split never changes under a name: "
                             f"to make a new one, set split.name=<new name> (or delete {path}).")
        verify_split(split, cache)
        return split
    target_of = (target_groups(cache, config, proteins)
                 if config.strategy in ("target", "family") else None)
    parts = make_split(cache, config, target_of)
    split = Split(config.name, wanted, parts, split_fingerprint(parts), target_of)
    verify_split(split, cache)
    path.parent.mkdir(exist_ok=True)
    replace_atomically(path, lambda target: target.write_text(json.dumps(split.to_json(),
                                                                         indent=1)))
    return split


def split_recipe(config: SplitConfig) -> dict:
    """Everything that decides a split's content; id files enter by content hash."""
    recipe = {"strategy": config.strategy, "seed": config.seed, **config.fractions()}
    if config.strategy == "target":
        recipe["target_identity"] = config.target_identity
    if config.strategy == "family":
        recipe["family_similarity"] = config.family_similarity
    if config.folds:  # absent otherwise: the splits saved before folds keep their recipe
        recipe.update(folds=config.folds, fold=config.fold)
    for key in ("test_ids", "val_ids"):
        file = getattr(config, key)
        recipe[key] = hashlib.sha256(Path(file).read_bytes()).hexdigest() if file else None
    return recipe


def split_fingerprint(parts: dict[str, list[str]]) -> str:
    return hashlib.sha256(json.dumps({p: parts[p] for p in PARTS}).encode()).hexdigest()


def target_groups(cache: ProcessedCache, config: SplitConfig,
                  proteins: dict[str, Path] | None) -> dict[str, str]:
    """Each cached complex's target cluster (protein chains at ``split.target_identity``), or
    its family (``split.family_similarity``) for ``strategy=family``."""
    if proteins is None or not set(cache.ids) <= proteins.keys():
        raise SplitError(f"split.strategy={config.strategy} needs the protein file of every "
                         "complex; prepare the data with prepare_data")
    files = {proteins[i] for i in cache.ids}
    cluster = (family_clusters(files, config.family_similarity) if config.strategy == "family"
               else target_clusters(files, config.target_identity))
    return {complex_id: cluster[proteins[complex_id]] for complex_id in sorted(cache.ids)}


def make_split(cache: ProcessedCache, config: SplitConfig,
               target_of: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Assign every cached complex to train, val or test (each part sorted by id)."""
    rng = np.random.default_rng(config.seed)
    if config.strategy in ("grouped", "target", "family"):
        group_of = _by_entry_group(cache) if config.strategy == "grouped" else target_of
        assert group_of is not None
        deal = _folded if config.folds else _grouped
        parts = deal(group_of, config, rng, len(cache),
                     skip_oversized=config.strategy == "family")
    elif config.strategy == "ids":
        parts = _from_id_files(cache, config, rng)
    else:
        parts = _by_fraction(sorted(cache.ids), config.fractions(), rng)
    return {part: sorted(parts[part]) for part in PARTS}


def _by_fraction(ids: list[str], fractions: dict[str, float], rng) -> dict[str, list[str]]:
    order = [ids[i] for i in rng.permutation(len(ids))]
    n_test = round(fractions["test"] * len(ids))
    n_val = round(fractions["val"] * len(ids))
    return {"test": order[:n_test], "val": order[n_test:n_test + n_val],
            "train": order[n_test + n_val:]}


def _by_entry_group(cache: ProcessedCache) -> dict[str, str]:
    for entry in cache.entries:
        if not entry.group:
            raise SplitError(f"split.strategy=grouped, but complex {entry.id} has no group: give "
                             "labels a 'group' column (e.g. UniProt id) or use the series layout")
    return {entry.id: entry.group for entry in cache.entries}


def _grouped(group_of: dict[str, str], config: SplitConfig, rng, size: int,
             skip_oversized: bool = False) -> dict[str, list[str]]:
    """Shuffled groups fill test, then val, then train: a group is never cut in two.

    ``skip_oversized``: a group that would take test or val past 1.5 times its share goes to
    train instead (families are uneven: the kinases are a third of Uni-FEP's targets)."""
    members = _members(group_of)
    groups = sorted(members)
    if len(groups) < 3:
        raise SplitError(f"split.strategy={config.strategy} needs at least 3 groups, found "
                         f"{len(groups)}")
    targets = {p: f * size for p, f in config.fractions().items()}
    parts: dict[str, list[str]] = {p: [] for p in PARTS}
    for group in (groups[i] for i in rng.permutation(len(groups))):
        part = next((p for p in ("test", "val") if _fits(len(parts[p]), len(members[group]),
                                                          targets[p], skip_oversized)), "train")
        parts[part] += members[group]
    if not parts["train"]:
        raise SplitError(f"split.strategy={config.strategy} left no group for train: lower "
                         "split.val / split.test or add groups")
    return parts


def _members(group_of: dict[str, str]) -> dict[str, list[str]]:
    """Each group's complexes, in id order."""
    members: dict[str, list[str]] = defaultdict(list)
    for complex_id in sorted(group_of):
        members[group_of[complex_id]].append(complex_id)
    return members


def _fits(filled: int, group: int, target: float, skip_oversized: bool) -> bool:
    """Whether a part holding ``filled`` complexes, short of its ``target``, takes a group of
    ``group`` more; with ``skip_oversized`` not past 1.5 times its target."""
    return filled < target - 0.5 and not (skip_oversized and filled + group > 1.5 * target)


def _folded(group_of: dict[str, str], config: SplitConfig, rng, size: int,
            skip_oversized: bool = False) -> dict[str, list[str]]:
    """Cross-fitting: the groups, shuffled with the seed, each dealt to the fold that has the
    fewest complexes so far; fold ``config.fold`` tests, the other folds' groups (in the same
    shuffled order) fill validation to ``split.val`` of all complexes, the rest trains.
    ``skip_oversized`` as in :func:`_grouped`, for validation."""
    members = _members(group_of)
    if len(members) < config.folds + 1:
        raise SplitError(f"split.folds={config.folds} needs more groups than folds, found "
                         f"{len(members)}")
    order = [sorted(members)[i] for i in rng.permutation(len(members))]
    fold_sizes = [0] * config.folds
    fold_of = {}
    for group in order:
        fold = min(range(config.folds), key=lambda f: (fold_sizes[f], f))
        fold_of[group] = fold
        fold_sizes[fold] += len(members[group])
    parts: dict[str, list[str]] = {p: [] for p in PARTS}
    val_target = config.val * size
    for group in order:
        if fold_of[group] == config.fold:
            parts["test"] += members[group]
        elif _fits(len(parts["val"]), len(members[group]), val_target, skip_oversized):
            parts["val"] += members[group]
        else:
            parts["train"] += members[group]
    if not parts["train"]:
        raise SplitError(f"split.folds={config.folds} left no group for train: lower split.val")
    return parts


def _from_id_files(cache: ProcessedCache, config: SplitConfig, rng) -> dict[str, list[str]]:
    known = set(cache.ids)
    failed = {f["id"]: f["reason"] for f in cache.meta["failures"]}
    chosen: dict[str, list[str]] = {}
    for part, file in (("test", config.test_ids), ("val", config.val_ids)):
        if not file:
            continue
        chosen[part] = []
        for complex_id, where in read_id_list(file):
            if complex_id not in known:
                why = (f"it failed featurization: {failed[complex_id]}" if complex_id in failed
                       else "it is not in the dataset")
                raise SplitError(f"{where}: {part} id {complex_id!r} cannot be used: {why}")
            chosen[part].append(complex_id)
    overlap = set(chosen["test"]) & set(chosen.get("val", []))
    if overlap:
        raise SplitError(f"split.test_ids and split.val_ids share ids: {sorted(overlap)[:10]}")
    rest = sorted(known - set(chosen["test"]) - set(chosen.get("val", [])))
    if "val" not in chosen:
        share = config.val / (config.train + config.val)
        split = _by_fraction(rest, {"test": 0.0, "val": share}, rng)
        chosen["val"], rest = split["val"], split["train"]
    return {"train": rest, "val": chosen["val"], "test": chosen["test"]}


def verify_split(split: Split, cache: ProcessedCache) -> None:
    """Disjoint parts that cover exactly the cache's ids, groups kept together when grouped."""
    parts = split.parts
    where = f"split '{split.name}' ({cache.path / 'splits'})"
    seen: dict[str, str] = {}
    for part in PARTS:
        for complex_id in parts[part]:
            if complex_id in seen:
                raise SplitError(f"{where}: {complex_id} is in both {seen[complex_id]} and {part}")
            seen[complex_id] = part
    missing, unknown = set(cache.ids) - seen.keys(), seen.keys() - set(cache.ids)
    if missing or unknown:
        raise SplitError(f"{where} does not match the cache ({len(missing)} cached ids not in it, "
                         f"{len(unknown)} ids not in the cache, e.g. "
                         f"{sorted(missing | unknown)[:5]}); delete the split file to remake it")
    if split_fingerprint(parts) != split.fingerprint:
        raise SplitError(f"{where}: content does not match its fingerprint (edited by hand?)")
    strategy = split.recipe["strategy"]
    if strategy in ("grouped", "target", "family"):
        group_of = (_by_entry_group(cache) if strategy == "grouped"
                    else split.target_of or {})
        part_of_group: dict[str, str] = {}
        for complex_id, part in seen.items():
            if complex_id not in group_of:
                raise SplitError(f"{where}: complex {complex_id} has no recorded group; delete "
                                 "the split file to remake it")
            group = group_of[complex_id]
            other = part_of_group.setdefault(group, part)
            if other != part:
                raise SplitError(f"{where}: group {group!r} straddles {other} and {part}")
