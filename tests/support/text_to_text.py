"""The comparison of a text-to-text bundle (text2text-generation, summarization, translation)
with transformers.pipeline on the same tiny checkpoint, shared by the three tasks' tests."""

from __future__ import annotations

from compare import assert_same

TEXTS = ["The quick brown fox jumps over the lazy dog.",
         "Today the weather is cold and the market price of coffee is high.", "ok"]
CASES = [
    # the pipeline's defaults (beam search with 4 beams, or the model's own settings), with
    # fewer than its 256 new tokens: the tiny models have 128 positions
    {"max_new_tokens": 12},
    {"num_beams": 1, "max_new_tokens": 10},
    {"num_beams": 4, "num_return_sequences": 2, "max_new_tokens": 10, "length_penalty": 2.0},
    {"num_beams": 3, "max_new_tokens": 10, "early_stopping": "never", "no_repeat_ngram_size": 2},
    {"num_beams": 1, "max_new_tokens": 10, "min_new_tokens": 8, "repetition_penalty": 2.0},
    {"num_beams": 1, "max_new_tokens": 6, "return_tensors": True},
]


def pipeline_name(task: str) -> str:
    return "translation_en_to_de" if task == "translation" else task


def compare_with_transformers(model_type, task, runtime_pipeline, reference_pipeline, *,
                              name: str | None = None, languages: dict | None = None):
    """Every text x case, a list of texts, and a list with two sequences each (``name``: the
    pipeline's task name; ``languages``: src_lang and tgt_lang, passed to every call)."""
    name = name or pipeline_name(task)
    runtime = runtime_pipeline(model_type, task, task_name=name)
    reference = reference_pipeline(model_type, task, task_name=name)
    for text in TEXTS:
        for kwargs in CASES:
            kwargs = {**kwargs, **(languages or {})}
            assert_same(runtime(text, **kwargs), reference(text, **kwargs),
                        f"{name} {model_type} {text!r} {kwargs}")
    kwargs = {"num_beams": 2, "max_new_tokens": 6, **(languages or {})}
    assert_same(runtime(TEXTS, **kwargs), reference(TEXTS, **kwargs), "list")
    kwargs["num_return_sequences"] = 2
    assert_same(runtime(TEXTS[:2], **kwargs), reference(TEXTS[:2], **kwargs), "list of lists")
