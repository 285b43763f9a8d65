"""ONNX Runtime's mobile format from a bundle's graph: ``ort_from_onnx`` (``model.ort``),
``required_operators_config`` (the operator list of a custom minimal build), and the fixed-shape
graph NNAPI and Core ML need (``fixed_shape_onnx``, from ``--shapes batch=1 sequence=128``).

What ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` does, through the same public
ONNX Runtime calls (a session that saves its optimized graph in ORT format, with the same
session options), so that its output goes where edgeport says and nothing is printed:

- ``model.ort``: optimization style *Fixed* at level ``all``, the tool's default. The graph is
  optimized once, here, for the CPU execution provider (fused attention, GELU, layer norm from
  the com.microsoft domain): what onnxruntime-android/-objc on the CPU EP, onnxruntime-node and
  onnxruntime-web (WebAssembly) load and run as they are. The *Runtime* style would save the
  extended optimizations to be replayed at load, which ONNX Runtime 1.31 only does when the app
  sets ``session.enable_saved_runtime_optimizations`` (the converter warns to enable it only for
  trusted models): one more thing for every app to get right, for no gain on the CPU EP.
- ``model_fixed.ort``: Fixed at level ``basic`` (constant folding and eliminations, no fused
  contrib ops), because NNAPI and Core ML take standard ONNX operators only: a graph fused for
  the CPU would hand them fewer nodes. The report's analysis is of this same basic-level graph.
  The NCHWc layout transformer is left out, as the tool does for every target but x86-64: it
  makes a graph that only x86 runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from runtime.backends.tensorrt.profiles import (
    bundle_dims,
    check_ranges,
    default_ranges,
    parse_shapes,
)
from runtime.bundle import Bundle
from runtime.errors import ExportError, InputError

# Weights over this many bytes go to a ``.onnx_data`` file beside the graph, as bundles keep
# them (protobuf cannot hold 2 GB; a bundle splits from 128 MB).
EXTERNAL_DATA_BYTES = 128 * 2**20
MAX_BATCH = 1024  # a phone runs a few rows at a time; more is a typo
LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
          "all": "ORT_ENABLE_ALL"}


def ort_from_onnx(source: Path, target: Path, *, level: str = "all",
                  custom_ops_library: str | None = None) -> Path:
    """``source`` (an ONNX file; its external data beside it) optimized at ``level`` and saved
    in ORT format at ``target``, as convert_onnx_models_to_ort's Fixed style does.
    ``custom_ops_library``: the onnxruntime-extensions library, for graphs that use its ops."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    options.optimized_model_filepath = str(target)
    options.add_session_config_entry("session.save_model_format", "ORT")
    # int8 QDQ stays QDQ unless the target is known to be ARM: a model for x86 and ARM alike
    options.add_session_config_entry("session.qdqisint8allowed", "0")
    options.log_severity_level = 3
    if custom_ops_library:
        options.register_custom_ops_library(custom_ops_library)
    disabled = ["NchwcTransformer"] if level == "all" else None
    try:
        ort.InferenceSession(str(source), sess_options=options,
                             providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    except Exception as exc:  # onnxruntime's own exception types are not importable by name
        raise ExportError(
            f"ONNX Runtime could not convert {source.name} to ORT format: "
            f"{str(exc).strip()[:500]}. Note: check that the graph runs with `edgeport run`."
        ) from None
    return target


def required_operators_config(models: Iterable[Path], target: Path) -> Path:
    """The operators (by domain and opset) the ORT-format ``models`` use, in the format of
    ONNX Runtime's ``--include_ops_by_config`` (build.py of a custom minimal build)."""
    import logging

    from onnxruntime.tools.ort_format_model import create_config_from_models

    models = [Path(m) for m in models]
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)  # no "Created config"
    create_config_from_models(models, target, enable_type_reduction=False)
    # its header names the models by absolute path: the staging folder's, gone once renamed
    text = target.read_text()
    for model in models:
        text = text.replace(str(model.resolve()), model.name).replace(str(model), model.name)
    target.write_text(text)
    return target


# --- fixed shapes -------------------------------------------------------------------------------
def parse_fixed_shapes(bundle: Bundle, items: Sequence[str]) -> dict[str, int]:
    """``--shapes NAME=VALUE`` items -> {dim name: size}, checked against the dims the bundle's
    inputs use (those `edgeport inspect` shows: batch, sequence, height, ...)."""
    ranges = parse_shapes(items)
    for name, (low, opt, high) in ranges.items():
        if not low == opt == high:
            raise InputError(
                f"--shapes {name}={low}:{opt}:{high}: a mobile graph takes one size per dim. "
                f"Note: give NAME=SIZE, e.g. --shapes {name}={opt}.")
        if low < 1:
            raise InputError(f"--shapes {name}={low}: sizes must be at least 1. Note: e.g. "
                             f"--shapes {name}=1.")
    check_ranges(ranges, bundle_dims(bundle), "--shapes")
    limits = default_ranges(bundle, max_batch=MAX_BATCH, skip={"batch"})
    for name, (size, _, _) in ranges.items():
        low, _, high = limits.get(name, (1, size, MAX_BATCH if name == "batch" else size))
        if not low <= size <= high:
            why = ("edgeport mobile's bound" if name == "batch"
                   else "its config and processor say so")
            raise InputError(
                f"--shapes {name}={size}: this model takes {name} from {low} to {high} "
                f"({why}). Note: give a size in that range.")
    return {name: size for name, (size, _, _) in ranges.items()}


def onnx_dim_names(bundle: Bundle, graph: str, model) -> dict[str, set[str]]:
    """The bundle's dim names (batch, sequence) -> the dim_params the ONNX graph uses for them
    (optimum's batch_size, sequence_length), matched by input and position."""
    specs = {spec["name"]: spec["dims"] for spec in bundle.graphs[graph]["inputs"]}
    names: dict[str, set[str]] = {}
    for value in model.graph.input:
        dims = specs.get(value.name)
        shape = value.type.tensor_type.shape.dim
        if dims is None or len(dims) != len(shape):
            continue
        for ours, theirs in zip(dims, shape):
            if isinstance(ours, str) and theirs.dim_param:
                names.setdefault(ours, set()).add(theirs.dim_param)
    return names


def fixed_shape_onnx(bundle: Bundle, graph: str, source: Path, target: Path,
                     sizes: Mapping[str, int]) -> dict:
    """``source`` with the dims in ``sizes`` fixed (onnxruntime.tools.make_dynamic_shape_fixed's
    functions), saved at ``target``; returns {"fixed": {dim: size}, "dynamic": [dims left]}."""
    import onnx
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_dim_param_fixed

    model = onnx.load(str(source))
    names = onnx_dim_names(bundle, graph, model)
    for dim, size in sizes.items():
        for param in sorted(names.get(dim, ())):
            make_dim_param_fixed(model.graph, param, size)
    try:
        fix_output_shapes(model)
    except Exception:  # noqa: BLE001 - outputs then keep symbolic dims; the inputs are fixed
        pass
    save_onnx(model, target)
    return {"fixed": dict(sizes), "dynamic": sorted(set(names) - set(sizes))}


def save_onnx(model, target: Path) -> None:
    """Save ``model``; with its weights in ``<name>_data`` beside it when they are large."""
    import onnx

    weights = sum(t.ByteSize() for t in model.graph.initializer)
    if weights > EXTERNAL_DATA_BYTES:
        onnx.save(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=f"{target.name}_data", size_threshold=1024)
    else:
        onnx.save(model, str(target))


# --- sample inputs ------------------------------------------------------------------------------
_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32,
           "bool": np.bool_, "uint8": np.uint8, "int8": np.int8}


def sample_sizes(bundle: Bundle, sizes: Mapping[str, int] | None = None,
                 *, sequence: int | None = None) -> dict[str, int]:
    """A size for every dim of the bundle's inputs: ``sizes``, else batch 1 and the default the
    TensorRT profiles tune for (text 128 or the model's maximum; the processor's image size)."""
    sizes = dict(sizes or {})
    ranges = default_ranges(bundle, max_batch=1, skip=set(sizes))
    chosen = {name: opt for name, (_, opt, _) in ranges.items()}
    if sequence is not None and "sequence" in chosen and "sequence" not in sizes:
        chosen["sequence"] = min(sequence, chosen["sequence"])
    return {**chosen, **sizes}


def sample_feeds(bundle: Bundle, graph: str, sizes: Mapping[str, int], *, seed: int = 0
                 ) -> dict[str, np.ndarray]:
    """Inputs of the bundle's graph at ``sizes``: token ids within the vocabulary, masks of ones,
    token types of zeros, pixels and other floats from a seeded normal."""
    rng = np.random.default_rng(seed)
    vocab = bundle.config.get("vocab_size")
    vocab = vocab if type(vocab) is int and vocab > 0 else 2
    feeds = {}
    for spec in bundle.graphs[graph]["inputs"]:
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in spec["dims"])
        dtype = _DTYPES.get(spec["dtype"])
        if dtype is None:
            raise InputError(f"The input {spec['name']!r} is of type {spec['dtype']}, which "
                             "edgeport mobile cannot make a sample of.")
        name = spec["name"]
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif "mask" in name:
            feeds[name] = np.ones(shape, dtype)
        elif name == "input_ids":
            feeds[name] = rng.integers(1, max(vocab, 2), size=shape).astype(dtype)
        else:
            feeds[name] = np.zeros(shape, dtype)
    return feeds


def onnx_file_bytes(path: Path) -> int:
    """The size of an ONNX graph with the external data files it names (an ORT file: its own)."""
    if path.suffix != ".onnx":
        return path.stat().st_size
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    total = path.stat().st_size
    seen = set()
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            location = next(e.value for e in tensor.external_data if e.key == "location")
            if location not in seen:
                seen.add(location)
                total += (path.parent / location).stat().st_size
    return total


def first_inference(path: Path, feeds: Mapping[str, np.ndarray], *,
                    custom_ops_library: str | None = None) -> dict:
    """Load ``path`` with onnxruntime's CPU EP and run it once: {"load_ms", "first_run_ms",
    "outputs"} (the outputs as numpy arrays, for comparisons)."""
    import time

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if custom_ops_library:
        options.register_custom_ops_library(custom_ops_library)
    start = time.perf_counter()
    session = ort.InferenceSession(str(path), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    loaded = time.perf_counter()
    outputs = session.run(None, dict(feeds))
    done = time.perf_counter()
    names = [o.name for o in session.get_outputs()]
    return {"load_ms": round((loaded - start) * 1e3, 2),
            "first_run_ms": round((done - loaded) * 1e3, 2),
            "outputs": dict(zip(names, outputs))}
