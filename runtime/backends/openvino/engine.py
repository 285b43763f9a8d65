"""``OvEngine``: a graph compiled by OpenVINO behind the runtime's Engine protocol, and
``engine_from_bundle``, which compiles a bundle's graph for a device and precision (through the
bundle's cache) after refusing the variants OpenVINO runs badly.

OpenVINO reads the bundle's ONNX graph file as it is (verified by ``bundle.graph_path``). One
infer request per engine, one run at a time. ``run`` returns numpy arrays as ``OrtEngine.run``
does; ``run_bound`` leaves chosen outputs as OpenVINO tensors (``OvArray``: a generation cache
fed back at the next step without a copy into numpy).

>>> engine = engine_from_bundle(Bundle.load("bundle"), "model", "qdq")        # doctest: +SKIP
>>> engine.run({"input_ids": ids, "attention_mask": mask})["logits"].shape  # doctest: +SKIP
(1, 3)
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence

import numpy as np

from ...bundle import Bundle
from ...errors import EngineError, GraphLoadError, InputError, did_you_mean
from ..engine import Feed, TensorSpec, check_feed
from ..merged import BranchedEngine, branch_graphs, is_merged_graph
from .cache import compile_cached
from .libs import DeviceFacts, import_openvino

# Recipes whose graphs OpenVINO does not run well, and what to use instead. Dynamic int8
# (MatMulInteger, DynamicQuantizeLinear) is not OpenVINO's int8 path: measured on BERT-base, 105
# ms against ONNX Runtime's 25 ms (and its FullyConnected layers report f32, not i8).
REFUSED_RECIPES = {
    "dynamic-int8": (
        "its MatMulInteger/DynamicQuantizeLinear graph is not OpenVINO's int8 path: OpenVINO "
        "runs it through slow reference code (BERT-base: 105 ms, ONNX Runtime 25 ms), in f32",
        "for int8 on OpenVINO make a static-int8 variant (`edgeport quantize BUNDLE --recipe "
        "static-int8 --calibration DATA`: QDQ, which OpenVINO runs as int8), or, without "
        "calibration data, an int8-weights one (`--recipe int8-weights`), or run this "
        "variant with backend='onnxruntime'"),
}


class OvArray:
    """An output of ``OvEngine.run_bound`` kept as an OpenVINO tensor (a generation step's KV
    cache), fed back as the next step's input as it is. ``numpy()`` gives a copy;
    ``take_rows`` gathers rows (a beam search reorder) into a new tensor."""

    def __init__(self, tensor, device):
        self.tensor = tensor
        self.device = device
        self.shape = tuple(int(d) for d in tensor.get_shape())
        self.dtype = np.dtype(tensor.get_element_type().to_dtype())

    def numpy(self) -> np.ndarray:
        return np.array(self.tensor.data, copy=True)

    def take_rows(self, rows) -> OvArray:
        """Row ``i`` of the result is row ``rows[i]`` of this array (axis 0)."""
        ov = import_openvino()
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and not 0 <= rows.min() <= rows.max() < self.shape[0]:
            raise InputError(f"Rows {rows.tolist()} are out of range for an array of "
                             f"{self.shape[0]}.")
        return OvArray(ov.Tensor(np.take(self.tensor.data, rows, axis=0)), self.device)

    def __repr__(self) -> str:
        return f"OvArray(shape={self.shape}, dtype={self.dtype.name}, device={self.device})"


class OvEngine:
    """A compiled OpenVINO model and one infer request, behind the Engine protocol.

    ``inputs``/``outputs`` are the compiled model's, with the manifest's dim names (the ONNX
    graph's own) and the compiled model's dtypes. ``facts`` says on which device and at which
    precision it runs.
    ``device`` is ``("openvino", 0)``: what the generation loop reads to keep its cache in
    OpenVINO tensors (``run_bound``).
    """

    def __init__(self, compiled, *, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                 facts: DeviceFacts, name: str = "graph"):
        """``inputs``/``outputs``: the manifest's specs, for their dim names; the engine's own
        are the compiled model's (a variant's graph may take fewer inputs than the fp32 one,
        and a merged decoder's first-step branch reads no cache), as ONNX Runtime's are."""
        self.compiled = compiled
        self.facts = facts
        self._name = name
        self.device = ("openvino", 0)
        named = {spec.name: spec for spec in [*inputs, *outputs]}
        self._ports = {}
        self.inputs = [self._spec(port, named) for port in compiled.inputs]
        self.outputs = [self._spec(port, named) for port in compiled.outputs]
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: one run at a time

    def run(self, feed: Feed) -> dict[str, np.ndarray]:
        return self.run_bound(feed, keep=set())

    def run_bound(self, feed: Feed, keep: set[str]) -> dict:
        """``run``, with OvArray inputs given to OpenVINO as they are (a cache from the step
        before) and the outputs named in ``keep`` left as OvArrays; the others come back as
        numpy arrays."""
        ov = import_openvino()
        kept_in = {spec.name: self._check_kept(spec, feed[spec.name]) for spec in self.inputs
                   if isinstance(feed.get(spec.name), OvArray)}
        # Held here while the request runs: a shared tensor does not keep its array alive.
        checked = {name: np.ascontiguousarray(array) for name, array in check_feed(
            [s for s in self.inputs if s.name not in kept_in], feed).items()}
        with self._lock:
            request = self._request
            try:
                for name, array in checked.items():
                    request.set_tensor(self._ports[name], ov.Tensor(array, shared_memory=True))
                for name, array in kept_in.items():
                    request.set_tensor(self._ports[name], array.tensor)
                request.infer()
            except Exception as exc:  # OpenVINO raises RuntimeError with its own long text
                raise EngineError(
                    f"OpenVINO failed to run {self._name}: {_first_line(exc)}. Note: feed "
                    f"shapes were { {k: v.shape for k, v in checked.items()} }.") from None
            results = {}
            for spec in self.outputs:
                port = self._ports[spec.name]
                tensor = request.get_tensor(port)
                if spec.name in keep:
                    results[spec.name] = OvArray(tensor, self.device)
                    # The request reuses its output memory at the next run: the kept tensor is
                    # detached by giving the request a new (empty) one to fill next time.
                    shape = port.get_partial_shape()
                    request.set_tensor(port, ov.Tensor(tensor.get_element_type(), (
                        shape.to_shape() if shape.is_static else ov.Shape([0] * len(shape)))))
                else:
                    results[spec.name] = np.array(tensor.data, copy=True)
        return results

    def _spec(self, port, named: dict[str, TensorSpec]) -> TensorSpec:
        """The spec of a compiled model's port: named as the manifest names it (a port may
        have several names), with the manifest's dim names, and the compiled model's dtype."""
        names = sorted(port.get_names())
        name = next((n for n in names if n in named), port.get_any_name())
        shape = port.get_partial_shape()
        dims = named[name].dims if name in named else tuple(
            d.get_length() if d.is_static else None for d in shape)
        self._ports[name] = port
        return TensorSpec(name, np.dtype(port.get_element_type().to_dtype()).name, dims)

    def close(self) -> None:
        """Nothing to free by hand: OpenVINO frees the compiled model with the engine."""

    def _check_kept(self, spec: TensorSpec, array: OvArray) -> OvArray:
        if array.dtype.name != spec.dtype or len(array.shape) != len(spec.dims):
            raise EngineError(
                f"Input {spec.name!r} is an OpenVINO {array.dtype.name} tensor of "
                f"{len(array.shape)} dims; {self._name} takes {spec.dtype} of {len(spec.dims)} "
                "dims. Note: OpenVINO tensors are not cast; pass a numpy array instead.")
        return array

    def property(self, name: str):
        """The compiled model's property ``name`` (``INFERENCE_PRECISION_HINT``,
        ``DYNAMIC_QUANTIZATION_GROUP_SIZE``, ...), or None where the device has no such
        property."""
        if name not in {str(key) for key in self.compiled.get_property("SUPPORTED_PROPERTIES")}:
            return None
        return self.compiled.get_property(name)

    def runtime_precisions(self) -> dict[str, set[str]]:
        """Layer type -> the precisions OpenVINO runs it at (``FullyConnected: {'i8'}`` for
        a static-int8 graph's MatMuls), read from the compiled model's runtime graph."""
        found: dict[str, set[str]] = {}
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" in info and "runtimePrecision" in info:
                found.setdefault(info["layerType"].astype(str), set()).add(
                    info["runtimePrecision"].astype(str))
        return found


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # OpenVINO's messages start with "Exception from src/...cpp:NN:" lines; the reason follows
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return ((useful or lines or [type(exc).__name__])[0])[:300]


def check_variant(bundle: Bundle, variant: str) -> None:
    """An InputError for a variant OpenVINO is not to run, saying why and what to use."""
    from ...generation.onnx_model import recipe_lineage

    if variant not in bundle.variants:
        raise InputError(f"The bundle {bundle.path} has no variant {variant!r}. "
                         + did_you_mean(variant, bundle.variants))
    for recipe in recipe_lineage(bundle, variant):
        if recipe in REFUSED_RECIPES:
            why, instead = REFUSED_RECIPES[recipe]
            raise InputError(f"The variant {variant!r} ({recipe}) does not run on OpenVINO: "
                             f"{why}. Note: {instead}.")


def engine_from_bundle(bundle: Bundle, graph: str = "model", variant: str = "fp32", *,
                       device: str = "cpu", precision: str | None = None,
                       threads: int | None = None, build_if_missing: bool = False,
                       providers=None, session_options=None, cache: bool = True):
    """OpenVINO's engine for ``graph`` in ``variant`` on ``device`` (cpu, gpu, gpu:N, npu,
    auto) at ``precision`` (f32, bf16, f16; None: what OpenVINO picks for the device),
    compiled through the bundle's cache under engines/openvino (``cache`` False: not).
    ``threads``: CPU inference threads. ``build_if_missing`` is TensorRT's: OpenVINO compiles
    when it loads, and keeps what it compiled in the cache. An OvEngine; for a merged decoder,
    a BranchedEngine over one OvEngine per branch."""
    given = [name for name, value in (("providers", providers),
                                      ("session_options", session_options)) if value is not None]
    if given:
        raise InputError(f"{', '.join(given)}: ONNX Runtime options, which the openvino backend "
                         "does not take. Note: leave them out, or use backend='onnxruntime'.")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise InputError(f"threads={threads!r}: give a positive number of CPU threads.")
    check_variant(bundle, variant)
    ov = import_openvino()
    core = ov.Core()
    facts = DeviceFacts.detect(ov, core, device, precision)
    if threads is not None and facts.device not in ("CPU", "AUTO"):
        raise InputError(f"threads is a CPU option; {facts.device} takes none. Note: leave it "
                         "out, or use device='cpu'.")
    path = bundle.graph_path(graph, variant)
    where = path.relative_to(bundle.path).as_posix()
    inputs, outputs = bundle.graph_specs(graph)
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = facts.precision
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)

    def compiled(model, branch=None):
        def compile_with(cache_dir):
            options = dict(config, **({"CACHE_DIR": cache_dir} if cache_dir else {}))
            try:
                source = model if model is not None else str(path)
                return core.compile_model(source, facts.device, options)
            except Exception as exc:  # OpenVINO's RuntimeError, with a long C++ trace
                raise GraphLoadError(
                    f"OpenVINO could not compile {where}{f' ({branch})' if branch else ''} for "
                    f"{facts.device}: {_first_line(exc)}. Note: run this variant with "
                    "backend='onnxruntime', or report the graph's ops OpenVINO lacks.") from None

        if not cache:
            return compile_with(None)
        return compile_cached(bundle, graph, variant, facts, compile_with, branch)

    if not is_merged_graph(inputs):
        return OvEngine(compiled(None), inputs=inputs, outputs=outputs, facts=facts, name=where)
    # OpenVINO's CPU plugin runs no If whose outputs have a dynamic rank, as a merged decoder's
    # placeholder cache outputs do: each branch is compiled as a model of its own (as TensorRT
    # builds a plan per branch), and the engine runs the one use_cache_branch picks.
    engines = {}
    for name, when, model in branch_graphs(path):
        try:
            ov_model = core.read_model(io.BytesIO(model.SerializeToString()))
        except Exception as exc:
            raise GraphLoadError(f"OpenVINO could not read the {name} branch of {where}: "
                                 f"{_first_line(exc)}.") from None
        engines[when] = OvEngine(compiled(ov_model, name), inputs=inputs, outputs=outputs,
                                 facts=facts, name=f"{where} ({name})")
    return BranchedEngine(engines, inputs=inputs, outputs=outputs)
