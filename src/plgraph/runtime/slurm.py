"""Slurm time limits: requeue the job once the trainer has honoured the SIGUSR1 that Slurm sends
before the limit (``--signal=USR1@<s>``, set by ``conf/hydra/launcher/slurm.yaml``).

By then ``checkpoints/INTERRUPTED.pt`` is written (or, for a signal before the first training step,
the run stopped at a safe point with nothing to save) and the run has ended with exit code
``128 + SIGUSR1``. ``scontrol requeue`` puts this job back in the queue under the same id
(PyTorch Lightning's SLURM auto-requeue does the same); Slurm ends the running instance and the
rerun, same command and same ``run_name``, resumes from the newest checkpoint. Only SIGUSR1
requeues: SIGTERM comes from scancel (stop) or preemption (Slurm requeues a ``--requeue`` job by
itself), SIGINT from a person.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess

log = logging.getLogger(__name__)

REQUEUE_SIGNAL = signal.SIGUSR1
# Bounded: a hung slurmctld must not use up the time left before Slurm kills the job.
SCONTROL_TIMEOUT_S = 60


def requeue_after_preemption(exit_code: int) -> bool:
    """Run ``scontrol requeue $SLURM_JOB_ID`` when the run stopped on SIGUSR1 inside a Slurm job.

    Call it after the run has ended and written its checkpoint; only the job's first process
    (``SLURM_PROCID`` and torchrun's ``RANK`` 0 or unset) requeues, once for the whole job.

    Args:
        exit_code: the run's exit code; ``128 + SIGUSR1`` after a stop on SIGUSR1.

    Returns:
        True when the job was requeued. False when there was nothing to do (another exit code,
        not in a Slurm job, not the first process) or when scontrol failed, which is logged as
        an error saying how to resume by hand.
    """
    job_id = os.environ.get("SLURM_JOB_ID")
    if exit_code != 128 + REQUEUE_SIGNAL or not job_id or not _is_first_process():
        return False
    command = ["scontrol", "requeue", job_id]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=SCONTROL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        reason = str(error)
    else:
        if done.returncode == 0:
            log.warning("%s before the Slurm time limit: requeued job %s (%s); it resumes from "
                        "its newest checkpoint when it starts again", REQUEUE_SIGNAL.name, job_id,
                        shlex.join(command))
            return True
        output = (done.stderr or done.stdout).strip() or "no output"
        reason = f"exit code {done.returncode}: {output}"
    log.error("could not requeue Slurm job %s: `%s` failed (%s). Its checkpoints are written: "
              "submit the same command again (same run_name) to resume. scontrol requeues only "
              "batch jobs submitted with --requeue (hydra/launcher=slurm sets it).",
              job_id, shlex.join(command), reason)
    return False


def _is_first_process() -> bool:
    """Rank 0 of the job: srun's SLURM_PROCID and torchrun's RANK are 0 or unset."""
    return all(os.environ.get(name, "0") == "0" for name in ("SLURM_PROCID", "RANK"))
