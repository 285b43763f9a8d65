"""Plans from ONNX graphs: ``plan_from_onnx`` (the TensorRT calls) and ``engines_from_bundle``
(every graph of a variant, saved under ``engines/`` with sidecars and a shared timing cache).

Precision comes from the graph itself, as TensorRT 11 requires: the network is created strongly
typed (TensorRT 10 honors the flag too), so an fp16 or QDQ int8 variant builds as it was made,
and no precision flag or INT8 calibrator is ever set.

>>> paths = engines_from_bundle(Bundle.load("bundle"), "fp16")      # doctest: +SKIP
>>> [p.name for p in paths]                                         # doctest: +SKIP
['model.fp16.sm87.trt10.3.0.plan']
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ...bundle import Bundle, write_bytes_atomic
from ...errors import EngineError, GraphLoadError, InputError
from ...files import scratch_beside
from ..engine import TensorSpec, parse_device
from ..merged import CONDITION, branch_graphs, import_onnx, is_merged_graph
from .libs import Cuda, DeviceFacts, import_cudart, import_tensorrt, use_gpu
from .plans import (
    BuildOptions,
    check_buildable,
    plan_path,
    save_plan,
    sidecar_for,
    timing_cache_path,
)
from .profiles import Profile, Range, graph_profile, resolve_ranges


def plan_from_onnx(trt, onnx_path: Path, profiles: Sequence[Profile], options: BuildOptions,
                   timing_cache: bytes = b"") -> tuple[bytes, bytes]:
    """A serialized plan of the ONNX graph at ``onnx_path`` with one optimization profile per
    item of ``profiles``; and the timing cache after the build (``timing_cache`` seeds it).
    ``trt`` is the tensorrt module (a fake one in tests)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from the file: external weights load too
        raise GraphLoadError(parser_errors(parser, onnx_path))
    config = builder.create_builder_config()
    if options.workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.builder_optimization_level = options.opt_level
    if options.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if options.hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, ignore_mismatch=False)
    for shapes in profiles:
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in shapes.items():
            profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(
            f"TensorRT could not build a plan of {onnx_path}; its log above says why. Note: "
            "a larger --workspace, narrower --shapes, or another --variant may help.")
    return bytes(plan), bytes(config.get_timing_cache().serialize())


def parser_errors(parser, onnx_path: Path) -> str:
    """TensorRT's ONNX parser errors, one per node: what failed, where."""
    lines = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        where = f"node {error.node()}"
        name, op = getattr(error, "node_name", None), getattr(error, "node_operator", None)
        if name is not None and op is not None:  # TensorRT 8.6 and later
            where += f" {name()!r} ({op()})"
        lines.append(f"{where}: {error.desc()}")
    return (f"TensorRT's ONNX parser rejected {onnx_path} ({len(lines)} error(s)): "
            + "; ".join(lines) + ". Note: TensorRT runs the fp32, fp16 and static-int8 (QDQ) "
            "variants; operators of ONNX Runtime's own recipes are not supported.")


def engines_from_bundle(bundle: Bundle, variant: str = "fp32", *,
                        graphs: Sequence[str] | None = None,
                        shapes: Sequence[Mapping[str, Range]] = (),
                        calibration: Mapping[str, Range] | None = None,
                        max_batch: int | None = None,
                        options: BuildOptions | None = None,
                        device: str = "cuda", trt=None, facts: DeviceFacts | None = None,
                        say: Callable[[str], None] = lambda line: None) -> list[Path]:
    """Build and save a plan for each graph of ``variant`` (or those in ``graphs``), with one
    optimization profile per group of ``shapes`` (see ``profiles.resolve_ranges``), on GPU
    ``device`` (``cuda:1``: the second); the plans' paths. The bundle's timing cache for that
    GPU is read first and written back after each. ``facts`` given: the GPU is already chosen."""
    check_buildable(bundle, variant)
    options = options if options is not None else BuildOptions()
    extra = {} if max_batch is None else {"max_batch": max_batch}
    ranges = resolve_ranges(bundle, calibration=calibration, shapes=shapes, **extra)
    kind, index = parse_device(device)
    if kind != "cuda":
        raise InputError(f"TensorRT plans are built on a GPU, device 'cuda' or 'cuda:N', not "
                         f"{device!r}.")
    trt = trt if trt is not None else import_tensorrt()
    if facts is None:
        cuda = Cuda(import_cudart())
        facts = DeviceFacts.detect(trt, cuda, use_gpu(cuda, index))
    cache_path = timing_cache_path(bundle.path, facts)
    names = list(graphs) if graphs is not None else list(bundle.variants[variant]["files"])
    paths = []
    for graph in names:
        inputs = [TensorSpec.from_json(spec) for spec in bundle.graphs[graph]["inputs"]]
        with _sources(bundle, graph, variant, inputs) as sources:
            for branch, source, branch_inputs in sources:
                what = graph if branch is None else f"{graph} ({branch['name']} branch)"
                profiles = [graph_profile(branch_inputs, group) for group in ranges]
                say(f"building {what} ({variant}) for {facts.gpu} with TensorRT "
                    f"{facts.tensorrt}...")
                cache = cache_path.read_bytes() if cache_path.is_file() else b""
                plan, cache = plan_from_onnx(trt, source, profiles, options, cache)
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(cache_path, cache)
                path = plan_path(bundle.path, graph, variant, facts, options,
                                 branch=branch and branch["name"])
                save_plan(path, plan, sidecar_for(bundle, graph, variant, facts, options, ranges,
                                                  profiles, branch=branch))
                say(f"wrote {path}")
                paths.append(path)
    return paths


@contextlib.contextmanager
def _sources(bundle: Bundle, graph: str, variant: str, inputs: list[TensorSpec]):
    """What TensorRT builds for ``graph``: (None, its file, its inputs); or for a merged decoder
    one (branch, file, inputs) per branch of its ``If``, each cut out into a temporary graph
    beside the bundle (a TensorRT conditional needs both branches' outputs to have the same
    shapes, and a merged decoder's cache outputs differ). ``branch`` is the sidecar's record:
    its name, the condition input and the value that runs it."""
    if not is_merged_graph(inputs):
        yield [(None, bundle.graph_path(graph, variant), inputs)]
        return
    onnx = import_onnx()
    scratch = scratch_beside(bundle.path, "scratch")  # never litter inside the bundle
    try:
        sources = []
        for name, when, model in branch_graphs(bundle.graph_path(graph, variant)):
            path = Path(scratch) / f"{graph}.{name}.onnx"
            onnx.save(model, str(path), save_as_external_data=True,
                      all_tensors_to_one_file=True, location=f"{path.name}.data")
            taken = {i.name for i in model.graph.input}
            sources.append(({"name": name, "condition": CONDITION, "when": when}, path,
                            [spec for spec in inputs if spec.name in taken]))
        yield sources
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
