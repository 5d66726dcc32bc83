"""bf16 and fp16 on CPU: exact resume, the GradScaler's state and skipped steps, the NaN guard.

CPU autocast runs every op of the model in both precisions (tests/test_model.py checks the bf16
forward against fp32), so the mixed-precision paths of the trainer are proven here without a GPU.
Resume under bf16 and fp16 on CPU is bit-identical to the straight run (deterministic kernels, as
for fp32), so the comparisons are ``torch.equal``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal

import pytest
import torch
from conftest import TINY_MODEL

import plgraph.training.device as device_module
from plgraph.config import (
    AppConfig,
    TrackingConfig,
    TrainConfig,
)
from plgraph.errors import NonFiniteLossError
from plgraph.training.checkpoint import read_checkpoint
from plgraph.training.device import resolve_precision
from plgraph.training.run_dir import RunDirectory
from plgraph.training.trainer import Trainer, TrainingInterrupted

TINY = dataclasses.replace(TINY_MODEL, dropout=0.1)
INITIAL_SCALE = 65536.0  # torch.amp.GradScaler's default init_scale


@pytest.fixture(scope="module")
def prepared(twenty_prepared):
    """The session's 20 prepared complexes (conftest): 16 train, 4 batches of 4."""
    return twenty_prepared


def app_config(prepared, tmp_path, run_name: str, **trainer) -> AppConfig:
    settings = {"max_epochs": 1, "batch_size": 4, "warmup_steps": 2,
                "checkpoint_every_n_steps": 2, "device": "cpu", **trainer}
    return AppConfig(data=prepared[0], model=TINY, trainer=TrainConfig(**settings),
                     tracking=TrackingConfig(enabled=False),  # not what is tested here
                     run_name=run_name, output_root=str(tmp_path))


class Probe:
    """A forward hook on the trainer's model that acts at chosen training steps.

    It never acts at step 0, where the preflight's forward pass runs (before any resume; a stop
    there saves nothing), nor in evaluation (eval mode).

    Args:
        poison_grad_at: steps whose gradients become inf/NaN (the loss stays finite).
        nan_loss_at: steps whose predictions, hence loss, become NaN.
        stop_at: (step, batches seen) at whose forward pass a Ctrl-C arrives.
    """

    def __init__(self, trainer: Trainer, poison_grad_at=(), nan_loss_at=(), stop_at=None):
        self.trainer, self.stop_at = trainer, stop_at
        self.poison_grad_at, self.nan_loss_at = set(poison_grad_at), set(nan_loss_at)
        self.first_seen: dict | None = None  # the scaler and gradients at the first batch
        trainer.model.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        progress = self.trainer.progress
        step = progress.global_step
        if not module.training or step == 0:
            return output
        if self.first_seen is None:  # a resumed run: what the checkpoint restored
            self.first_seen = {"scaler": self.trainer.scaler.state_dict(),
                               "grads": {n: p.grad.clone() for n, p in
                                         module.named_parameters() if p.grad is not None}}
        if self.stop_at == (step, progress.batches_seen):
            os.kill(os.getpid(), signal.SIGINT)  # honoured after this batch
        if step in self.nan_loss_at:
            return output * math.nan
        if step in self.poison_grad_at:
            output.register_hook(lambda grad: grad * math.inf)
        return output


def fit(config: AppConfig, prepared, **probe) -> Probe:
    with RunDirectory(config.run_dir) as run:
        trainer = Trainer(config, prepared[1], run, "python main.py")
        watch = Probe(trainer, **probe)
        trainer.fit()
        return watch


def last(config: AppConfig, name: str = "last.pt") -> dict:
    return read_checkpoint(config.run_dir / "checkpoints" / name)


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_bf16_and_fp16_are_honoured_on_cpu_and_auto_stays_fp32():
    cpu = torch.device("cpu")
    assert resolve_precision("bf16", cpu) == (torch.bfloat16, False)
    assert resolve_precision("fp16", cpu) == (torch.float16, True)
    assert resolve_precision("auto", cpu) == (None, False)
    assert resolve_precision("fp32", cpu) == (None, False)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_resume_under_low_precision_on_cpu_matches_uninterrupted_run(prepared, tmp_path,
                                                                     precision):
    # Under fp16 an inf gradient at step 1 leaves the scaler at half its scale with a running
    # growth tracker: a resume that forgot the scaler's state would end with another one.
    poison = (1,) if precision == "fp16" else ()
    straight = app_config(prepared, tmp_path, "straight", max_epochs=2, precision=precision)
    fit(straight, prepared, poison_grad_at=poison)
    stopped = app_config(prepared, tmp_path, "stopped", max_epochs=2, precision=precision)
    with pytest.raises(TrainingInterrupted):
        fit(stopped, prepared, poison_grad_at=poison, stop_at=(5, 1))  # epoch 2, batch 2
    interrupted = last(stopped, "INTERRUPTED.pt")
    assert interrupted["progress"]["global_step"] == 6
    resumed = fit(stopped, prepared)
    ends = last(straight), last(stopped)
    assert_identical(ends[0]["model"], ends[1]["model"])
    assert_identical(ends[0]["optimizer"]["state"][0], ends[1]["optimizer"]["state"][0])
    if precision == "fp16":
        # 6 steps, the one at step 1 skipped: halved once, 4 clean steps since.
        assert interrupted["scaler"]["scale"] == INITIAL_SCALE / 2
        assert interrupted["scaler"]["_growth_tracker"] == 4
        assert resumed.first_seen["scaler"] == interrupted["scaler"]
        assert ends[1]["scaler"] == ends[0]["scaler"]
        assert ends[0]["scaler"]["_growth_tracker"] == 8 - 2
    else:
        assert interrupted["scaler"] == {}


def test_an_inf_gradient_under_fp16_is_skipped_and_training_goes_on(prepared, tmp_path, caplog):
    config = app_config(prepared, tmp_path, "skipped", precision="fp16")
    caplog.set_level(logging.INFO, logger="plgraph.training")
    fit(config, prepared, poison_grad_at=(1,))
    state = last(config)
    assert state["progress"]["global_step"] == 4 and (config.run_dir / "results.json").exists()
    assert state["scaler"]["scale"] == INITIAL_SCALE / 2
    assert state["scaler"]["_growth_tracker"] == 2
    assert int(state["optimizer"]["state"][0]["step"]) == 3  # AdamW took 3 of the 4 steps
    assert "step 1 skipped by the GradScaler (inf or NaN gradient); loss scale now 32768" in (
        caplog.text)
    assert all(torch.isfinite(p).all() for p in state["model"].values())


@pytest.mark.parametrize("precision", ["fp16", "fp32", "bf16"])
def test_a_nan_loss_is_skipped_under_fp16_and_stops_fp32_and_bf16(prepared, tmp_path, precision):
    config = app_config(prepared, tmp_path, precision, precision=precision)
    if precision != "fp16":  # no GradScaler: a NaN is a NaN at any scale
        with pytest.raises(NonFiniteLossError, match=r"non-finite training loss at step 1, "
                                                      r"epoch 1, batch 2; complexes in the batch"):
            fit(config, prepared, nan_loss_at=(1,))
        return
    fit(config, prepared, nan_loss_at=(1,))
    state = last(config)
    assert state["scaler"]["scale"] == INITIAL_SCALE / 2
    assert int(state["optimizer"]["state"][0]["step"]) == 3
    # The skipped batch adds nothing to the epoch's training loss, which stays finite.
    assert math.isfinite(state["history"][0]["train_loss"])


def test_an_fp16_run_non_finite_at_every_scale_stops_at_the_scale_floor(prepared, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(device_module, "MIN_LOSS_SCALE", INITIAL_SCALE / 3)  # below after 2
    config = app_config(prepared, tmp_path, "floor", precision="fp16")
    with pytest.raises(NonFiniteLossError, match=r"fp16: the loss scale fell to 16384 \(below "
                                                  r"21845.3\) at step 2, epoch 1"):
        fit(config, prepared, nan_loss_at=(1, 2, 3))


@pytest.mark.slow
def test_an_fp16_accumulation_resumed_under_fp32_gets_its_gradients_unscaled(prepared, tmp_path):
    fp16 = app_config(prepared, tmp_path, "switch", precision="fp16", grad_accumulation=2)
    with pytest.raises(TrainingInterrupted):
        fit(fp16, prepared, stop_at=(1, 2))  # the first batch of the second accumulation
    interrupted = last(fp16, "INTERRUPTED.pt")
    assert interrupted["progress"]["batches_seen"] == 3 and interrupted["grads"]
    fp32 = app_config(prepared, tmp_path, "switch", precision="fp32", grad_accumulation=2)
    restored = fit(fp32, prepared).first_seen["grads"]
    scale = interrupted["scaler"]["scale"]
    assert restored.keys() == interrupted["grads"].keys()
    for name, grad in interrupted["grads"].items():
        torch.testing.assert_close(restored[name], grad / scale, rtol=0, atol=0)
