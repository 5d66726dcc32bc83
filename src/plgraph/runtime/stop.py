"""Stopping is a feature: Ctrl-C, SIGTERM and SIGUSR1 are honoured from the first line of an entry
point to its last, at points where stopping leaves nothing half-done.

A handler only records the signal (:data:`STOP`). Before the first optimizer step there is
nothing to save, so long phases call :meth:`StopRequests.check` at safe points (while building
the cache or waiting for its lock, after the resume load, the MLflow setup and the preflight,
between test batches, between prediction chunks) and it raises :class:`StopRequested`; their
``finally`` blocks and ``with`` statements clean up (no partial cache, no held lock, no pool
worker left). Under torchrun the ranks agree on it (:meth:`Collectives.agree
<plgraph.training.distributed.Collectives.agree>`). The training loop reads the same flag and
instead finishes its batch and writes ``INTERRUPTED.pt``. The entry point turns either into one
message and exit code 128 + signal (:func:`plgraph.cli.run_cli`).

This module imports nothing heavy, so an entry point installs the handlers before its own slow
imports.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)

# SIGUSR1 is what Slurm sends before the time limit (sbatch --signal=USR1@120).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
BEFORE_TRAINING = "stopping at the next safe point (nothing to save yet)"


class StopRequested(Exception):
    """A stop signal honoured at a safe point.

    Args:
        signal_number: the signal that asked for the stop.
        what: what was stopped, for the message ("while building the processed cache").
        resume: the command that goes on from here; the entry point fills it in when empty.
    """

    def __init__(self, signal_number: int, what: str, resume: str = ""):
        super().__init__(signal_number, what, resume)
        self.signal = signal.Signals(signal_number)
        self.what, self.resume = what, resume

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signal)

    def __str__(self) -> str:
        again = f" Resume with: {self.resume}" if self.resume else ""
        return f"{self.signal.name}: stopped {self.what}.{again}"


class StopRequests:
    """The process's stop flag and the handlers that set it.

    :meth:`install` may be nested (the entry point, then the trainer when it is used as a
    library); the outermost one installs the handlers, the matching :meth:`uninstall` restores
    the previous handlers and clears the flag. The first signal sets the flag; a second
    Ctrl-C raises KeyboardInterrupt at once (checkpoints and the cache are written atomically, so
    an abort in the middle of a write leaves the previous file intact).
    """

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        # What the process does about a stop now, for the handler's message.
        self.action = BEFORE_TRAINING
        self._previous: dict[int, object] = {}
        self._depth = 0

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def installed(self) -> bool:
        return self._depth > 0

    def install(self) -> StopRequests:
        if self._depth == 0:
            self.action = BEFORE_TRAINING
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        self._depth += 1
        return self

    def uninstall(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            for number, handler in self._previous.items():
                signal.signal(number, handler)
            self._previous.clear()
            self.signal = None  # answered by whoever installed them: nothing is pending outside

    def __enter__(self) -> StopRequests:
        return self.install()

    def __exit__(self, *exc_info) -> None:
        self.uninstall()

    @contextmanager
    def acting(self, action: str) -> Iterator[StopRequests]:
        """Within the block, a signal is answered by ``action`` (for the handler's message)."""
        previous, self.action = self.action, action
        try:
            yield self
        finally:
            self.action = previous

    def check(self, what: str) -> None:
        """Raise :class:`StopRequested` when a stop signal has arrived.

        Args:
            what: what a stop here cuts short, e.g. "while building the processed cache".
        """
        if self.signal is not None:
            raise StopRequested(self.signal, what)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal is not None and number == signal.SIGINT:
            raise KeyboardInterrupt("second Ctrl-C: aborting at once")
        self.signal = signal.Signals(number)
        log.warning("%s received: %s (Ctrl-C again aborts at once)", self.signal.name,
                    self.action)


STOP = StopRequests()


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Block the stop signals in this thread for the block.

    A process started meanwhile is born with them blocked (the mask survives fork and exec), so
    a Ctrl-C to the process group cannot kill a helper process while it is still starting,
    before it sets them aside; CPython starts its resource tracker the same way. A signal sent
    to this process meanwhile waits, and is handled when the block ends.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_stop_signals_in_worker(worker_id: int | None = None) -> None:
    """In a helper process (a DataLoader or featurization worker): Ctrl-C reaches the whole
    process group, but only the main process decides when to stop; a worker dying of it would
    crash the loader or the pool mid-batch, with a traceback of its own."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
