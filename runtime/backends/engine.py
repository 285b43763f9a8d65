"""Engines: one small protocol for everything that runs a graph.

An engine declares its inputs and outputs (name, dtype, dims) and maps a feed
(``Mapping[str, np.ndarray]``) to a dict of output arrays. Tasks never talk to ONNX Runtime or
TensorRT directly, so a fake engine can stand in for tests of task logic.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import EngineError, GraphLoadError, InputError, did_you_mean
from ..files import inside

Feed = Mapping[str, np.ndarray]

# ONNX Runtime's type strings -> numpy dtypes.
_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: its name, numpy dtype name and dims (a str is a dynamic dim)."""

    name: str
    dtype: str
    dims: tuple[int | str | None, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "dims": list(self.dims)}

    @classmethod
    def from_json(cls, data: Mapping) -> TensorSpec:
        return cls(data["name"], data["dtype"], tuple(data["dims"]))


@runtime_checkable
class Engine(Protocol):
    """What a task needs from a graph runner. A Protocol, not a base class, so that a test's
    fake engine or a wrapped PyTorch module fits without inheriting anything."""

    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]

    def run(self, feed: Feed) -> dict[str, np.ndarray]: ...


def check_feed(specs: Sequence[TensorSpec], feed: Feed) -> dict[str, np.ndarray]:
    """The feed restricted to the graph's inputs, cast to their dtypes; a clear error when an
    input is missing or has the wrong rank. The one place where feeds are checked."""
    checked = {}
    for spec in specs:
        if spec.name not in feed:
            raise EngineError(
                f"The graph needs an input named {spec.name!r}, but the feed has none. "
                f"Note: the feed has {sorted(feed)}; the graph's inputs are "
                f"{[s.name for s in specs]}."
            )
        array = np.asarray(feed[spec.name])
        if array.ndim != len(spec.dims):
            raise EngineError(
                f"Input {spec.name!r} has {array.ndim} dims {array.shape}, the graph expects "
                f"{len(spec.dims)} ({', '.join(map(str, spec.dims))})."
            )
        checked[spec.name] = array.astype(spec.dtype, copy=False)
    return checked


def _spec_from_ort(arg) -> TensorSpec:
    dims = tuple(d if isinstance(d, (int, str)) else None for d in arg.shape)
    return TensorSpec(arg.name, np.dtype(_ORT_TYPES.get(arg.type, np.float32)).name, dims)


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


_DEVICE_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def parse_device(device: str) -> tuple[str, int]:
    """A device name and its GPU index: ``"cuda:1"`` is ``("cuda", 1)``, ``"cuda"`` the first
    GPU; a clear error for an unknown name or a bad index.

    >>> parse_device("cuda:1"), parse_device("cpu")
    (('cuda', 1), ('cpu', 0))
    """
    name, colon, index = str(device).partition(":")
    if name not in _DEVICE_PROVIDERS:
        raise InputError(f"Unknown device {device!r}. {did_you_mean(name, _DEVICE_PROVIDERS)} "
                         "A GPU other than the first is named by its index: 'cuda:1'.")
    if not colon:
        return name, 0
    if name == "cpu" or not index.isdigit():
        raise InputError(f"Bad device {device!r}. Note: the GPU index follows a colon, as in "
                         "'cuda:0' or 'tensorrt:1'; 'cpu' takes none.")
    return name, int(index)


def providers_for_device(device: str, *, cache_dir: str | os.PathLike | None = None) -> list:
    """The ONNX Runtime providers for a device name (``cuda:1`` for the second GPU); a clear
    error when they are not installed. With ``cache_dir``, the TensorRT provider keeps its
    engines and timing cache there, so a session after the first does not build them again.

    >>> providers_for_device("cpu")
    ['CPUExecutionProvider']
    """
    name, index = parse_device(device)
    wanted = _DEVICE_PROVIDERS[name]
    have = available_providers()
    if wanted[0] not in have:
        raise EngineError(
            f"Could not find execution provider {wanted[0]!r} for device {device!r}. "
            f"Note: available providers are: {have}. For a GPU install onnxruntime-gpu "
            "(`pip install onnxruntime-gpu`) in place of onnxruntime."
        )
    providers = []
    for provider in (p for p in wanted if p in have):
        options = {} if provider == "CPUExecutionProvider" or not index else {"device_id": index}
        if provider == "TensorrtExecutionProvider" and cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir),
                           trt_timing_cache_enable=True, trt_timing_cache_path=str(cache_dir))
        providers.append((provider, options) if options else provider)
    return providers


class OrtEngine:
    """An ONNX Runtime session behind the Engine protocol.

    ``model``: the serialized graph, when it is in memory rather than at ``path`` (the external
    data it names is then read from beside ``path``).

    >>> engine = OrtEngine("bundle/onnx/model.onnx")            # doctest: +SKIP
    >>> [s.name for s in engine.inputs]                          # doctest: +SKIP
    ['input_ids', 'attention_mask', 'token_type_ids']
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "cpu",
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        session_options=None,
        model: bytes | None = None,
    ):
        import onnxruntime as ort

        path = Path(path)
        if session_options is None:
            session_options = ort.SessionOptions()
            session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if threads is not None:
                session_options.intra_op_num_threads = int(threads)
        if model is not None:  # a graph in memory; its external data beside ``path``
            session_options.add_session_config_entry(
                "session.model_external_initializers_file_folder_path", str(path.parent))
        providers = list(providers) if providers is not None else providers_for_device(device)
        try:
            self.session = ort.InferenceSession(
                model if model is not None else str(path), sess_options=session_options,
                providers=providers
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... types
            text = str(exc).strip()
            first_line = text.splitlines()[0] if text else type(exc).__name__
            raise GraphLoadError(
                f"ONNX Runtime could not load the graph {path}: {first_line[:300]}. "
                "Note: the file is corrupt or truncated; export the bundle again with "
                "`edgeport export`."
            ) from None
        self.path = path
        self.inputs = [_spec_from_ort(i) for i in self.session.get_inputs()]
        self.outputs = [_spec_from_ort(o) for o in self.session.get_outputs()]
        self._output_names = [o.name for o in self.outputs]

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, feed: Feed) -> dict[str, np.ndarray]:
        # InferenceSession.run is safe to call from several threads at once.
        checked = check_feed(self.inputs, feed)
        try:
            values = self.session.run(self._output_names, checked)
        except Exception as exc:
            raise EngineError(
                f"ONNX Runtime failed to run {self.path.name}: {str(exc).strip()[:500]}. "
                f"Note: feed shapes were { {k: v.shape for k, v in checked.items()} }."
            ) from None
        return dict(zip(self._output_names, values))

    @property
    def device(self) -> tuple[str, int]:
        """(ONNX Runtime's device type, device id) where the session's outputs can stay."""
        if "CUDAExecutionProvider" not in self.providers:
            return ("cpu", 0)
        options = self.session.get_provider_options().get("CUDAExecutionProvider", {})
        return ("cuda", int(options.get("device_id", 0)))

    def run_bound(self, feed, keep: set[str], into: Mapping | None = None) -> dict:
        """``run`` through an IOBinding: inputs may be OrtValues already on the device (a KV
        cache from the step before), and the outputs named in ``keep`` stay OrtValues on the
        session's device instead of coming back to the host as numpy arrays. On a GPU this
        keeps the cache on the device between steps; on a CPU it gives what ``run`` gives.
        ``into`` binds outputs to given OrtValues, which the graph writes (a cache buffer that
        is also the step's input: GroupQueryAttention appends to it in place)."""
        import onnxruntime as ort

        binding = self.session.io_binding()
        on_device = {spec.name for spec in self.inputs
                     if isinstance(feed.get(spec.name), ort.OrtValue)}
        for name in on_device:
            binding.bind_ortvalue_input(name, feed[name])
        rest = [spec for spec in self.inputs if spec.name not in on_device]
        for name, array in check_feed(rest, feed).items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        device, device_id = self.device
        into = into or {}
        for name in self._output_names:
            if name in into:
                binding.bind_ortvalue_output(name, into[name])
            elif name in keep:
                binding.bind_output(name, device, device_id)
            else:
                binding.bind_output(name)
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:
            raise EngineError(
                f"ONNX Runtime failed to run {self.path.name}: {str(exc).strip()[:500]}."
            ) from None
        values = binding.get_outputs()
        return {name: value if name in keep else value.numpy()
                for name, value in zip(self._output_names, values)}


class FakeEngine:
    """An engine that answers with a function of the feed: for tests of task logic.

    >>> engine = FakeEngine([TensorSpec("x", "float32", ("batch",))],
    ...                     [TensorSpec("y", "float32", ("batch",))],
    ...                     lambda feed: {"y": feed["x"] * 2})
    >>> engine.run({"x": np.ones(2)})["y"].tolist()
    [2.0, 2.0]
    """

    def __init__(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], fn):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self._fn = fn

    def run(self, feed: Feed) -> dict[str, np.ndarray]:
        return dict(self._fn(check_feed(self.inputs, feed)))


# --- backends: what runs a bundle's graphs --------------------------------------------------------
# backend name -> "module:function" that makes the Engine of one graph of a bundle, as
# function(bundle, graph, variant, *, build_if_missing, **options). Resolved at call time, like
# the CLI's subcommands: the bundle names its backends without importing them (TensorRT's is
# built on the bundle, above it), and a missing optional one costs nothing until asked for.
BACKENDS = {
    "onnxruntime": "runtime.backends.engine:ort_engine_from_bundle",
    "tensorrt": "runtime.backends.tensorrt:engine_from_bundle",
    "openvino": "runtime.backends.openvino:engine_from_bundle",
}


def backend_factory(name: str):
    """The function that makes a ``name`` backend's engine; an InputError for an unknown one.

    >>> backend_factory("onnxruntime").__name__
    'ort_engine_from_bundle'
    """
    if name not in BACKENDS:
        raise InputError(f"Unknown backend {name!r}. " + did_you_mean(name, BACKENDS))
    module, _, function = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), function)


def ort_engine_from_bundle(bundle, graph: str, variant: str, *, build_if_missing: bool = False,
                           **options) -> OrtEngine:
    """ONNX Runtime's engine for the verified file of a graph in a variant (options go to
    OrtEngine; device "tensorrt" keeps its TensorRT provider's engine cache in the bundle's
    engines/onnxruntime). ``build_if_missing`` is TensorRT's: ONNX Runtime builds nothing."""
    if options.pop("precision", None) is not None:
        raise InputError("precision is a hint of the openvino backend; on onnxruntime the "
                         "variant's graph sets the precision. Note: pick a variant (fp16, qdq) "
                         "instead, or use backend='openvino'.")
    device = options.get("device", "cpu")
    if parse_device(device)[0] == "tensorrt" and options.get("providers") is None:
        options["providers"] = providers_for_device(device, cache_dir=inside(
            bundle.path, "engines/onnxruntime", what="The TensorRT provider's cache",
            directory=True))
    return OrtEngine(bundle.graph_path(graph, variant), **options)
