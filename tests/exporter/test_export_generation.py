"""Export GPT-2, the decoder family and today's small LLMs, BART, T5 and Pegasus with their KV
caches; every graph validated against PyTorch with and without the cache, at two batch sizes and
two lengths."""

from __future__ import annotations

import json

import pytest
from generation_checkpoints import LLMS

from exporter import bundle_from_checkpoint
from exporter.architectures import ARCHITECTURES, infer_task
from runtime import Bundle, ExportError, ValidationError
from runtime.dims import DIM_NAMES, dim_name_from_optimum

# BART and T5 serve three tasks from one checkpoint; each task is exported once somewhere here.
CASES = [("gpt2", "text-generation"), ("bart", "text2text-generation"),
         ("t5", "text2text-generation"), ("bart", "summarization"), ("t5", "translation"),
         ("pegasus", "summarization"), ("mbart", "translation"), ("marian", "translation"),
         *((model_type, "text-generation") for model_type in LLMS)]

# (graph, step) -> the dims of its axes that validation must have taken at two values
STEPS = {
    "decoder": {("model", "prefill"): ("sequence",), ("model", "with past"): ("past_sequence",)},
    "encoder-decoder": {
        ("encoder_model", None): ("encoder_sequence",),
        ("decoder_model_merged", "first"): ("encoder_sequence", "decoder_sequence"),
        ("decoder_model_merged", "with past"): ("encoder_sequence", "past_sequence"),
    },
}


def _dims(graph: dict, side: str) -> dict[str, list]:
    return {spec["name"]: spec["dims"] for spec in graph[side]}


@pytest.mark.parametrize(("model_type", "task"), CASES)
def test_export_validates_every_graph_with_and_without_cache(model_type, task, tiny_checkpoint,
                                                             tiny_bundle):
    bundle = Bundle.load(tiny_bundle(model_type, task))
    row = ARCHITECTURES[model_type]
    assert (bundle.task, bundle.model_type, bundle.manifest["family"]) == (
        task, model_type, row.family)
    # only the bundle's graphs: optimum's unmerged decoders are left behind
    assert list(bundle.graphs) == list(row.graphs)
    assert bundle.variants["fp32"]["files"] == {g: f"onnx/{g}.onnx" for g in row.graphs}
    assert sorted(p.name for p in (bundle.path / "onnx").iterdir()) == sorted(
        f"{g}.onnx" for g in row.graphs)
    assert set(bundle.manifest["checksums"]) == {f"onnx/{g}.onnx" for g in row.graphs}

    report = json.loads((bundle.path / "reports" / "validation.json").read_text())
    assert report["passed"] and bundle.manifest["validation"]["passed"]
    for (graph, step), axes in STEPS[row.family].items():
        cases = [c for c in report["cases"] if c["graph"] == graph and c.get("step") == step]
        assert {c["batch"] for c in cases} == {1, 3}
        for axis in axes:
            assert len({c[axis] for c in cases}) == 2, (graph, step, axis)
    outputs = {o["name"] for g in bundle.graphs.values() for o in g["outputs"]}
    assert set(report["max_abs_diff"]) == outputs
    assert max(report["max_abs_diff"].values()) <= row.atol

    for graph in bundle.graphs.values():
        for spec in graph["inputs"]:  # every input dim named in the vocabulary (or fixed)
            assert all(isinstance(d, int) or d in DIM_NAMES for d in spec["dims"]), spec
    if row.family == "decoder":
        inputs, outputs = _dims(bundle.graphs["model"], "inputs"), _dims(
            bundle.graphs["model"], "outputs")
        assert inputs["input_ids"] == ["batch", "sequence"]
        # positions from the mask inside the graph (OPT, BLOOM's ALiBi, GPT-J, GPT-Neo), or
        # fed as transformers' generate() computes them
        assert inputs.get("position_ids", ["batch", "sequence"]) == ["batch", "sequence"]
        assert inputs["attention_mask"] == ["batch", "total_sequence"]
        assert inputs["past_key_values.0.key"][::2] == ["batch", "past_sequence"]
        assert outputs["present.1.value"][::2] == ["batch", "total_sequence"]
        assert outputs["logits"] == ["batch", "sequence", bundle.config["vocab_size"]]
    else:
        encoder = _dims(bundle.graphs["encoder_model"], "inputs")
        assert encoder == {"input_ids": ["batch", "encoder_sequence"],
                           "attention_mask": ["batch", "encoder_sequence"]}
        inputs = _dims(bundle.graphs["decoder_model_merged"], "inputs")
        assert inputs["input_ids"] == ["batch", "decoder_sequence"]
        assert inputs["encoder_attention_mask"] == ["batch", "encoder_sequence"]
        assert inputs["use_cache_branch"] == [1]
        assert inputs["past_key_values.0.decoder.key"][::2] == ["batch", "past_sequence"]
        assert inputs["past_key_values.1.encoder.value"][::2] == ["batch", "encoder_sequence"]

    checkpoint = tiny_checkpoint(model_type, task)
    assert json.loads((bundle.path / "generation_config.json").read_text()) == json.loads(
        (checkpoint / "generation_config.json").read_text())
    assert (bundle.path / "tokenizer.json").is_file()
    assert bundle.manifest["preprocessing"]["tokenizer"] == "tokenizer.json"


def test_a_generation_graph_that_disagrees_is_refused_with_its_graph_and_step(
        tiny_checkpoint, tmp_path):
    target = tmp_path / "out" / "bundle"
    with pytest.raises(ValidationError) as info:
        bundle_from_checkpoint(tiny_checkpoint("gpt2", "text-generation"), target, atol=1e-12)
    message = str(info.value)
    assert "graph model, step with past, batch 3" in message and "<- fails" in message
    assert "present.1.value" in message
    assert list((tmp_path / "out").iterdir()) == []


def test_generative_tasks_are_inferred_and_checked(tiny_checkpoint, tmp_path):
    assert infer_task({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}) == (
        "text-generation")
    assert infer_task({"model_type": "bart", "architectures": [
        "BartForConditionalGeneration"]}) == "text2text-generation"
    assert infer_task({"model_type": "t5", "architectures": ["T5WithLMHeadModel"]}) == (
        "text2text-generation")
    with pytest.raises(ExportError, match="does not export 'gpt2' for 'fill-mask'"):
        bundle_from_checkpoint(tiny_checkpoint("gpt2", "text-generation"), tmp_path / "b",
                               task="fill-mask")
    assert not (tmp_path / "b").exists()


def test_optimum_cache_axes_have_names():
    assert dim_name_from_optimum("past_sequence_length") == "past_sequence"
    assert dim_name_from_optimum("past_decoder_sequence_length") == "past_sequence"
    # past plus new positions is not the new positions: one name each, one profile range each
    assert dim_name_from_optimum("past_sequence_length + sequence_length") == "total_sequence"
    assert dim_name_from_optimum(
        "past_decoder_sequence_length + decoder_sequence_length") == "total_sequence"
