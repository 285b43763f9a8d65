"""fill-mask: the runtime on exported bundles gives what transformers.pipeline gives on the same
tiny checkpoints (tokens, token strings, sequences, nesting, scores within 1e-4)."""

from __future__ import annotations

import json
import shutil

import pytest
from checkpoints import TINY_CONFIGS
from compare import assert_same_small
from long_text_checkpoints import TINY_LONG_TEXT

from runtime.errors import InputError

TASK = "fill-mask"

TEXTS = [
    "Paris is the [MASK] of France.",
    "Crème brûlée is a [MASK] dessert, n'est-ce pas? Ça va!",
    "[MASK]",
    "It's [MASK]!!! Don't you think so, (really)?",
    "The [MASK] sat on the [MASK].",
]
LONG = "The [MASK] is here. " + "The quick brown fox jumps over the lazy dog. " * 60  # > 512
NOT_IN_VOCAB = ["Paris", "Londonish"]  # tokenize to "paris" and "london" (+ "##ish")

# (inputs, call arguments): every combination runs on every model type.
CASES = (
    [(text, {}) for text in TEXTS]
    + [(TEXTS[0], {"top_k": 1}), (TEXTS[4], {"top_k": 3}), (TEXTS[3], {"top_k": 0}),
       (TEXTS[0], {"targets": ["paris", "london", "capital", "city"]}),
       (TEXTS[1], {"targets": "good", "top_k": 3}),
       (TEXTS[4], {"targets": ["cat", "mat", "dog"], "top_k": 2}),
       (TEXTS[0], {"targets": ["capital", "capital", "city"], "top_k": 10}),
       (TEXTS, {}), (TEXTS, {"top_k": 2, "batch_size": 3}), ([TEXTS[3]], {"top_k": 2}),
       ([], {}),
       (LONG, {"tokenizer_kwargs": {"truncation": True}}),
       ([LONG, TEXTS[0]], {"tokenizer_kwargs": {"truncation": True}, "top_k": 2}),
       (TEXTS[0], {"tokenizer_kwargs": {"truncation": True, "max_length": 8}}),
       (TEXTS[4], {"tokenizer_kwargs": {"add_special_tokens": False}}),
       (TEXTS[0], {"tokenizer_kwargs": {"padding": "max_length", "max_length": 24}})]
)


@pytest.mark.parametrize("model_type", list(TINY_CONFIGS))
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    for inputs, kwargs in CASES:
        assert_same_small(runtime(inputs, **kwargs), reference(inputs, **kwargs),
                    f"{inputs!r:.40} {kwargs}")
    # A target outside the vocabulary stands for its first token, with a warning.
    with pytest.warns(UserWarning, match="not in the vocabulary"):
        actual = runtime(TEXTS[0], targets=NOT_IN_VOCAB)
    assert_same_small(actual, reference(TEXTS[0], targets=NOT_IN_VOCAB))
    assert {r["token_str"] for r in actual} == {"paris", "london"}


def test_pipeline_defaults_match_transformers(runtime_pipeline, reference_pipeline):
    """Arguments of pipeline(...) are defaults; a call's None keeps them, as in transformers."""
    reference = reference_pipeline("bert", TASK)
    defaults = {"top_k": 2, "targets": ["capital", "city", "paris"],
                "tokenizer_kwargs": {"truncation": True}}
    runtime = runtime_pipeline("bert", TASK, **defaults)
    expected_pipe = type(reference)(model=reference.model, tokenizer=reference.tokenizer,
                                    **defaults)
    for kwargs in ({}, {"top_k": None, "targets": None}, {"top_k": 1}, {"targets": "city"}):
        for inputs in (TEXTS[0], [TEXTS[4], LONG]):
            assert_same_small(runtime(inputs, **kwargs), expected_pipe(inputs, **kwargs),
                        f"{kwargs} {inputs!r:.30}")


def test_clean_up_tokenization_spaces(tiny_checkpoint, tmp_path):
    """token_str and sequence are decoded with the tokenizer's clean_up_tokenization_spaces."""
    import transformers

    from exporter import bundle_from_checkpoint
    from runtime import pipeline

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_checkpoint("bert", TASK), checkpoint)
    config_path = checkpoint / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    assert config["clean_up_tokenization_spaces"] is False
    config_path.write_text(json.dumps({**config, "clean_up_tokenization_spaces": True}))
    runtime = pipeline(TASK, model=bundle_from_checkpoint(checkpoint, tmp_path / "b", task=TASK))
    reference = transformers.pipeline(TASK, model=str(checkpoint), device="cpu")
    for inputs, kwargs in [(TEXTS[3], {}), (TEXTS[4], {}), (TEXTS[1], {"top_k": 2}),
                           ("It's [MASK], isn't it?", {"targets": [",", "'", "ok"]})]:
        assert_same_small(runtime(inputs, **kwargs), reference(inputs, **kwargs), f"{inputs!r}")
    assert runtime("It's [MASK], isn't it?", top_k=1)[0]["sequence"].startswith("it's ")


@pytest.mark.parametrize("inputs, kwargs, match", [
    ("Paris is the capital of France.", {}, r"No mask token \(\[MASK\]\)"),
    ([TEXTS[0], "No mask here."], {}, "No mask token"),
    ("", {}, "No mask token"),
    ("A long text before the [MASK]",
     {"tokenizer_kwargs": {"truncation": True, "max_length": 4}}, "truncation may have cut it off"),
    (5, {}, "got int"),
    ([TEXTS[0], None], {}, "NoneType"),
    (TEXTS[0], {"topk": 2}, "Did you mean 'top_k'"),
    (TEXTS[0], {"top_k": -1}, "top_k"),
    (TEXTS[0], {"top_k": 2.5}, "top_k"),
    (TEXTS[0], {"top_k": 10 ** 6}, "vocabulary"),
    (TEXTS[0], {"targets": 5}, "targets"),
    (TEXTS[0], {"targets": [""]}, "No usable target"),
    (TEXTS[0], {"tokenizer_kwargs": {"truncation": "sideways"}}, "truncation"),
    (TEXTS[0], {"tokenizer_kwargs": {"trunc": True}}, "tokenizer arguments"),
    (TEXTS[0], {"tokenizer_kwargs": "truncation"}, "tokenizer_kwargs"),
    (LONG, {}, "tokenizer_kwargs"),
    (LONG, {"tokenizer_kwargs": {"truncation": "only_second"}}, "has no pair"),
])
@pytest.mark.filterwarnings("ignore:The target")
def test_bad_input(inputs, kwargs, match, runtime_pipeline):
    runtime = runtime_pipeline("bert", TASK)
    with pytest.raises(InputError, match=match) as info:
        runtime(inputs, **kwargs)
    # Pipeline.texts (shared) words its type errors without a Note.
    assert "Note:" in str(info.value) or match in ("got int", "NoneType")


def test_bad_pipeline_arguments(runtime_pipeline):
    for defaults in ({"top_k": "5"}, {"targets": 3}, {"tokenizer_kwargs": {"padding": "all"}},
                     {"target": "paris"}):
        with pytest.raises(InputError, match="Note:"):
            runtime_pipeline("bert", TASK, **defaults)


# Longformer and BigBird, with tokenizers of their own kinds (RoBERTa's byte-level BPE and its
# <mask>; sentencepiece and its [MASK]): tests/support/long_text_checkpoints.py.
@pytest.mark.parametrize("model_type", sorted(m for m, task in TINY_LONG_TEXT if task == TASK))
def test_long_text_encoders_match_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    mask = reference.tokenizer.mask_token
    for inputs, kwargs in CASES:
        inputs = (inputs.replace("[MASK]", mask) if isinstance(inputs, str)
                  else [text.replace("[MASK]", mask) for text in inputs])
        try:
            expected = reference(inputs, **kwargs)
        except Exception:  # max_length 8 cuts the mask off these vocabularies' longer pieces
            with pytest.raises(InputError, match="No mask token"):
                runtime(inputs, **kwargs)
            continue
        assert_same_small(runtime(inputs, **kwargs), expected,
                          f"{model_type} {inputs!r:.40} {kwargs}")
