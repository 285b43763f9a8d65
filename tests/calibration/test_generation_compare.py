"""compare on generative bundles: each variant generates greedily from the same texts as the
reference, and the report gives token agreement, BLEU, the first divergence, the first step's
logits errors, latency per token and sizes; on copies of tiny GPT-2, BART and T5 bundles holding
variants made here (an exact copy of fp32, a perturbed LM head, dynamic int8)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from sentences import SENTENCES

from calibration.budget import variant_within_budget
from calibration.compare import compare_variants, record_summaries
from calibration.quantize import variant_from_bundle
from calibration.report import write_reports
from calibration.variants import staging_for, write_variant
from runtime import Bundle, InputError
from runtime.cli import main

FIRST_STEP = "first-step logits"


def _copy(tiny_bundle, tmp_path, model_type, task) -> Bundle:
    return Bundle.load(shutil.copytree(tiny_bundle(model_type, task), tmp_path / model_type))


def _add_variant(bundle: Bundle, name: str, models: dict | None = None) -> Bundle:
    """A variant of every graph: fp32's file, or the model given for that graph."""
    models = models or {}
    with staging_for(bundle) as staging:
        files = {}
        for graph in bundle.graphs:
            files[graph] = staging / f"{graph}.onnx"
            if graph in models:
                onnx.save(models[graph], str(files[graph]))
            else:
                shutil.copy(bundle.graph_path(graph, "fp32"), files[graph])
        return write_variant(bundle, name, files, {"name": "test"})


def _noisy_lm_head(bundle: Bundle, scale: float) -> onnx.ModelProto:
    """GPT-2's graph with seeded noise on the weight of its LM head."""
    model = onnx.load(str(bundle.graph_path("model", "fp32")))
    node = next(n for n in model.graph.node if n.name == "/lm_head/MatMul")
    weight = next(t for t in model.graph.initializer if t.name == node.input[1])
    array = numpy_helper.to_array(weight)
    noise = np.random.default_rng(0).normal(0, scale * array.std(), array.shape)
    weight.CopyFrom(numpy_helper.from_array((array + noise).astype(np.float32), weight.name))
    return model


def test_gpt2_copy_and_perturbed_lm_head(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path, "gpt2", "text-generation")
    bundle = _add_variant(bundle, "copy")
    bundle = _add_variant(bundle, "noisy", {"model": _noisy_lm_head(bundle, 0.5)})
    report = compare_variants(bundle, variants=["copy", "noisy"], samples=8)
    assert report["task"] == "text-generation" and report["task_metric"] == "token_agreement"
    assert report["data"] == {"source": "built-in", "samples": 8, "seed": 0}
    assert report["generation"]["max_new_tokens"] == 20
    assert report["timing"]["unit"] == "ms per generated token"
    assert 0 < report["reference"]["new_tokens"] <= 8 * 20

    copy = report["variants"]["copy"]
    task = copy["task"]
    assert (task["value"], task["position_agreement"], task["exact_match"], task["bleu"]) == (
        1.0, 1.0, 1.0, 1.0)
    assert task["first_divergence"] == [None] * 8 and task["flips"] == []
    assert copy["outputs"][FIRST_STEP]["identical"] and copy["cosine"] == 1.0
    assert copy["layers"]["top"] == []  # nothing adds error

    noisy = report["variants"]["noisy"]
    task = noisy["task"]
    assert 0.0 < task["value"] < 1.0 and task["value"] <= task["position_agreement"]
    assert 0.0 < task["bleu"] < 1.0 and task["exact_match"] < 1.0
    assert task["flips"] == [i for i, d in enumerate(task["first_divergence"]) if d is not None]
    change = task["changes"][0]
    assert change["sample"] == task["flips"][0]
    assert change["step"] == task["first_divergence"][change["sample"]]
    assert change["reference"] != change["variant"]
    assert noisy["outputs"][FIRST_STEP]["max_abs"] > 0 and noisy["cosine"] < 1.0
    # per-layer error, on the prompt step: the error enters at the perturbed LM head
    assert noisy["layers"]["top"][0]["name"] == "/lm_head/MatMul"
    assert noisy["latency_ms"]["median_ms"] > 0 and noisy["bytes"] > 0

    paths = write_reports(bundle, report)
    markdown, page = paths["md"].read_text(), paths["html"].read_text()
    assert "latency median ms/token" in markdown and FIRST_STEP in markdown
    assert "greedy generation of at most 20 new tokens per text" in markdown
    assert f"Samples whose result changed ({len(task['flips'])} of 8)" in markdown
    assert "| sample | input | step | reference | noisy |" in markdown
    assert "<svg" in page and "ms/token" in page and "http" not in page
    assert json.loads(paths["json"].read_text())["variants"]["noisy"]["task"]["bleu"] == \
        task["bleu"]
    bundle = record_summaries(bundle, report)
    accuracy = bundle.variants["noisy"]["accuracy"]
    assert accuracy["metric"] == "token_agreement" and accuracy["value"] == task["value"]


def test_bart_from_a_data_file_with_dynamic_int8(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path, "bart", "text2text-generation")
    bundle = _add_variant(bundle, "copy")
    variant_from_bundle(bundle.path, "dynamic-int8")
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(SENTENCES[:6]) + "\n\n")  # a blank line is skipped
    report = compare_variants(bundle.path, data, variants=["copy", "int8"], new_tokens=8)
    assert report["data"]["samples"] == 6 and report["data"]["source"] == str(data)
    assert report["variants"]["copy"]["task"]["value"] == 1.0
    int8 = report["variants"]["int8"]
    assert int8["files"] == {"encoder_model": "onnx/encoder_model_int8.onnx",
                             "decoder_model_merged": "onnx/decoder_model_merged_int8.onnx"}
    assert int8["task"]["tokens"] <= 6 * 8
    assert int8["cosine"] > 0.99  # measured 0.9998 (first-step logits)
    assert int8["bytes"] < report["reference"]["bytes"]
    # per-layer error of each graph, the merged decoder's branches apart, on the texts whose
    # first-step logits err most; copy (fp32's files copied) adds no error anywhere
    assert report["variants"]["copy"]["layers"]["top"] == []
    layers = int8["layers"]
    parts = [(part["graph"], part["branch"]) for part in layers["parts"]]
    assert parts == [("encoder_model", None), ("decoder_model_merged", "no_past"),
                     ("decoder_model_merged", "with_past")]
    encoder, first, cached = layers["parts"]
    assert encoder["samples"] == first["samples"] == 4  # one encoder run, one first step each
    assert cached["samples"] == 8  # two cached steps each (LAYER_STEPS 3)
    assert all(part["tensors_compared"] > 50 and part["top"] for part in layers["parts"])
    assert layers["tensors_compared"] == sum(p["tensors_compared"] for p in layers["parts"])
    growth = [row["growth"] for row in layers["top"]]
    assert growth == sorted(growth, reverse=True) and growth[0] > 0
    assert {row["graph"] for row in layers["top"]} == {"encoder_model", "decoder_model_merged"}
    # the error enters where dynamic int8 quantizes: MatMuls with weights, embedding Gathers
    assert {row["op_type"] for row in cached["top"][:5]} <= {"MatMul", "Gather"}
    markdown = write_reports(bundle.path, report)["md"].read_text()
    assert "### Where the error enters: decoder_model_merged (with_past branch)" in markdown
    assert "### Where the error enters: encoder_model (" in markdown


@pytest.mark.parametrize("model_type, task", [("bart", "summarization"),
                                              ("t5", "translation"), ("mbart", "translation"),
                                              ("marian", "translation")])
def test_summarization_and_translation(model_type, task, tiny_bundle, tmp_path):
    bundle = _add_variant(_copy(tiny_bundle, tmp_path, model_type, task), "copy")
    report = compare_variants(bundle, variants=["copy"], samples=4, new_tokens=6)
    assert report["task"] == task
    assert report["variants"]["copy"]["task"]["value"] == 1.0
    assert report["variants"]["copy"]["outputs"][FIRST_STEP]["identical"]


@pytest.mark.parametrize("model_type, task", [("gpt2", "text-generation"),
                                              ("bart", "text2text-generation"),
                                              ("mbart", "translation"), ("marian", "translation")])
def test_pytorch_reference(model_type, task, tiny_bundle, tmp_path):
    """The checkpoint, through the same pipeline and search, generates what fp32 does."""
    bundle = _copy(tiny_bundle, tmp_path, model_type, task)
    report = compare_variants(bundle, variants=["fp32"], reference="pytorch", samples=6,
                              new_tokens=10)
    assert report["reference"]["name"] == "pytorch"
    assert report["reference"]["checkpoint"] == bundle.manifest["source"]["checkpoint"]
    fp32 = report["variants"]["fp32"]
    assert fp32["task"]["value"] == 1.0 and fp32["task"]["bleu"] == 1.0
    assert fp32["outputs"][FIRST_STEP]["max_abs"] < 1e-4  # measured 1e-6
    assert fp32["layers"] is None  # fp32 against PyTorch has no fp32 graph to locate error in


def test_command_line(tiny_bundle, tmp_path, capsys):
    bundle = _add_variant(_copy(tiny_bundle, tmp_path, "gpt2", "text-generation"), "copy")
    assert main(["compare", str(bundle.path), "--samples", "3", "--max-new-tokens", "4",
                 "--no-layers"]) == 0
    out = capsys.readouterr().out
    assert "text-generation on 3 samples (built-in), reference fp32" in out
    assert "| copy | test | 1.0000 |" in out and "latency median ms/token" in out
    report = json.loads((bundle.path / "reports/accuracy.json").read_text())
    assert report["generation"]["max_new_tokens"] == 4
    assert report["variants"]["copy"]["task"]["tokens"] <= 12


def test_bad_input(tiny_bundle, tmp_path):
    bundle = _add_variant(_copy(tiny_bundle, tmp_path, "gpt2", "text-generation"), "copy")
    with pytest.raises(InputError, match="new_tokens must be a positive int, got 0"):
        compare_variants(bundle, new_tokens=0)
    np.savez(tmp_path / "ids.npz", input_ids=np.ones((2, 3), np.int64))
    with pytest.raises(InputError, match="compares from its inputs, not from arrays"):
        compare_variants(bundle, tmp_path / "ids.npz")
    long = tmp_path / "long.txt"
    long.write_text("word " * 400 + "\n")
    with pytest.raises(InputError, match="Cannot generate from the text 'word word.*takes at "
                                         "most 128 positions"):
        compare_variants(bundle, long)
    bert = Bundle.load(tiny_bundle("bert", "text-classification"))
    with pytest.raises(InputError, match="new_tokens .--max-new-tokens. is for generative "
                                         "bundles"):
        compare_variants(bert, new_tokens=5)


def test_max_drop_on_generation(tiny_bundle, tmp_path):
    """Decoder-only (one graph) and encoder-decoder bundles alike get the accuracy-aware loop
    on token agreement; an encoder-decoder's nodes are left in fp32 per graph."""
    gpt2 = _copy(tiny_bundle, tmp_path, "gpt2", "text-generation")
    record = variant_within_budget(gpt2.path, "dynamic-int8", "tokens=0.1", samples=6)
    assert record["metric"] == "token_agreement" and record["drop"] <= 0.1
    accuracy = Bundle.load(gpt2.path).variants["int8"]["accuracy"]
    assert accuracy["metric"] == "token_agreement"
    assert accuracy["accuracy_aware"]["excluded"] == record["excluded"]
    # static int8 of the tiny BART loses a third of its tokens; a few nodes left in fp32
    # (ranked across the encoder and the decoder; measured: decoder MatMuls) bring it back
    bart = _copy(tiny_bundle, tmp_path, "bart", "text2text-generation")
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(SENTENCES[:12]))
    record = variant_within_budget(bart.path, "static-int8", "tokens=0.15", samples=8,
                                   calibration=texts)
    assert record["rounds"][0]["drop"] > 0.15 >= record["drop"]
    excluded = record["excluded"]
    assert sorted(excluded) == ["decoder_model_merged", "encoder_model"]
    assert any(excluded.values())
    variant = Bundle.load(bart.path).variants["qdq"]
    assert variant["accuracy"]["accuracy_aware"]["excluded"] == excluded
    for graph, nodes in excluded.items():  # left float in the variant's graph
        recorded = variant["recipe"]["graphs"][graph]  # a merged decoder's: per branch
        assert set(nodes) == set(recorded.get("nodes_to_exclude", [])).union(
            *(branch["nodes_to_exclude"] for branch in recorded.get("branches", {}).values()))
        model = onnx.load(str(Bundle.load(bart.path).graph_path(graph, "qdq")))
        graphs = [model.graph] + [a.g for n in model.graph.node for a in n.attribute
                                  if a.HasField("g")]
        for node in (n for g in graphs for n in g.node if n.name in nodes):
            assert node.op_type == "MatMul"
    with pytest.raises(InputError, match="measured by 'token_agreement'. Note: pass --max-drop "
                                         "token_agreement=VALUE"):
        variant_within_budget(gpt2.path, "dynamic-int8", "top1=0.05", overwrite=True)
