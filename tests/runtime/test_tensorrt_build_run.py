"""The TensorRT builder and engine driven by fake ``tensorrt`` and cuda-python modules: the
build flags, profiles and timing cache, the engine's buffers and profile choice, the backend
wiring, and `edgeport build` without TensorRT. No GPU needed."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from fake_tensorrt import FakeCuda, FakeTrt

from runtime import Bundle, EngineError, GraphLoadError, InputError, MissingDependencyError
from runtime.backends.engine import TensorSpec
from runtime.backends.tensorrt.builder import engines_from_bundle, plan_from_onnx
from runtime.backends.tensorrt.engine import (
    DeviceBuffers,
    DevicePool,
    TrtEngine,
    engine_from_bundle,
)
from runtime.backends.tensorrt.libs import DeviceFacts
from runtime.backends.tensorrt.plans import BuildOptions, read_sidecar
from runtime.cli import main

ORIN = DeviceFacts((8, 7), "Orin", "10.3.0")


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
        x = self.cuda.read(self.addresses[self.source], self.shapes[self.source], np.float32)
        self.cuda.write(self.addresses[self.target], x * 2)
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
    assert cuda.mallocs == [256, 256, 320, 320]  # grown to the next size class
    with pytest.raises(EngineError, match="outside every shape range"):
        engine.run({"x": np.ones((1, 65), np.float32), "unused": unused})
    engine.close()
    assert cuda.memory == {}
    with pytest.raises(EngineError, match="was closed"):
        engine.run({"x": np.ones((1, 2), np.float32), "unused": unused})


def test_buffers_give_the_smaller_block_back_to_the_pool_when_growing():
    cuda = FakeCuda()
    pool = DevicePool(cuda)
    buffers = DeviceBuffers(pool)
    first = buffers.get("a", 10)
    assert buffers.get("a", 200) == first
    second = buffers.get("a", 1000)
    assert second != first and cuda.mallocs == [256, 1024]
    assert buffers.get("b", 100) == first  # the block "a" outgrew, handed out again
    buffers.free()
    assert pool.take(1000) == (second, 1024) and cuda.mallocs == [256, 1024]
    pool.close()
    assert list(cuda.memory) == [second]  # idle blocks freed; the one taken is still out
    pool.give(second, 1024)  # given back after close: freed at once
    assert cuda.memory == {}


def test_plan_from_onnx_sets_strong_typing_options_profiles_and_timing_cache(tmp_path):
    trt = FakeTrt()
    options = BuildOptions(workspace_mb=512, opt_level=5, dla_core=1, hardware_compatible=True,
                           version_compatible=True)
    profiles = [{"x": ((1, 1), (1, 8), (4, 64))}, {"x": ((1, 65), (1, 128), (4, 512))}]
    plan, cache = plan_from_onnx(trt, tmp_path / "m.onnx", profiles, options, b"OLD")
    assert (plan, cache) == (b"ONNX:" + str(tmp_path / "m.onnx").encode(), b"CACHE")
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
    graph = onnx.load(str(gpt2.graph_path("model", "fp32"))).SerializeToString()
    assert plan.read_bytes() == b"ONNX:" + graph
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
    cuda = FakeCuda()
    return FakeTrt(cuda), cuda


def test_engine_from_bundle_refuses_a_missing_plan_and_builds_when_asked(gpt2, fake_gpu):
    trt, cuda = fake_gpu
    with pytest.raises(EngineError, match=r"No TensorRT plan of the graph 'model' \(fp32\).* "
                                          r"Note: build one on this machine with `edgeport "
                                          r"build .* --variant fp32`"):
        engine_from_bundle(gpt2, "model", "fp32", trt=trt, cuda=cuda)
    inputs, _ = gpt2.graph_specs("model")
    engine = engine_from_bundle(gpt2, "model", "fp32", build_if_missing=True, trt=trt,
                                cuda=cuda)
    assert [spec.name for spec in engine.inputs] == [spec.name for spec in inputs]
    assert [call[1][:5] for call in trt.calls if call[0] == "deserialize"] == [b"ONNX:"]
    assert (gpt2.path / "engines" / "model.fp32.sm87.trt10.3.0.plan").is_file()
    # found now, with no build: the plan is for this GPU and TensorRT
    builds = len([c for c in trt.calls if c[0] == "build"])
    engine_from_bundle(gpt2, "model", "fp32", trt=trt, cuda=cuda)
    assert len([c for c in trt.calls if c[0] == "build"]) == builds
    with pytest.raises(InputError, match=r"runs on device 'cuda' \(or 'cuda:N'\), not 'cpu'"):
        engine_from_bundle(gpt2, "model", device="cpu")
    with pytest.raises(InputError, match="threads: ONNX Runtime options"):
        engine_from_bundle(gpt2, "model", threads=2)


def test_backends_are_chosen_by_name(gpt2, monkeypatch):
    import runtime.backends.engine as engine_module
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


@pytest.mark.parametrize("module", [
    "runtime.backends.engine", "runtime.backends.merged", "runtime.backends.tensorrt.engine",
    "runtime.backends.tensorrt.plans", "runtime.backends.tensorrt.profiles"])
def test_docstring_examples(module):
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(module)).failed == 0
