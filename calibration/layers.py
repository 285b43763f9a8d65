"""Per-layer error of ``compare``: where in a variant's graph the error enters. The fp32 graph and
the variant are run with every intermediate float tensor as an output, on a few samples, and
each node's relative error is compared with that of its inputs.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from runtime.backends.engine import OrtEngine
from runtime.bundle import Bundle
from runtime.errors import (
    EngineError,
    MissingDependencyError,
)

from . import metrics
from .branches import branch_feeds, is_merged, merged_branches
from .data import progress_bar

# Per-layer error is measured on this many samples: every intermediate tensor of both graphs is
# held for them, so they are few.
LAYER_SAMPLES = 4
TOP_LAYERS = 20
_FLOAT_TYPES = {1: np.float32, 10: np.float16, 11: np.float64}  # ONNX elem types


def _instrumented(path: Path, keep: set[str] | None) -> tuple[OrtEngine, dict]:
    """An engine for a copy of the graph at ``path`` that also outputs its intermediate float
    tensors (those in ``keep`` when given), and the graph's facts (nodes in topological order,
    inputs, tensor kinds)."""
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError(
            "Per-layer error needs the onnx package. Note: install it with "
            "`pip install 'edgeport[quantize]'`, or pass --no-layers (layers=False)."
        ) from None
    # Weights are not loaded: the copy refers to the graph's external data files, if any.
    model = onnx.load(str(path), load_external_data=False)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx raises InferenceError or a plain Exception on odd graphs
        raise EngineError(
            f"onnx shape inference failed on {path.name}: {str(exc).splitlines()[0][:200]}. "
            "Note: pass --no-layers (layers=False) to compare without per-layer error."
        ) from None
    types = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    initializers = {t.name for t in model.graph.initializer}
    sources = [i.name for i in model.graph.input if i.name not in initializers]
    existing = {o.name for o in model.graph.output}
    nodes = [{"name": n.name or f"{n.op_type}_{i}", "op_type": n.op_type,
              "inputs": list(n.input), "outputs": [o for o in n.output if o]}
             for i, n in enumerate(model.graph.node)]
    produced = [o for node in nodes for o in node["outputs"]]
    floats = [o for o in produced if types.get(o) in _FLOAT_TYPES and o not in initializers]
    exact = [o for o in produced if o in types and types[o] not in _FLOAT_TYPES]
    wanted = [o for o in floats if keep is None or o in keep]
    for name in wanted:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
    # Loaded from memory, with its external weights read from beside the graph file: nothing
    # is written into the bundle, which may be read-only.
    engine = _layer_engine(path, model.SerializeToString())
    return engine, {"nodes": nodes, "sources": sources, "exact": exact, "floats": set(wanted)}


def _layer_engine(path: Path, model: bytes) -> OrtEngine:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Unoptimized: every node runs as written, so each tensor is the graph's own.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return OrtEngine(path, session_options=options, providers=["CPUExecutionProvider"],
                     model=model)


class _LayerReference:
    """The instrumented fp32 graph (the file at ``path``) and the few samples per-layer error
    is measured on."""

    def __init__(self, path: Path, feeds: Sequence[Mapping]):
        self.engine, self.facts = _instrumented(path, None)
        self.feeds = list(feeds)

    def tensors(self, feed: Mapping) -> dict[str, np.ndarray]:
        # Run again for each variant rather than kept: every intermediate tensor of a large
        # model on long inputs is a lot of memory, and fp32 runs on a few samples are cheap.
        return {k: v for k, v in self.engine.run(feed).items() if k in self.facts["floats"]}


def layer_errors(reference: _LayerReference, path: Path, top: int) -> dict:
    """Relative error of every tensor the variant graph at ``path`` shares with fp32 (by name,
    same shape, float), and the nodes that add the most error."""
    engine, _ = _instrumented(path, reference.facts["floats"])
    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    skipped = set()
    for feed in reference.feeds:
        expected = reference.tensors(feed)
        got = engine.run(feed)
        for name, ref in expected.items():
            if name not in got or name in skipped:
                continue
            out = got[name]
            if out.shape != ref.shape:  # the variant computes it in another layout
                skipped.add(name)
                continue
            ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
            # Equal values are no error, infinities included: attention scores plus a causal
            # mask (CLIP's text tower) hold -inf in fp32 and in the variant alike. An infinity
            # or NaN on one side only is an infinite error.
            with np.errstate(invalid="ignore"):
                diff = ref64 - out64
            odd = ~np.isfinite(diff)
            if odd.any():  # rare: checked only where a difference is not finite
                diff[odd & (ref64 == out64)] = 0.0
                ref64 = np.where(np.isfinite(ref64), ref64, 0.0)
            signal[name] = signal.get(name, 0.0) + float(np.sum(ref64 * ref64))
            noise[name] = noise.get(name, 0.0) + float(np.sum(diff * diff))
        del expected, got
    # A tensor that is all zeros in fp32 has no scale to be relative to; it is left out rather
    # than given an infinite error.
    errors = {name: metrics.relative_from_sums(signal[name], noise[name])
              for name in signal if name not in skipped and signal[name] > 0.0}
    # NaN or inf in a variant's tensor is the largest error there is: it ranks first where it
    # appears (and becomes None in the JSON report).
    errors = {name: error if math.isfinite(error) else math.inf
              for name, error in errors.items()}
    rows = metrics.error_growth(reference.facts["nodes"], errors,
                                sources=reference.facts["sources"],
                                exact=reference.facts["exact"])
    ranked = sorted((r for r in rows if r["growth"] > 0.0), key=lambda r: -r["growth"])
    return {
        "samples": len(reference.feeds),
        "tensors_compared": len(errors),
        "nodes": len(reference.facts["nodes"]),
        "top": [_rounded(r) for r in ranked[:top]],
        "profile": [[r["index"], _sig(r["error"])] for r in rows],
    }


def _sig(value: float) -> float:
    return float(f"{value:.4g}")


def _rounded(row: dict) -> dict:
    return {k: _sig(v) if isinstance(v, float) else v for k, v in row.items()}


def add_layers(bundle, report, chosen, feeds: Mapping[str, Sequence[Mapping]], top,
                progress) -> None:
    """Each variant's per-layer error (``layers``) on ``feeds`` (graph name -> the few feeds
    to measure on). A one-graph bundle's is that graph's; a bundle of several graphs has one
    part per graph (and per branch of a merged decoder, each cut out as a graph of its own,
    fed the feeds that take it) under ``parts``, and their nodes ranked together under
    ``top``, each row naming its graph and branch. A graph the variant shares with fp32 has
    no error to locate and is left out."""
    # fp32 against itself has no error to locate.
    measured = [name for name in chosen if name != "fp32"]
    if not measured:
        return
    with tempfile.TemporaryDirectory(prefix="edgeport-layers-") as directory:
        parts = []  # (graph, branch, instrumented fp32)
        for graph, fed in feeds.items():
            for branch, path, branch_feeds in _graph_parts(bundle, graph, "fp32", fed,
                                                           Path(directory)):
                parts.append((graph, branch, _LayerReference(path, branch_feeds)))
        for name in progress_bar(measured, len(measured), "per-layer error", progress, "variant"):
            results, files = [], {}
            for graph, branch, fp32 in parts:
                if bundle.graph_path(graph, name) == bundle.graph_path(graph, "fp32"):
                    continue
                if graph not in files:  # a merged decoder is cut into its branches once
                    files[graph] = {part: path for part, path, _ in _graph_parts(
                        bundle, graph, name, None, Path(directory))}
                results.append({"graph": graph, "branch": branch,
                                **layer_errors(fp32, files[graph][branch], top)})
            report["variants"][name]["layers"] = _joined_layers(results, top)


def _graph_parts(bundle: Bundle, graph: str, variant: str, feeds, directory: Path) -> list:
    """[(branch, graph file, feeds)] of a variant's graph: the graph itself (branch None), or
    for a merged decoder each branch saved as a graph of its own under ``directory``, with
    the feeds that take it (``feeds`` None: none wanted)."""
    path = bundle.graph_path(graph, variant)
    if not is_merged(path):
        return [(None, path, feeds)]
    import onnx

    from .recipes import _large, _save

    branches = merged_branches(onnx.load(str(path)))
    fed = branch_feeds(branches, feeds)
    parts = []
    for branch, model in branches.models.items():
        target = directory / f"{graph}.{branch}.{variant}.onnx"
        _save(model, target, external=_large(model))
        parts.append((branch, target, fed[branch]))
    return parts


def _joined_layers(results: list[dict], top: int) -> dict | None:
    """One part's layers as they are (a one-graph bundle's); several parts under ``parts``,
    with their nodes ranked together under ``top``."""
    if not results:
        return None
    if len(results) == 1 and results[0]["graph"] == "model" and results[0]["branch"] is None:
        return {k: v for k, v in results[0].items() if k not in ("graph", "branch")}
    ranked = sorted(({**row, "graph": part["graph"], "branch": part["branch"]}
                     for part in results for row in part["top"]),
                    key=lambda row: -row["growth"])
    return {"samples": max(part["samples"] for part in results),
            "tensors_compared": sum(part["tensors_compared"] for part in results),
            "nodes": sum(part["nodes"] for part in results),
            "top": ranked[:top], "parts": results}
