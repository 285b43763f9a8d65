"""``mobile_from_bundle``: everything ``edgeport mobile BUNDLE -o OUT`` writes, in one folder
that appears whole (staged beside OUT, renamed into place; ``overwrite`` swaps it in).

    OUT/model.ort                          the variant's graph in ORT format (CPU-optimized)
    OUT/model.required_operators.config    its operators, for a custom minimal build
    OUT/model_fixed.onnx, model_fixed.ort  with --shapes: the fixed-shape graph for NNAPI/Core ML
    OUT/model_e2e.onnx, model_e2e.ort      pre- and postprocessing inside (mobile.e2e), where the
                                           task has a builder
    OUT/mobile_report.json, .md            EP coverage, sizes, first-inference times
    OUT/README.md, OUT/examples/           Kotlin, Swift and JavaScript that load the models

>>> mobile_from_bundle("bundle", "out", shapes=["batch=1", "sequence=128"])  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from runtime.bundle import Bundle, check_target, staged_directory
from runtime.errors import ExportError, InputError, MissingDependencyError

from . import convert
from .report import ep_coverage, report_markdown

# model.ort must give the bundle graph's outputs: ORT-format conversion only re-saves the
# optimized graph, so anything beyond float rounding of fused kernels is a bug.
ORT_TOLERANCE = 1e-4


def extensions_library() -> str:
    """The path of onnxruntime-extensions' custom-op library; a MissingDependencyError naming
    the ``mobile`` extra when the package is not installed."""
    try:
        from onnxruntime_extensions import get_library_path
    except ImportError as exc:
        raise MissingDependencyError(
            f"edgeport mobile needs onnxruntime-extensions ({exc}). Note: install the mobile "
            "extra with `pip install 'edgeport[mobile]'`.") from None
    return get_library_path()


def generative_families() -> tuple[str, ...]:
    from runtime.generation.onnx_model import FAMILY_GRAPHS

    return tuple(FAMILY_GRAPHS)


def check_supported(bundle: Bundle) -> None:
    """An InputError for a bundle edgeport mobile cannot serve: a generative one (its generate
    loop lives in Python), or one of several graphs."""
    from .e2e import e2e_builders

    supported = ", ".join(sorted(e2e_builders())) or "none yet"
    family = bundle.manifest.get("family")
    generative = family in generative_families()
    if generative or len(bundle.graphs) != 1 or "model" not in bundle.graphs:
        why = ("whose generate loop an app would have to rewrite" if generative
               else "whose graphs an app would have to chain itself")
        raise InputError(
            f"edgeport mobile converts bundles of one graph that a single call answers; this "
            f"bundle runs {bundle.task} ({family} family, graphs: {', '.join(bundle.graphs)}), "
            f"{why}. Note: end-to-end graphs exist for {supported}; other single-graph tasks "
            "get model.ort and the report."
            + (" For on-device generation use onnxruntime-genai." if generative else ""))


def mobile_from_bundle(bundle_path, out, *, variant: str = "fp32", shapes: Sequence[str] = (),
                       overwrite: bool = False, say: Callable[[str], None] | None = None) -> dict:
    """Write the mobile folder ``out`` from ``variant`` of the bundle; return the report."""
    say = say or (lambda line: None)
    library = extensions_library()
    bundle = Bundle.load(bundle_path)
    check_supported(bundle)
    source = bundle.graph_path("model", variant)  # an unknown variant: did-you-mean
    sizes = convert.parse_fixed_shapes(bundle, shapes)
    out = Path(out)
    here, there = out.resolve(), bundle.path.resolve()
    if here == there or here in there.parents:
        raise InputError(f"-o {out} would replace the bundle {bundle.path} itself. Note: write "
                         "the mobile folder elsewhere, e.g. -o mobile-app.")
    check_target(out, overwrite=overwrite)  # before the slow parts
    with staged_directory(out, overwrite=overwrite) as stage:
        report = _write_all(bundle, variant, source, stage, sizes, library, say)
    return report


def _write_all(bundle: Bundle, variant: str, source: Path, stage: Path, sizes: dict,
               library: str, say) -> dict:
    import onnxruntime

    from .e2e import build_e2e
    from .examples import write_examples

    sample = convert.sample_sizes(bundle, sizes)
    feeds = convert.sample_feeds(bundle, "model", sample)
    artifacts: dict[str, dict] = {}
    reference = convert.first_inference(source, feeds)
    artifacts[f"(bundle) {source.relative_to(bundle.path).as_posix()}"] = _timed(
        source, reference, "the variant's graph, for comparison")

    say("Converting to ORT format (Fixed style, level all) ...")
    ort_path = convert.ort_from_onnx(source, stage / "model.ort", level="all")
    run = convert.first_inference(ort_path, feeds)
    diff = _max_diff(reference["outputs"], run["outputs"])
    if diff > ORT_TOLERANCE:
        raise ExportError(f"model.ort differs from {source.name} by {diff:.3g} (over "
                          f"{ORT_TOLERANCE}). Note: this is a bug in the conversion; report it.")
    artifacts["model.ort"] = _timed(ort_path, run, "CPU EP, WebAssembly, Node",
                                    max_abs_diff=diff)
    ort_models = [ort_path]

    coverage = {"model": ep_coverage(source)}
    fixed_record = None
    if sizes:
        say(f"Fixing shapes ({', '.join(f'{k}={v}' for k, v in sizes.items())}) ...")
        fixed_onnx = stage / "model_fixed.onnx"
        fixed_record = convert.fixed_shape_onnx(bundle, "model", source, fixed_onnx, sizes)
        fixed_ort = convert.ort_from_onnx(fixed_onnx, stage / "model_fixed.ort", level="basic")
        fixed_feeds = convert.sample_feeds(bundle, "model", {**sample, **sizes})
        want = convert.first_inference(source, fixed_feeds)
        for path in (fixed_onnx, fixed_ort):
            run = convert.first_inference(path, fixed_feeds)
            artifacts[path.name] = _timed(
                path, run, "fixed shapes: NNAPI, Core ML",
                max_abs_diff=_max_diff(want["outputs"], run["outputs"]))
        ort_models.append(fixed_ort)
        coverage["model_fixed"] = ep_coverage(fixed_onnx)
    convert.required_operators_config(ort_models, stage / "model.required_operators.config")

    say("Building the end-to-end graph ...")
    e2e = _write_e2e(bundle, variant, stage, library, artifacts, build_e2e)

    report = {
        "bundle": {"path": str(bundle.path), "task": bundle.task,
                   "model_type": bundle.model_type, "family": bundle.manifest.get("family")},
        "variant": variant,
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_extensions": _extensions_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "optimization": {"model.ort": "Fixed style, level all (CPU EP; NCHWc off)",
                         "model_fixed.ort": "Fixed style, level basic (EP-neutral ops)",
                         "model_e2e.ort": "Fixed style, level all, extensions' ops registered"},
        "sample_sizes": sample,
        "fixed_shapes": fixed_record,
        "artifacts": artifacts,
        "execution_providers": coverage,
        "e2e": e2e,
        "inputs": bundle.graphs["model"]["inputs"],
        "outputs": bundle.graphs["model"]["outputs"],
    }
    (stage / "mobile_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (stage / "mobile_report.md").write_text(report_markdown(report))
    write_examples(stage, bundle, report)
    return report


def _write_e2e(bundle, variant, stage, library, artifacts, build_e2e) -> dict:
    target = stage / "model_e2e.onnx"
    try:
        record = build_e2e(bundle, variant, target)
    except InputError as exc:  # no builder for this task: model.ort alone
        return {"built": False, "reason": str(exc)}
    record = {"built": True, **record}
    ort_path = convert.ort_from_onnx(target, stage / "model_e2e.ort", level="all",
                                     custom_ops_library=library)
    convert.required_operators_config([ort_path], stage / "model_e2e.required_operators.config")
    feeds = _e2e_feeds(target)
    if feeds is not None:
        for path in (target, ort_path):
            run = convert.first_inference(path, feeds, custom_ops_library=library)
            what = ("one short sentence" if "text" in feeds
                    else "one question and context" if "question" in feeds else "a 64x64 JPEG")
            artifacts[path.name] = _timed(path, run, f"end-to-end, extensions library; {what}")
    return record


def _e2e_feeds(path: Path) -> dict | None:
    """A raw input for the end-to-end graph: a sentence for ``text``, a question and a context
    for question answering, a JPEG for ``image``."""
    import onnx

    names = [value.name for value in onnx.load(str(path), load_external_data=False).graph.input]
    if names == ["text"]:
        return {"text": np.array(["A short sentence to time the first call."], dtype=object)}
    if sorted(names) == ["context", "question"]:
        return {"question": np.array(["Where is the tower?"], dtype=object),
                "context": np.array(["The tower stands in the old town, by the river."],
                                    dtype=object)}
    if names == ["image"]:
        from PIL import Image

        ramp = np.linspace(0, 255, 64 * 64 * 3).astype(np.uint8).reshape(64, 64, 3)
        buffer = io.BytesIO()
        Image.fromarray(ramp).save(buffer, format="JPEG")
        return {"image": np.frombuffer(buffer.getvalue(), dtype=np.uint8)}
    return None


def _timed(path: Path, run: dict, note: str, **extra) -> dict:
    return {"bytes": convert.onnx_file_bytes(path), "load_ms": run["load_ms"],
            "first_run_ms": run["first_run_ms"], "note": note, **extra}


def _max_diff(want: dict, got: dict) -> float:
    worst = 0.0
    for name, value in want.items():
        other = got.get(name)
        if other is None or np.shape(other) != np.shape(value):
            return float("inf")
        if value.size:
            worst = max(worst, float(np.max(np.abs(value.astype(np.float64)
                                                   - other.astype(np.float64)))))
    return worst


def _extensions_version() -> str | None:
    try:
        import onnxruntime_extensions
    except ImportError:
        return None
    return getattr(onnxruntime_extensions, "__version__", None)
