"""Files that are complete or absent: write under a partial name, fsync, rename into place.

One staged writer (:class:`Staged`) does it for every output plgraph writes: checkpoints and
reports (:func:`replace_atomically`), the prediction, pose and explanation files, and the
processed cache's directory. A crash at any instant leaves the old file or the new one, never a
half-written file under the requested name, and a failed write leaves no partial behind. A full
disk (or quota) is reported as :class:`~plgraph.errors.DiskFullError` naming the file, what the
write needed and what is free (:func:`reporting_full_disk`).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from plgraph.errors import DiskFullError

FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (the directory entry itself is data)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


class Staged:
    """A file (or, with ``directory=True``, a directory) written at ``partial`` and moved onto
    ``path`` by :meth:`commit`, or deleted by :meth:`discard`. Used as a context manager, an
    exception discards it.

    Args:
        path: where the complete output belongs.
        directory: stage a directory (created now); its files are fsynced on commit.
        partial: the staging name (default ``.<name>.partial-<pid>`` beside ``path``).
    """

    def __init__(self, path: Path, directory: bool = False, partial: Path | None = None):
        self.path, self.directory = Path(path), directory
        self.partial = partial or self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self.discarded = 0
        if directory:
            self.partial.mkdir(parents=True)

    def commit(self, replace_directory: bool = False) -> None:
        """fsync the staged content, rename it onto ``path``, fsync the parent directory. A
        staged directory replaces an existing one only with ``replace_directory``; otherwise
        the rename fails rather than delete what is there."""
        if self.directory:
            for file in self.partial.iterdir():
                if file.is_file():
                    fsync_file(file)
            fsync_dir(self.partial)
            if replace_directory and self.path.exists():
                shutil.rmtree(self.path)
            os.rename(self.partial, self.path)
        else:
            fsync_file(self.partial)
            os.replace(self.partial, self.path)
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        """Delete what was staged (nothing happens to ``path``); ``discarded`` keeps its size,
        for the message of a full disk."""
        self.discarded = max(self.discarded, _size(self.partial))
        if self.directory:
            shutil.rmtree(self.partial, ignore_errors=True)
        else:
            self.partial.unlink(missing_ok=True)

    def finish(self, complete: bool) -> None:
        """:meth:`commit` a complete output, :meth:`discard` an incomplete one."""
        if complete:
            self.commit()
        else:
            self.discard()

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is not None:
            self.discard()


def replace_atomically(path: Path, write: Callable[[Path], None], needed: int | None = None
                       ) -> None:
    """``write(temporary)``, fsync it, then rename it over ``path``; a crash at any instant
    leaves either the old file or the new one, and a full disk raises DiskFullError (the
    temporary deleted). ``needed``: the bytes the file will take, where the caller knows."""
    staged = Staged(path, partial=path.with_name(f".{path.name}.tmp-{os.getpid()}"))
    with reporting_full_disk(staged, needed), staged:
        write(staged.partial)
        staged.commit()


@contextmanager
def reporting_full_disk(staged: Staged, needed: int | None = None) -> Iterator[None]:
    """Inside, a full disk (ENOSPC) or quota (EDQUOT) raises DiskFullError naming the staged
    output, the space the write needed (``needed``, or at least what was staged before the disk
    filled) and the space free, instead of the OSError's bare "No space left on device".
    Discards ``staged`` first where the error came from outside its own context."""
    try:
        yield
    except OSError as error:
        if error.errno not in FULL_DISK:
            raise
        staged.discard()
        message = full_disk_message(staged.path, needed, staged.discarded, error)
        raise DiskFullError(message) from None


def full_disk_message(path: Path, needed: int | None, written: int, error: OSError) -> str:
    free = shutil.disk_usage(_existing(path)).free
    need = (f"needs about {megabytes(needed)}" if needed else
            f"needs more than the {megabytes(written)} written before the disk filled")
    return (f"{path}: {error.strerror} while writing it; the write {need}, and "
            f"{megabytes(free)} is free on that filesystem. Nothing was replaced: the previous "
            f"{path.name}, if any, is untouched. Free some space (or point the output "
            "elsewhere) and run the same command again.")


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def _size(path: Path) -> int:
    """Bytes under ``path`` (a file or a directory; 0 where it is gone)."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.is_file() else 0


def _existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path
