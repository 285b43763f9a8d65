"""``TrtEngine``: a TensorRT plan behind the runtime's Engine protocol, and
``engine_from_bundle``, which finds (or builds) the plan of a bundle's graph for this machine.

Inputs are copied to device buffers through cuda-python (no torch, no pycuda), the context is
given each input's shape, and each output is shaped from those: ``run`` returns numpy arrays
as ``OrtEngine.run`` does. Buffers are kept per tensor and reused while they are large enough,
grown (doubling) when a shape grows: a generation loop's cache grows by one position a step.

>>> engine = engine_from_bundle(Bundle.load("bundle"), "model", "fp16")   # doctest: +SKIP
>>> engine.run({"input_ids": ids, "attention_mask": mask})["logits"].shape  # doctest: +SKIP
(1, 3)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..bundle import Bundle
from ..engine import Feed, TensorSpec, check_feed
from ..errors import EngineError, GraphLoadError, InputError
from .builder import engines_from_bundle
from .libs import Cuda, DeviceFacts, import_cudart, import_tensorrt
from .plans import BuildOptions, find_plan, missing_plan_message, read_sidecar
from .profiles import Profile, pick_profile

MIN_BUFFER = 256  # bytes: an empty tensor (a zero-length cache) still gets a real address


class DeviceBuffers:
    """One device buffer per tensor name, reused while large enough and grown by doubling."""

    def __init__(self, cuda: Cuda):
        self._cuda = cuda
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, capacity in bytes)

    def get(self, name: str, nbytes: int) -> int:
        pointer, capacity = self._buffers.get(name, (0, 0))
        if nbytes <= capacity:
            return pointer
        if pointer:
            self._cuda.free(pointer)
            del self._buffers[name]
        capacity = max(nbytes, 2 * capacity, MIN_BUFFER)
        pointer = self._cuda.malloc(capacity)
        self._buffers[name] = (pointer, capacity)
        return pointer

    def free(self) -> None:
        for pointer, _ in self._buffers.values():
            self._cuda.free(pointer)
        self._buffers.clear()


class TrtEngine:
    """A deserialized TensorRT engine and one execution context, behind the Engine protocol.

    ``inputs``/``outputs`` carry the manifest's dim names and the engine's own dtypes;
    ``profiles`` are the (min, opt, max) shapes the plan was built with (its sidecar's), used
    to choose the optimization profile a feed fits. ``from_plan`` makes one from a plan file.
    """

    device = ("cuda", 0)

    def __init__(self, engine, context, cuda: Cuda, *, inputs: Sequence[TensorSpec],
                 outputs: Sequence[TensorSpec], profiles: Sequence[Profile], name: str = "plan"):
        self._engine, self._context, self._cuda = engine, context, cuda
        self.inputs, self.outputs = list(inputs), list(outputs)
        self._profiles = list(profiles)
        self._name = name
        self._bound = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        self._stream = cuda.stream()
        self._buffers = DeviceBuffers(cuda)
        self._profile = 0
        self._lock = threading.Lock()  # one context: one run at a time

    @classmethod
    def from_plan(cls, path: Path, *, inputs: Sequence[TensorSpec],
                  outputs: Sequence[TensorSpec], profiles: Sequence[Profile],
                  version_compatible: bool = False, trt=None, cuda: Cuda | None = None
                  ) -> TrtEngine:
        """Deserialize the plan at ``path``; dtypes are read from the engine (an fp16 graph may
        take fp16 inputs), dim names from the given specs. ``trt`` and ``cuda`` (the tensorrt
        module and a Cuda over cuda-python) are imported when not given (fakes in tests)."""
        trt = trt if trt is not None else import_tensorrt()
        cuda = cuda if cuda is not None else Cuda(import_cudart())
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if version_compatible:  # the plan carries its own lean runtime, which must be allowed
            runtime.engine_host_code_allowed = True
        engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if engine is None:
            raise GraphLoadError(
                f"TensorRT could not load the plan {path}; its log above says why. Note: "
                "rebuild it on this machine with `edgeport build BUNDLE`.")
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        missing = [spec.name for spec in outputs if spec.name not in names]
        if missing:
            raise GraphLoadError(f"The plan {path} has no outputs {missing}. Note: rebuild it "
                                 "with `edgeport build BUNDLE`.")
        specs = [TensorSpec(spec.name, _dtype(trt, engine, spec.name), spec.dims)
                 if spec.name in names else spec for spec in [*inputs, *outputs]]
        return cls(engine, engine.create_execution_context(), cuda,
                   inputs=specs[:len(inputs)], outputs=specs[len(inputs):], profiles=profiles,
                   name=Path(path).name)

    def run(self, feed: Feed) -> dict[str, np.ndarray]:
        checked = {name: np.ascontiguousarray(array)
                   for name, array in check_feed(self.inputs, feed).items()}
        with self._lock:
            profile = pick_profile(self._profiles, {n: a.shape for n, a in checked.items()
                                                    if n in self._bound})
            if profile != self._profile:
                self._context.set_optimization_profile_async(profile, self._stream)
                self._profile = profile
            for name, array in checked.items():
                if name not in self._bound:  # an input TensorRT found unused and dropped
                    continue
                if not self._context.set_input_shape(name, array.shape):
                    raise EngineError(f"TensorRT refused the shape {list(array.shape)} of input "
                                      f"{name!r} of {self._name}.")
                pointer = self._buffers.get(name, array.nbytes)
                self._cuda.to_device(pointer, array, self._stream)
                self._context.set_tensor_address(name, pointer)
            results = {}
            for spec in self.outputs:
                shape = tuple(self._context.get_tensor_shape(spec.name))
                if any(size < 0 for size in shape):
                    raise EngineError(
                        f"The output {spec.name!r} of {self._name} has a data-dependent shape "
                        f"{list(shape)}, which this engine cannot size before running. Note: "
                        "run this graph with the onnxruntime backend.")
                results[spec.name] = np.empty(shape, dtype=spec.dtype)
                self._context.set_tensor_address(
                    spec.name, self._buffers.get(spec.name, results[spec.name].nbytes))
            if not self._context.execute_async_v3(self._stream):
                raise EngineError(f"TensorRT failed to run {self._name}; its log above says why.")
            for name, array in results.items():
                self._cuda.to_host(array, self._buffers.get(name, array.nbytes), self._stream)
            self._cuda.synchronize(self._stream)
        return results

    def close(self) -> None:
        """Free the device buffers and the stream (also done when the engine is collected)."""
        if self._buffers is not None:
            self._buffers.free()
            self._cuda.destroy_stream(self._stream)
            self._buffers = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # the interpreter may be shutting down: nothing left to free
            pass


def _dtype(trt, engine, name: str) -> str:
    return np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name


def engine_from_bundle(bundle: Bundle, graph: str = "model", variant: str = "fp32", *,
                       device: str = "cuda", build_if_missing: bool = False, threads=None,
                       providers=None, session_options=None, trt=None,
                       cuda: Cuda | None = None) -> TrtEngine:
    """The TensorRT engine of ``graph`` in ``variant``, from the bundle's plan for this GPU and
    TensorRT version. Without one (or with only plans for another GPU, TensorRT version or
    source graph) it raises an EngineError that says which and how to rebuild; with
    ``build_if_missing`` it builds one, with the shapes and options of the plan it replaces."""
    if device != "cuda":
        raise InputError(f"The tensorrt backend runs on device 'cuda', not {device!r}. Note: "
                         "pass device='cuda', or backend='onnxruntime' for other devices.")
    given = [name for name, value in (("threads", threads), ("providers", providers),
                                      ("session_options", session_options)) if value is not None]
    if given:
        raise InputError(f"{', '.join(given)}: ONNX Runtime options, which the tensorrt backend "
                         "does not take. Note: leave them out, or use backend='onnxruntime'.")
    trt = trt if trt is not None else import_tensorrt()
    cuda = cuda if cuda is not None else Cuda(import_cudart())
    facts = DeviceFacts.detect(trt, cuda)
    plan, sidecar, rejected = find_plan(bundle, graph, variant, facts)
    if plan is None:
        if not build_if_missing:
            raise EngineError(missing_plan_message(bundle, graph, variant, facts, rejected))
        plan, sidecar = _rebuild(bundle, graph, variant, facts, rejected, trt)
    inputs, outputs = bundle.graph_specs(graph)
    profiles = [{name: tuple(tuple(s) for s in shapes) for name, shapes in profile.items()}
                for profile in sidecar["profiles"]]
    return TrtEngine.from_plan(plan, inputs=inputs, outputs=outputs, profiles=profiles,
                               version_compatible=sidecar["options"].get("version_compatible",
                                                                         False),
                               trt=trt, cuda=cuda)


def _rebuild(bundle, graph, variant, facts, rejected, trt):
    """Build the plan anew, with the shape ranges and options recorded beside the newest plan
    it replaces (defaults when there is none)."""
    previous = [s for s in map(read_sidecar, sorted(rejected, key=lambda p: p.stat().st_mtime))
                if s is not None]
    shapes, options = (), BuildOptions()
    if previous:
        shapes = [{dim: tuple(r) for dim, r in group.items()} for group in previous[-1]["ranges"]]
        options = BuildOptions(**previous[-1]["options"])
    [plan] = engines_from_bundle(bundle, variant, graphs=[graph], shapes=shapes,
                                 options=options, trt=trt, facts=facts)
    return plan, read_sidecar(plan)
