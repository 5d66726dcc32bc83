"""Stopping is a feature: signals only set a flag, the training loop acts at a batch boundary."""

from __future__ import annotations

import logging
import signal
from types import FrameType

log = logging.getLogger(__name__)

# SIGUSR1 is what Slurm sends before the time limit (sbatch --signal=USR1@120).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class StopRequests:
    """Installs handlers for SIGINT, SIGTERM and SIGUSR1 for the duration of a ``with`` block.

    The first signal asks the loop to finish its batch, write ``INTERRUPTED.pt`` and exit. A second
    Ctrl-C raises KeyboardInterrupt at once; checkpoints are written atomically, so aborting in
    the middle of a save leaves the previous file intact.
    """

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> StopRequests:
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal is not None and number == signal.SIGINT:
            raise KeyboardInterrupt("second Ctrl-C: aborting at once")
        self.signal = signal.Signals(number)
        log.warning("%s received: finishing the current batch, then writing INTERRUPTED.pt "
                    "(Ctrl-C again aborts at once)", self.signal.name)


def ignore_stop_signals_in_worker(worker_id: int) -> None:
    """DataLoader worker init: Ctrl-C reaches the whole process group, but only the main process
    decides when to stop; a worker dying of it would crash the loader mid-batch."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
