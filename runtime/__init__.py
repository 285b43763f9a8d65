"""edgeport's runtime: Hugging Face pipelines on exported bundles, without PyTorch.

>>> from runtime import pipeline                                     # doctest: +SKIP
>>> classify = pipeline("text-classification", model="bundle/")       # doctest: +SKIP
>>> classify("edgeport runs without torch")                           # doctest: +SKIP
[{'label': 'positive', 'score': 0.98}]

Never imports torch, transformers, optimum, ``exporter`` or ``calibration``.
"""

from .errors import (
    BundleBusyError,
    BundleError,
    BundleNotFoundError,
    ChecksumError,
    EdgeportError,
    EngineError,
    ExportError,
    GraphLoadError,
    InputError,
    ManifestError,
    MissingDependencyError,
    TaskError,
    UnsafePathError,
    ValidationError,
)
from .version import __version__

__all__ = [
    "BundleBusyError", "BundleError", "BundleNotFoundError", "ChecksumError", "EdgeportError",
    "EngineError", "ExportError", "GraphLoadError", "InputError", "ManifestError",
    "MissingDependencyError", "TaskError", "UnsafePathError", "ValidationError", "__version__",
]

from .bundle import Bundle  # noqa: E402
from .pipeline import pipeline, pipeline_from_bundle  # noqa: E402

__all__ += ["Bundle", "pipeline", "pipeline_from_bundle"]
