"""Reading input files and naming output files: text, bytes and lines (gzipped or not), with
errors that name the file, line and byte instead of an OSError's bare text."""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from contextlib import contextmanager
from pathlib import Path

from plgraph.errors import FeaturizationError, PlgraphError


def read_text(path: Path | str, error_type: type[PlgraphError] = FeaturizationError) -> str:
    """Read a text file (gzipped when named ``*.gz``) as UTF-8, failing with the file, line and
    byte of the first bad byte.

    Structure files are ASCII by specification; a stray byte usually means a corrupted copy, and a
    silent replacement character could land inside a coordinate column.
    """
    path = Path(path)
    raw = read_bytes(path, error_type)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise error_type(
            f"{path}: line {line}: byte 0x{raw[error.start]:02x} is not valid UTF-8 "
            "(the file is corrupted or in another encoding)"
        ) from None


def plain_suffix(path: Path | str) -> str:
    """The format suffix of ``path``, lower case, under a ``.gz``: ``x.sdf.gz`` -> ``.sdf``."""
    name = Path(path).name.lower().removesuffix(".gz")
    return Path(name).suffix


def plain_stem(path: Path | str) -> str:
    """The name of ``path`` without its format suffix and any ``.gz``: ``lib.sdf.gz`` -> ``lib``."""
    return Path(Path(path).name.removesuffix(".gz").removesuffix(".GZ")).stem


def file_safe(text: str, limit: int = 60) -> str:
    """``text`` as a file name: runs of anything but letters, digits, ``_.-`` become ``_``
    (series names hold ``|`` and ``/``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:limit] or "_"


@contextmanager
def reading(path: Path, error_type: type[PlgraphError] = FeaturizationError):
    """Inside, a missing, unreadable or damaged (cut-off gzip) ``path`` raises ``error_type``
    naming the file and what is wrong with it, instead of the OSError's bare text."""
    try:
        yield
    except FileNotFoundError:
        raise error_type(f"{path}: file not found") from None
    except IsADirectoryError:
        raise error_type(f"{path}: is a directory, not a file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise error_type(f"{path}: not a complete gzip file ({error}; a cut-off download?)"
                         ) from None
    except OSError as error:
        raise error_type(f"{path}: cannot be read ({error.strerror})") from None


def read_bytes(path: Path, error_type: type[PlgraphError] = FeaturizationError) -> bytes:
    """The bytes of ``path``, decompressed when it is named ``*.gz`` (libraries and PDB downloads
    come gzipped); a missing, unreadable or damaged file raises ``error_type`` naming it."""
    with reading(path, error_type):
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()


def iter_lines(path: Path, error_type: type[PlgraphError] = FeaturizationError):
    """The lines of ``path`` as bytes (with their line ends), one at a time, decompressed when
    it is named ``*.gz``: a library of any size is read without holding it in memory. Callers
    decode each record themselves, so one bad byte costs one record, not the file."""
    with reading(path, error_type):
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as handle:
            yield from handle


def sha256_of(path: Path) -> str:
    """The sha256 of the file's bytes (hex), read in 1 MiB blocks: a checkpoint's identity."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
