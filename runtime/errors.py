"""The runtime's exceptions. Every error edgeport raises on purpose is one of these.

    EdgeportError                  base: catch this to catch everything edgeport raises on purpose
    ├── BundleError                a bundle on disk is unusable
    │   ├── BundleNotFoundError      no such directory, or a file the bundle needs is missing
    │   ├── ManifestError            manifest.json is missing, unreadable or of an unknown schema
    │   ├── ChecksumError            a graph file's sha256 differs from the manifest's
    │   ├── GraphLoadError           ONNX Runtime cannot load a graph file (corrupt, truncated)
    │   └── BundleBusyError          another process holds the bundle's writer lock
    ├── UnsafePathError (also ValueError)  a path a bundle or checkpoint file names is absolute,
    │                                has a '..' part, or a symlinked folder leads it outside
    ├── TaskError                  unknown task, or a task the bundle does not serve
    ├── InputError (also ValueError)  bad user input: wrong type, empty, too long, bad argument
    ├── EngineError                an engine failed to run, or was fed wrongly
    ├── ExportError                the exporter could not make a bundle (unknown architecture, ...)
    │   └── ValidationError          the ONNX graph disagrees with PyTorch beyond tolerance
    └── MissingDependencyError     an optional extra is not installed (also ImportError)

Messages say what is wrong, then a ``Note:`` with what was expected or how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgeportError(Exception):
    """Base of every error edgeport raises on purpose."""


class BundleError(EdgeportError):
    """A bundle on disk cannot be used."""


class BundleNotFoundError(BundleError, FileNotFoundError):
    """The bundle directory, or a file it needs, does not exist."""


class ManifestError(BundleError):
    """manifest.json is missing, unreadable, or of a schema this runtime does not know."""


class ChecksumError(BundleError):
    """A file's sha256 does not match the one recorded in the manifest."""


class GraphLoadError(BundleError):
    """A graph file cannot be loaded (corrupt or truncated ONNX)."""


class BundleBusyError(BundleError):
    """Another process is writing the bundle (it holds the writer lock)."""


class UnsafePathError(EdgeportError, ValueError):
    """A path named in a bundle or checkpoint file would leave its folder, or is malformed."""


class TaskError(EdgeportError, ValueError):
    """An unknown task, or a task the bundle does not serve."""


class InputError(EdgeportError, ValueError):
    """Bad user input: wrong type, wrong value, unknown argument."""


class EngineError(EdgeportError):
    """An engine failed to run, or was given a feed that does not fit its graph."""


class ExportError(EdgeportError):
    """The exporter could not make a bundle."""


class ValidationError(ExportError):
    """The exported graph disagrees with the PyTorch reference beyond tolerance."""


class MissingDependencyError(EdgeportError, ImportError):
    """An optional dependency (an extra) is not installed."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ``Note:`` sentence listing the valid choices, with the closest one first when close.

    >>> did_you_mean("text-clasification", ["fill-mask", "text-classification"])
    "Did you mean 'text-classification'? Note: known values are: fill-mask, text-classification."
    """
    choices = sorted(choices)
    close = difflib.get_close_matches(str(name), choices, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    return f"{hint}Note: known values are: {', '.join(choices)}."
