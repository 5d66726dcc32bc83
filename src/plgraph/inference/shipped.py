"""The model that ships in the repository's ``models/``: exported, described, verified.

``python main.py experiment=shipped`` trains it; :func:`export` (``python -m
plgraph.inference.shipped export CHECKPOINT... DIRECTORY``) writes each checkpoint as an
inference-only file (:func:`plgraph.training.checkpoint.inference_state`: weights and the configs
to rebuild the model and its featurizer, no optimizer or random state) and the card's
machine-readable part, ``shipped.json`` (the files and their sha256, ``DATA_PROCESSING_VERSION``,
the command that trained them, the data, the date). ``models/README.md``, the human card, points
to it, so nothing there is edited by hand after an export.

predict.py falls back on it (:func:`shipped_checkpoints`) when it is given no checkpoint and finds
no run of the user's own; every file is checked against the sha256 in ``shipped.json`` first,
and one that differs is refused, so what predicts is what the card describes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import sys
from pathlib import Path

import torch

from plgraph.errors import PlgraphError
from plgraph.featurize import DATA_PROCESSING_VERSION
from plgraph.runtime.atomic import replace_atomically
from plgraph.runtime.files import sha256_of
from plgraph.training.checkpoint import (
    inference_state,
    read_checkpoint,
    require_compatible,
)

log = logging.getLogger(__name__)

MANIFEST = "shipped.json"
CARD = "README.md"
RECIPE = "python main.py experiment=shipped"
# models/ stays small enough for a git repository (issue 25: 10 MB in all).
MAX_BYTES = 10 * 1024 * 1024


class ShippedModelError(PlgraphError):
    """The shipped model's files do not match its card (``shipped.json``)."""


def read_manifest(directory: Path) -> dict | None:
    """``directory/shipped.json``, or None where no model has been shipped there."""
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        files = [(entry["file"], entry["sha256"]) for entry in manifest["files"]]
    except (ValueError, KeyError, TypeError) as error:
        raise ShippedModelError(f"{path} is not a shipped-model card ({type(error).__name__}: "
                                f"{error}); restore it with git checkout {directory}") from None
    if not files:
        raise ShippedModelError(f"{path} lists no model file; restore it with git checkout "
                                f"{directory}")
    return manifest


def shipped_checkpoints(directory: Path) -> tuple[list[Path], dict] | None:
    """The shipped model's files in ``directory``, each verified against the sha256 that
    ``shipped.json`` gives it, and the manifest; None where nothing is shipped there.

    Raises:
        ShippedModelError: a file is missing or its bytes differ from the card's.
    """
    manifest = read_manifest(directory)
    if manifest is None:
        return None
    paths = []
    for entry in manifest["files"]:
        path = directory / entry["file"]
        if not path.is_file():
            raise ShippedModelError(f"{directory / MANIFEST} names the shipped model {path}, "
                                    f"which is missing: re-clone the repository or run git "
                                    f"checkout {directory}")
        found = sha256_of(path)
        if found != entry["sha256"]:
            raise ShippedModelError(
                f"refusing the shipped model {path}: its sha256 is {found}, its card "
                f"({directory / MANIFEST}) says {entry['sha256']}; the file was changed or "
                f"damaged. Restore it with git checkout {directory} (or re-clone the "
                "repository), or give checkpoint=PATH to use another model")
        paths.append(path)
    return paths, manifest


def describe(manifest: dict) -> str:
    """What the shipped model was trained on, in a few words, for predict.py's first line."""
    return manifest.get("trained_on") or "see the card"


def export(checkpoints: list[Path], directory: Path, recipe: str = RECIPE) -> dict:
    """Write ``checkpoints`` (one model, or the members of an ensemble) into ``directory`` as
    inference-only files named by content (``plgraph-v<DATA_PROCESSING_VERSION>-<sha>.pt``),
    and ``shipped.json``; the files of an earlier export named there are removed. Returns the
    manifest.

    Args:
        checkpoints: training checkpoints (``best.pt``) of this code's DATA_PROCESSING_VERSION.
        directory: the models directory (the repository's ``models/``).
        recipe: the one command that trained them.

    Raises:
        CheckpointError: a checkpoint is unreadable or of another DATA_PROCESSING_VERSION.
        ShippedModelError: the files would take more than 10 MB, or the members were
            featurized differently.
    """
    if not checkpoints:
        raise ShippedModelError("export needs at least one checkpoint")
    states = []
    for path in checkpoints:
        state = read_checkpoint(path, inference=True)
        require_compatible(state, path, "predict")
        states.append(inference_state(state))
    if any(s["featurize_config"] != states[0]["featurize_config"] for s in states):
        raise ShippedModelError("the checkpoints were featurized differently: an ensemble "
                                "shares one featurization")
    directory.mkdir(parents=True, exist_ok=True)
    earlier = read_manifest(directory)
    files = [_write_model(state, directory) for state in states]
    total = sum(entry["bytes"] for entry in files)
    if total > MAX_BYTES:
        for entry in files:
            (directory / entry["file"]).unlink()
        raise ShippedModelError(f"the exported model takes {total / 1e6:.1f} MB, more than the "
                                f"{MAX_BYTES / 1e6:.1f} MB a repository's models/ may hold")
    records = [_training_record(path, state)
               for path, state in zip(checkpoints, states, strict=True)]
    sizes = records[0].get("sizes") or {}
    trained_on = _trained_on(states[0]) + (
        f", {sizes['train']} train / {sizes['val']} validation complexes"
        if "train" in sizes and "val" in sizes else "")
    manifest = {
        "files": files,
        "data_processing_version": DATA_PROCESSING_VERSION,
        "recipe": recipe,
        "trained_on": trained_on,
        "training_ligand_heavy_atoms": states[0].get("ligand_heavy_atoms"),
        "sources": [{"checkpoint": str(path.absolute()), "kind": state.get("source_kind"),
                     "split_fingerprint": state.get("split_fingerprint"),
                     **record, "provenance": state.get("provenance")}
                    for path, state, record in zip(checkpoints, states, records, strict=True)],
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "card": CARD,
    }
    text = json.dumps(manifest, indent=1, default=str) + "\n"
    replace_atomically(directory / MANIFEST, lambda temporary: temporary.write_text(text))
    kept = {entry["file"] for entry in files}
    for entry in (earlier or {}).get("files", []):
        if entry["file"] not in kept and (directory / entry["file"]).is_file():
            (directory / entry["file"]).unlink()
    return manifest


def _write_model(state: dict, directory: Path) -> dict:
    """One inference-only file in ``directory``, named by its content; its card entry."""
    staging = directory / f".export-{id(state)}.pt"

    def write(temporary: Path) -> None:
        torch.save(state, temporary)
        read_checkpoint(temporary, inference=True)  # what predict.py will read

    replace_atomically(staging, write)
    digest = sha256_of(staging)
    name = f"plgraph-v{DATA_PROCESSING_VERSION}-{digest[:12]}.pt"
    staging.replace(directory / name)
    return {"file": name, "sha256": digest, "bytes": (directory / name).stat().st_size}


def _trained_on(state: dict) -> str:
    """The data sources and the split's name from the run's config."""
    config = state.get("config") or {}
    data, split = config.get("data", {}), config.get("split", {})
    sources = [s.get("name") or s.get("root") for s in data.get("sources") or []]
    names = " + ".join(sources) if sources else str(data.get("root", "?"))
    return f"{names}, split {split.get('name', '?')} ({split.get('strategy', '?')})"


def _training_record(path: Path, state: dict) -> dict:
    """The epoch the checkpoint was saved at and its validation figures (the history's last
    row: for ``best.pt``, the best epoch), and the split's sizes where the run's results.json
    lies beside its checkpoints/."""
    history = state.get("history") or []
    last = history[-1] if history else {}
    record = {"epoch": last.get("epoch"),
              "validation": {k.removeprefix("val_"): v for k, v in last.items()
                             if k.startswith("val_")}}
    results = path.absolute().parent.parent / "results.json"
    if results.is_file():
        with contextlib.suppress(ValueError):  # a damaged one only costs the card its sizes
            record["sizes"] = json.loads(results.read_text()).get("sizes")
    return record


def main(argv: list[str] | None = None) -> int:
    """``python -m plgraph.inference.shipped export CHECKPOINT... DIRECTORY``; the exit code
    (2 and the reason on a refused checkpoint)."""
    parser = argparse.ArgumentParser(prog="python -m plgraph.inference.shipped",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("export", help="write checkpoints into a models directory")
    command.add_argument("paths", nargs="+", type=Path,
                         help="one or more checkpoints (an ensemble), then the directory")
    command.add_argument("--recipe", default=RECIPE, help="the command that trained them")
    args = parser.parse_args(argv)
    if len(args.paths) < 2:
        parser.error("give at least one checkpoint and the models directory")
    *checkpoints, directory = args.paths
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        manifest = export(checkpoints, directory, args.recipe)
    except PlgraphError as error:
        log.error("%s", error)
        return 2
    for entry in manifest["files"]:
        log.info("%s: %d bytes, sha256 %s", directory / entry["file"], entry["bytes"],
                 entry["sha256"])
    log.info("the card's figures: %s (DATA_PROCESSING_VERSION %d; %s quotes it); commit the "
             "model with git add %s", directory / MANIFEST, manifest["data_processing_version"],
             directory / CARD, directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
