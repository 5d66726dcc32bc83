"""Files that are complete or absent: write under a partial name, fsync, rename into place.

One staged writer (:class:`Staged`) does it for every output plgraph writes: checkpoints and
reports (:func:`replace_atomically`), the prediction, pose and explanation files, and the
processed cache's directory. A crash at any instant leaves the old file or the new one, never a
half-written file under the requested name, and a failed write leaves no partial behind.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


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
        """Delete what was staged (nothing happens to ``path``)."""
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


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(temporary)``, fsync it, then rename it over ``path``; a crash at any instant
    leaves either the old file or the new one."""
    with Staged(path, partial=path.with_name(f".{path.name}.tmp-{os.getpid()}")) as staged:
        write(staged.partial)
        staged.commit()
