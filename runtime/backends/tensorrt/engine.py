"""``TrtEngine``: a TensorRT plan behind the runtime's Engine protocol, and
``engine_from_bundle``, which finds (or builds) the plan of a bundle's graph for this machine.

Inputs are copied to device buffers through cuda-python (no torch, no pycuda), the context is
given each input's shape, and each output is shaped from those: ``run`` returns numpy arrays
as ``OrtEngine.run`` does. Device memory comes from a per-engine pool of size classes: buffers
are kept per tensor and swapped for a larger block when a shape grows, and ``run_bound`` leaves
chosen outputs on the GPU (``DeviceArray``: a generation cache fed back at the next step).
A merged decoder runs as the plans of its two branches (``BranchedEngine``).

>>> engine = engine_from_bundle(Bundle.load("bundle"), "model", "fp16")   # doctest: +SKIP
>>> engine.run({"input_ids": ids, "attention_mask": mask})["logits"].shape  # doctest: +SKIP
(1, 3)
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...bundle import Bundle
from ...errors import ChecksumError, EngineError, GraphLoadError, InputError
from ...files import read_bytes_file
from ..engine import Feed, TensorSpec, check_feed, parse_device
from ..merged import BranchedEngine, is_merged_graph
from .builder import engines_from_bundle
from .libs import Cuda, DeviceFacts, import_cudart, import_tensorrt, use_gpu
from .plans import BuildOptions, find_plan, missing_plan_message, plan_branches, read_sidecar
from .profiles import Profile, pick_profile

MAX_PLAN_BYTES = 64 * 2**30  # a plan holds the weights: an 8B-parameter fp16 model is 16 GB

MIN_BUFFER = 256  # bytes: an empty tensor (a zero-length cache) still gets a real address


def block_size(nbytes: int) -> int:
    """The capacity a request of ``nbytes`` gets: a size class of four steps per power of two
    (at most a quarter wasted), so that blocks freed by one generation step fit the next.

    >>> [block_size(n) for n in (1, 256, 257, 1000, 1025, 4097)]
    [256, 256, 320, 1024, 1280, 5120]
    """
    if nbytes <= MIN_BUFFER:
        return MIN_BUFFER
    step = 1 << max((nbytes - 1).bit_length() - 3, 0)
    return -(-nbytes // step) * step


class DevicePool:
    """Device memory in blocks by size class: a block given back is handed out again to the
    next request of its class instead of going back to CUDA, so a generation loop whose cache
    grows by one position a step allocates almost nothing after its first steps. Blocks are
    freed to CUDA when the pool is closed (a block given back after that is freed at once)."""

    def __init__(self, cuda: Cuda):
        self._cuda = cuda
        self._idle: dict[int, list[int]] = defaultdict(list)  # capacity -> free pointers
        self._lock = threading.RLock()  # a DeviceArray may be collected while it is held
        self.closed = False

    def take(self, nbytes: int) -> tuple[int, int]:
        """(pointer, capacity) of a block of at least ``nbytes``."""
        capacity = block_size(nbytes)
        with self._lock:
            if self._idle[capacity]:
                return self._idle[capacity].pop(), capacity
        return self._cuda.malloc(capacity), capacity

    def give(self, pointer: int, capacity: int) -> None:
        with self._lock:
            if not self.closed:
                self._idle[capacity].append(pointer)
                return
        self._cuda.free(pointer)

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self.closed = self._idle, defaultdict(list), True
        for pointers in idle.values():
            for pointer in pointers:
                self._cuda.free(pointer)


class DeviceBuffers:
    """One pool block per tensor name, reused while large enough, swapped for a larger one
    when a shape grows."""

    def __init__(self, pool: DevicePool):
        self._pool = pool
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, capacity in bytes)

    def get(self, name: str, nbytes: int) -> int:
        pointer, capacity = self._buffers.get(name, (0, 0))
        if pointer and nbytes <= capacity:  # an empty tensor too gets a real address
            return pointer
        if pointer:
            self._pool.give(pointer, capacity)
        self._buffers[name] = self._pool.take(nbytes)
        return self._buffers[name][0]

    def free(self) -> None:
        for pointer, capacity in self._buffers.values():
            self._pool.give(pointer, capacity)
        self._buffers.clear()


class DeviceArray:
    """A tensor left on the GPU by ``TrtEngine.run_bound``: the KV cache of one generation step,
    fed back as the next step's past without a round trip to the host. It owns a block of its
    engine's pool and gives it back when collected. ``numpy()`` copies it to the host;
    ``take_rows`` gathers rows on the device (a beam search reorder)."""

    def __init__(self, engine: TrtEngine, pointer: int, capacity: int, shape, dtype):
        self._engine, self.pointer, self._capacity = engine, pointer, capacity
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)

    @property
    def device(self) -> tuple[str, int]:
        return self._engine.device

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def numpy(self) -> np.ndarray:
        array = np.empty(self.shape, self.dtype)
        self._engine.to_host(array, self.pointer)
        return array

    def take_rows(self, rows) -> DeviceArray:
        """Row ``i`` of the result is row ``rows[i]`` of this array (axis 0), copied on the
        device: one copy per run of consecutive rows."""
        rows = [int(row) for row in np.asarray(rows).reshape(-1)]
        if rows and not 0 <= min(rows) <= max(rows) < self.shape[0]:
            raise InputError(f"Rows {rows} are out of range for an array of {self.shape[0]}.")
        row_bytes = self.nbytes // self.shape[0] if self.shape[0] else 0
        result = self._engine.device_array((len(rows), *self.shape[1:]), self.dtype)
        runs = []  # (target row, source row, count)
        for target, source in enumerate(rows):
            if runs and runs[-1][1] + runs[-1][2] == source:
                runs[-1][2] += 1
            else:
                runs.append([target, source, 1])
        self._engine.copy_rows(result.pointer, self.pointer,
                               [(t * row_bytes, s * row_bytes, n * row_bytes)
                                for t, s, n in runs if row_bytes])
        return result

    def __del__(self):
        try:
            self._engine.pool.give(self.pointer, self._capacity)
        except Exception:  # the interpreter may be shutting down: nothing left to give back
            pass

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype.name}, device={self.device})"


class OutputAllocator:
    """TensorRT's IOutputAllocator for outputs whose shape is known only once the engine has run
    (data-dependent: the boxes a NonZero keeps, say): memory from the engine's per-name
    buffers when TensorRT asks, and the shape TensorRT reports. Made a subclass of
    ``trt.IOutputAllocator`` by ``output_allocator``."""

    def __init__(self, buffers: DeviceBuffers):
        self.buffers, self.shapes = buffers, {}

    def reallocate_output(self, tensor_name, memory, size, alignment):  # TensorRT 8.6 to 10
        return self.buffers.get(tensor_name, max(int(size), 1))

    def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
        return self.reallocate_output(tensor_name, memory, size, alignment)

    def notify_shape(self, tensor_name, shape):
        self.shapes[tensor_name] = tuple(int(d) for d in shape)


def output_allocator(trt, buffers: DeviceBuffers) -> OutputAllocator:
    """An OutputAllocator that TensorRT accepts: the class mixed with ``trt.IOutputAllocator``,
    whose ``__init__`` must run (TensorRT's Python API asks for it)."""

    class Allocator(OutputAllocator, trt.IOutputAllocator):
        def __init__(self, buffers):
            trt.IOutputAllocator.__init__(self)
            OutputAllocator.__init__(self, buffers)

    return Allocator(buffers)


class TrtEngine:
    """A deserialized TensorRT engine and one execution context, behind the Engine protocol.

    ``inputs``/``outputs`` carry the manifest's dim names and the engine's own dtypes;
    ``profiles`` are the (min, opt, max) shapes the plan was built with (its sidecar's), used
    to choose the optimization profile a feed fits. ``from_plan`` makes one from a plan file.
    ``run_bound`` keeps chosen outputs on the GPU (DeviceArrays) and takes them back as inputs.
    """

    def __init__(self, engine, context, cuda: Cuda, *, inputs: Sequence[TensorSpec],
                 outputs: Sequence[TensorSpec], profiles: Sequence[Profile], name: str = "plan",
                 device: int = 0, trt=None):
        self._engine, self._context, self._cuda, self._trt = engine, context, cuda, trt
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.device = ("cuda", int(device))
        self._profiles = list(profiles)
        self._name = name
        self._bound = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        cuda.set_device(self.device[1])
        self._stream = cuda.stream()
        self.pool = DevicePool(cuda)
        self._buffers = DeviceBuffers(self.pool)
        self._allocators: dict[str, OutputAllocator] = {}  # data-dependent outputs
        self._profile = 0
        self._lock = threading.RLock()  # one context and one stream: one run at a time

    @classmethod
    def from_plan(cls, path: Path, *, inputs: Sequence[TensorSpec],
                  outputs: Sequence[TensorSpec], profiles: Sequence[Profile],
                  version_compatible: bool = False, device: int = 0, trt=None,
                  cuda: Cuda | None = None, sha256: str | None = None) -> TrtEngine:
        """Deserialize the plan at ``path`` on GPU ``device``; dtypes are read from the engine
        (an fp16 graph may take fp16 inputs), dim names from the given specs. ``trt`` and
        ``cuda`` (the tensorrt module and a Cuda over cuda-python) are imported when not given
        (fakes in tests). With ``sha256`` (the sidecar's), the bytes read are checked against
        it before TensorRT sees them: a plan is executable code."""
        data = read_bytes_file(path, "The TensorRT plan", error=GraphLoadError,
                               max_bytes=MAX_PLAN_BYTES)
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise ChecksumError(
                f"The TensorRT plan {path} does not match the sha256 its sidecar records. "
                "Note: it was changed after it was built; rebuild it with `edgeport build "
                "BUNDLE`.")
        trt = trt if trt is not None else import_tensorrt()
        cuda = cuda if cuda is not None else Cuda(import_cudart())
        cuda.set_device(device)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if version_compatible:  # the plan carries its own lean runtime, which must be allowed
            runtime.engine_host_code_allowed = True
        engine = runtime.deserialize_cuda_engine(data)
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
                   name=Path(path).name, device=device, trt=trt)

    def run(self, feed: Feed) -> dict[str, np.ndarray]:
        return self.run_bound(feed, keep=set())

    def run_bound(self, feed: Feed, keep: set[str]) -> dict:
        """``run``, with DeviceArray inputs bound where they are (a cache from the step before)
        and the outputs named in ``keep`` left on the GPU as DeviceArrays, each in a block of
        its own; the other outputs come back as numpy arrays."""
        on_device = {spec.name: self._check_device_input(spec, feed.get(spec.name))
                     for spec in self.inputs if isinstance(feed.get(spec.name), DeviceArray)}
        checked = {name: np.ascontiguousarray(array) for name, array in
                   check_feed([s for s in self.inputs if s.name not in on_device], feed).items()}
        with self._lock:
            if self._buffers is None:
                raise EngineError(f"The TensorRT engine of {self._name} was closed. Note: make "
                                  "a new pipeline (or engine) to run it again.")
            self._cuda.set_device(self.device[1])
            shapes = {n: a.shape for n, a in [*checked.items(), *on_device.items()]
                      if n in self._bound}
            profile = pick_profile(self._profiles, shapes)
            if profile != self._profile:
                self._context.set_optimization_profile_async(profile, self._stream)
                self._profile = profile
            for name, shape in shapes.items():
                if not self._context.set_input_shape(name, shape):
                    raise EngineError(f"TensorRT refused the shape {list(shape)} of input "
                                      f"{name!r} of {self._name}.")
                if name in on_device:
                    pointer = on_device[name].pointer
                else:
                    pointer = self._buffers.get(name, checked[name].nbytes)
                    if checked[name].nbytes:
                        self._cuda.to_device(pointer, checked[name], self._stream)
                self._context.set_tensor_address(name, pointer)
            results, later = {}, []
            for spec in self.outputs:
                shape = tuple(self._context.get_tensor_shape(spec.name))
                if any(size < 0 for size in shape):  # known once the engine has run
                    self._allocator(spec.name)
                    later.append(spec)
                elif spec.name in keep:
                    results[spec.name] = self.device_array(shape, spec.dtype)
                    self._context.set_tensor_address(spec.name, results[spec.name].pointer)
                else:
                    results[spec.name] = np.empty(shape, dtype=spec.dtype)
                    self._context.set_tensor_address(
                        spec.name, self._buffers.get(spec.name, results[spec.name].nbytes))
            if not self._context.execute_async_v3(self._stream):
                raise EngineError(f"TensorRT failed to run {self._name}; its log above says why.")
            for spec in later:
                shape = self._allocators[spec.name].shapes.get(spec.name)
                if shape is None:
                    raise EngineError(f"TensorRT ran {self._name} but never told the shape of "
                                      f"its output {spec.name!r}.")
                if spec.name in keep:  # copied out of the allocator's reused buffer
                    results[spec.name] = kept = self.device_array(shape, spec.dtype)
                    self._cuda.copy(kept.pointer, self._buffers.get(spec.name, 0), kept.nbytes,
                                    self._stream)
                else:
                    results[spec.name] = np.empty(shape, dtype=spec.dtype)
            for name, array in results.items():
                if isinstance(array, np.ndarray) and array.nbytes:
                    self._cuda.to_host(array, self._buffers.get(name, array.nbytes),
                                       self._stream)
            self._cuda.synchronize(self._stream)
        return results

    def _check_device_input(self, spec: TensorSpec, array: DeviceArray) -> DeviceArray:
        """A DeviceArray fed as ``spec``: on this GPU, of the input's dtype and rank (it cannot
        be cast where it is)."""
        if array.device != self.device:
            raise EngineError(f"Input {spec.name!r} is on {array.device}, and {self._name} runs "
                              f"on {self.device}. Note: pass numpy arrays between GPUs.")
        if array.dtype.name != spec.dtype or len(array.shape) != len(spec.dims):
            raise EngineError(
                f"Input {spec.name!r} is a {array.dtype.name} array of {len(array.shape)} dims "
                f"on the GPU; {self._name} takes {spec.dtype} of {len(spec.dims)} dims. Note: "
                "arrays on the GPU are not cast; pass a numpy array instead.")
        return array

    def _allocator(self, name: str) -> None:
        """Give a data-dependent output an OutputAllocator, once."""
        if name not in self._allocators:
            trt = self._trt if self._trt is not None else import_tensorrt()
            self._allocators[name] = output_allocator(trt, self._buffers)
            if not self._context.set_output_allocator(name, self._allocators[name]):
                raise EngineError(f"TensorRT refused an output allocator for {name!r} of "
                                  f"{self._name}.")

    # --- device memory, for DeviceArray ------------------------------------------------------
    def device_array(self, shape, dtype) -> DeviceArray:
        """An uninitialized array on this engine's GPU, in a block of its pool."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        pointer, capacity = self.pool.take(nbytes)
        return DeviceArray(self, pointer, capacity, shape, dtype)

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        with self._lock:
            self._cuda.set_device(self.device[1])
            if array.nbytes:
                self._cuda.to_host(array, pointer, self._stream)
            self._cuda.synchronize(self._stream)

    def copy_rows(self, target: int, source: int, spans) -> None:
        """Device-to-device copies of (target offset, source offset, bytes), done when this
        returns (another engine may read the target on its own stream next)."""
        with self._lock:
            self._cuda.set_device(self.device[1])
            for to, start, nbytes in spans:
                self._cuda.copy(target + to, source + start, nbytes, self._stream)
            self._cuda.synchronize(self._stream)

    def close(self) -> None:
        """Free the device buffers and the stream (also done when the engine is collected).
        DeviceArrays still held give their blocks back to CUDA when they are collected."""
        if self._buffers is not None:
            self._buffers.free()
            self.pool.close()
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
                       cuda: Cuda | None = None, precision: str | None = None
                       ) -> TrtEngine | BranchedEngine:
    """The TensorRT engine of ``graph`` in ``variant`` on GPU ``device`` (``cuda:N``), from the
    bundle's plan for that GPU and this TensorRT version (a merged decoder: its two branch
    plans, as a BranchedEngine). Without one (or with only plans for another GPU, TensorRT
    version or source graph) it raises an EngineError that says which and how to rebuild; with
    ``build_if_missing`` it builds one, with the shapes and options of the plan it replaces."""
    if precision is not None:
        raise InputError("precision is a hint of the openvino backend; a TensorRT plan runs at "
                         "the precisions its variant's graph holds (strongly typed). Note: "
                         "pick a variant (fp16, qdq) instead.")
    kind, index = parse_device(device)
    if kind != "cuda":
        raise InputError(f"The tensorrt backend runs on device 'cuda' (or 'cuda:N'), not "
                         f"{device!r}. Note: pass device='cuda', or backend='onnxruntime' for "
                         "other devices.")
    given = [name for name, value in (("threads", threads), ("providers", providers),
                                      ("session_options", session_options)) if value is not None]
    if given:
        raise InputError(f"{', '.join(given)}: ONNX Runtime options, which the tensorrt backend "
                         "does not take. Note: leave them out, or use backend='onnxruntime'.")
    trt = trt if trt is not None else import_tensorrt()
    cuda = cuda if cuda is not None else Cuda(import_cudart())
    facts = DeviceFacts.detect(trt, cuda, use_gpu(cuda, index))
    inputs, outputs = bundle.graph_specs(graph)
    load = dict(inputs=inputs, outputs=outputs, device=index, trt=trt, cuda=cuda)
    if not is_merged_graph(inputs):
        return _engine(bundle, graph, variant, facts, None, build_if_missing, **load)
    branches = plan_branches(bundle, graph, variant)
    if set(branches) != {True, False} and build_if_missing:
        _rebuild(bundle, graph, variant, facts, {}, trt)
        branches = plan_branches(bundle, graph, variant)
    if set(branches) != {True, False}:
        raise EngineError(missing_plan_message(bundle, graph, variant, facts, {}))
    return BranchedEngine({when: _engine(bundle, graph, variant, facts, name, build_if_missing,
                                         **load) for when, name in branches.items()},
                          inputs=inputs, outputs=outputs)


def _engine(bundle, graph, variant, facts, branch, build_if_missing, *, inputs, outputs, device,
            trt, cuda) -> TrtEngine:
    """The TrtEngine of the plan of ``graph`` (its ``branch``) that runs here, built first when
    there is none and ``build_if_missing``."""
    plan, sidecar, rejected = find_plan(bundle, graph, variant, facts, branch)
    if plan is None:
        if not build_if_missing:
            raise EngineError(missing_plan_message(bundle, graph, variant, facts, rejected))
        _rebuild(bundle, graph, variant, facts, rejected, trt)
        plan, sidecar, _ = find_plan(bundle, graph, variant, facts, branch)
    profiles = [{name: tuple(tuple(s) for s in shapes) for name, shapes in profile.items()}
                for profile in sidecar["profiles"]]
    return TrtEngine.from_plan(plan, inputs=inputs, outputs=outputs, profiles=profiles,
                               version_compatible=sidecar["options"].get("version_compatible",
                                                                         False),
                               device=device, trt=trt, cuda=cuda, sha256=sidecar["plan_sha256"])


def _rebuild(bundle, graph, variant, facts, rejected, trt) -> None:
    """Build the graph's plans anew (both branches of a merged decoder), with the shape ranges
    and options recorded beside the newest plan they replace (defaults when there is none)."""
    previous = [s for s in map(read_sidecar, sorted(rejected, key=lambda p: p.stat().st_mtime))
                if s is not None]
    shapes, options = (), BuildOptions()
    if previous:
        shapes = [{dim: tuple(r) for dim, r in group.items()} for group in previous[-1]["ranges"]]
        options = BuildOptions(**previous[-1]["options"])
    engines_from_bundle(bundle, variant, graphs=[graph], shapes=shapes, options=options,
                        trt=trt, facts=facts)
