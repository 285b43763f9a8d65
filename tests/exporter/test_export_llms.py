"""The decoder family and today's small LLMs: what their graphs must get right beyond GPT-2's.

Grouped-query attention keeps fewer KV heads in the cache; Gemma takes position_ids; LongRoPE
(Phi-3) switches frequency factors past its original length inside the graph; a RoPE scaling
the graph cannot compute exactly is refused. Token-for-token agreement with transformers'
generate() for every row is in tests/runtime/test_text_generation.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
from generation_checkpoints import LLMS

from exporter import bundle_from_checkpoint
from exporter.configs import decoders
from runtime import Bundle, ExportError, ValidationError

TASK = "text-generation"


def _past_heads(bundle: Bundle) -> int:
    spec = next(s for s in bundle.graphs["model"]["inputs"]
                if s["name"] == "past_key_values.0.key")
    return spec["dims"][1]


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "qwen3", "smollm3",
                                        "phi3", "gemma2", "gemma3_text"])
def test_grouped_query_attention_caches_fewer_heads(model_type, tiny_bundle):
    bundle = Bundle.load(tiny_bundle(model_type, TASK))
    config = bundle.config
    assert config["num_key_value_heads"] == 2 < config["num_attention_heads"]
    assert _past_heads(bundle) == 2


@pytest.mark.parametrize("model_type", ["gemma2", "gemma3_text"])
def test_gemma_takes_position_ids_as_generate_computes_them(model_type, tiny_bundle):
    names = [s["name"] for s in Bundle.load(tiny_bundle(model_type, TASK)).graphs["model"]
             ["inputs"]]
    assert names[:3] == ["input_ids", "attention_mask", "position_ids"]


def test_longrope_is_validated_on_both_sides_of_its_original_length(tiny_bundle):
    bundle = Bundle.load(tiny_bundle("phi3", TASK))
    original = bundle.config["original_max_position_embeddings"]
    report = json.loads((bundle.path / "reports" / "validation.json").read_text())
    lengths = {case["sequence"] + case["past_sequence"] for case in report["cases"]}
    assert min(lengths) <= original < max(lengths)
    assert report["passed"]


def test_longrope_without_its_patch_fails_validation(tiny_checkpoint, tmp_path, monkeypatch):
    """The patch matters: a plain trace keeps the short factors of the traced length, and the
    validation past the original length catches it."""
    monkeypatch.setattr(decoders, "export_patches", lambda model: ())
    with pytest.raises(ValidationError, match="logits"):
        bundle_from_checkpoint(tiny_checkpoint("phi3", TASK), tmp_path / "b", task=TASK)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(("scaling", "named"), [
    ({"rope_type": "dynamic", "factor": 2.0}, "'dynamic'"),
    ({"type": "made-up", "factor": 2.0}, "'made-up'"),
])
def test_a_rope_scaling_the_graph_cannot_compute_is_refused(scaling, named, tiny_checkpoint,
                                                            tmp_path):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint("llama", TASK), checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["rope_scaling"] = scaling
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match=f"rope_scaling type {named}.*Note: supported types"):
        bundle_from_checkpoint(checkpoint, tmp_path / "b", task=TASK)
    assert not (tmp_path / "b").exists()


def test_every_llm_row_has_its_generation_defaults_and_tokenizer(tiny_bundle):
    for model_type in LLMS:
        bundle = Bundle.load(tiny_bundle(model_type, TASK))
        assert bundle.manifest["family"] == "decoder"
        assert (bundle.path / "tokenizer.json").is_file()
        generation = json.loads((bundle.path / "generation_config.json").read_text())
        assert generation["eos_token_id"] == bundle.config["eos_token_id"]
