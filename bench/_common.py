"""Helpers shared by the benchmarks: where the inputs are, their configs, timing, sizes.

Not a benchmark itself. The scripts beside it import it as ``_common`` (``python bench/x.py`` puts
``bench/`` first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf

from plgraph.config import PRECISIONS, DataConfig, ModelConfig
from plgraph.runtime.allocator import keep_freed_memory

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
# Beside the checkout by default; PLGRAPH_FEP names another copy (a GPU machine that receives the
# repository alone finds it where the copy was put, e.g. an ignored folder inside the checkout).
FEP = Path(os.environ.get("PLGRAPH_FEP") or REPO.parent / "shared" / "data" / "fep-benchmark")


def pocket_config(processed: Path, workers: int) -> DataConfig:
    """data/sample: 50 PDBbind complexes, pocket PDB files used as given."""
    return DataConfig(root=str(SAMPLE), layout="pdbbind", processed_dir=str(processed),
                      workers=workers)


def fep_config(root: Path, processed: Path, workers: int) -> DataConfig:
    """FEP+ benchmark (series layout): full protein PDB per system, the featurizer cuts pockets.

    Failures never abort a benchmark build: the first few systems alone hold more ligands without
    a label than the default ``max_failure_fraction`` allows.
    """
    return DataConfig(root=str(root), layout="series", processed_dir=str(processed),
                      workers=workers, max_failure_fraction=1.0)


def fep_systems() -> list[Path]:
    """Every system's ligand SDF, in the order ``read_series`` visits them."""
    if not FEP.is_dir():
        raise SystemExit(f"FEP benchmark not found at {FEP}")
    return sorted(p for p in FEP.rglob("*_ligands.sdf") if "processed" not in p.parts)


def fep_root(limit: int | None, scratch: Path) -> Path:
    """The FEP root, or a mirror of its first ``limit`` systems made of symlinks under ``scratch``.

    The mirror keeps the sub-folders, so complex ids and groups are the same as in the full set.
    """
    if limit is None:
        return FEP
    mirror = scratch / "fep-subset"
    for sdf in fep_systems()[:limit]:
        protein = sdf.with_name(sdf.name.removesuffix("_ligands.sdf") + "_protein.pdb")
        for source in (sdf, protein):
            link = mirror / source.relative_to(FEP)
            link.parent.mkdir(parents=True, exist_ok=True)
            if source.exists():
                link.symlink_to(source)
    return mirror


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--model`` and ``--default-allocator``, shared by the timing scripts."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="small",
                        help="a config name in conf/model/, or tiny (dry runs)")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's malloc as it is (main.py and predict.py tune it)")


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """``--precision``, as ``trainer.precision``: auto is bf16 on CUDA (fp16 without bf16), fp32
    on CPU."""
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="autocast of the training step, as trainer.precision (default auto)")


def apply_allocator_option(args: argparse.Namespace) -> None:
    """Tune glibc's malloc as main.py and predict.py do, unless ``--default-allocator``."""
    if not args.default_allocator:
        keep_freed_memory()


# Not a product config: the size of the tests' model, for dry runs (bench/gpu_check.sh --dry-run)
# that prove a benchmark still runs, at little cost, without measuring anything.
DRY_RUN_MODELS = {"tiny": ModelConfig(hidden_channels=16, num_layers=1, num_heads=2, num_rbf=8,
                                       lmax=1)}


def model_config(name: str) -> ModelConfig:
    """``conf/model/<name>.yaml`` as a ModelConfig, or a dry-run size (``tiny``)."""
    if name in DRY_RUN_MODELS:
        return DRY_RUN_MODELS[name]
    return ModelConfig(**OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" /
                                                                f"{name}.yaml")))


def timed(function: Callable[[], object]) -> tuple[float, object]:
    """Wall-clock seconds of one call, and its result."""
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def median_time(function: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall-clock seconds over ``repeats`` calls, and the last call's result."""
    seconds, result = [], None
    for _ in range(repeats):
        elapsed, result = timed(function)
        seconds.append(elapsed)
    return statistics.median(seconds), result


def max_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(who).ru_maxrss / 1024


def tree_bytes(path: Path) -> int:
    """Total size of the regular files under ``path``."""
    return sum((Path(folder) / name).stat().st_size
               for folder, _, names in os.walk(path) for name in names)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A plain, aligned text table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
