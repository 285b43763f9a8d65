"""feature-extraction: token embeddings against transformers.pipeline on every architecture,
sentence embeddings of the real all-MiniLM-L6-v2 against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from checkpoints import TINY_CONFIGS
from long_text_checkpoints import TINY_LONG_TEXT
from sentences import sentence_transformers_reference

from runtime import InputError, pipeline

TEXTS = ["Hello world!", "Naïve café owners résumé — über ÇA?", "",
         "a b c " * 20, "Tokenization splits unbelievably long words."]

SENTENCES = [
    "A man is eating food.",
    "Un homme mange de la nourriture.",
    "The quick brown fox jumps over the lazy dog.",
    "",
    "?!",
    "東京は日本の首都です。",
    "Emoji are tokens too 🤖🚀",
    "x " * 400,  # past max_seq_length: sentence-transformers truncates at 256
    "Numbers like 3.14159 and 2,718 and dates like 2026-11-21.",
]


@pytest.mark.parametrize("model_type", sorted(TINY_CONFIGS))
def test_token_embeddings_match_transformers(model_type, runtime_pipeline, reference_pipeline):
    ours = runtime_pipeline(model_type, "feature-extraction")
    reference = reference_pipeline(model_type, "feature-extraction")
    for text in TEXTS:
        got, expected = ours(text), reference(text)
        assert np.shape(got) == np.shape(expected)  # [1, tokens, hidden]
        np.testing.assert_allclose(got, expected, atol=1e-4)
    got = ours(TEXTS, batch_size=3)  # batched with padding: same per-text results
    expected = reference(TEXTS)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-4)
    tensor = ours(TEXTS[0], return_tensors=True)
    assert isinstance(tensor, np.ndarray) and tensor.shape == np.shape(expected[0])


def test_long_text_errors_unless_truncated(runtime_pipeline, reference_pipeline):
    ours = runtime_pipeline("bert", "feature-extraction")
    long_text = "word " * 600
    with pytest.raises(InputError, match="602 tokens long.*at most 512.*truncation=True"):
        ours(long_text)
    got = ours(long_text, truncation=True)
    expected = reference_pipeline("bert", "feature-extraction")(long_text, truncation=True)
    assert np.shape(got) == np.shape(expected) == (1, 512, 32)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_pooling_on_a_plain_model(runtime_pipeline, reference_pipeline):
    ours = runtime_pipeline("bert", "feature-extraction")
    tokens = np.array(reference_pipeline("bert", "feature-extraction")("pool me")[0])
    np.testing.assert_allclose(ours("pool me", pooling="mean"), tokens.mean(0), atol=1e-5)
    np.testing.assert_allclose(ours("pool me", pooling="cls"), tokens[0], atol=1e-5)
    np.testing.assert_allclose(ours("pool me", pooling="max"), tokens.max(0), atol=1e-5)
    unit = ours("pool me", pooling="mean", normalize=True)
    np.testing.assert_allclose(unit, tokens.mean(0) / np.linalg.norm(tokens.mean(0)), atol=1e-5)
    with pytest.raises(InputError, match="Did you mean 'mean'"):
        ours("x", pooling="meen")
    with pytest.raises(InputError, match="needs pooling"):
        ours("x", normalize=True)
    with pytest.raises(InputError, match="embed\\(\\) gives sentence embeddings"):
        ours.embed(["x"])


def test_real_minilm_sentence_embeddings_match_pytorch(minilm_bundle):
    embed = pipeline("feature-extraction", model=minilm_bundle)
    reference = sentence_transformers_reference(SENTENCES)
    batched = embed.embed(SENTENCES, batch_size=4)
    assert batched.shape == (len(SENTENCES), 384)
    cosines = (batched * reference).sum(1) / np.linalg.norm(batched, axis=1)
    assert cosines.min() >= 0.9999, cosines
    one = np.array(embed(SENTENCES[0]))  # the pipeline call: one sentence, one vector
    np.testing.assert_allclose(one, batched[0], atol=1e-5)
    assert np.linalg.norm(one) == pytest.approx(1.0, abs=1e-5)
    # the embeddings carry meaning: the paraphrase is closer than the unrelated sentence
    assert batched[0] @ batched[1] > batched[0] @ batched[2]


def test_minilm_token_embeddings_on_request(minilm_bundle):
    tokens = pipeline("feature-extraction", model=minilm_bundle, pooling=None)("hello world")
    assert np.shape(tokens) == (1, 4, 384)


def test_one_pipeline_from_several_threads(minilm_bundle):
    from concurrent.futures import ThreadPoolExecutor

    embed = pipeline("feature-extraction", model=minilm_bundle)
    texts = [f"sentence number {i} about {w}" for i, w in
             enumerate(["cats", "dogs", "trains", "rain", "music", "code", "tea", "stars"] * 3)]
    serial = [np.array(embed(t)) for t in texts]
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(lambda t: np.array(embed(t)), texts))
    for s, p in zip(serial, parallel):
        np.testing.assert_allclose(s, p, atol=1e-6)


def test_non_string_input_is_refused(minilm_bundle):
    embed = pipeline("feature-extraction", model=minilm_bundle)
    with pytest.raises(InputError, match="Expected a string or a list of strings, got int"):
        embed(42)
    with pytest.raises(InputError, match="holding NoneType"):
        embed(["fine", None])


# Longformer, BigBird and XLNet (left padding: each text's own tokens are the last ones), with
# tokenizers of their own kinds: tests/support/long_text_checkpoints.py.
@pytest.mark.parametrize("model_type", sorted(m for m, task in TINY_LONG_TEXT
                                              if task == "feature-extraction"))
def test_long_text_encoders_match_transformers(model_type, runtime_pipeline,
                                               reference_pipeline):
    ours = runtime_pipeline(model_type, "feature-extraction")
    reference = reference_pipeline(model_type, "feature-extraction")
    for text in TEXTS:
        got, expected = ours(text), reference(text)
        assert np.shape(got) == np.shape(expected)
        np.testing.assert_allclose(got, expected, atol=1e-4)
    for g, e in zip(ours(TEXTS, batch_size=3), reference(TEXTS)):  # padded batches
        np.testing.assert_allclose(g, e, atol=1e-4)
    long_text = "word " * 600
    np.testing.assert_allclose(ours(long_text, truncation=True),
                               reference(long_text, truncation=True), atol=1e-4)
