"""The exceptions plgraph raises; each message names the object (file, line, complex) and rule."""

from __future__ import annotations

from pathlib import Path


class PlgraphError(Exception):
    """Base of every error plgraph raises on purpose."""


class FeaturizationError(PlgraphError):
    """One complex (or one ligand record) cannot be turned into graphs; others go on."""


class InputError(PlgraphError):
    """An input file (index, label CSV, manifest, id list) is wrong; the message names file:line."""


class CacheError(PlgraphError):
    """The processed cache is missing, stale, built by other code, or incomplete."""


class SplitError(PlgraphError):
    """A saved split does not match the config or the cache, or a split cannot be made."""


class TooManyFailuresError(PlgraphError):
    """More complexes failed featurization than ``data.max_failure_fraction`` allows."""


def read_text(path: Path | str, error_type: type[PlgraphError] = FeaturizationError) -> str:
    """Read a text file as UTF-8, failing with the file, line and byte of the first bad byte.

    Structure files are ASCII by specification; a stray byte usually means a corrupted copy, and a
    silent replacement character could land inside a coordinate column.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error_type(f"{path}: file not found") from None
    except OSError as error:
        raise error_type(f"{path}: cannot be read ({error.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise error_type(
            f"{path}: line {line}: byte 0x{raw[error.start]:02x} is not valid UTF-8 "
            "(the file is corrupted or in another encoding)"
        ) from None
