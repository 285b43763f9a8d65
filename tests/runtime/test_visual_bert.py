"""VisualBERT (feature-extraction with region features): transformers has no pipeline for it,
so the runtime's results are checked against VisualBertModel itself on the same tiny checkpoint:
last_hidden_state for each text with its visual_embeds, within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
from multimodal_checkpoints import VISUAL_EMBEDDING_DIM

from runtime.errors import InputError

TASK = "feature-extraction"
TEXTS = ["a cat on a sofa", "two people riding bicycles down a long street at night", "sky"]


def _torch_hidden(checkpoint, text, embeds, mask=None, types=None):
    import torch
    from transformers import AutoTokenizer, VisualBertModel

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = VisualBertModel.from_pretrained(checkpoint).eval()
    inputs = tokenizer(text, return_tensors="pt")
    visual = {"visual_embeds": torch.from_numpy(embeds[None].astype(np.float32))}
    if mask is not None:
        visual["visual_attention_mask"] = torch.from_numpy(np.asarray(mask)[None])
    if types is not None:
        visual["visual_token_type_ids"] = torch.from_numpy(np.asarray(types)[None])
    with torch.no_grad():
        return model(**inputs, **visual).last_hidden_state.numpy()


def test_matches_visual_bert_model(runtime_pipeline, tiny_checkpoint):
    checkpoint = tiny_checkpoint("visual_bert", TASK)
    embed = runtime_pipeline("visual_bert", TASK)
    rng = np.random.default_rng(0)
    regions = [rng.standard_normal((n, VISUAL_EMBEDDING_DIM)).astype(np.float32)
               for n in (1, 7, 7)]
    for text, features in zip(TEXTS, regions):
        got = embed(text, visual_embeds=features, return_tensors=True)
        expected = _torch_hidden(checkpoint, text, features)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4)
        assert np.shape(embed(text, visual_embeds=features)) == expected.shape  # nested lists

    # several texts with one region set each, batched: texts padded, each result its own
    stacked = np.stack(regions[1:])
    mask = np.array([[1] * 7, [1] * 5 + [0] * 2])
    types = np.array([[1] * 7, [0] + [1] * 6])
    got = embed(TEXTS[:2], visual_embeds=stacked, visual_attention_mask=mask,
                visual_token_type_ids=types, return_tensors=True, batch_size=2)
    for i in range(2):
        expected = _torch_hidden(checkpoint, TEXTS[i], stacked[i], mask[i], types[i])
        assert got[i].shape == expected.shape
        np.testing.assert_allclose(got[i], expected, atol=1e-4)
    # one region set shared by every text
    shared = embed(TEXTS, visual_embeds=regions[1], return_tensors=True, batch_size=3)
    for text, row in zip(TEXTS, shared):
        np.testing.assert_allclose(row, _torch_hidden(checkpoint, text, regions[1]), atol=1e-4)


def test_bad_visual_inputs_are_clear_errors(runtime_pipeline):
    embed = runtime_pipeline("visual_bert", TASK)
    features = np.zeros((3, VISUAL_EMBEDDING_DIM), np.float32)
    with pytest.raises(InputError, match="needs visual_embeds"):
        embed("a cat")
    with pytest.raises(InputError, match="visual_embeds has shape"):
        embed("a cat", visual_embeds=np.zeros((3, VISUAL_EMBEDDING_DIM + 1), np.float32))
    with pytest.raises(InputError, match="visual_embeds has shape"):
        embed(["a", "b"], visual_embeds=np.zeros((3, 3, VISUAL_EMBEDDING_DIM), np.float32))
    with pytest.raises(InputError, match="dtype"):
        embed("a cat", visual_embeds=np.array([["x"] * VISUAL_EMBEDDING_DIM]))
    with pytest.raises(InputError, match="NaN"):
        embed("a cat", visual_embeds=features + np.nan)
    with pytest.raises(InputError, match="visual_attention_mask has shape"):
        embed("a cat", visual_embeds=features, visual_attention_mask=[1, 1])
    with pytest.raises(InputError, match="0 \\(padding\\) and 1"):
        embed("a cat", visual_embeds=features, visual_attention_mask=[1, 2, 1])
