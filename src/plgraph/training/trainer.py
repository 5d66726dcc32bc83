"""The training loop: ``Trainer.fit()`` with checkpoints, signals, SAVE_NOW and exact resume.

Exactness rests on three things: the epoch order is a function of (seed, epoch); every DataLoader
gets its own generator, so creating one never draws from the global RNG; and a checkpoint holds
every RNG state, the gradients of an unfinished accumulation and the running epoch loss.

Under ``torchrun`` every rank runs this loop on its share of each epoch; rank 0 alone evaluates
and writes, and the ranks agree after every batch on whether to save or stop
(:mod:`plgraph.training.distributed`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from plgraph.config import AppConfig
from plgraph.data import UNCUT_TRAIN, PreparedData
from plgraph.errors import NonFiniteLossError, PlgraphError
from plgraph.featurize.complex import DATA_PROCESSING_VERSION
from plgraph.featurize.decoys import with_decoys
from plgraph.model import PLGraphNet
from plgraph.runtime.stop import STOP, StopRequested, StopRequests
from plgraph.training import batches as batches_module
from plgraph.training import init_from, reports
from plgraph.training.anchor import start_new_model
from plgraph.training.augment import jitter_positions
from plgraph.training.batches import EpochPlan
from plgraph.training.checkpoint import (
    FoundCheckpoint,
    TrainingParts,
    adapt_to_world_size,
    capture_rng,
    find_latest_checkpoint,
    prune_periodic,
    read_checkpoint,
    require_compatible,
    restore_rng,
    restore_training_state,
    save_checkpoint,
    training_state,
)
from plgraph.training.device import (
    autocast,
    check_loss_scale,
    precision_name,
    resolve_device,
    resolve_precision,
    scaled_step,
    seed_everything,
    set_determinism,
)
from plgraph.training.distributed import (
    SINGLE_PROCESS,
    Collectives,
    Ranks,
)
from plgraph.training.metrics import monitored, score
from plgraph.training.objective import check_series, decoy_margin_loss, training_loss
from plgraph.training.run_dir import RunDirectory, check_config_change
from plgraph.training.schedule import learning_rate
from plgraph.training.state import Progress
from plgraph.training.tracking import Tracker, run_params

log = logging.getLogger(__name__)


# A stop before the loop cuts nothing short: the checkpoints are as the last session left them.
NOTHING_TO_SAVE = "before the first training step, so nothing needed saving"
IN_THE_LOOP = "finishing the current batch, then writing INTERRUPTED.pt"
IN_THE_TEST = "stopping the test evaluation at its next batch"
TESTING = ("during the test evaluation of best.pt; training is complete and saved, the next run "
           "only evaluates")


class TrainingInterrupted(StopRequested):
    """A stop signal was honoured in the loop: INTERRUPTED.pt is written, the run can resume."""


class Trainer:
    """Trains a :class:`PLGraphNet` on the train part of ``data`` inside ``run``.

    Args:
        config: the whole typed config.
        data: the verified cache and split.
        run: the locked run directory.
        resume_command: the command line that resumes this run, printed on interruption.
        ranks: this process's rank under torchrun (the process group already started).
    """

    def __init__(self, config: AppConfig, data: PreparedData, run: RunDirectory,
                 resume_command: str, ranks: Ranks = SINGLE_PROCESS):
        self.config, self.cfg, self.run = config, config.trainer, run
        self.resume_command, self.ranks = resume_command, ranks
        self.device = resolve_device(self.cfg.device, ranks.local_rank)
        self.comm = Collectives(ranks, self.device)
        self.amp_dtype, use_scaler = resolve_precision(self.cfg.precision, self.device)
        self.deterministic = set_determinism(self.cfg.deterministic, self.device)
        seed_everything(config.seed)
        self.model = PLGraphNet(config.model).to(self.device)
        # Gradients are all-reduced on every backward (no ``no_sync`` during accumulation), so
        # they are the same on every rank at any batch: rank 0's are the checkpoint's, for any
        # world size. A ligand-only model leaves the protein embeddings without gradients.
        self.net = (DistributedDataParallel(self.model,
                                            find_unused_parameters=not config.model.use_protein)
                    if ranks.enabled else self.model)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr,
                                           weight_decay=self.cfg.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.data = data
        self.parts = {name: data.part(name) for name in ("train", "val", "test")}
        self.ligand_size_range = data.ligand_size_range("train")  # predict.py's domain check
        self.series_of = data.series_of
        self.train_series = [self.series_of[i] for i in self.parts["train"].ids]
        self.plan = EpochPlan(self.cfg, config.seed, self.train_series, ranks)
        self.steps_per_epoch = self.plan.steps_per_epoch()  # asked every step: computed once
        self.parts_to_save = TrainingParts(self.model, self.optimizer, self.scaler)
        self.origin: dict | None = None  # the checkpoint init_from started this run from
        self.progress = Progress()
        self.history: list[dict] = []
        self._session_start = time.monotonic()
        self._stepped = False
        self.tracker = Tracker(config.tracking, run.path, config.run_name, {}, active=False)
        # A ligand-only model cannot tell a decoy from its pose (it reads no placement): an
        # experiment's ligand-only baseline trains without them.
        self.decoys = self.cfg.decoy_weight > 0 and config.model.use_protein
        data.require_train_and_val()
        check_series(self.cfg, {part: [(i, self.series_of[i]) for i in self.parts[part].ids]
                                for part in ("train", "val")},
                     config.experiment.min_series_size)

    # --- the loop -------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to the end (or to a stop signal); resume first from the newest valid checkpoint.

        Returns:
            The content of ``results.json``.
        Raises:
            TrainingInterrupted: after writing INTERRUPTED.pt on SIGINT / SIGTERM / SIGUSR1.
            StopRequested: on those signals before the loop or during the test evaluation, at
                the next safe point, where nothing needs saving (:mod:`plgraph.runtime.stop`).
        """
        # The entry point installed the handlers already; a library call installs them here.
        with STOP as stop:
            self.comm.agree(f"after the preflight, {NOTHING_TO_SAVE}", self.preflight)
            found = self.comm.agree(f"after looking for a checkpoint to resume from, "
                                    f"{NOTHING_TO_SAVE}", self.start)
            finished = reports.finished_results(self.run.path, self.progress, self.cfg)
            if finished is not None:
                return finished
            self.tracker = self.comm.agree("while setting up MLflow tracking", lambda: Tracker(
                self.config.tracking, self.run.path, self.config.run_name,
                run_params(dataclasses.asdict(self.config), self.data.split.fingerprint,
                           self.ranks.world_size, str(self.device),
                           precision_name(self.amp_dtype), DATA_PROCESSING_VERSION),
                resume=found is not None, active=self.ranks.is_main),
                check=False)
            with self.tracker, stop.acting(IN_THE_LOOP):
                # Inside: a stop here ends the MLflow run as KILLED, not RUNNING forever.
                self.comm.agree(f"after setting up MLflow tracking, {NOTHING_TO_SAVE}")
                while not self.progress.finished_by(self.cfg):
                    if signal_number := self._train_epoch(stop):
                        self._interrupt(signal_number)
                    self._end_epoch()
                with stop.acting(IN_THE_TEST):
                    return self._finish()

    def start(self) -> FoundCheckpoint | None:
        """Resume from the newest valid checkpoint, or start a new run (standardization,
        anchor or ``init_from``); the checkpoint resumed from, or None."""
        found = find_latest_checkpoint(self.run.checkpoints)
        if found is not None:
            self._restore(found)
        else:
            self._start_new()
        return found

    def _series_fit_data(self):
        """``model.anchor=vina_descriptors``'s fit data: every train complex, those a cap left
        out of training too (``UNCUT_TRAIN``); None for another anchor."""
        if self.model.config.anchor != "vina_descriptors":
            return None
        return self.data.series_fit_data(UNCUT_TRAIN)

    def _start_new(self) -> None:
        if self.config.init_from:
            self.origin = init_from.initialize_from(self.model, Path(self.config.init_from))
        else:
            start_new_model(self.model, [self.data.label_of[i] for i in self.parts["train"].ids],
                            self.data.ligand_sizes("train"),
                            self.data.vina_terms("train") if self.model.config.uses_vina
                            else None,
                            self.data.ligand_descriptors("train")
                            if self.model.config.uses_descriptors else None,
                            self._series_fit_data())
        log.info("starting run %s: %d train / %d val / %d test complexes, %d steps per epoch, "
                 "device %s, precision %s, %d process%s", self.run.path,
                 *(len(p) for p in self.parts.values()), self.steps_per_epoch, self.device,
                 precision_name(self.amp_dtype), self.ranks.world_size,
                 "es" if self.ranks.enabled else "")

    def _train_epoch(self, stop: StopRequests) -> int:
        """Train the rest of the current epoch; the number of a stop signal received by any
        rank, or 0."""
        batches = self.epoch_batches()
        self.model.train()
        remaining = batches[self.progress.batches_seen:]
        bar = tqdm(total=len(batches), initial=self.progress.batches_seen, unit="batch",
                   desc=f"epoch {self.progress.epoch + 1}/{self.cfg.max_epochs}",
                   mininterval=1.0, dynamic_ncols=True, disable=not self.ranks.is_main)
        started, graphs = time.monotonic(), 0
        for batch in self.loader("train", remaining, self.progress.epoch):
            loss = self.train_step(batch, len(batches))
            graphs += batch.num_graphs
            rate = graphs / max(time.monotonic() - started, 1e-9)
            bar.set_postfix(loss=f"{loss:.3f}", complexes_s=f"{rate:.1f}")
            bar.update()
            if signal_number := self._after_batch(stop):
                bar.close()
                return signal_number
        bar.close()
        return 0

    def train_step(self, batch, batches_in_epoch: int) -> float:
        """Forward, loss and backward on one batch; an optimizer step when it completes an
        accumulation group. The batch's loss."""
        seen, accumulation = self.progress.batches_seen, self.cfg.grad_accumulation
        group_start = seen - seen % accumulation
        group_size = min(accumulation, batches_in_epoch - group_start)
        graphs, ids = batch.num_graphs, list(batch.complex_id)
        batch = self.training_graphs(batch)
        with autocast(self.device, self.amp_dtype):
            prediction = self.net(batch).float()
        target = (batch.y[:graphs].float() - self.model.target_mean) / self.model.target_std
        loss = training_loss(self.cfg.objective, prediction[:graphs], target,
                             [self.series_of[i] for i in ids],
                             self.cfg.absolute_weight, self.cfg.relative_loss)
        if self.decoys:
            loss = loss + self.cfg.decoy_weight * decoy_margin_loss(
                prediction[:graphs], prediction[graphs:],
                self.cfg.decoy_margin / self.model.target_std)
        finite = bool(torch.isfinite(loss))
        # Under fp16 a non-finite loss is the GradScaler's: its gradients are non-finite too, so
        # the step is skipped and the scale halved (device.check_loss_scale). Otherwise agreed
        # before backward: a rank that stopped alone would leave the others waiting in DDP's
        # all-reduce.
        if not finite and self.scaler.is_enabled():
            log.info("fp16: non-finite loss at step %d (complexes %s); the GradScaler skips "
                     "this step", self.progress.global_step, ids)
        elif self.comm.max_over_ranks(int(not finite))[0]:
            where = (f"complexes in the batch: {ids}" if not finite else
                     f"on another rank than rank {self.ranks.rank}")
            raise NonFiniteLossError(
                f"non-finite training loss at step {self.progress.global_step}, epoch "
                f"{self.progress.epoch + 1}, batch {seen + 1}; {where}. Nothing was saved from "
                f"this step: the last good checkpoint stays in {self.run.checkpoints}. Lower "
                "trainer.lr or check these complexes.")
        self.scaler.scale(loss / group_size).backward()
        self.progress.batches_seen += 1
        if finite:  # a batch of a skipped fp16 step adds nothing to the epoch's loss
            self.progress.epoch_loss_sum += loss.item() * graphs
            self.progress.epoch_graphs += graphs
        self._stepped = self.progress.batches_seen == group_start + group_size
        if self._stepped:
            self._optimizer_step()
        return loss.item()

    def training_graphs(self, batch):
        """``batch`` as the network trains on it: followed by a decoy of each complex under
        ``trainer.decoy_weight`` when the model reads the protein (graph ``i + batch.num_graphs``
        is complex ``i``'s; built on the CPU from its generator, which the checkpoints save),
        moved to the device, every position jittered under ``trainer.coordinate_noise``."""
        if self.decoys:
            batch = with_decoys(batch, self.cfg.decoy_rotation, self.cfg.decoy_shift,
                                self.config.featurize.interaction_cutoff)
        return jitter_positions(batch.to(self.device), self.cfg.coordinate_noise)

    def _optimizer_step(self) -> None:
        lr = learning_rate(self.cfg, self.progress.global_step,
                           self.steps_per_epoch * self.cfg.max_epochs,
                           self.progress.plateau_scale)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        taken = scaled_step(self.scaler, self.optimizer, self.model.parameters(),
                            self.cfg.grad_clip)
        self.optimizer.zero_grad(set_to_none=True)
        if not taken:
            check_loss_scale(self.scaler, self.progress, self.run.checkpoints)
        self.progress.global_step += 1  # a skipped step still moves the schedule, as in torch.amp

    def _after_batch(self, stop: StopRequests) -> int:
        """Scheduled and requested checkpoints; the agreed stop signal number, or 0."""
        step = self.progress.global_step
        if self._stepped and step % self.cfg.checkpoint_every_n_steps == 0:
            self.save("last.pt")
        if self._stepped and self.cfg.periodic_every_n_steps and self.cfg.keep_periodic and (
                step % self.cfg.periodic_every_n_steps == 0):
            self.save(f"step_{step:08d}.pt")
            prune_periodic(self.run.checkpoints, self.cfg.keep_periodic)
        flag = self.run.save_now_request() if self.ranks.is_main else None
        save_now, signal_number = self.comm.max_over_ranks(int(flag is not None),
                                                           int(stop.signal or 0))
        if save_now:
            path = self.save("last.pt")
            if flag is not None:  # only now: its disappearance says the checkpoint is durable
                self.run.served_save_now(flag)
            log.info("SAVE_NOW.flag: wrote %s (step %d, epoch %d, batch %d) and removed the "
                     "flag", path, step, self.progress.epoch + 1, self.progress.batches_seen)
        return signal_number

    def _interrupt(self, signal_number: int) -> None:
        path = self.save("INTERRUPTED.pt")
        self.tracker.close("KILLED")
        raise TrainingInterrupted(
            signal_number, f"after step {self.progress.global_step} (epoch "
            f"{self.progress.epoch + 1}, batch {self.progress.batches_seen}); wrote {path}",
            self.resume_command)

    def _end_epoch(self) -> None:
        validation = self.comm.from_main(self.evaluate("val")["metrics"]
                                         if self.ranks.is_main else None)
        self.comm.collect_epoch_loss(self.progress)
        progress = self.progress
        improved = progress.record_validation(monitored(self.cfg.monitor, validation), self.cfg)
        self.history.append({
            "epoch": progress.epoch + 1, "step": progress.global_step,
            "train_loss": progress.epoch_loss_sum / max(progress.epoch_graphs, 1),
            **{f"val_{k}": v for k, v in validation.items()},
            "lr": self.optimizer.param_groups[0]["lr"], "wall_seconds": self._wall_seconds()})
        progress.next_epoch()
        if improved:
            self.save("best.pt")
        self.save("last.pt")
        if not self.ranks.is_main:
            return
        reports.write_epoch_files(self.history, self.run.path)
        self.tracker.log_epoch(self.history[-1], step=self.history[-1]["epoch"])
        reports.log_epoch(self.history[-1], improved)

    def _finish(self) -> dict:
        # check=False: a signal after the last test batch has nothing left to stop.
        results = self.comm.agree(TESTING, lambda: self.test_best_checkpoint() if self.ranks.is_main
                                  else None, check=False)
        return self.comm.from_main(results)

    def test_best_checkpoint(self) -> dict:
        """Evaluate ``best.pt`` on the test part and write the run's results (rank 0)."""
        best_path = self.run.checkpoints / "best.pt"
        if not best_path.exists():
            raise PlgraphError(f"no best.pt in {self.run.checkpoints}: the validation "
                               f"{self.cfg.monitor} was never finite; check the validation "
                               "complexes and trainer.lr")
        best = read_checkpoint(best_path)
        self.model.load_state_dict(best["model"])
        test = self.evaluate("test", stoppable=True)
        results = reports.results(
            self.run.path, self.cfg, self.progress, self.history, test["metrics"],
            wall_seconds=self._wall_seconds(),
            sizes={name: len(part) for name, part in self.parts.items()},
            device=self.device, precision=precision_name(self.amp_dtype),
            world_size=self.ranks.world_size, split=self.data.split, origin=self.origin)
        reports.write_test_files(results, test, self.run.path)
        self.tracker.log_results(results, self.run.path / "results.json")
        reports.log_finished(results)
        return reports.json_safe(results)  # what a finished run's results.json gives back

    # --- evaluation and preflight ---------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, part: str, stoppable: bool = False) -> dict:
        """Predicted and measured pK of a split part, and their metrics (eval mode).

        ``stoppable``: a stop signal ends it between batches (StopRequested). Only for the test
        evaluation after the loop; the validation inside the loop stops at the loop's batch
        boundary, after it, when every rank can.
        """
        batches = batches_module.in_order(len(self.parts[part]), self.cfg.batch_size)
        self.model.eval()
        predicted, measured, ids = [], [], []
        for batch in self.loader(part, batches, epoch=0):
            if stoppable:
                STOP.check(TESTING)
            batch = batch.to(self.device)
            with autocast(self.device, self.amp_dtype):
                predicted.append(self.model.predict_pk(batch).float().cpu())
            measured.append(batch.y.float().cpu())
            ids += list(batch.complex_id)
        self.model.train()
        predicted_np = torch.cat(predicted).numpy() if predicted else np.zeros(0)
        measured_np = torch.cat(measured).numpy() if measured else np.zeros(0)
        series = [self.series_of[i] for i in ids]
        metrics = score(predicted_np, measured_np, series if all(series) else None,
                        self.config.experiment.min_series_size)  # the layouts that know series
        return {"ids": ids, "predicted": predicted_np, "measured": measured_np,
                "metrics": metrics}

    def preflight(self) -> None:
        """One forward and backward pass on a real batch, before any hour is spent. Leaves the
        random state, buffers and gradients as they were, so it cannot perturb a resume."""
        rng = capture_rng()
        buffers = {name: b.clone() for name, b in self.model.named_buffers()}
        first = self.epoch_batches()[0]
        batch = next(iter(self.loader("train", [first], epoch=0)))
        try:
            with autocast(self.device, self.amp_dtype):
                prediction = self.model(self.training_graphs(batch))
            prediction.float().sum().backward()
        except Exception as error:
            raise PlgraphError(f"preflight failed on a real batch ({list(batch.complex_id)}): "
                               f"{type(error).__name__}: {error}") from error
        finally:
            self.model.zero_grad(set_to_none=True)
            self.model.load_state_dict(buffers, strict=False)
            restore_rng(rng)
        if not torch.isfinite(prediction).all():
            raise PlgraphError(f"preflight: non-finite prediction on {list(batch.complex_id)}")
        log.info("preflight passed: forward + backward on %d complexes%s", batch.num_graphs,
                 " and their decoys" if self.decoys else "")

    # --- checkpoints ----------------------------------------------------------------------
    def save(self, name: str) -> Path:
        """Write the complete training state to ``checkpoints/<name>`` atomically.

        Under torchrun every rank calls it (it gathers every rank's RNG state), rank 0 writes, and
        no rank goes on before the file is in place."""
        path = self.run.checkpoints / name
        rng_by_rank = self.comm.gather(capture_rng())
        self.comm.collect_epoch_loss(self.progress)
        self.progress.wall_seconds = self._wall_seconds()
        self._session_start = time.monotonic()
        state = training_state(name.removesuffix(".pt"), self.parts_to_save, self.progress,
                               self.history, rng_by_rank, self.ranks.world_size, self.config,
                               self.data.split.fingerprint, self.ligand_size_range,
                               self.origin)
        if self.ranks.is_main:
            save_checkpoint(state, path)
            self.tracker.log_checkpoint(path, "periodic" if name.startswith("step_")
                                        else name.removesuffix(".pt"))
        self.comm.barrier()
        return path

    def _restore(self, found: FoundCheckpoint) -> None:
        state, path = found.state, found.path
        require_compatible(state, path, "resume", self.data.split.fingerprint)
        changes = check_config_change(state["config"], dataclasses.asdict(self.config),
                                      mid_epoch=state["progress"]["batches_seen"] > 0)
        for line in changes:
            log.warning("resuming with a changed config: %s (takes effect from step %d)", line,
                        state["progress"]["global_step"])
        progress = restore_training_state(state, path, self.parts_to_save, self.device,
                                          self.cfg.weight_decay)
        self.progress, self.history = progress, list(state["history"])
        self.origin = state.get("init_from")
        if adapt_to_world_size(progress, state.get("world_size", 1), self.ranks.world_size,
                               self.cfg.batch_size, self.cfg.grad_accumulation, path):
            self.model.zero_grad(set_to_none=True)  # a partial accumulation's: it no longer fits
        if not self.ranks.is_main:  # rank 0 carries the epoch's loss sum over all ranks
            progress.epoch_loss_sum, progress.epoch_graphs = 0.0, 0
        rng_by_rank = state.get("rng_by_rank") or [state["rng"]]
        # last: nothing after this may draw random numbers
        restore_rng(rng_by_rank[self.ranks.rank % len(rng_by_rank)])
        log.info("resuming from %s: step %d, epoch %d, batch %d", path, progress.global_step,
                 progress.epoch + 1, progress.batches_seen)

    # --- helpers --------------------------------------------------------------------------
    def loader(self, part: str, batches: list[list[int]], epoch: int):
        """The trainer's DataLoader over ``batches`` of a split part (:mod:`batches`)."""
        return batches_module.loader(self.parts[part], batches, self.config.seed, epoch,
                                     self.cfg.loader_workers, self.device)

    def epoch_batches(self) -> list[list[int]]:
        """This rank's batches of the epoch in progress."""
        return self.plan.epoch_batches(self.progress.epoch)

    def _wall_seconds(self) -> float:
        return self.progress.wall_seconds + time.monotonic() - self._session_start
