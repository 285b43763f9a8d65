"""TensorRT shape ranges and plan bookkeeping: pure logic, checked without TensorRT or a GPU."""

from __future__ import annotations

import json
import shutil

import pytest

from runtime import Bundle, EngineError, InputError, ManifestError
from runtime.backends.tensorrt.libs import DeviceFacts
from runtime.backends.tensorrt.plans import (
    BuildOptions,
    check_buildable,
    find_plan,
    missing_plan_message,
    plan_path,
    plan_problems,
    save_plan,
    source_sha256,
)
from runtime.backends.tensorrt.profiles import (
    graph_profile,
    merge_ranges,
    parse_shapes,
    pick_profile,
    resolve_ranges,
)

FAMILIES = {
    ("bert", "text-classification"): {"batch": (1, 1, 8), "sequence": (1, 128, 512)},
    ("gpt2", "text-generation"): {
        "batch": (1, 1, 8), "sequence": (1, 1, 128), "past_sequence": (0, 127, 127),
        "total_sequence": (1, 128, 255)},
    ("bart", "text2text-generation"): {
        "batch": (1, 1, 8), "encoder_sequence": (1, 128, 128),
        "decoder_sequence": (1, 1, 128), "past_sequence": (0, 127, 127)},
    ("vit", "image-classification"): {"batch": (1, 1, 8)},  # 32x32 is static in the graph
    ("detr", "object-detection"): {  # shortest_edge 64, longest_edge 96 in the tiny processor
        "batch": (1, 1, 8), "channels": (3, 3, 3), "height": (32, 64, 96),
        "width": (32, 64, 96)},
    ("wav2vec2", "automatic-speech-recognition"): {
        "batch": (1, 1, 8), "audio_samples": (1600, 160000, 480000)},
    ("whisper", "automatic-speech-recognition"): {  # the encoder's output length is fixed
        "batch": (1, 1, 8), "encoder_sequence": (1500, 1500, 1500),
        "decoder_sequence": (1, 1, 448), "past_sequence": (0, 128, 447)},
}


@pytest.fixture(scope="module")
def bundles(tiny_bundle):
    return {key: Bundle.load(tiny_bundle(*key)) for key in FAMILIES}


@pytest.mark.parametrize("key", FAMILIES, ids=lambda key: key[0])
def test_default_ranges_of_each_family(key, bundles):
    bundle = bundles[key]
    [ranges] = resolve_ranges(bundle)
    assert ranges == FAMILIES[key]
    for graph in bundle.graphs:  # every graph of the bundle gets a profile for every input
        inputs, _ = bundle.graph_specs(graph)
        profile = graph_profile(inputs, ranges)
        assert set(profile) == {spec.name for spec in inputs}
        for low, opt, high in profile.values():
            assert all(a <= b <= c for a, b, c in zip(low, opt, high))


@pytest.mark.parametrize("model_type, task", [("gpt2", "text-generation"),
                                              ("bart", "text2text-generation"),
                                              ("whisper", "automatic-speech-recognition")])
def test_cache_inputs_may_be_empty_and_the_mask_spans_past_and_new(model_type, task, bundles):
    bundle = bundles[model_type, task]
    [ranges] = resolve_ranges(bundle)
    graph = "model" if model_type == "gpt2" else "decoder_model_merged"
    inputs, _ = bundle.graph_specs(graph)
    profile = graph_profile(inputs, ranges)
    caches = [name for name in profile if name.startswith("past_key_values.")]
    assert caches and all(profile[name][0][2] == 0 for name in caches)  # min length 0
    if model_type == "whisper":  # the cross-attention cache: empty, or the encoder's 1500
        assert profile["past_key_values.0.encoder.key"][2][2] == 1500
    if model_type == "gpt2":  # TensorRT checks min, opt and max each: mask = past + new
        for i in range(3):
            assert (profile["attention_mask"][i][1] == profile["past_key_values.0.key"][i][2]
                    + profile["input_ids"][i][1])


def test_overrides_calibration_and_several_profiles(bundles):
    bundle = bundles["gpt2", "text-generation"]
    shapes = [parse_shapes(["sequence=1:16:64", "past_sequence=0:32:63", "batch=2"]),
              parse_shapes(["sequence=1"])]
    first, second = resolve_ranges(bundle, shapes=shapes, calibration={
        "batch": (1, 1, 3), "sequence": (2, 5, 9), "not_a_dim_of_it": (1, 1, 1)})
    assert first == {"batch": (2, 2, 2), "sequence": (1, 16, 64),
                     "past_sequence": (0, 32, 63), "total_sequence": (1, 48, 127)}
    # the second group keeps the calibration data's batch and the default past
    assert second == {"batch": (1, 1, 3), "sequence": (1, 1, 1),
                      "past_sequence": (0, 127, 127), "total_sequence": (1, 128, 128)}
    assert resolve_ranges(bundle, max_batch=32)[0]["batch"] == (1, 1, 32)


@pytest.mark.parametrize("items, message", [
    (["sequence"], "takes NAME=MIN:OPT:MAX or NAME=SIZE"),
    (["sequence=1:2"], "takes NAME=MIN:OPT:MAX or NAME=SIZE"),
    (["sequence=1:a:3"], "sizes must be whole numbers"),
    (["sequence=1.5"], "sizes must be whole numbers"),
    (["sequence=1", "sequence=2"], "gives 'sequence' twice"),
])
def test_shapes_syntax_errors(items, message):
    with pytest.raises(InputError, match=message):
        parse_shapes(items)


@pytest.mark.parametrize("item, message", [
    ("sequnce=1:2:3", "'sequnce' is not a dim name. Did you mean 'sequence'?"),
    ("height=32", "'height' is not a dim of this bundle's graph inputs"),
    ("sequence=1:64:32", "is not ordered 1 <= min <= opt <= max"),
    ("sequence=0:1:8", "is not ordered 1 <= min"),
    ("past_sequence=-1:0:8", "is not ordered 0 <= min"),
    ("sequence=1:1:100000000", "is beyond 16777216"),
    ("total_sequence=1:2:3", r"total_sequence is past_sequence \+ sequence"),
])
def test_overrides_are_checked_against_the_bundle(item, message, bundles):
    bundle = bundles["gpt2", "text-generation"]
    with pytest.raises(InputError, match=message):
        resolve_ranges(bundle, shapes=[parse_shapes([item])])


def test_a_dim_without_a_default_says_how_to_give_it(bundles, tmp_path):
    bert = bundles["bert", "text-classification"]
    config = {k: v for k, v in bert.config.items() if k != "max_position_embeddings"}
    bundle = Bundle(bert.path, bert.manifest, config)  # T5-like: the tokenizer's limit
    limit = bundle.read_json("tokenizer_config.json")["model_max_length"]
    assert resolve_ranges(bundle)[0]["sequence"] == (1, min(128, limit), limit)
    shutil.copytree(bert.path, tmp_path / "b")
    tokenizer = json.loads((tmp_path / "b" / "tokenizer_config.json").read_text())
    tokenizer["model_max_length"] = int(1e30)  # transformers' "no limit"
    (tmp_path / "b" / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    bundle = Bundle(tmp_path / "b", bert.manifest, config)
    with pytest.raises(ManifestError, match="nor does tokenizer_config.json.*--shapes "
                                            "sequence=1:128:512"):
        resolve_ranges(bundle)
    assert resolve_ranges(bundle, shapes=[{"sequence": (1, 8, 64)}])[0]["sequence"] == (1, 8, 64)
    with pytest.raises(InputError, match="max_batch must be at least 1"):
        resolve_ranges(bert, max_batch=0)


def test_merge_ranges_covers_every_graph():
    merged = merge_ranges([{"batch": (1, 1, 1), "sequence": (4, 8, 16)},
                           {"sequence": (1, 2, 32), "past_sequence": (0, 3, 5)}])
    assert merged == {"batch": (1, 1, 1), "sequence": (1, 8, 32), "past_sequence": (0, 3, 5)}


def test_pick_profile_and_its_error():
    profiles = [{"x": ((1, 1), (1, 8), (4, 64))}, {"x": ((1, 65), (1, 128), (4, 512))}]
    assert pick_profile(profiles, {"x": (2, 30)}) == 0
    assert pick_profile(profiles, {"x": (1, 300)}) == 1
    with pytest.raises(EngineError, match=r"shape \[1, 600\], outside every shape range .*"
                                          r"\[1, 1\] to \[4, 64\]; \[1, 65\] to \[4, 512\]"):
        pick_profile(profiles, {"x": (1, 600)})
    mixed = [{"x": ((1,), (1,), (2,)), "y": ((5,), (5,), (6,))},
             {"x": ((5,), (5,), (6,)), "y": ((1,), (1,), (2,))}]
    with pytest.raises(EngineError, match="No single shape range"):
        pick_profile(mixed, {"x": (1,), "y": (1,)})


# --- plans: names, sidecars, compatibility ----------------------------------------------------
ORIN = DeviceFacts((8, 7), "Orin", "10.3.0")
H100 = DeviceFacts((9, 0), "H100", "10.3.0")


def _sidecar(**changes):
    sidecar = {"graph": "model", "variant": "fp32",
               "compute_capability": [8, 7], "gpu": "Orin", "tensorrt": "10.3.0",
               "source": "onnx/model.onnx", "source_sha256": "a" * 64, "options": {},
               "ranges": [{"batch": [1, 1, 8]}], "profiles": []}
    return {**sidecar, **changes}


def test_plan_names_say_graph_variant_gpu_and_tensorrt(tmp_path):
    assert plan_path(tmp_path, "decoder_model_merged", "fp16", ORIN, BuildOptions()) == (
        tmp_path / "engines" / "decoder_model_merged.fp16.sm87.trt10.3.0.plan")
    compatible = BuildOptions(hardware_compatible=True)
    assert plan_path(tmp_path, "model", "fp32", H100, compatible).name == (
        "model.fp32.ampere-plus.trt10.3.0.plan")


@pytest.mark.parametrize("sidecar, facts, problems", [
    (_sidecar(), ORIN, []),
    (_sidecar(), H100, ["built for compute capability 8.7 (Orin), and this GPU (H100) has 9.0"]),
    (_sidecar(options={"hardware_compatible": True}), H100, []),
    (_sidecar(options={"hardware_compatible": True}), DeviceFacts((7, 5), "T4", "10.3.0"),
     ["built for Ampere or newer GPUs, and this GPU (T4) has compute capability 7.5"]),
    (_sidecar(), DeviceFacts((8, 7), "Orin", "10.7.0"),
     ["built with TensorRT 10.3.0, and TensorRT 10.7.0 is installed"]),
    (_sidecar(options={"version_compatible": True}), DeviceFacts((8, 7), "Orin", "10.7.0"), []),
    (_sidecar(options={"version_compatible": True, "hardware_compatible": False}),
     DeviceFacts((8, 7), "Orin", "10.2.0"), ["(version-compatible: that or later)"]),
    (_sidecar(source_sha256="b" * 64), ORIN,
     ["built from another onnx/model.onnx (sha256 bbbbbbbbbbbb..., the bundle's is aaaa"]),
])
def test_plan_problems(sidecar, facts, problems):
    found = plan_problems(sidecar, facts, "a" * 64)
    assert len(found) == len(problems)
    assert all(want in got for want, got in zip(problems, found))


@pytest.fixture
def bert(tiny_bundle, tmp_path):
    """A copy of the tiny BERT bundle that tests may write engines into."""
    return Bundle.load(shutil.copytree(tiny_bundle("bert", "text-classification"),
                                       tmp_path / "bert"))


def test_find_plan_takes_the_one_that_runs_here_and_says_why_others_do_not(bert):
    sha = source_sha256(bert, "model", "fp32")
    for facts in (ORIN, H100):
        side = _sidecar(compute_capability=list(facts.compute_capability), gpu=facts.gpu,
                        source_sha256=sha)
        save_plan(plan_path(bert.path, "model", "fp32", facts, BuildOptions()), b"plan", side)
    plan, sidecar, rejected = find_plan(bert, "model", "fp32", ORIN)
    assert plan.name == "model.fp32.sm87.trt10.3.0.plan" and sidecar["gpu"] == "Orin"

    newer = DeviceFacts((8, 7), "Orin", "10.7.0")
    plan, _, rejected = find_plan(bert, "model", "fp32", newer)
    assert plan is None and len(rejected) == 2
    message = missing_plan_message(bert, "model", "fp32", newer, rejected)
    assert "engines/model.fp32.sm90.trt10.3.0.plan cannot be used" in message
    assert "compute capability 9.0 (H100), and this GPU (Orin) has 8.7" in message
    assert "TensorRT 10.3.0, and TensorRT 10.7.0 is installed" in message
    assert f"Note: build one on this machine with `edgeport build {bert.path} --variant fp32`" \
        in message and "build_if_missing=True" in message


def test_only_tensorrt_friendly_variants_build(bert):
    check_buildable(bert, "fp32")
    bert.manifest["variants"]["int8"] = {"files": {"model": "onnx/model.onnx"},
                                         "recipe": {"name": "dynamic-int8"}}
    with pytest.raises(InputError, match="made by the dynamic-int8 recipe.*--recipe fp16"):
        check_buildable(bert, "int8")
    with pytest.raises(InputError, match="no variant 'fp23'. Did you mean 'fp32'"):
        check_buildable(bert, "fp23")


@pytest.mark.parametrize("options, message", [
    (dict(opt_level=6), "opt level must be 0 to 5"),
    (dict(workspace_mb=0), "workspace must be at least 1 MB"),
    (dict(dla_core=-1), "DLA core must be 0 or more"),
])
def test_build_options_are_checked(options, message):
    with pytest.raises(InputError, match=message):
        BuildOptions(**options)
