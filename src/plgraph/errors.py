"""The exceptions plgraph raises; each message names the object (file, line, complex) and rule."""

from __future__ import annotations


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


class NonFiniteLossError(PlgraphError):
    """The loss became NaN or infinite; training stops, the last good checkpoint stays."""


class DiskFullError(PlgraphError):
    """A write ran out of disk space (or quota); the file it was replacing is untouched."""
