"""The public API, pinned: a change to it is a decision, made here on purpose."""

from __future__ import annotations

import calibration
import exporter
import runtime


def test_runtime_api():
    assert sorted(runtime.__all__) == sorted([
        "Bundle", "BundleBusyError", "BundleError", "BundleNotFoundError", "ChecksumError",
        "EdgeportError", "EngineError", "ExportError", "GraphLoadError", "InputError",
        "ManifestError", "MissingDependencyError", "TaskError", "UnsafePathError",
        "ValidationError", "__version__", "pipeline", "pipeline_from_bundle",
    ])


def test_exporter_and_calibration_api():
    assert sorted(exporter.__all__) == ["bundle_from_checkpoint", "export"]
    assert sorted(calibration.__all__) == sorted([
        "RECIPES", "compare_variants", "dim_ranges", "feeds_from_path", "load_samples",
        "perplexity_from_text", "variant_from_bundle",
        "variant_within_budget", "write_reports",
    ])
    assert sorted(calibration.RECIPES) == ["dynamic-int8", "fp16", "int4", "int8-weights", "llm",
                                           "optimize", "static-int8"]


def test_every_public_name_resolves():
    for module in (runtime, exporter, calibration):
        for name in module.__all__:
            assert getattr(module, name) is not None
