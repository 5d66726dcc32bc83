"""Mixed precision: bf16 and fp16 training with an interrupt and a resume, against fp32.

For each precision, on complexes of ``data/sample``:

1. Forward deviation: the same freshly initialized model on the same batch with and without
   autocast; the largest difference of the standardized predictions from fp32's.
2. A straight run of ``--epochs`` epochs through ``Trainer.fit`` (wall time; peak device memory
   on CUDA).
3. The same run stopped by SIGUSR1 (Slurm's warning) halfway, at the forward pass of its
   middle step (``INTERRUPTED.pt`` after that step), then resumed by a new ``Trainer``: whether
   it ends with the straight run's parameters bit for bit (the largest difference otherwise),
   and, for fp16, whether both end with the same GradScaler state (scale, growth tracker).
4. Drift from fp32: the largest difference of the final parameters and of the test predictions
   (pK) from the fp32 straight run's.

The trainer's own defaults apply otherwise (deterministic kernels on CPU, off on CUDA). Everything
goes to a temporary directory, deleted at the end.

Usage: ``python bench/precision_resume.py [--device cpu|cuda] [--model small|large|tiny]
[--precisions fp32,bf16,fp16] [--epochs 2] [--complexes 24] [--batch-size 4]``
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import signal
import tempfile
import time
from pathlib import Path

import torch
from _common import SAMPLE, add_run_options, apply_allocator_option, model_config, print_table
from torch_geometric.loader import DataLoader

from plgraph.config import (
    AppConfig,
    DataConfig,
    FeaturizeConfig,
    SplitConfig,
    TrackingConfig,
    TrainConfig,
)
from plgraph.data import PreparedData, prepare_data
from plgraph.model import PLGraphNet
from plgraph.training.checkpoint import read_checkpoint
from plgraph.training.device import autocast, resolve_precision
from plgraph.training.run_dir import RunDirectory
from plgraph.training.trainer import Trainer, TrainingInterrupted


def sample_subset(count: int, scratch: Path) -> Path:
    """The first ``count`` complexes of data/sample (3qlb, which fails, left out) as symlinks."""
    root = scratch / "sample"
    root.mkdir(parents=True)
    labels = dict(line.split(",") for line in (SAMPLE / "labels.csv").read_text().split()[1:])
    ids = sorted(p.name for p in SAMPLE.iterdir() if p.is_dir() and p.name in labels
                 and p.name != "3qlb")[:count]
    for complex_id in ids:
        (root / complex_id).symlink_to(SAMPLE / complex_id)
    (root / "labels.csv").write_text("pdbid,pK\n" + "".join(f"{i},{labels[i]}\n" for i in ids))
    return root


def app_config(args: argparse.Namespace, data: DataConfig, precision: str, scratch: Path,
               run_name: str) -> AppConfig:
    trainer = TrainConfig(max_epochs=args.epochs, batch_size=args.batch_size, warmup_steps=2,
                          checkpoint_every_n_steps=2, device=args.device, precision=precision)
    return AppConfig(data=data, model=model_config(args.model), trainer=trainer,
                     tracking=TrackingConfig(enabled=False),
                     output_root=str(scratch / "outputs"), run_name=run_name)


def fit(config: AppConfig, prepared: PreparedData, stop_at: int | None = None) -> dict:
    """``Trainer.fit``; with ``stop_at``, SIGUSR1 arrives during the forward pass of that step
    (a training pass: not the preflight, which runs at step 0, nor an evaluation)."""
    with RunDirectory(config.run_dir) as run:
        trainer = Trainer(config, prepared, run, "bench")

        def signal_at_step(module, inputs, output):
            if module.training and trainer.progress.global_step == stop_at:
                os.kill(os.getpid(), signal.SIGUSR1)  # honoured after this batch

        if stop_at:
            trainer.model.register_forward_hook(signal_at_step)
        return trainer.fit()


def fit_interrupted(config: AppConfig, prepared: PreparedData) -> int:
    """Stop the run halfway with SIGUSR1; the step at which it stopped."""
    steps = math.ceil(len(prepared.part("train")) / config.trainer.batch_size)
    try:
        fit(config, prepared, stop_at=max(1, steps * config.trainer.max_epochs // 2))
    except TrainingInterrupted:
        stopped = config.run_dir / "checkpoints" / "INTERRUPTED.pt"
        return read_checkpoint(stopped)["progress"]["global_step"]
    raise SystemExit(f"{config.run_name}: the run ended before SIGUSR1 stopped it")


def final_state(config: AppConfig) -> dict:
    return read_checkpoint(config.run_dir / "checkpoints" / "last.pt")


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_predictions(config: AppConfig) -> dict[str, float]:
    with open(config.run_dir / "test_predictions.csv") as handle:
        return {row["id"]: float(row["predicted_pk"]) for row in csv.DictReader(handle)}


def forward_deviation(args: argparse.Namespace, prepared: PreparedData, precision: str) -> float:
    """Largest |autocast - fp32| of one batch's standardized predictions, same weights."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = PLGraphNet(model_config(args.model)).to(device).eval()
    batch = next(iter(DataLoader(prepared.part("train"), batch_size=args.batch_size)))
    batch = batch.to(device)
    dtype, _ = resolve_precision(precision, device)
    with torch.no_grad():
        reference = model(batch)
        with autocast(device, dtype):
            low = model(batch).float()
    return (low - reference).abs().max().item()


def measure(args: argparse.Namespace, prepared: PreparedData, data: DataConfig,
            precision: str, scratch: Path) -> dict:
    straight = app_config(args, data, precision, scratch, f"{precision}-straight")
    cuda = torch.device(args.device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    fit(straight, prepared)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    stopped = app_config(args, data, precision, scratch, f"{precision}-stopped")
    stopped_at = fit_interrupted(stopped, prepared)
    fit(stopped, prepared)
    a, b = final_state(straight), final_state(stopped)
    return {"precision": precision, "seconds": seconds, "peak_mib": peak,
            "steps": a["progress"]["global_step"], "stopped_at": stopped_at,
            "identical": all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]),
            "resume_difference": max_difference(a["model"], b["model"]),
            "scaler": (a["scaler"], b["scaler"]), "model": a["model"],
            "predictions": test_predictions(straight),
            "forward_deviation": forward_deviation(args, prepared, precision)}


def max_prediction_difference(result: dict, reference: dict) -> float:
    predicted, expected = result["predictions"], reference["predictions"]
    return max(abs(predicted[i] - expected[i]) for i in predicted)


def report(results: list[dict]) -> None:
    reference = next((r for r in results if r["precision"] == "fp32"), None)
    rows = []
    for r in results:
        scale_a, scale_b = r["scaler"]
        scaler = ("-" if not scale_a else
                  f"{scale_a['scale']:g}/{scale_a['_growth_tracker']} "
                  f"{'=' if scale_a == scale_b else '!='} {scale_b['scale']:g}/"
                  f"{scale_b['_growth_tracker']}")
        drift = pk_drift = "-"
        if reference is not None and r is not reference:
            drift = f"{max_difference(r['model'], reference['model']):.2e}"
            pk_drift = f"{max_prediction_difference(r, reference):.3f}"
        rows.append([r["precision"], f"{r['forward_deviation']:.2e}", f"{r['seconds']:.1f}",
                     "-" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}",
                     f"{r['stopped_at']}/{r['steps']}",
                     "yes" if r["identical"] else f"no ({r['resume_difference']:.2e})",
                     scaler, drift, pk_drift])
    print_table(["precision", "forward |dev| vs fp32", "straight run s", "peak device MiB",
                 "stopped at step", "resume bit-identical", "scaler scale/tracker straight vs "
                 "resumed", "final params |dev| vs fp32", "test pK |dev| vs fp32"], rows)
    exact = all(r["identical"] for r in results)
    print(f"resume bit-identical for every precision: {'yes' if exact else 'no'}")
    for r in results:
        if r["peak_mib"] is not None:
            print(f"peak GPU memory, {r['precision']} training: {r['peak_mib']:,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser)
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--complexes", type=int, default=24,
                        help="complexes of data/sample used (80/10/10 split)")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    apply_allocator_option(args)
    print(f"device {args.device}, model {args.model}, {args.complexes} complexes, batch "
          f"{args.batch_size}, {args.epochs} epochs, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        data = DataConfig(root=str(sample_subset(args.complexes, scratch)),
                          processed_dir=str(scratch / "processed"), workers=1)
        prepared = prepare_data(data, FeaturizeConfig(), SplitConfig())
        results = [measure(args, prepared, data, precision, scratch)
                   for precision in args.precisions.split(",")]
        report(results)


if __name__ == "__main__":
    main()
