"""Every task's pipeline on ``backend="tensorrt"``, driven through the real TrtEngine by the fake
TensorRT of ``fake_tensorrt`` (whose engines run the bundle's graphs with ONNX Runtime on fake
device memory): the results equal the ONNX Runtime pipeline's to the bit, generation keeps its
KV cache and encoder states on the device, a beam search reorders them there, outputs of
data-dependent shape come through an output allocator, and a second GPU is used when named.
No GPU needed; the same runs on a real GPU are in test_tensorrt_gpu.py."""

from __future__ import annotations

import gc
import json
import shutil

import numpy as np
import onnx
import pytest
from audio_samples import jfk_16k
from fake_tensorrt import FakeCuda, FakeTrt, HostCudart, beam_steps
from images import photos
from onnx import TensorProto, helper

import runtime.backends.tensorrt.engine as trt_engine
from runtime import Bundle, EngineError, InputError, pipeline
from runtime.backends.engine import TensorSpec, parse_device
from runtime.backends.merged import BranchedEngine, is_merged_graph
from runtime.backends.tensorrt.engine import DeviceArray, TrtEngine, block_size
from runtime.backends.tensorrt.libs import Cuda, DeviceFacts, use_gpu
from runtime.backends.tensorrt.plans import read_sidecar
from runtime.cli import main
from runtime.generation import OnnxGenerationModel

SPEECH = jfk_16k()[:4 * 16000]
CASES = {  # id: (model_type, bundle task, pipeline task, inputs, call arguments)
    "bert": ("bert", "text-classification", None, ["a fine day", "not good at all"],
             {"top_k": None}),
    "gpt2-greedy": ("gpt2", "text-generation", None, ["Once upon", "The cat sat on the"],
                    {"do_sample": False, "max_new_tokens": 6}),
    "gpt2-beams": ("gpt2", "text-generation", None, ["Once upon a time"],
                   {"do_sample": False, "num_beams": 3, "num_return_sequences": 2,
                    "max_new_tokens": 6}),
    "bart-beams": ("bart", "summarization", None, ["the quick brown fox jumps over the dog"],
                   {"num_beams": 2, "max_new_tokens": 6}),
    "t5": ("t5", "translation", "translation_en_to_de", ["the house is small"],
           {"max_new_tokens": 6}),
    "whisper": ("whisper", "automatic-speech-recognition", None, [SPEECH],
                {"num_beams": 2, "return_timestamps": True, "max_new_tokens": 8}),
    "wav2vec2": ("wav2vec2", "automatic-speech-recognition", None, [SPEECH], {}),
    "vit": ("vit", "image-classification", None, list(photos()[:2]), {}),
    "detr": ("detr", "object-detection", None, list(photos()[:2]), {"threshold": 0.0}),
}


@pytest.fixture
def fake_gpus(monkeypatch):
    """Two fake GPUs (an Orin and an A100) and a fake TensorRT over them, in place of the real
    libraries wherever the runtime imports them."""
    cuda = FakeCuda(gpus=[("Orin", 8, 7), ("A100", 8, 0)])
    trt = FakeTrt(cuda)
    monkeypatch.setattr(trt_engine, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(trt_engine, "import_cudart", lambda: None)
    monkeypatch.setattr(trt_engine, "Cuda", lambda _cudart: cuda)
    return trt, cuda


def _bundle(tiny_bundle, tmp_path, model_type, task) -> Bundle:
    """A copy of the tiny bundle: plans are written into it."""
    return Bundle.load(shutil.copytree(tiny_bundle(model_type, task), tmp_path / "bundle"))


@pytest.mark.parametrize("case", CASES)
def test_pipelines_on_tensorrt_give_the_onnxruntime_results(case, fake_gpus, tiny_bundle,
                                                             tmp_path):
    model_type, task, task_name, inputs, arguments = CASES[case]
    trt, cuda = fake_gpus
    bundle = _bundle(tiny_bundle, tmp_path, model_type, task)
    on_cpu = pipeline(task_name, model=bundle)
    on_gpu = pipeline(task_name, model=bundle, device="cuda", backend="tensorrt",
                      build_if_missing=True)
    # a plan per graph; a merged decoder's per branch (a TensorRT conditional cannot hold it)
    expected = sorted(f"{graph}{branch}.fp32.sm87.trt10.3.0.plan" for graph in bundle.graphs
                      for branch in ((".no_past", ".with_past")
                                     if is_merged_graph(bundle.graph_specs(graph)[0]) else ("",)))
    assert sorted(path.name for path in (bundle.path / "engines").glob("*.plan")) == expected
    assert len([call for call in trt.calls if call[0] == "build"]) == len(expected)
    assert not list((bundle.path / "engines").glob(".split-*"))  # the cut graphs are gone
    for item in inputs:
        expected = on_cpu(item, **arguments)
        assert on_gpu(item, **arguments) == expected
    assert cuda.memory, "the engines hold their device buffers"


@pytest.mark.parametrize("case", ["gpt2-beams", "whisper", "detr"])
def test_the_cuda_calls_move_real_bytes(case, monkeypatch, tiny_bundle, tmp_path):
    """The same through the real Cuda wrapper, over a cuda-python runtime module whose "device"
    blocks are host memory: every pointer, size and copy kind Cuda computes is used for real
    (a copy outside a block is an error code, as in CUDA)."""
    model_type, task, task_name, inputs, arguments = CASES[case]
    cudart = HostCudart()
    monkeypatch.setattr(trt_engine, "import_tensorrt", lambda: FakeTrt(memory=cudart))
    monkeypatch.setattr(trt_engine, "import_cudart", lambda: cudart)
    bundle = _bundle(tiny_bundle, tmp_path, model_type, task)
    on_cpu = pipeline(task_name, model=bundle)
    on_gpu = pipeline(task_name, model=bundle, device="cuda", backend="tensorrt",
                      build_if_missing=True)
    for item in inputs:
        assert on_gpu(item, **arguments) == on_cpu(item, **arguments)
    assert cudart.blocks
    engines = [on_gpu.engine] if not on_gpu.generates else [on_gpu.model.decoder,
                                                             on_gpu.model.encoder]
    for engine in filter(None, engines):
        engine.close()
    del on_gpu, engines
    gc.collect()
    assert not cudart.blocks  # every block went back to CUDA


def test_cuda_errors_are_engine_errors_that_say_what_failed():
    cuda = Cuda(HostCudart(capacity=1000))
    with pytest.raises(EngineError, match=r"CUDA cudaMalloc failed: cudaErrorMemoryAllocation "
                                          r"\(2\): out of memory. Note: is a CUDA GPU visible"):
        cuda.malloc(2000)
    pointer = cuda.malloc(100)
    with pytest.raises(EngineError, match="cudaMemcpyAsync failed"):  # past the block's end
        cuda.to_device(pointer, np.zeros(200, np.uint8), cuda.stream())
    facts = DeviceFacts.detect(FakeTrt(), cuda)
    assert facts == DeviceFacts((8, 7), "Orin", "10.3.0") and facts.sm == "sm87"
    with pytest.raises(InputError, match="no GPU cuda:3 here: CUDA sees 1 GPU"):
        use_gpu(cuda, 3)


@pytest.mark.parametrize("model_type, task", [("gpt2", "text-generation"),
                                              ("bart", "summarization"),
                                              ("whisper", "automatic-speech-recognition")])
def test_generation_keeps_the_cache_on_the_device(model_type, task, fake_gpus, tiny_bundle,
                                                  tmp_path):
    _, cuda = fake_gpus
    bundle = _bundle(tiny_bundle, tmp_path, model_type, task)
    model = OnnxGenerationModel.from_bundle(bundle, device="cuda", backend="tensorrt",
                                            build_if_missing=True)
    assert model.io_binding
    cuda.uploads.clear()
    cuda.downloads.clear()
    state = beam_steps(bundle, model, OnnxGenerationModel.from_bundle(bundle))
    assert all(isinstance(array, DeviceArray) for array in state.past.values())
    if model.is_encoder_decoder:  # the encoder's hidden states, read by every step, stay too
        assert isinstance(state.encoder["encoder_hidden_states"], DeviceArray)
    # to the host: the logits of each step, and the caches beam_steps read back at the end
    assert all(shape[-1] == model.vocab_size for shape in cuda.downloads[:-len(state.past)])
    # to the device: token ids, masks, positions (2-D), Whisper's features (3-D) once; never a
    # cache (4-D) or hidden states (3-D)
    assert max(map(len, cuda.uploads)) == (3 if model_type == "whisper" else 2)
    assert len([shape for shape in cuda.uploads if len(shape) == 3]) <= 1


def test_device_arrays_give_their_blocks_back_for_reuse(fake_gpus, tiny_bundle, tmp_path):
    _, cuda = fake_gpus
    bundle = _bundle(tiny_bundle, tmp_path, "gpt2", "text-generation")
    generate = pipeline(model=bundle, device="cuda", backend="tensorrt", build_if_missing=True)
    generate("Once upon", do_sample=False, max_new_tokens=4)
    allocations = len(cuda.mallocs)
    generate("Once upon", do_sample=False, max_new_tokens=4)
    assert len(cuda.mallocs) == allocations  # the same sizes again: all from the pool
    engine = generate.model.decoder
    array = engine.device_array((2, 3), np.float32)
    cuda.write(array.pointer, np.arange(6, dtype=np.float32).reshape(2, 3))
    taken = array.take_rows([1, 1, 0])
    assert taken.numpy().tolist() == [[3, 4, 5], [3, 4, 5], [0, 1, 2]]
    assert repr(taken) == "DeviceArray(shape=(3, 3), dtype=float32, device=('cuda', 0))"
    with pytest.raises(InputError, match="out of range"):
        array.take_rows([2])
    with pytest.raises(EngineError, match="takes int64 of 2 dims"):
        engine.run({"input_ids": array, "attention_mask": np.ones((2, 3), np.int64),
                    "position_ids": np.zeros((2, 3), np.int64),
                    **{spec.name: np.zeros((2, 4, 0, 8), np.float32) for spec in engine.inputs
                       if spec.name.startswith("past_key_values.")}})
    pointer = taken.pointer
    del taken
    assert engine.pool.take(36) == (pointer, block_size(36))  # handed out again


def test_block_sizes_waste_at_most_a_quarter():
    for nbytes in [1, 255, 256, 257, 1000, 4097, 12345, 1 << 20, (1 << 20) + 1, 3 * 10**8]:
        size = block_size(nbytes)
        assert nbytes <= size and (size <= 256 or size < 1.25 * nbytes + 1)


def _nonzero_graph(path):
    """y = the indices of x's nonzero values (an output whose shape depends on the data),
    z = 2 * x."""
    graph = helper.make_graph(
        [helper.make_node("NonZero", ["x"], ["y"]),
         helper.make_node("Add", ["x", "x"], ["z"])], "nonzero",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence"])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [2, "found"]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", "sequence"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                ir_version=9), path)


def test_outputs_of_data_dependent_shape_come_through_an_output_allocator(fake_gpus, tmp_path):
    trt, cuda = fake_gpus
    trt.data_dependent = {"y"}
    _nonzero_graph(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"ONNX:" + (tmp_path / "m.onnx").read_bytes())
    profiles = [{"x": ((1, 1), (1, 8), (4, 64))}]
    engine = TrtEngine.from_plan(
        plan, inputs=[TensorSpec("x", "float32", ("batch", "sequence"))],
        outputs=[TensorSpec("y", "int64", (2, "found")),
                 TensorSpec("z", "float32", ("batch", "sequence"))],
        profiles=profiles, trt=trt, cuda=cuda)
    for x in (np.array([[0, 1, 0, 2]], np.float32), np.eye(4, dtype=np.float32),
              np.zeros((2, 3), np.float32)):
        out = engine.run({"x": x})
        np.testing.assert_array_equal(out["y"], np.stack(np.nonzero(x)))
        np.testing.assert_array_equal(out["z"], 2 * x)
    kept = engine.run_bound({"x": np.eye(3, dtype=np.float32)}, keep={"y"})["y"]
    assert isinstance(kept, DeviceArray) and kept.numpy().tolist() == [[0, 1, 2], [0, 1, 2]]
    context = engine._context
    assert list(context.allocators) == ["y"]  # one allocator, set once, reused


def test_a_named_gpu_is_used_for_the_plan_and_the_engines(fake_gpus, tiny_bundle, tmp_path):
    trt, cuda = fake_gpus
    bundle = _bundle(tiny_bundle, tmp_path, "bert", "text-classification")
    classify = pipeline(model=bundle, device="cuda:1", backend="tensorrt",
                        build_if_missing=True)
    assert (bundle.path / "engines" / "model.fp32.sm80.trt10.3.0.plan").is_file()  # the A100's
    assert classify.engine.device == ("cuda", 1)
    cuda.current = 0  # another thread, say: each run makes its GPU current again
    assert classify("a fine day") == pipeline(model=bundle)("a fine day")
    assert cuda.current == 1
    with pytest.raises(EngineError, match=r"No TensorRT plan .* \(Orin, compute capability 8.7\)"
                                          r".*model.fp32.sm80.trt10.3.0.plan cannot be used: it "
                                          r"was built for compute capability 8.0 \(A100\)"):
        pipeline(model=bundle, device="cuda", backend="tensorrt")
    with pytest.raises(InputError, match=r"no GPU cuda:2 here: CUDA sees 2 GPU\(s\)"):
        pipeline(model=bundle, device="cuda:2", backend="tensorrt")
    with pytest.raises(InputError, match="precision is a hint of the openvino backend; a "
                                         "TensorRT plan runs at the precisions its variant"):
        pipeline(model=bundle, device="cuda:1", backend="tensorrt", precision="bf16")


@pytest.mark.parametrize("device, message", [
    ("gpu", "Unknown device 'gpu'"), ("cuda:x", "Bad device 'cuda:x'"),
    ("cpu:1", "Bad device 'cpu:1'"), ("cuda:-1", "Bad device"),
])
def test_device_names_are_checked(device, message):
    with pytest.raises(InputError, match=message):
        parse_device(device)


def test_onnxruntime_gets_the_gpu_index(monkeypatch, tmp_path):
    import runtime.backends.engine as engine_module

    monkeypatch.setattr(engine_module, "available_providers", lambda: [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert engine_module.providers_for_device("cuda:1") == [
        ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert engine_module.providers_for_device("cuda") == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    (name, options), cuda, cpu = engine_module.providers_for_device("tensorrt:2",
                                                                    cache_dir=tmp_path)
    assert name == "TensorrtExecutionProvider" and options["device_id"] == 2
    assert options["trt_engine_cache_path"] == str(tmp_path)
    assert cuda == ("CUDAExecutionProvider", {"device_id": 2}) and cpu == "CPUExecutionProvider"


def test_edgeport_run_on_the_tensorrt_backend(fake_gpus, tiny_bundle, tmp_path, capsys):
    bundle = _bundle(tiny_bundle, tmp_path, "gpt2", "text-generation")
    argv = ["run", str(bundle.path), "Once upon", "--set", "do_sample=false",
            "--set", "max_new_tokens=4", "--json"]
    assert main(argv) == 0
    on_cpu = json.loads(capsys.readouterr().out)
    assert main([*argv, "--device", "cuda", "--backend", "tensorrt", "--build-if-missing"]) == 0
    assert json.loads(capsys.readouterr().out) == on_cpu
    assert main([*argv, "--build-if-missing"]) == 1
    assert "goes with --backend tensorrt" in capsys.readouterr().err
    assert main([*argv, "--device", "cuda:7", "--backend", "tensorrt"]) == 1
    err = capsys.readouterr().err
    assert "no GPU cuda:7 here" in err and "Traceback" not in err


def test_edgeport_bench_times_the_tensorrt_backend(fake_gpus, tiny_bundle, tmp_path, capsys):
    bundle = _bundle(tiny_bundle, tmp_path, "bert", "text-classification")
    report = tmp_path / "report.json"
    assert main(["bench", str(bundle.path), "--device", "cuda", "--backend", "tensorrt",
                 "--iterations", "2", "--warmup", "1", "--cold-starts", "0", "--sequence", "8",
                 "--json", str(report)]) == 0
    assert "| fp32 (tensorrt) |" in capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["settings"]["engines"] == ["tensorrt"]
    assert [run["backend"] for run in data["runs"]] == ["fp32 (tensorrt)"]
    assert data["runs"][0]["latency_ms"]["engine"]["median"] > 0


def test_a_merged_decoder_runs_as_the_plans_of_its_two_branches(fake_gpus, tiny_bundle,
                                                                  tmp_path):
    bundle = _bundle(tiny_bundle, tmp_path, "bart", "summarization")
    graph = "decoder_model_merged"
    options = dict(backend="tensorrt", device="cuda")
    with pytest.raises(EngineError, match=f"No TensorRT plan of the graph '{graph}' .*`edgeport "
                                          "build"):
        bundle.engine(graph, **options)
    engine = bundle.engine(graph, build_if_missing=True, **options)
    assert isinstance(engine, BranchedEngine) and engine.device == ("cuda", 0)
    plans = bundle.path / "engines"
    sidecars = {path.name: read_sidecar(path) for path in plans.glob(f"{graph}.*.plan")}
    assert {name: side["branch"] for name, side in sidecars.items()} == {
        f"{graph}.no_past.fp32.sm87.trt10.3.0.plan":
            {"name": "no_past", "condition": "use_cache_branch", "when": False},
        f"{graph}.with_past.fp32.sm87.trt10.3.0.plan":
            {"name": "with_past", "condition": "use_cache_branch", "when": True}}
    # each branch's profiles cover only the inputs it reads: no cache before the first step
    no_past = sidecars[f"{graph}.no_past.fp32.sm87.trt10.3.0.plan"]["profiles"][0]
    assert not [name for name in no_past if name.startswith("past_key_values.")]
    with pytest.raises(EngineError, match="needs 'use_cache_branch'"):
        engine.run({"input_ids": np.ones((1, 1), np.int64)})
    (plans / f"{graph}.with_past.fp32.sm87.trt10.3.0.plan").unlink()  # one branch's plan lost
    with pytest.raises(EngineError, match=f"No TensorRT plan of the graph '{graph}'"):
        bundle.engine(graph, **options)
    assert isinstance(bundle.engine(graph, build_if_missing=True, **options), BranchedEngine)
