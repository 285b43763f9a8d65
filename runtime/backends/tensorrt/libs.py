"""TensorRT and cuda-python, imported only when a TensorRT plan is built or run, with one clear
message when they are missing; and the facts about this machine that a plan is tied to."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import EngineError, InputError, MissingDependencyError

INSTALL_NOTE = (
    "Note: TensorRT plans need the tensorrt and cuda-python packages. On a GPU server: `pip "
    "install tensorrt cuda-python` (or `pip install 'edgeport[tensorrt]'`). On a Jetson, "
    "TensorRT comes with JetPack (`sudo apt install nvidia-jetpack`; make the virtualenv with "
    "--system-site-packages to see it), and cuda-python installs with `pip install cuda-python` "
    "(with onnx, which building an encoder-decoder's plans needs: `pip install cuda-python onnx`)."
)


def import_tensorrt():
    """The ``tensorrt`` module, or a MissingDependencyError saying what to install."""
    try:
        import tensorrt
    except ImportError as exc:
        raise MissingDependencyError(
            f"TensorRT is not installed ({exc}). {INSTALL_NOTE}") from None
    return tensorrt


def import_cudart():
    """cuda-python's CUDA runtime module (``cuda.bindings.runtime`` from 12.6 on, ``cuda.cudart``
    before), or a MissingDependencyError saying what to install."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise MissingDependencyError(
                f"cuda-python is not installed ({exc}). {INSTALL_NOTE}") from None
    return cudart


class Cuda:
    """The few CUDA runtime calls the TensorRT engine needs, each checked: cuda-python returns
    ``(error, result...)`` tuples instead of raising."""

    def __init__(self, cudart):
        self.cudart = cudart

    def _call(self, name: str, *args):
        result = getattr(self.cudart, name)(*args)
        error, values = result[0], result[1:]
        if int(error) != 0:
            raise EngineError(f"CUDA {name} failed: {self._describe(error)}. Note: is a CUDA GPU "
                              "visible here (nvidia-smi), and is the driver recent enough for "
                              "cuda-python?")
        return values[0] if len(values) == 1 else values

    def _describe(self, error) -> str:
        """``cudaErrorMemoryAllocation (2): out of memory``, as far as cuda-python tells."""
        text = f"{getattr(error, 'name', 'error')} ({int(error)})"
        try:
            described = self.cudart.cudaGetErrorString(error)[-1]
        except Exception:  # an old cuda-python, or a driver too broken to say
            return text
        if isinstance(described, bytes):
            described = described.decode(errors="replace")
        return f"{text}: {described}" if described else text

    def malloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", nbytes))

    def free(self, pointer: int) -> None:
        self._call("cudaFree", pointer)

    def stream(self):
        return self._call("cudaStreamCreate")

    def destroy_stream(self, stream) -> None:
        self._call("cudaStreamDestroy", stream)

    def to_device(self, pointer: int, array, stream) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", pointer, array.ctypes.data, array.nbytes, kind, stream)

    def to_host(self, array, pointer: int, stream) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", array.ctypes.data, pointer, array.nbytes, kind, stream)

    def copy(self, target: int, source: int, nbytes: int, stream) -> None:
        """Device to device, on ``stream``."""
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        self._call("cudaMemcpyAsync", target, source, nbytes, kind, stream)

    def set_device(self, device: int) -> None:
        """Make GPU ``device`` current for this thread (CUDA's current device is per thread)."""
        self._call("cudaSetDevice", device)

    def device_count(self) -> int:
        return int(self._call("cudaGetDeviceCount"))

    def synchronize(self, stream) -> None:
        self._call("cudaStreamSynchronize", stream)

    def device_properties(self, device: int = 0):
        return self._call("cudaGetDeviceProperties", device)


def use_gpu(cuda: Cuda, index: int) -> int:
    """Make GPU ``index`` current (builds and engines then live there); ``index``, or a clear
    error when this machine has no such GPU."""
    count = cuda.device_count()
    if not 0 <= index < count:
        raise InputError(f"There is no GPU cuda:{index} here: CUDA sees {count} GPU(s), "
                         f"cuda:0 to cuda:{count - 1}. Note: nvidia-smi lists them; "
                         "CUDA_VISIBLE_DEVICES may hide some.")
    cuda.set_device(index)
    return index


@dataclass(frozen=True)
class DeviceFacts:
    """What a TensorRT plan is tied to: the GPU's compute capability and TensorRT's version."""

    compute_capability: tuple[int, int]
    gpu: str
    tensorrt: str

    @property
    def sm(self) -> str:
        return f"sm{self.compute_capability[0]}{self.compute_capability[1]}"

    @classmethod
    def detect(cls, trt, cuda: Cuda, device: int = 0) -> DeviceFacts:
        props = cuda.device_properties(device)
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else props.name
        return cls((int(props.major), int(props.minor)), name.strip("\x00 "),
                   tensorrt_version(trt))


def tensorrt_version(trt) -> str:
    """TensorRT's version as numbers only: "10.3.0" of "10.3.0.post1"."""
    match = re.match(r"\d+(\.\d+)*", str(trt.__version__))
    return match.group(0) if match else str(trt.__version__)
