"""Fake ``tensorrt`` and cuda-python modules, for the TensorRT code paths on machines with no GPU.

``FakeCuda`` keeps "device" memory in host byte arrays at made-up addresses (pointer arithmetic
works inside a block), checks every copy against the block's size, and records the traffic
between host and device. ``FakeTrt`` records the builder's calls; its plans hold the ONNX graph
they were built from (weights in), and a plan loads as an engine whose context runs that graph
with ONNX Runtime on the CPU, reading its inputs from and writing its outputs to the fake device
memory at the addresses the TrtEngine set. So a pipeline on ``backend="tensorrt"`` runs the real
graphs (a merged decoder's branches cut out as `edgeport build` cuts them) through the real
TrtEngine (profiles, buffers, device arrays, output allocators), and its results must equal
the ONNX Runtime pipeline's to the bit.
"""

from __future__ import annotations

import bisect
import ctypes
import enum
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort

from runtime.backends.engine import _spec_from_ort
from runtime.backends.tensorrt.libs import Cuda


class FakeCuda(Cuda):
    """Device memory as host byte arrays. ``gpus`` are (name, major, minor) per device index."""

    def __init__(self, gpus=(("Orin", 8, 7),)):
        self.memory: dict[int, bytearray] = {}
        self.next, self.mallocs, self.gpus, self.current = 4096, [], list(gpus), 0
        self.uploads: list[tuple] = []  # shape of each host -> device copy
        self.downloads: list[tuple] = []  # shape of each device -> host copy

    # memory
    def malloc(self, nbytes):
        pointer = self.next
        self.next += nbytes + 4096
        self.memory[pointer] = bytearray(nbytes)
        self.mallocs.append(nbytes)
        return pointer

    def free(self, pointer):
        del self.memory[pointer]

    def _view(self, pointer: int, nbytes: int) -> memoryview:
        bases = sorted(self.memory)
        index = bisect.bisect_right(bases, pointer) - 1
        assert index >= 0, f"no block at {pointer}"
        base = bases[index]
        offset = pointer - base
        assert offset + nbytes <= len(self.memory[base]), (
            f"{nbytes} bytes at offset {offset} overrun a block of {len(self.memory[base])}")
        return memoryview(self.memory[base])[offset:offset + nbytes]

    def read(self, pointer: int, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return np.frombuffer(bytes(self._view(pointer, nbytes)), dtype).reshape(shape)

    def write(self, pointer: int, array: np.ndarray) -> None:
        self._view(pointer, array.nbytes)[:] = np.ascontiguousarray(array).tobytes()

    # copies (synchronous here: a stream is only a name)
    def to_device(self, pointer, array, stream):
        self.uploads.append(array.shape)
        self.write(pointer, array)

    def to_host(self, array, pointer, stream):
        self.downloads.append(array.shape)
        array.reshape(-1).view(np.uint8)[:] = np.frombuffer(
            bytes(self._view(pointer, array.nbytes)), np.uint8)

    def copy(self, target, source, nbytes, stream):
        self._view(target, nbytes)[:] = bytes(self._view(source, nbytes))

    # streams and devices
    def stream(self):
        return "stream"

    def destroy_stream(self, stream):
        pass

    def synchronize(self, stream):
        pass

    def set_device(self, device):
        assert 0 <= device < len(self.gpus)
        self.current = device

    def device_count(self):
        return len(self.gpus)

    def device_properties(self, device=0):
        name, major, minor = self.gpus[device]
        return SimpleNamespace(name=name.encode() + b"\x00", major=major, minor=minor)


class HostCudart:
    """cuda-python's CUDA runtime module (``cuda.bindings.runtime``) as far as ``Cuda`` calls it,
    over host memory: every call returns ``(cudaError_t, values...)`` as cuda-python's do, and a
    "device pointer" is a real address of a ctypes block, so copies move real bytes at the
    addresses ``Cuda`` computes. A copy that leaves its block, a wrong copy kind or a bad device
    fails as CUDA would (an error code, not an exception). ``read`` and ``write`` are the fake
    engines' access to the blocks."""

    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorInvalidValue = 1
        cudaErrorMemoryAllocation = 2
        cudaErrorInvalidDevice = 101

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToHost = 0
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2
        cudaMemcpyDeviceToDevice = 3

    def __init__(self, gpus=(("Orin", 8, 7),), capacity: int = 1 << 30):
        self.blocks: dict[int, ctypes.Array] = {}
        self.gpus, self.capacity, self.current = list(gpus), capacity, 0

    def _ok(self, *values):
        return (self.cudaError_t.cudaSuccess, *values)

    def _inside(self, pointer: int, nbytes: int) -> bool:
        return any(base <= pointer and pointer + nbytes <= base + len(block)
                   for base, block in self.blocks.items())

    def cudaMalloc(self, size):
        if sum(map(len, self.blocks.values())) + size > self.capacity:
            return (self.cudaError_t.cudaErrorMemoryAllocation, 0)
        block = ctypes.create_string_buffer(size)
        self.blocks[ctypes.addressof(block)] = block
        return self._ok(ctypes.addressof(block))

    def cudaFree(self, pointer):
        if self.blocks.pop(pointer, None) is None:
            return (self.cudaError_t.cudaErrorInvalidValue,)
        return self._ok()

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        kinds = self.cudaMemcpyKind
        if not isinstance(kind, kinds) or not isinstance(dst, int) or not isinstance(src, int):
            return (self.cudaError_t.cudaErrorInvalidValue,)
        on_device = {kinds.cudaMemcpyHostToDevice: [dst], kinds.cudaMemcpyDeviceToHost: [src],
                     kinds.cudaMemcpyDeviceToDevice: [dst, src]}.get(kind, [])
        if not all(self._inside(pointer, count) for pointer in on_device):
            return (self.cudaError_t.cudaErrorInvalidValue,)
        ctypes.memmove(dst, src, count)
        return self._ok()

    def cudaGetErrorString(self, error):
        return self._ok({2: b"out of memory", 1: b"invalid argument"}.get(int(error), b""))

    def cudaStreamCreate(self):
        return self._ok(object())

    def cudaStreamDestroy(self, stream):
        return self._ok()

    def cudaStreamSynchronize(self, stream):
        return self._ok()

    def cudaSetDevice(self, device):
        if not 0 <= device < len(self.gpus):
            return (self.cudaError_t.cudaErrorInvalidDevice,)
        self.current = device
        return self._ok()

    def cudaGetDeviceCount(self):
        return self._ok(len(self.gpus))

    def cudaGetDeviceProperties(self, device):
        if not 0 <= device < len(self.gpus):
            return (self.cudaError_t.cudaErrorInvalidDevice, None)
        name, major, minor = self.gpus[device]
        return self._ok(SimpleNamespace(name=name.encode() + b"\x00" * 4, major=major,
                                        minor=minor))

    # what the fake engines read and write
    def read(self, pointer: int, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        assert self._inside(pointer, nbytes), "a read outside the device blocks"
        return np.frombuffer(ctypes.string_at(pointer, nbytes), dtype).reshape(shape)

    def write(self, pointer: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        assert self._inside(pointer, array.nbytes), "a write outside the device blocks"
        ctypes.memmove(pointer, array.ctypes.data, array.nbytes)


class FakeTrt:
    """Just enough of the tensorrt module to build and load: every call is recorded. A plan is
    ``b"ONNX:"`` and the serialized graph (its path, when there is no file to read);
    ``data_dependent`` names outputs whose shape the loaded engines report as unknown until
    they have run (so they need an output allocator)."""

    __version__ = "10.3.0.post1"
    NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=1)
    MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    DeviceType = SimpleNamespace(DLA="DLA")
    BuilderFlag = SimpleNamespace(GPU_FALLBACK="GPU_FALLBACK",
                                  VERSION_COMPATIBLE="VERSION_COMPATIBLE")
    HardwareCompatibilityLevel = SimpleNamespace(AMPERE_PLUS="AMPERE_PLUS")

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class IOutputAllocator:
        def __init__(self):
            self.base_initialized = True

    def __init__(self, cuda: FakeCuda | None = None, parse_errors=(), build_fails=False,
                 data_dependent=(), memory=None):
        """``memory``: what the engines read their inputs from and write their outputs to
        (``read``/``write`` by address): ``cuda`` itself unless given (a HostCudart)."""
        self.calls, self.cuda, self.memory = [], cuda, memory if memory is not None else cuda
        self.parse_errors, self.build_fails = list(parse_errors), build_fails
        self.data_dependent = set(data_dependent)
        self.parsed = None

    def _record(self, *call):
        self.calls.append(call)

    @staticmethod
    def nptype(dtype):
        return dtype

    # builder side
    def Builder(self, logger):
        trt = self

        class Builder:
            def create_network(self, flags):
                trt._record("create_network", flags)
                return "network"

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                trt._record("build", vars(config).copy())
                if trt.build_fails:
                    return None
                source = Path(trt.parsed)  # the graph itself, weights in, when it exists
                graph = (onnx.load(str(source)).SerializeToString() if source.is_file()
                         else str(source).encode())
                return memoryview(b"ONNX:" + graph)

        class Config:
            def set_memory_pool_limit(self, pool, size):
                trt._record("memory_pool", pool, size)

            def set_flag(self, flag):
                trt._record("flag", flag)

            def create_timing_cache(self, data):
                trt._record("timing_cache_in", bytes(data))
                return "cache"

            def set_timing_cache(self, cache, ignore_mismatch):
                trt._record("set_timing_cache", cache, ignore_mismatch)

            def get_timing_cache(self):
                return SimpleNamespace(serialize=lambda: memoryview(b"CACHE"))

            def add_optimization_profile(self, profile):
                trt._record("profile", profile.shapes)

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, low, opt, high):
                self.shapes[name] = (low, opt, high)

        return Builder()

    def OnnxParser(self, network, logger):
        trt = self

        class Error:
            def __init__(self, node, desc):
                self.node, self.desc = lambda: node, lambda: desc
                self.node_name, self.node_operator = lambda: f"/n{node}", lambda: "Foo"

        class Parser:
            num_errors = len(self.parse_errors)

            def parse_from_file(self, path):
                trt._record("parse", path)
                trt.parsed = str(path)
                return not trt.parse_errors

            def get_error(self, index):
                return Error(*trt.parse_errors[index])

        return Parser()

    # runtime side
    def Runtime(self, logger):
        trt = self

        class Runtime:
            def deserialize_cuda_engine(self, data):
                data = bytes(data)
                trt._record("deserialize", data)
                if not data.startswith(b"ONNX:"):
                    return None
                return OrtPlan(trt, data[len(b"ONNX:"):])

        return Runtime()


class OrtPlan:
    """A "deserialized engine": the graph (serialized ONNX) in an ONNX Runtime CPU session."""

    def __init__(self, trt: FakeTrt, graph: bytes):
        self.trt, self.session = trt, ort.InferenceSession(graph,
                                                           providers=["CPUExecutionProvider"])
        self.inputs = [_spec_from_ort(arg) for arg in self.session.get_inputs()]
        outputs = [_spec_from_ort(arg) for arg in self.session.get_outputs()]
        self.specs = {spec.name: spec for spec in [*self.inputs, *outputs]}
        self.names = list(self.specs)
        self.num_io_tensors = len(self.names)

    def get_tensor_name(self, index):
        return self.names[index]

    def get_tensor_dtype(self, name):
        return np.dtype(self.specs[name].dtype)

    def create_execution_context(self):
        return OrtContext(self)


class OrtContext:
    """An execution context that runs the graph with ONNX Runtime on what the fake device
    memory holds at the input addresses, and writes the outputs where they were bound (or
    where an output allocator puts them)."""

    def __init__(self, plan: OrtPlan):
        self.plan, self.cuda = plan, plan.trt.memory
        self.shapes, self.addresses, self.allocators, self.profiles = {}, {}, {}, []
        self.results = None

    def set_optimization_profile_async(self, index, stream):
        self.profiles.append(index)
        return True

    def set_input_shape(self, name, shape):
        self.shapes[name], self.results = tuple(shape), None
        return True

    def set_tensor_address(self, name, pointer):
        self.addresses[name] = pointer

    def set_output_allocator(self, name, allocator):
        assert getattr(allocator, "base_initialized", False), "IOutputAllocator.__init__ not run"
        self.allocators[name] = allocator
        return True

    def _run(self) -> dict[str, np.ndarray]:
        if self.results is None:
            feed = {spec.name: self.cuda.read(self.addresses[spec.name], self.shapes[spec.name],
                                              spec.dtype) for spec in self.plan.inputs}
            names = [output.name for output in self.plan.session.get_outputs()]
            self.results = dict(zip(names, self.plan.session.run(names, feed)))
        return self.results

    def get_tensor_shape(self, name):
        if name in self.shapes:
            return self.shapes[name]
        shape = self._run()[name].shape
        return tuple(-1 for _ in shape) if name in self.plan.trt.data_dependent else shape

    def execute_async_v3(self, stream):
        for name, array in self._run().items():
            if name in self.allocators:
                allocator = self.allocators[name]
                pointer = allocator.reallocate_output_async(name, 0, array.nbytes, 256, stream)
                allocator.notify_shape(name, array.shape)
            else:
                pointer = self.addresses[name]
            self.cuda.write(pointer, array)
        self.results = None
        return True


def beam_steps(bundle, model, reference, tolerance: float = 0.0):
    """Three teacher-forced decoding steps of three beams of one row, the beams reordered after
    each step, through ``model`` and ``reference`` (generation models of ``bundle``): the logits
    and the caches agree within ``tolerance`` of their largest value (0: equal to the bit).
    Whisper is begun on random log-mel features, others on four token ids. The model's final
    state is returned."""
    config = bundle.config
    if "num_mel_bins" in config:
        features = np.random.default_rng(0).standard_normal(
            (1, config["num_mel_bins"], 3000)).astype(np.float32)
        begin = ({"input_features": features}, None)
        sequences = [[config["decoder_start_token_id"]]]
    else:
        ids = np.array([[5, 6, 7, 8]])
        begin = (ids, np.ones_like(ids))
        sequences = [[config["decoder_start_token_id"]]] if model.is_encoder_decoder else ids
    rows = np.array([0, 0, 0])
    state, expected_state = model.begin(*begin), reference.begin(*begin)
    state, expected_state = model.expand(state, rows), reference.expand(expected_state, rows)
    sequences = np.asarray(sequences)[rows]

    def close(actual, expected, what):
        scale = float(np.abs(expected).max(initial=0)) or 1.0
        error = float(np.abs(np.asarray(actual, np.float64) - expected).max(initial=0))
        assert actual.shape == expected.shape and error <= tolerance * scale, (what, error)

    for reorder in ([2, 0, 0], [1, 2, 0], [0, 0, 1]):
        logits, state = model.next_logits(state, sequences)
        expected, expected_state = reference.next_logits(expected_state, sequences)
        close(logits, expected, "logits")
        state, expected_state = model.expand(state, reorder), reference.expand(expected_state,
                                                                                 reorder)
        sequences = np.concatenate([sequences[reorder], expected.argmax(-1)[reorder, None]], 1)
    for name, array in state.past.items():
        close(array.numpy() if hasattr(array, "numpy") else array, expected_state.past[name],
              name)
    return state
