"""The llm recipe: a decoder LM rebuilt from its checkpoint with GroupQueryAttention
(onnxruntime-genai's builder), validated against PyTorch, and run with one cache buffer per
layer that the graph writes into.

In fp32 its tokens are transformers' tokens (greedy and beams, sliding windows, LongRoPE past its
original length, prompts of several lengths in one call); at its default int4 (block 32,
accuracy level 4) every MatMul is 4-bit and the first-step logits keep a cosine above 0.9 with
fp32's on the tiny random models (measured 0.97-0.99).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from compare import assert_same

from calibration import variant_from_bundle
from exporter.llm import LLM_MODEL_TYPES, reference_attention
from runtime import (
    Bundle,
    ExportError,
    InputError,
    MissingDependencyError,
    ValidationError,
    pipeline,
)
from runtime.generation import OnnxGenerationModel

pytest.importorskip("onnxruntime_genai", reason="the llm extra (onnxruntime-genai) is needed")

TASK = "text-generation"
PROMPTS = ["The quick brown fox", "Hello world, this is a longer prompt about the weather"]
CASES = [{"do_sample": False, "max_new_tokens": 12},
         {"do_sample": False, "max_new_tokens": 10, "num_beams": 3, "num_return_sequences": 2},
         # past the shared buffer's first 64 positions, past Mistral's and Gemma 3's windows of
         # 8 and Phi-3's original 16 positions
         {"do_sample": False, "max_new_tokens": 70, "repetition_penalty": 1.3}]


@pytest.fixture(scope="module")
def llm_bundles(tiny_bundle, tmp_path_factory):
    """model_type -> a copy of its tiny bundle with an fp32 llm variant, "llm32" (cached)."""
    made = {}

    def make(model_type: str):
        if model_type not in made:
            path = tmp_path_factory.mktemp(f"llm-{model_type}") / "bundle"
            shutil.copytree(tiny_bundle(model_type, TASK), path)
            variant_from_bundle(path, "llm", name="llm32", precision="fp32")
            made[model_type] = path
        return made[model_type]

    return make


def _eager_pipeline(checkpoint):
    """transformers' pipeline with eager attention: the soft-capped attention the model defines
    (Gemma 2; transformers' default sdpa leaves the cap out)."""
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(checkpoint), attn_implementation="eager")
    return transformers.pipeline(TASK, model=model,
                                 tokenizer=transformers.AutoTokenizer.from_pretrained(
                                     str(checkpoint)), device="cpu")


@pytest.mark.parametrize("model_type", LLM_MODEL_TYPES)
def test_fp32_llm_graph_gives_transformers_tokens(model_type, llm_bundles, reference_pipeline,
                                                  tiny_checkpoint):
    path = llm_bundles(model_type)
    bundle = Bundle.load(path)
    record = bundle.variants["llm32"]["recipe"]["options"]
    assert record["attention"] == "GroupQueryAttention" and record["kv_cache"] == "shared-buffer"
    assert record["precision"] == "fp32" and record["builder"].startswith("onnxruntime-genai")
    assert max(record["validation"]["max_abs_diff"].values()) <= 1e-4
    graph = onnx.load(str(path / bundle.variants["llm32"]["files"]["model"]),
                      load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    assert "GroupQueryAttention" in ops and "Softmax" not in ops
    assert "position_ids" not in {i.name for i in graph.input}

    generate = pipeline(TASK, model=str(path), variant="llm32")
    assert generate.model.shared_cache and not generate.model.takes_padding
    attention = reference_attention(bundle.config)
    reference = (_eager_pipeline(tiny_checkpoint(model_type, TASK)) if attention
                 else reference_pipeline(model_type, TASK))
    for prompt in PROMPTS:
        for kwargs in CASES:
            assert_same(generate(prompt, **kwargs), reference(prompt, **kwargs),
                        f"{model_type} {prompt!r} {kwargs}")


def test_prompts_of_several_lengths_are_generated_as_the_batch_would(llm_bundles):
    """The graph takes no padding: a batch of prompts of different lengths runs prompt by
    prompt, and gives what the fp32 graph gives the padded batch (lengths counted alike)."""
    path = llm_bundles("qwen2")
    llm, fp32 = (pipeline(TASK, model=str(path), variant=v) for v in ("llm32", "fp32"))
    for kwargs in ({"max_new_tokens": 8}, {"max_length": 30, "max_new_tokens": None},
                   {"max_new_tokens": 6, "num_beams": 2, "num_return_sequences": 2}):
        assert llm(PROMPTS, batch_size=2, do_sample=False, **kwargs) == fp32(
            PROMPTS, batch_size=2, do_sample=False, **kwargs), kwargs
    model = OnnxGenerationModel.from_bundle(Bundle.load(path), "llm32")
    with pytest.raises(InputError, match="no padded batch"):
        model.begin(np.array([[0, 5, 6], [7, 8, 9]]), np.array([[0, 1, 1], [1, 1, 1]]))


def test_the_cache_is_written_in_place_and_grows_by_doubling(llm_bundles):
    model = OnnxGenerationModel.from_bundle(Bundle.load(llm_bundles("llama")), "llm32")
    ids = np.array([[5, 17, 99, 230, 11]], dtype=np.int64)
    state = model.begin(ids, np.ones_like(ids))
    buffers = dict(state.past)
    assert all(b.shape[2] == 64 for b in buffers.values())
    logits, state = model.next_logits(state, ids)
    sequences = ids
    for _ in range(70):
        sequences = np.concatenate([sequences, logits.argmax(-1)[:, None]], axis=1)
        logits, state = model.next_logits(state, sequences)
        if sequences.shape[1] <= 64:  # the same buffers, written by the graph
            assert all(state.past[name] is buffers[name] for name in buffers)
    assert all(b.shape[2] == 128 for b in state.past.values()) and state.length == 75
    # the buffers hold the cache the plain graph computes, position for position
    plain = OnnxGenerationModel.from_bundle(Bundle.load(llm_bundles("llama")), "fp32")
    _, reference = plain.next_logits(plain.begin(sequences, np.ones_like(sequences)), sequences)
    for name, buffer in state.past.items():
        np.testing.assert_allclose(buffer[:, :, :75], reference.past[name], atol=1e-4)


def test_a_state_advanced_twice_forks_its_buffers(llm_bundles):
    """No state changes in place (the GenerationModel protocol): advancing an old state again
    must not overwrite the positions a newer state holds in the same buffers."""
    model = OnnxGenerationModel.from_bundle(Bundle.load(llm_bundles("llama")), "llm32")
    ids = np.array([[5, 17, 99, 230, 11]], dtype=np.int64)
    _, old = model.next_logits(model.begin(ids, np.ones_like(ids)), ids)
    first = np.concatenate([ids, [[7]]], axis=1)
    second = np.concatenate([ids, [[300]]], axis=1)
    logits_a, newer = model.next_logits(old, first)
    logits_b, other = model.next_logits(old, second)  # forks: newer keeps token 7's keys
    assert other.past["past_key_values.0.key"] is not newer.past["past_key_values.0.key"]
    again, _ = model.next_logits(newer, np.concatenate([first, [[9]]], axis=1))
    fresh_model = OnnxGenerationModel.from_bundle(Bundle.load(llm_bundles("llama")), "fp32")
    longer = np.concatenate([first, [[9]]], axis=1)
    expected, _ = fresh_model.next_logits(fresh_model.begin(longer, np.ones_like(longer)), longer)
    np.testing.assert_allclose(again, expected, atol=1e-4)
    assert not np.allclose(logits_a, logits_b)


def test_int4_llm_variant_is_the_default(llm_bundles, tmp_path):
    path = tmp_path / "bundle"
    shutil.copytree(llm_bundles("qwen3"), path)
    name = variant_from_bundle(path, "llm")
    bundle = Bundle.load(path)
    record = bundle.variants[name]["recipe"]["options"]
    assert (name, record["precision"]) == ("llm", "int4")
    assert record["int4"]["accuracy_level"] == 4 and record["int4"]["block_size"] == 32
    graph = onnx.load(str(path / bundle.variants[name]["files"]["model"]),
                      load_external_data=False).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == record["int4"]["quantized_matmuls"] >= 4 * 2 + 1
    ids = np.array([[5, 17, 99, 230, 11, 42]], dtype=np.int64)
    first = []
    for variant in ("llm32", name):
        model = OnnxGenerationModel.from_bundle(bundle, variant)
        first.append(model.next_logits(model.begin(ids, np.ones_like(ids)), ids)[0].ravel())
    cosine = first[0] @ first[1] / np.linalg.norm(first[0]) / np.linalg.norm(first[1])
    assert 0.9 < cosine < 1.0
    assert pipeline(TASK, model=str(path), variant=name)(PROMPTS[0], do_sample=False,
                                                         max_new_tokens=4)


def test_int8_llm_variant_follows_fp32_closer_than_int4(llm_bundles, tmp_path):
    """precision=int8: the GroupQueryAttention graph's MatMuls 8-bit (the int8-weights recipe);
    its first logits stay closer to fp32's than int4's do (tiny Qwen3: cosine 0.9996 against
    int4's 0.939), and it generates."""
    path = tmp_path / "bundle"
    shutil.copytree(llm_bundles("qwen3"), path)
    variant_from_bundle(path, "llm", name="llm8", precision="int8")
    variant_from_bundle(path, "llm", name="llm4", precision="int4")
    bundle = Bundle.load(path)
    record = bundle.variants["llm8"]["recipe"]["options"]
    assert record["precision"] == "int8" and record["int8"]["bits"] == 8
    graph = onnx.load(str(path / bundle.variants["llm8"]["files"]["model"]),
                      load_external_data=False).graph
    bits = {a.i for n in graph.node if n.op_type == "MatMulNBits"
            for a in n.attribute if a.name == "bits"}
    assert bits == {8}
    ids = np.array([[5, 17, 99, 230, 11, 42]], dtype=np.int64)
    first = {}
    for variant in ("llm32", "llm8", "llm4"):
        model = OnnxGenerationModel.from_bundle(bundle, variant)
        first[variant] = model.next_logits(model.begin(ids, np.ones_like(ids)), ids)[0].ravel()

    def cosine(a, b):
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    eight, four = cosine(first["llm32"], first["llm8"]), cosine(first["llm32"], first["llm4"])
    assert four < eight < 1.0 and eight > 0.999, (eight, four)
    assert pipeline(TASK, model=str(path), variant="llm8")(PROMPTS[0], do_sample=False,
                                                            max_new_tokens=4)


@pytest.mark.parametrize("model_type", ["phi3", "gemma2"])
def test_fp16_llm_variant_keeps_its_cache_in_float16_and_follows_fp32(model_type, llm_bundles,
                                                                     tmp_path):
    """The GPU graph (weights, activations and the shared cache in float16), run here by ONNX
    Runtime's CPU: step by step along fp32's greedy tokens (past Phi-3's original 16 positions
    and Gemma 2's window of 8) its logits stay within 2% of their scale of fp32's."""
    path = tmp_path / "bundle"
    shutil.copytree(llm_bundles(model_type), path)
    name = variant_from_bundle(path, "llm", name="llm16", precision="fp16")
    bundle = Bundle.load(path)
    record = bundle.variants[name]["recipe"]["options"]
    assert (record["precision"], record["kv_cache_dtype"]) == ("fp16", "float16")
    assert record["validation"]["atol"] == 1e-2
    models = [OnnxGenerationModel.from_bundle(bundle, v) for v in ("llm32", name)]
    ids = np.array([[5, 17, 99, 230, 11, 42]], dtype=np.int64)
    states = [model.begin(ids, np.ones_like(ids)) for model in models]
    sequences = ids
    for _ in range(30):
        (exact, states[0]), (half, states[1]) = (
            model.next_logits(state, sequences) for model, state in zip(models, states))
        assert np.abs(half - exact).max() <= 2e-2 * np.abs(exact).max()
        sequences = np.concatenate([sequences, exact.argmax(-1)[:, None]], axis=1)
    assert {buffer.dtype for buffer in states[1].past.values()} == {np.dtype(np.float16)}
    generate = pipeline(TASK, model=str(path), variant=name)
    assert generate(PROMPTS, do_sample=False, max_new_tokens=5, num_beams=2)


@pytest.mark.parametrize(("model_type", "match"), [
    ("gpt2", "made for llama"), ("opt", "made for llama"), ("bloom", "made for llama")])
def test_architectures_the_builder_gets_wrong_are_refused(model_type, match, tiny_bundle,
                                                          tmp_path):
    path = tmp_path / "bundle"
    shutil.copytree(tiny_bundle(model_type, TASK), path)
    with pytest.raises(ExportError, match=match):
        variant_from_bundle(path, "llm")
    assert set(Bundle.load(path).variants) == {"fp32"}


def test_a_head_size_gqa_cannot_take_and_a_missing_checkpoint_are_clear_errors(
        tiny_bundle, tiny_checkpoint, tmp_path):
    path = tmp_path / "bundle"
    shutil.copytree(tiny_bundle("llama", TASK), path)
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint("llama", TASK), checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "head_dim": 8}))
    with pytest.raises(ExportError, match="multiples of 16.*8"):
        variant_from_bundle(path, "llm", checkpoint=str(checkpoint))
    manifest = json.loads((path / "manifest.json").read_text())
    with pytest.raises(ExportError, match="not a checkpoint directory|not a local directory"):
        variant_from_bundle(path, "llm", checkpoint=str(tmp_path / "gone"))
    with pytest.raises(InputError, match="precision"):
        variant_from_bundle(path, "llm", precision="int2")
    variant_from_bundle(path, "int4", name="q4")
    with pytest.raises(InputError, match="not from the variant 'q4'.*leave --from out"):
        variant_from_bundle(path, "llm", source="q4")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest == json.loads((path / "manifest.json").read_text())


def test_without_onnxruntime_genai_the_error_names_the_extra(tiny_bundle, tmp_path,
                                                             monkeypatch):
    import sys

    path = tmp_path / "bundle"
    shutil.copytree(tiny_bundle("qwen2", TASK), path)
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)
    monkeypatch.setitem(sys.modules, "onnxruntime_genai.models", None)
    with pytest.raises(MissingDependencyError, match=r"edgeport\[llm\]"):
        variant_from_bundle(path, "llm")


def test_llama3_rope_scaling_reaches_the_builder(tiny_checkpoint, tmp_path, monkeypatch):
    """onnxruntime-genai's builder reads original_max_position_embeddings at config.json's top
    level only; Llama 3.x keep it in rope_scaling. Without edgeport's view of the checkpoint
    the builder scales RoPE from the full context, and validation refuses the graph."""
    import exporter.llm

    checkpoint = tiny_checkpoint("llama", TASK)
    assert "original_max_position_embeddings" not in json.loads(
        (checkpoint / "config.json").read_text())
    exporter.llm.build_llm_graph(checkpoint, tmp_path / "good.onnx")
    monkeypatch.setattr(exporter.llm, "_builder_view", lambda checkpoint, config, folder:
                        checkpoint)
    with pytest.raises(ValidationError, match="present.0.key"):
        exporter.llm.build_llm_graph(checkpoint, tmp_path / "bad.onnx")
