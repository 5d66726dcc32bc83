"""Screening throughput of prediction: ligands/s for one protein and its multi-ligand SDF.

For each FEP benchmark system (one full protein PDB + one SDF of its ligands) the path of
``predict.py`` is timed in its three parts: reading the SDF, featurizing every ligand with the
training featurizer (the protein parsed once per system and the pocket cut from it) and the
model's batched forward pass. The model is a ``Trainer`` checkpoint of the chosen size written
before any training (throughput does not depend on the weights), loaded by ``Predictor.load`` as
``predict.py`` does. Finally ``predict.py`` itself runs on the largest system as a subprocess, so
the figure a user sees (interpreter start and imports included) is shown too.

Usage: ``python bench/predict_throughput.py [--device cpu|cuda] [--model small|large]
[--systems N] [--batch-size B]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from _common import (
    FEP,
    REPO,
    SAMPLE,
    add_run_options,
    apply_allocator_option,
    fep_systems,
    model_config,
    print_table,
)

from plgraph.config import (
    AppConfig,
    DataConfig,
    FeaturizeConfig,
    ModelConfig,
    SplitConfig,
    TrainConfig,
)
from plgraph.data import prepare_data
from plgraph.data.libraries import read_sdf_records
from plgraph.inference.inputs import featurize_all
from plgraph.inference.predictor import Predictor
from plgraph.training.run_dir import RunDirectory
from plgraph.training.trainer import Trainer


@dataclass
class SystemTiming:
    name: str
    ligands: int
    predicted: int
    read: float
    featurize: float
    model: float

    @property
    def total(self) -> float:
        return self.read + self.featurize + self.model


def write_checkpoint(model: ModelConfig, scratch: Path) -> Path:
    """An untrained model saved by the trainer itself (same format as a trained one)."""
    data = DataConfig(root=str(SAMPLE), processed_dir=str(scratch / "processed"), workers=1)
    prepared = prepare_data(data, FeaturizeConfig(), SplitConfig())
    app = AppConfig(data=data, model=model, trainer=TrainConfig(device="cpu"),
                    output_root=str(scratch / "outputs"), run_name="bench")
    with RunDirectory(app.run_dir) as run:
        return Trainer(app, prepared, run, "bench").save("best.pt")


def protein_of(ligands: Path) -> Path:
    return ligands.with_name(ligands.name.removesuffix("_ligands.sdf") + "_protein.pdb")


def screen(predictor: Predictor, ligands: Path, batch_size: int) -> SystemTiming:
    started = time.perf_counter()
    inputs = read_sdf_records(ligands, protein_of(ligands), ligands.stem, None, "pk",
                              require_labels=False)
    read_done = time.perf_counter()
    rows = list(featurize_all(inputs, predictor.featurize))
    featurize_done = time.perf_counter()
    graphs = [row.graph for row in rows if row.graph is not None]
    predictor.predict(graphs, batch_size)
    if predictor.device.type == "cuda":
        torch.cuda.synchronize()
    model_done = time.perf_counter()
    return SystemTiming(ligands.parent.name + "/" + ligands.stem.removesuffix("_ligands"),
                        len(rows), len(graphs), read_done - started,
                        featurize_done - read_done, model_done - featurize_done)


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:.1f}" if seconds > 0 else "-"


def report(timings: list[SystemTiming]) -> None:
    largest = max(timings, key=lambda t: t.ligands)
    ligands = sum(t.ligands for t in timings)
    predicted = sum(t.predicted for t in timings)
    totals = {part: sum(getattr(t, part) for t in timings)
              for part in ("read", "featurize", "model", "total")}
    rows = [[f"all {len(timings)} systems", str(ligands), str(predicted),
             *(f"{totals[p]:.2f}" for p in ("read", "featurize", "model", "total")),
             rate(predicted, totals["featurize"]), rate(predicted, totals["model"]),
             rate(ligands, totals["total"])],
            [f"largest: {largest.name}", str(largest.ligands), str(largest.predicted),
             *(f"{getattr(largest, p):.2f}" for p in ("read", "featurize", "model", "total")),
             rate(largest.predicted, largest.featurize), rate(largest.predicted, largest.model),
             rate(largest.ligands, largest.total)]]
    print_table(["systems", "records", "predicted", "read s", "featurize s", "model s", "total s",
                 "featurize lig/s", "model lig/s", "screen lig/s"], rows)


def run_predict_py(checkpoint: Path, ligands: Path, device: str, scratch: Path) -> None:
    """``predict.py`` as a user runs it, on one system: wall time including start-up."""
    command = [sys.executable, str(REPO / "predict.py"), f"checkpoint={checkpoint}",
               f"protein={protein_of(ligands)}", f"ligands={ligands}",
               f"output={scratch / 'preds.csv'}", f"device={device}"]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=scratch, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 1):  # 1: some record failed, which is reported, not fatal
        raise SystemExit(f"predict.py failed:\n{result.stderr[-2000:]}")
    rows = len((scratch / "preds.csv").read_text().splitlines()) - 1
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c",
                    "import plgraph.inference.predictor, plgraph.inference.inputs"],
                   check=True)
    imports = time.perf_counter() - started
    print(f"predict.py on {ligands.stem} ({rows} rows): {seconds:.2f} s wall, of which "
          f"{imports:.2f} s is interpreter start and imports; {rows / seconds:.1f} ligands/s "
          f"as a user sees it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser)
    parser.add_argument("--systems", type=int, default=None, help="only the first N systems")
    parser.add_argument("--batch-size", type=int, default=32, help="predict.py's batch_size")
    args = parser.parse_args()
    apply_allocator_option(args)
    model = model_config(args.model)
    systems = fep_systems()[:args.systems]
    print(f"device {args.device}, model {args.model}, batch size {args.batch_size}, "
          f"{len(systems)} FEP systems from {FEP}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        checkpoint = write_checkpoint(model, scratch)
        predictor = Predictor.load([checkpoint], torch.device(args.device))
        screen(predictor, systems[0], args.batch_size)  # warm-up: lazy imports, allocator
        timings = [screen(predictor, ligands, args.batch_size) for ligands in systems]
        report(timings)
        largest = max(timings, key=lambda t: t.ligands).name.split("/")
        run_predict_py(checkpoint, FEP / largest[0] / f"{largest[1]}_ligands.sdf", args.device,
                       scratch)


if __name__ == "__main__":
    main()
