"""One writer at a time: an advisory ``flock`` on a lock file that names its holder.

The kernel releases a ``flock`` when its process dies, ``kill -9`` included, so a crashed holder
never leaves a stale lock behind; the holder line in the file is only for the message.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plgraph.errors import DiskFullError, PlgraphError
from plgraph.runtime.atomic import FULL_DISK, megabytes
from plgraph.runtime.stop import STOP

log = logging.getLogger(__name__)
WAIT_POLL_S = 0.2  # a blocking flock would sit through a stop signal (it retries after EINTR)


class LockedError(PlgraphError):
    """Another live process holds the lock."""


@contextmanager
def exclusive_lock(path: Path, what: str, wait: bool) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block.

    Args:
        path: the lock file (created if missing, never deleted: deleting it would let a waiting
            process and a new one lock two different files).
        what: what the lock protects, for messages.
        wait: wait for the holder to finish (True) or raise :class:`LockedError` at once.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with _reporting_full_disk(path, what):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "another process"
            if not wait:
                raise LockedError(f"{what} is in use by {holder} (lock file {path}); wait for it "
                                  "to finish or stop it") from None
            log.warning("waiting for %s, held by %s (lock file %s)", what, holder, path)
            _wait_for_lock(fd, what)
        with _reporting_full_disk(path, what):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


@contextmanager
def _reporting_full_disk(path: Path, what: str) -> Iterator[None]:
    """A disk too full for the lock file's one line is DiskFullError, before any work: the
    first checkpoint or shard would not fit either."""
    try:
        yield
    except OSError as error:
        if error.errno not in FULL_DISK:
            raise
        free = shutil.disk_usage(path.parent).free
        raise DiskFullError(
            f"{path}: {error.strerror} while writing the lock file of {what}; {megabytes(free)} "
            "is free on that filesystem. Nothing was started and nothing was changed: free some "
            "space (or point the output elsewhere) and run the same command again.") from None


def _wait_for_lock(fd: int, what: str) -> None:
    """Poll until the lock is ours; a stop signal ends the wait (the holder goes on)."""
    while True:
        STOP.check(f"while waiting for {what}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(WAIT_POLL_S)
