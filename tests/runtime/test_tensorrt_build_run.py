"""The TensorRT builder and engine driven by fake ``tensorrt`` and cuda-python modules: the
build flags, profiles and timing cache, the engine's buffers and profile choice, the backend
wiring, and `edgeport build` without TensorRT. No GPU needed."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from runtime import Bundle, EngineError, GraphLoadError, InputError, MissingDependencyError
from runtime.cli import main
from runtime.engine import TensorSpec
from runtime.tensorrt.builder import engines_from_bundle, plan_from_onnx
from runtime.tensorrt.engine import DeviceBuffers, TrtEngine, engine_from_bundle
from runtime.tensorrt.libs import Cuda, DeviceFacts
from runtime.tensorrt.plans import BuildOptions, read_sidecar

ORIN = DeviceFacts((8, 7), "Orin", "10.3.0")


class FakeTrt:
    """Just enough of the tensorrt module to build and load: every call is recorded."""

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

    def __init__(self, parse_errors=(), build_fails=False):
        self.calls = []
        self.parse_errors, self.build_fails = list(parse_errors), build_fails
        self.tensors = {}  # the loaded engine's name -> dtype

    def _record(self, *call):
        self.calls.append(call)

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
                return None if trt.build_fails else memoryview(b"PLAN")

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
                return not trt.parse_errors

            def get_error(self, index):
                return Error(*trt.parse_errors[index])

        return Parser()

    # runtime side
    def Runtime(self, logger):
        trt = self

        class Runtime:
            def deserialize_cuda_engine(self, data):
                trt._record("deserialize", bytes(data))
                names = list(trt.tensors)
                return SimpleNamespace(
                    num_io_tensors=len(names), get_tensor_name=names.__getitem__,
                    get_tensor_dtype=trt.tensors.__getitem__,
                    create_execution_context=lambda: FakeContext(trt.cuda, double=("x", "y")))

        return Runtime()

    @staticmethod
    def nptype(dtype):
        return dtype


class FakeCuda(Cuda):
    """Device memory as host byte arrays, keyed by fake pointers."""

    def __init__(self):
        self.memory, self.next, self.mallocs = {}, 4096, []

    def malloc(self, nbytes):
        self.next += 1 << 20
        self.memory[self.next] = bytearray(nbytes)
        self.mallocs.append(nbytes)
        return self.next

    def free(self, pointer):
        del self.memory[pointer]

    def stream(self):
        return "stream"

    def destroy_stream(self, stream):
        pass

    def to_device(self, pointer, array, stream):
        self.memory[pointer][:array.nbytes] = array.tobytes()

    def to_host(self, array, pointer, stream):
        array.view(np.uint8).reshape(-1)[:] = np.frombuffer(
            bytes(self.memory[pointer][:array.nbytes]), np.uint8)

    def synchronize(self, stream):
        pass

    def device_properties(self, device=0):
        return SimpleNamespace(name=b"Orin\x00", major=8, minor=7)


class FakeContext:
    """An execution context whose engine doubles input ``x`` into output ``y``."""

    def __init__(self, cuda, double):
        self.cuda, (self.source, self.target) = cuda, double
        self.shapes, self.addresses, self.profiles = {}, {}, []

    def set_optimization_profile_async(self, index, stream):
        self.profiles.append(index)
        return True

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name, pointer):
        self.addresses[name] = pointer

    def get_tensor_shape(self, name):
        return self.shapes[self.source]

    def execute_async_v3(self, stream):
        shape = self.shapes[self.source]
        size = int(np.prod(shape)) * 4
        x = np.frombuffer(bytes(self.cuda.memory[self.addresses[self.source]][:size]), np.float32)
        self.cuda.memory[self.addresses[self.target]][:size] = (x * 2).tobytes()
        return True


def _engine(cuda, profiles):
    context = FakeContext(cuda, double=("x", "y"))
    names = ["x", "y"]
    engine = SimpleNamespace(num_io_tensors=2, get_tensor_name=names.__getitem__)
    return TrtEngine(engine, context, cuda,
                     inputs=[TensorSpec("x", "float32", ("batch", "sequence")),
                             TensorSpec("unused", "int64", ("batch", "sequence"))],
                     outputs=[TensorSpec("y", "float32", ("batch", "sequence"))],
                     profiles=profiles), context


def test_engine_runs_through_device_buffers_reused_and_grown():
    cuda = FakeCuda()
    profiles = [{"x": ((1, 1), (1, 4), (2, 8))}, {"x": ((1, 9), (1, 16), (2, 64))}]
    engine, context = _engine(cuda, profiles)
    unused = np.zeros((1, 3), np.int64)  # an input TensorRT dropped: checked, never bound
    out = engine.run({"x": np.arange(3, dtype=np.float32)[None], "unused": unused})["y"]
    assert out.tolist() == [[0, 2, 4]] and "unused" not in context.addresses
    assert cuda.mallocs == [256, 256]  # small tensors still get a real buffer
    engine.run({"x": np.ones((2, 8), np.float32), "unused": unused})
    assert cuda.mallocs == [256, 256]  # reused: 64 bytes fit
    out = engine.run({"x": np.ones((2, 40), np.float64), "unused": unused})["y"]  # cast
    assert out.dtype == np.float32 and out.shape == (2, 40) and (out == 2).all()
    assert context.profiles == [1]  # the second profile holds sequence 40
    assert cuda.mallocs == [256, 256, 512, 512]  # grown by doubling
    with pytest.raises(EngineError, match="outside every shape range"):
        engine.run({"x": np.ones((1, 65), np.float32), "unused": unused})
    engine.close()
    assert cuda.memory == {}


def test_buffers_free_the_old_allocation_when_growing():
    cuda = FakeCuda()
    buffers = DeviceBuffers(cuda)
    first = buffers.get("a", 10)
    assert buffers.get("a", 200) == first
    second = buffers.get("a", 1000)
    assert second != first and first not in cuda.memory and cuda.mallocs == [256, 1000]


def test_plan_from_onnx_sets_strong_typing_options_profiles_and_timing_cache(tmp_path):
    trt = FakeTrt()
    options = BuildOptions(workspace_mb=512, opt_level=5, dla_core=1, hardware_compatible=True,
                           version_compatible=True)
    profiles = [{"x": ((1, 1), (1, 8), (4, 64))}, {"x": ((1, 65), (1, 128), (4, 512))}]
    plan, cache = plan_from_onnx(trt, tmp_path / "m.onnx", profiles, options, b"OLD")
    assert (plan, cache) == (b"PLAN", b"CACHE")
    calls = trt.calls
    assert ("create_network", 1 << 1) in calls  # the STRONGLY_TYPED flag, nothing else
    assert ("memory_pool", "WORKSPACE", 512 << 20) in calls
    assert ("flag", "GPU_FALLBACK") in calls and ("flag", "VERSION_COMPATIBLE") in calls
    assert ("timing_cache_in", b"OLD") in calls and ("set_timing_cache", "cache", False) in calls
    assert [c[1] for c in calls if c[0] == "profile"] == profiles
    [(_, config)] = [c for c in calls if c[0] == "build"]
    assert config == {"builder_optimization_level": 5, "default_device_type": "DLA",
                      "DLA_core": 1, "hardware_compatibility_level": "AMPERE_PLUS"}
    plain = FakeTrt()
    plan_from_onnx(plain, tmp_path / "m.onnx", profiles, BuildOptions())
    assert not [c for c in plain.calls if c[0] in ("flag", "memory_pool")]


def test_parser_errors_name_each_node_and_a_failed_build_says_so(tmp_path):
    trt = FakeTrt(parse_errors=[(3, "Unsupported op Foo"), (7, "bad attr")])
    with pytest.raises(GraphLoadError, match=r"rejected .*m.onnx \(2 error\(s\)\): node 3 '/n3' "
                                             r"\(Foo\): Unsupported op Foo; node 7"):
        plan_from_onnx(trt, tmp_path / "m.onnx", [], BuildOptions())
    with pytest.raises(EngineError, match="could not build a plan"):
        plan_from_onnx(FakeTrt(build_fails=True), tmp_path / "m.onnx", [], BuildOptions())


@pytest.fixture
def gpt2(tiny_bundle, tmp_path):
    return Bundle.load(shutil.copytree(tiny_bundle("gpt2", "text-generation"), tmp_path / "g"))


def test_engines_from_bundle_saves_plans_sidecars_and_a_shared_timing_cache(gpt2):
    trt = FakeTrt()
    [plan] = engines_from_bundle(gpt2, "fp32", trt=trt, facts=ORIN,
                                 shapes=[{"sequence": (1, 1, 64)}],
                                 options=BuildOptions(opt_level=2))
    assert plan == gpt2.path / "engines" / "model.fp32.sm87.trt10.3.0.plan"
    assert plan.read_bytes() == b"PLAN"
    cache = gpt2.path / "engines" / "timing.sm87.trt10.3.0.cache"
    assert cache.read_bytes() == b"CACHE"
    sidecar = read_sidecar(plan)
    assert sidecar["source"] == "onnx/model.onnx" and sidecar["tensorrt"] == "10.3.0"
    assert sidecar["source_sha256"] == gpt2.manifest["checksums"]["onnx/model.onnx"]
    assert sidecar["options"]["opt_level"] == 2
    assert sidecar["ranges"][0]["sequence"] == [1, 1, 64]
    assert sidecar["profiles"][0]["past_key_values.0.key"][0] == [1, 4, 0, 8]
    engines_from_bundle(gpt2, "fp32", trt=trt, facts=ORIN)  # the cache is read back
    assert [c[1] for c in trt.calls if c[0] == "timing_cache_in"] == [b"", b"CACHE"]
    assert not list((gpt2.path / "engines").glob(".*"))  # no temp files left


@pytest.fixture
def fake_gpu():
    """A fake Orin: fake tensorrt, and fake CUDA memory with the device's properties."""
    trt, cuda = FakeTrt(), FakeCuda()
    trt.cuda = cuda
    return trt, cuda


def test_engine_from_bundle_refuses_a_missing_plan_and_builds_when_asked(gpt2, fake_gpu):
    trt, cuda = fake_gpu
    with pytest.raises(EngineError, match=r"No TensorRT plan of the graph 'model' \(fp32\).* "
                                          r"Note: build one on this machine with `edgeport "
                                          r"build .* --variant fp32`"):
        engine_from_bundle(gpt2, "model", "fp32", trt=trt, cuda=cuda)
    inputs, outputs = gpt2.graph_specs("model")
    trt.tensors = {spec.name: np.dtype(spec.dtype) for spec in [*inputs, *outputs]}
    engine = engine_from_bundle(gpt2, "model", "fp32", build_if_missing=True, trt=trt,
                                cuda=cuda)
    assert [spec.name for spec in engine.inputs] == [spec.name for spec in inputs]
    assert ("deserialize", b"PLAN") in trt.calls
    assert (gpt2.path / "engines" / "model.fp32.sm87.trt10.3.0.plan").is_file()
    # found now, with no build: the plan is for this GPU and TensorRT
    builds = len([c for c in trt.calls if c[0] == "build"])
    engine_from_bundle(gpt2, "model", "fp32", trt=trt, cuda=cuda)
    assert len([c for c in trt.calls if c[0] == "build"]) == builds
    with pytest.raises(InputError, match="runs on device 'cuda', not 'cpu'"):
        engine_from_bundle(gpt2, "model", device="cpu")
    with pytest.raises(InputError, match="threads: ONNX Runtime options"):
        engine_from_bundle(gpt2, "model", threads=2)


def test_backends_are_chosen_by_name(gpt2, monkeypatch):
    import runtime.engine as engine_module
    from runtime import pipeline

    with pytest.raises(InputError, match="Unknown backend 'tensorrtt'. Did you mean 'tensorrt'"):
        gpt2.engine("model", backend="tensorrtt")
    monkeypatch.setattr(engine_module, "available_providers", lambda: [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    providers = engine_module.providers_for_device("tensorrt", cache_dir=gpt2.path / "e")
    name, options = providers[0]
    assert name == "TensorrtExecutionProvider" and options["trt_engine_cache_enable"]
    assert options["trt_engine_cache_path"] == str(gpt2.path / "e") and (gpt2.path / "e").is_dir()
    assert providers[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="pip install tensorrt cuda-python"):
            pipeline(model=gpt2, device="cuda", backend="tensorrt")


def test_cli_build_without_tensorrt_says_what_to_install(tiny_bundle, capsys):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    bundle = str(tiny_bundle("bert", "text-classification"))
    assert main(["build", bundle, "--variant", "fp32", "--shapes", "sequence=1:64:128"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgeport build: error: TensorRT is not installed")
    assert "`pip install tensorrt cuda-python`" in err and "JetPack" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--shapes", "sequnce=1:2:3"], "Did you mean 'sequence'"),
    (["--shapes", "sequence=8:4:2"], "is not ordered"),
    (["--variant", "int8"], "has no variant 'int8'"),
    (["--opt-level", "9"], "opt level must be 0 to 5"),
])
def test_cli_build_checks_its_arguments_before_needing_tensorrt(argv, message, tiny_bundle,
                                                                 capsys):
    assert main(["build", str(tiny_bundle("bert", "text-classification")), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
