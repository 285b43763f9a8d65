"""Longformer, BigBird and XLNet: every head exported and validated against PyTorch at two batch
sizes and two lengths; Longformer's patches and global attention, BigBird's full attention and
where transformers itself uses it, XLNet's tokenizer converted from its sentencepiece model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from long_text_checkpoints import TINY_LONG_TEXT, build_tiny_long_text_checkpoint

from exporter import bundle_from_checkpoint
from exporter.architectures import ARCHITECTURES
from exporter.configs import CUSTOM_CONFIGS, longformer
from exporter.configs.big_bird import max_full_attention_tokens
from exporter.configs.patching import applied
from runtime import Bundle, InputError, ValidationError, pipeline
from runtime.text.tokenizer import TextTokenizer


@pytest.mark.parametrize("model_type, task", sorted(TINY_LONG_TEXT))
def test_export_validates_against_pytorch(model_type, task, tiny_bundle):
    bundle = Bundle.load(tiny_bundle(model_type, task))
    report = json.loads((bundle.path / "reports" / "validation.json").read_text())
    assert report["passed"]
    assert {(c["batch"], c["sequence"]) for c in report["cases"]} == {
        (b, s) for b in (1, 3) for s in (9, 23)}
    assert max(report["max_abs_diff"].values()) <= ARCHITECTURES[model_type].atol
    inputs = [spec["name"] for spec in bundle.graphs["model"]["inputs"]]
    assert all(spec["dims"] == ["batch", "sequence"]
               for spec in bundle.graphs["model"]["inputs"])
    # Longformer's classifier and question answerer take global attention, as the manifest says
    global_attention = {("longformer", "question-answering"): "question",
                        ("longformer", "text-classification"): "first"}.get((model_type, task))
    assert ("global_attention_mask" in inputs) == bool(global_attention)
    assert bundle.manifest["preprocessing"].get("global_attention") == global_attention
    assert ("token_type_ids" in inputs) == (model_type == "xlnet")


# --- Longformer ----------------------------------------------------------------------------------

def _attention_layer(window=8, seed=0):
    from transformers import LongformerConfig
    from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

    torch.manual_seed(seed)
    config = LongformerConfig(hidden_size=32, num_attention_heads=2, attention_window=[window])
    return LongformerSelfAttention(config, layer_id=0).eval()


def test_patched_chunks_are_transformers_chunks():
    layer = _attention_layer()
    states = torch.randn(6, 40, 16)
    original = type(layer)._chunk(states, 4)  # as_strided
    with applied(longformer.PATCHES):
        patched = type(layer)._chunk(states, 4)
    torch.testing.assert_close(patched, original, rtol=0, atol=0)

    probs = torch.softmax(torch.randn(3, 40, 2, 9), -1)
    values = torch.randn(3, 40, 2, 16)
    original = layer._sliding_chunks_matmul_attn_probs_value(probs, values, 4)
    with applied(longformer.PATCHES):
        patched = layer._sliding_chunks_matmul_attn_probs_value(probs, values, 4)
    torch.testing.assert_close(patched, original)


@pytest.mark.parametrize("global_tokens", [[[0], [0, 3, 5], []], [[], [], []]])
def test_patched_attention_is_transformers_attention(global_tokens):
    """Rows with different numbers of global tokens, and none at all (transformers' own
    branch without global attention)."""
    layer = _attention_layer()
    hidden = torch.randn(3, 24, 32)
    mask = torch.zeros(3, 24)
    mask[2, 20:] = -10000.0  # padding
    for row, tokens in enumerate(global_tokens):
        mask[row, tokens] = 10000.0
    kwargs = dict(attention_mask=mask, is_index_masked=mask < 0, is_index_global_attn=mask > 0,
                  is_global_attn=bool((mask > 0).any()))
    with torch.no_grad():
        original = layer(hidden, **kwargs)[0]
        with applied(longformer.PATCHES):
            patched = layer(hidden, **kwargs)[0]
    torch.testing.assert_close(patched, original)


def test_longformer_without_the_patches_fails_validation(monkeypatch, tiny_checkpoint, tmp_path):
    """The trace bakes as_strided's strides and the number of global tokens: validation at
    other shapes catches it (the patches are what makes the graph right)."""
    row = CUSTOM_CONFIGS["longformer"]
    monkeypatch.setitem(CUSTOM_CONFIGS, "longformer", type(row)(
        row.onnx_config, row.tasks, validation_feeds=row.validation_feeds,
        preprocessing=row.preprocessing))
    with pytest.raises(ValidationError, match="fails at|disagrees"):
        bundle_from_checkpoint(tiny_checkpoint("longformer", "text-classification"),
                               tmp_path / "bundle", task="text-classification")
    assert not (tmp_path / "bundle").exists()


def test_global_attention_is_what_the_heads_set(tiny_checkpoint, tiny_bundle):
    """The runtime's global_attention_mask gives the logits transformers' heads give when they
    set it themselves (no mask passed): <s> for classification, the question for QA."""
    import transformers

    for task, auto in (("text-classification", "AutoModelForSequenceClassification"),
                       ("question-answering", "AutoModelForQuestionAnswering")):
        runtime = pipeline(task, model=tiny_bundle("longformer", task))
        model = getattr(transformers, auto).from_pretrained(tiny_checkpoint("longformer", task))
        encodings = runtime.tokenizer.encode_batch(
            ["Who lives in Berlin?", "Which river?"],
            ["Wolfgang lives in Berlin, by the Spree.", "The Rhine rises in the Alps."])
        feed = runtime.text_feed(encodings)
        assert feed["global_attention_mask"].sum(axis=1).min() >= 1
        with torch.no_grad():
            expected = model(input_ids=torch.from_numpy(feed["input_ids"]),
                             attention_mask=torch.from_numpy(feed["attention_mask"]))
        for name, value in runtime.engine.run(feed).items():
            np.testing.assert_allclose(value, expected[name].numpy(), atol=1e-5)


def test_question_answering_needs_three_separators(tiny_bundle, reference_pipeline):
    """A question holding </s> has four separators: transformers' head refuses it, so does the
    runtime, with an InputError."""
    inputs = dict(question="Where </s> do I live?", context="I live in Berlin.")
    with pytest.raises(AssertionError, match="three separator tokens"):
        reference_pipeline("longformer", "question-answering")(**inputs)
    runtime = pipeline("question-answering", model=tiny_bundle("longformer",
                                                               "question-answering"))
    with pytest.raises(InputError, match="exactly three separator tokens"):
        runtime(**inputs)


# --- BigBird -------------------------------------------------------------------------------------

def test_big_bird_is_exported_with_full_attention(tiny_bundle):
    bundle = Bundle.load(tiny_bundle("big_bird", "fill-mask"))
    assert bundle.config["attention_type"] == "original_full"


def test_big_bird_matches_transformers_where_transformers_uses_full_attention(tmp_path):
    """With block_size 4 and one random block, transformers runs block-sparse attention past
    (5 + 2) * 4 = 28 tokens, full attention up to there; the graph is full attention: the same
    up to 28 tokens, and past them the same as transformers' model in full attention (which a
    model also keeps, for good, once it has seen a short input)."""
    import transformers

    task = "text-classification"
    checkpoint = build_tiny_long_text_checkpoint(
        "big_bird", task, tmp_path / "checkpoint", block_size=4, num_random_blocks=1)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    assert max_full_attention_tokens(model.config) == 28
    runtime = pipeline(task, model=bundle_from_checkpoint(checkpoint, tmp_path / "b", task=task))

    def logits(ids, model):
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits.numpy()

    ours = {n: runtime.engine.run({"input_ids": np.array([ids]),
                                   "attention_mask": np.ones((1, n), np.int64)})["logits"]
            for n, ids in ((n, list(range(10, 10 + n))) for n in (28, 60))}
    sparse = transformers.AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    long_sparse = logits(list(range(10, 70)), sparse)  # 60 tokens: block-sparse
    assert sparse.bert.attention_type == "block_sparse"
    assert np.abs(long_sparse - ours[60]).max() > 1e-3
    np.testing.assert_allclose(logits(list(range(10, 38)), sparse), ours[28], atol=1e-5)
    assert sparse.bert.attention_type == "original_full"  # switched for good by the short input
    np.testing.assert_allclose(logits(list(range(10, 70)), sparse), ours[60], atol=1e-5)


# --- XLNet ---------------------------------------------------------------------------------------

def test_xlnet_tokenizer_is_converted_from_sentencepiece(tiny_checkpoint, tiny_bundle):
    checkpoint = tiny_checkpoint("xlnet", "text-classification")
    assert (checkpoint / "spiece.model").is_file()
    assert not (checkpoint / "tokenizer.json").exists()
    bundle = tiny_bundle("xlnet", "text-classification")
    tokenizer = TextTokenizer.from_dir(bundle)
    assert tokenizer.padding_side == "left"  # XLNet's class attribute, written down at export
    encodings = tokenizer.encode_batch(["Hello there", "A longer text, with more words"])
    assert tokenizer.convert_ids_to_tokens(encodings[0].ids)[-2:] == ["<sep>", "<cls>"]
    padded = tokenizer.pad(encodings)
    assert padded["attention_mask"][0, 0] == 0 and padded["attention_mask"][0, -1] == 1
    assert padded["token_type_ids"][0, -1] == 2  # <cls>'s own segment
