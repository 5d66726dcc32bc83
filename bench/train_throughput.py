"""Training throughput of plgraph's model against PyG's ViSNet, and the cost of checkpoints.

1. Forward + backward + AdamW step, in complexes/s, of ``PLGraphNet`` and of PyG's ``ViSNet`` at
   equal size (hidden channels, layers, heads, radial basis functions, lmax, cutoff), on the same
   batches of ``data/sample``, in one run. PyG's ViSNet builds its edges with ``radius_graph``,
   which needs pyg-lib or torch-cluster (not installable here); a stand-in hands it exactly the
   edges of our featurization (ligand bonds, protein contacts, interactions both ways), so both
   networks pass messages over identical graphs.
   Both forward passes run under the autocast of ``--precision`` (as ``trainer.precision``:
   auto is bf16 on CUDA, fp32 on CPU; fp16 here without a GradScaler, whose unscale and inf check
   per step are not timed). On CUDA, the peak GPU memory of one step of each network.
2. Checkpoint save time (atomic write plus read-back) against the time of the training steps
   between two saves at default settings (``trainer.checkpoint_every_n_steps``): the share of
   training time spent saving.

Usage: ``python bench/train_throughput.py [--device cpu|cuda] [--steps N] [--model small|large]
[--precision auto|fp32|bf16|fp16] [--rounds 3] [--warmup 3] [--batch-size 8]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch_geometric.nn.models.visnet as pyg_visnet_module
from _common import (
    REPO,
    add_precision_option,
    add_run_options,
    apply_allocator_option,
    model_config,
)
from torch_geometric.loader import DataLoader

from plgraph.config import (
    AppConfig,
    DataConfig,
    FeaturizeConfig,
    ModelConfig,
    SplitConfig,
    TrainConfig,
)
from plgraph.data import prepare_data
from plgraph.model import PLGraphNet
from plgraph.training.device import autocast, resolve_precision
from plgraph.training.run_dir import RunDirectory
from plgraph.training.trainer import Trainer

_current_edges: dict[str, torch.Tensor] = {}


def standin_radius_graph(pos, r, batch=None, loop=False, max_num_neighbors=32):
    """The edges of our featurization in place of a radius search (same graph for both)."""
    return _current_edges["edge_index"]


def homogeneous(batch) -> dict[str, torch.Tensor]:
    """Ligand nodes first, then protein nodes; all three edge types, interactions both ways."""
    n_ligand = batch["ligand"].num_nodes
    bond = batch["ligand", "bond", "ligand"].edge_index
    contact = batch["protein", "contact", "protein"].edge_index + n_ligand
    src, dst = batch["ligand", "interacts", "protein"].edge_index
    interaction = torch.stack([src, dst + n_ligand])
    edge_index = torch.cat([bond, contact, interaction, interaction.flip(0)], dim=1)
    return {"z": torch.cat([batch["ligand"].x[:, 0], batch["protein"].x[:, 0]]),
            "pos": torch.cat([batch["ligand"].pos, batch["protein"].pos]),
            "batch": torch.cat([batch["ligand"].batch, batch["protein"].batch]),
            "edge_index": edge_index}


def time_steps(step, batches: list, steps: int, device: torch.device, warmup: int = 3) -> float:
    """Seconds per complex over ``steps`` steps after ``warmup`` warm-up steps."""
    for batch in batches[:warmup]:
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started, complexes = time.perf_counter(), 0
    for i in range(steps):
        batch = batches[i % len(batches)]
        step(batch)
        complexes += batch.num_graphs
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / complexes


def ours_step(model, optimizer, amp):
    def step(batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        with amp():
            prediction = model(batch)
        prediction.float().square().mean().backward()
        optimizer.step()
    return step


def pyg_step(model, optimizer, amp):
    def step(batch) -> None:
        graph = homogeneous(batch)
        _current_edges["edge_index"] = graph["edge_index"]
        optimizer.zero_grad(set_to_none=True)
        with amp():
            energy, _ = model(graph["z"], graph["pos"], graph["batch"])
        energy.float().square().mean().backward()
        optimizer.step()
    return step


def peak_memory_mib(step, batch, device: torch.device) -> float | None:
    """Peak GPU memory of one training step (None off CUDA)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    step(batch)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(device) / 2**20


def pyg_visnet(config: ModelConfig) -> torch.nn.Module:
    pyg_visnet_module.radius_graph = standin_radius_graph
    return pyg_visnet_module.ViSNet(lmax=config.lmax, num_heads=config.num_heads,
                             num_layers=config.num_layers,
                             hidden_channels=config.hidden_channels, num_rbf=config.num_rbf,
                             cutoff=config.cutoff, max_num_neighbors=10_000)


_SCRATCH = Path(tempfile.mkdtemp())


def prepared_config() -> DataConfig:
    return DataConfig(root=str(REPO / "data" / "sample"), processed_dir=str(_SCRATCH / "p"),
                      workers=1)


def load_batches(prepared, device: torch.device, batch_size: int) -> list:
    cache = prepared.cache
    graphs = [cache[i] for i in range(len(cache))]
    return [b.to(device) for b in DataLoader(graphs, batch_size=batch_size)]


def compare_models(config: ModelConfig, batches: list, args: argparse.Namespace,
                   device: torch.device) -> None:
    """Alternating rounds, so a busy neighbour on a shared machine slows both alike."""
    dtype, _ = resolve_precision(args.precision, device)
    print(f"autocast: {dtype or 'none (fp32)'}")

    def amp():
        return autocast(device, dtype)

    models = {"plgraph PLGraphNet": (PLGraphNet(config).to(device), ours_step),
              "PyG ViSNet": (pyg_visnet(config).to(device), pyg_step)}
    seconds: dict[str, list[float]] = {name: [] for name in models}
    steps_of = {name: make(model, torch.optim.AdamW(model.parameters(), lr=1e-4), amp)
                for name, (model, make) in models.items()}
    for _ in range(args.rounds):
        for name, step in steps_of.items():
            seconds[name].append(time_steps(step, batches, args.steps, device, args.warmup))
    largest = max(batches, key=lambda b: b.num_edges)
    for name, (model, _) in models.items():
        parameters = sum(p.numel() for p in model.parameters())
        peak = peak_memory_mib(steps_of[name], largest, device)
        memory = "" if peak is None else f"  peak GPU memory {peak:,.0f} MiB (largest batch)"
        print(f"{name:20s} {parameters:>10,d} parameters  {1 / min(seconds[name]):8.1f} "
              f"complexes/s (best of {args.rounds} rounds){memory}")
    ratio = min(seconds["PyG ViSNet"]) / min(seconds["plgraph PLGraphNet"])
    print(f"speed ratio plgraph / PyG ViSNet: {ratio:.2f} (>= 1 means not slower)")
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)  # what the trainer does on CPU by default
        model, make = models["plgraph PLGraphNet"]
        step = make(model, torch.optim.AdamW(model.parameters(), lr=1e-4), amp)
        deterministic = min(time_steps(step, batches, args.steps, device, args.warmup)
                            for _ in range(args.rounds))
        torch.use_deterministic_algorithms(False)
        print(f"plgraph PLGraphNet with deterministic kernels (trainer default on CPU): "
              f"{1 / deterministic:.1f} complexes/s")


def checkpoint_share(config: ModelConfig, prepared, device: torch.device,
                     args: argparse.Namespace) -> None:
    """Trainer.save (the full state, atomic write, fsync, read-back) against the training steps
    between two saves at the default trainer.checkpoint_every_n_steps."""
    app = AppConfig(data=prepared_config(), model=config,
                    trainer=TrainConfig(device=device.type, precision=args.precision,
                                        batch_size=args.batch_size),
                    output_root=tempfile.mkdtemp(), run_name="bench")
    with RunDirectory(app.run_dir) as run:
        trainer = Trainer(app, prepared, run, "bench")
        batches = list(DataLoader(prepared.part("train"), batch_size=app.trainer.batch_size))
        per_complex = time_steps(ours_step(trainer.model, trainer.optimizer,
                                           lambda: autocast(device, trainer.amp_dtype)),
                                 [b.to(device) for b in batches], args.steps, device,
                                 args.warmup)
        trainer.save("last.pt")
        started = time.perf_counter()
        for _ in range(5):
            path = trainer.save("last.pt")
        save_seconds = (time.perf_counter() - started) / 5
    every = app.trainer.checkpoint_every_n_steps
    steps_seconds = per_complex * app.trainer.batch_size * every
    share = save_seconds / (save_seconds + steps_seconds)
    print(f"checkpoint: {path.stat().st_size / 2**20:.2f} MiB, Trainer.save (atomic + read-back) "
          f"{save_seconds * 1e3:.1f} ms; {every} steps take {steps_seconds:.2f} s; share of "
          f"training time {share:.2%} (target < 2%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser)
    add_precision_option(parser)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (best shown)")
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    args = parser.parse_args()
    apply_allocator_option(args)
    device = torch.device(args.device)
    config = model_config(args.model)
    batch_size = args.batch_size
    print(f"device {device}, model {args.model} ({config}), batch size {batch_size}, "
          f"precision {args.precision}, torch {torch.__version__}")
    torch.manual_seed(0)
    prepared = prepare_data(prepared_config(), FeaturizeConfig(), SplitConfig())
    batches = load_batches(prepared, device, batch_size)
    compare_models(config, batches, args, device)
    checkpoint_share(config, prepared, device, args)


if __name__ == "__main__":
    main()
