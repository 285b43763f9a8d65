"""TensorRT plans built and run on a real GPU, against ONNX Runtime's fp32 graph: each family,
in fp32, fp16 and static int8. Skipped (with the reason) where TensorRT or a GPU is absent."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from runtime import Bundle, MissingDependencyError
from runtime.backends.merged import is_merged_graph
from runtime.backends.tensorrt.profiles import resolve_ranges

pytestmark = [pytest.mark.gpu, pytest.mark.tensorrt]

FAMILIES = [("bert", "text-classification"), ("gpt2", "text-generation"),
            ("bart", "text2text-generation"), ("vit", "image-classification"),
            ("detr", "object-detection"), ("wav2vec2", "automatic-speech-recognition"),
            ("whisper", "automatic-speech-recognition")]
# worst |TensorRT - ONNX Runtime fp32| over the largest |ONNX Runtime fp32| value, per variant
TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2, "static-int8": 0.25}
NEW_TOKENS = 7  # the length fed for each text dim at the first step (no cache yet)


@pytest.fixture(scope="module")
def gpu():
    from runtime.backends.tensorrt.libs import Cuda, DeviceFacts, import_cudart, import_tensorrt

    try:
        trt, cuda = import_tensorrt(), Cuda(import_cudart())
        return DeviceFacts.detect(trt, cuda)
    except MissingDependencyError as exc:
        pytest.skip(f"TensorRT or cuda-python is not installed: {exc}")
    except Exception as exc:  # no GPU, or no driver: cuda-python's error, whatever it is
        pytest.skip(f"no CUDA GPU here: {exc}")


def _feed(bundle: Bundle, graph: str, seed: int = 0) -> dict[str, np.ndarray]:
    """A first-step feed of the graph (empty caches), sized from the default ranges."""
    rng = np.random.default_rng(seed)
    [ranges] = resolve_ranges(bundle)
    sizes = {dim: opt for dim, (_, opt, _) in ranges.items()}
    sizes.update(batch=2, past_sequence=0, total_sequence=NEW_TOKENS)
    for dim in ("sequence", "encoder_sequence", "decoder_sequence"):
        if dim in sizes and ranges[dim][0] != ranges[dim][2]:
            sizes[dim] = NEW_TOKENS
    feed = {}
    inputs, _ = bundle.graph_specs(graph)
    for spec in inputs:
        cache = spec.name.startswith("past_key_values.")
        shape = [d if isinstance(d, int) else (0 if cache and i else sizes[d])
                 for i, d in enumerate(spec.dims)]
        if spec.dtype == "bool":
            feed[spec.name] = np.zeros(shape, bool)
        elif spec.dtype.startswith("int"):
            high = 2 if "mask" in spec.name else 50
            feed[spec.name] = np.ones(shape, spec.dtype) if high == 2 else rng.integers(
                0, high, shape).astype(spec.dtype)
        else:
            feed[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feed


@pytest.mark.parametrize("variant", ["fp32", "fp16", "static-int8"])
@pytest.mark.parametrize("model_type, task", FAMILIES, ids=lambda v: v)
def test_plans_match_onnxruntime_fp32(model_type, task, variant, gpu, tiny_bundle, tmp_path):
    from calibration import variant_from_bundle
    from runtime.backends.tensorrt import engine_from_bundle, engines_from_bundle

    path = shutil.copytree(tiny_bundle(model_type, task), tmp_path / "bundle")
    if variant != "fp32":
        variant_from_bundle(path, variant)
    bundle = Bundle.load(path)
    plans = engines_from_bundle(bundle, variant)
    merged = [graph for graph in bundle.variants[variant]["files"]
              if is_merged_graph(bundle.graph_specs(graph)[0])]
    assert len(plans) == len(bundle.variants[variant]["files"]) + len(merged)  # branch plans
    for graph in bundle.variants[variant]["files"]:
        feed = _feed(bundle, graph)
        expected = bundle.engine(graph, "fp32").run(feed)
        engine = engine_from_bundle(bundle, graph, variant)
        for _ in range(2):  # the second run reuses the device buffers
            got = engine.run(feed)
        for name, want in expected.items():
            have = np.asarray(got[name], np.float32)
            assert have.shape == want.shape, name
            if want.size:
                scale = float(np.abs(want).max()) or 1.0
                error = float(np.abs(have - want).max()) / scale
                assert error < TOLERANCE[variant], f"{graph}/{name}: {error:.3g}"
        engine.close()


def test_pipeline_with_the_tensorrt_backend(gpu, tiny_bundle, tmp_path):
    """Generation through TensorRT engines for every graph, against ONNX Runtime."""
    from runtime import pipeline

    path = shutil.copytree(tiny_bundle("gpt2", "text-generation"), tmp_path / "gpt2")
    reference = pipeline(model=path)("Hello", do_sample=False, max_new_tokens=8)
    trt = pipeline(model=path, device="cuda", backend="tensorrt", build_if_missing=True)
    assert trt("Hello", do_sample=False, max_new_tokens=8) == reference


@pytest.mark.parametrize("model_type, task", [("gpt2", "text-generation"),
                                              ("bart", "summarization"),
                                              ("whisper", "automatic-speech-recognition")])
def test_generation_steps_keep_the_cache_on_the_gpu(model_type, task, gpu, tiny_bundle,
                                                    tmp_path):
    """Teacher-forced steps of three beams (reordered each step) through the TensorRT engines,
    the cache and encoder states left on the GPU: the logits and caches match ONNX Runtime's."""
    from fake_tensorrt import beam_steps

    from runtime.backends.tensorrt.engine import DeviceArray
    from runtime.generation import OnnxGenerationModel

    bundle = Bundle.load(shutil.copytree(tiny_bundle(model_type, task), tmp_path / "b"))
    model = OnnxGenerationModel.from_bundle(bundle, device="cuda", backend="tensorrt",
                                            build_if_missing=True)
    state = beam_steps(bundle, model, OnnxGenerationModel.from_bundle(bundle),
                       TOLERANCE["fp32"])
    assert all(isinstance(array, DeviceArray) for array in state.past.values())
