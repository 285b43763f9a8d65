"""text-classification: the runtime on exported bundles gives what transformers.pipeline gives
on the same tiny checkpoints (labels, order, output nesting, scores within 1e-4)."""

from __future__ import annotations

import json
import shutil
from contextlib import nullcontext

import pytest
from checkpoints import TINY_CONFIGS
from compare import assert_same_small
from long_text_checkpoints import TINY_LONG_TEXT

from runtime.errors import InputError

TASK = "text-classification"

TEXTS = [
    "I love this movie!",
    "Crème brûlée, déjà vu... naïve café? Ça va!",
    "",
    "It's not bad; it's GREAT!!! (10/10, would watch again)",
    "ok",
]
LONG = "The quick brown fox jumps over the lazy dog, again and again. " * 60  # > 512 tokens
PAIRS = [
    {"text": "Is it raining?", "text_pair": "Yes, it's pouring outside."},
    {"text": "Où est la gare ?", "text_pair": "À gauche, après le café."},
]

# (inputs, call arguments): every combination runs on every model type.
CASES = (
    [(text, {}) for text in TEXTS]
    + [(TEXTS[0], {"top_k": None}), (TEXTS[1], {"top_k": 1}), (TEXTS[3], {"top_k": 0}),
       (TEXTS[0], {"top_k": 2, "function_to_apply": "sigmoid"}),
       (TEXTS[1], {"function_to_apply": "none"}), (TEXTS[3], {"function_to_apply": "SoftMax"}),
       (TEXTS[4], {"top_k": 5, "function_to_apply": "none"}),
       (TEXTS, {}), (TEXTS, {"top_k": None}), (TEXTS, {"top_k": 2, "batch_size": 2}),
       ([TEXTS[0]], {}), ([], {}),
       (PAIRS[0], {}), (PAIRS[1], {"top_k": None}), (PAIRS, {"top_k": 1}),
       ([PAIRS[0], TEXTS[1]], {}),
       ({"text": "Only a text."}, {}),
       (PAIRS[0], {"truncation": "only_second", "max_length": 10}),
       (TEXTS[0], {"truncation": "only_second"}),
       (LONG, {"truncation": True}), ([LONG, TEXTS[0]], {"truncation": True, "top_k": None}),
       (LONG, {"truncation": "longest_first", "max_length": 64}),
       (TEXTS[0], {"padding": "max_length", "max_length": 40, "truncation": True}),
       (TEXTS[0], {"padding": True}), (TEXTS[1], {"add_special_tokens": False}),
       (TEXTS[0], {"return_all_scores": True}), (TEXTS[:2], {"return_all_scores": True}),
       (TEXTS[0], {"return_all_scores": False})]
)


@pytest.mark.parametrize("model_type", list(TINY_CONFIGS))
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    for inputs, kwargs in CASES:
        # transformers warns that return_all_scores is deprecated.
        with pytest.warns(UserWarning) if "return_all_scores" in kwargs else nullcontext():
            expected = reference(inputs, **kwargs)
        assert_same_small(runtime(inputs, **kwargs), expected, f"{inputs!r:.40} {kwargs}")


def test_pipeline_defaults_match_transformers(runtime_pipeline, reference_pipeline):
    """Arguments of pipeline(...) are defaults; the legacy nesting follows the call's top_k."""
    reference = reference_pipeline("bert", TASK)
    for defaults, calls in [
        ({"top_k": 2}, [{}, {"top_k": None}, {"top_k": 1}]),
        ({"top_k": None, "function_to_apply": "sigmoid"}, [{}, {"function_to_apply": "none"}]),
        ({"function_to_apply": "none", "truncation": True}, [{}, {"top_k": 3}]),
    ]:
        runtime = runtime_pipeline("bert", TASK, **defaults)
        expected_pipe = type(reference)(model=reference.model, tokenizer=reference.tokenizer,
                                        **defaults)
        for kwargs in calls:
            for inputs in (TEXTS[0], TEXTS[:2], PAIRS[0]):
                assert_same_small(runtime(inputs, **kwargs), expected_pipe(inputs, **kwargs),
                            f"{defaults} {kwargs} {inputs!r:.30}")
    # The runtime accepts the long text once pipeline(truncation=True) asked for it.
    assert_same_small(runtime(LONG), expected_pipe(LONG))


@pytest.fixture(scope="module")
def config_variant(tiny_checkpoint, tmp_path_factory):
    """config_variant(name, **config) -> (runtime, reference) on the bert checkpoint with its
    config.json edited (num_labels=1 rebuilds the head)."""
    import transformers

    from exporter import bundle_from_checkpoint
    from runtime import pipeline

    def make(name, **config):
        directory = tmp_path_factory.mktemp(f"tc-{name}") / "checkpoint"
        shutil.copytree(tiny_checkpoint("bert", TASK), directory)
        data = json.loads((directory / "config.json").read_text())
        data.update(config)
        (directory / "config.json").write_text(json.dumps(data))
        if len(data["id2label"]) != 3:
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                directory, ignore_mismatched_sizes=True)
            model.save_pretrained(directory)
        bundle = bundle_from_checkpoint(directory, directory.parent / "bundle", task=TASK)
        reference = transformers.pipeline(TASK, model=str(directory), device="cpu")
        return pipeline(TASK, model=bundle), reference

    return make


@pytest.mark.parametrize("name, config, function", [
    ("multi-label", {"problem_type": "multi_label_classification"}, "sigmoid"),
    ("regression", {"problem_type": "regression", "id2label": {"0": "score"},
                    "label2id": {"score": 0}}, "none"),
    ("one-label", {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}, "sigmoid"),
])
def test_default_function_from_config(name, config, function, config_variant):
    runtime, reference = config_variant(name, **config)
    for inputs, kwargs in [(TEXTS[0], {}), (TEXTS, {"top_k": None}), (TEXTS[1], {"top_k": 2}),
                           (TEXTS[3], {"function_to_apply": "softmax", "top_k": None})]:
        assert_same_small(runtime(inputs, **kwargs), reference(inputs, **kwargs),
                          f"{name} {kwargs}")
    # The default really is `function`: the same as asking for it.
    assert_same_small(runtime(TEXTS, top_k=None),
                      runtime(TEXTS, top_k=None, function_to_apply=function))


@pytest.mark.parametrize("inputs, kwargs, match", [
    (5, {}, "got int"),
    (None, {}, "got NoneType"),
    ([TEXTS[0], 3.5], {}, "got float"),
    ([["Is it raining?", "Yes."]], {}, "text_pair"),
    ({"text": "a", "pair": "b"}, {}, "text_pair"),
    ({"text_pair": "b"}, {}, "text_pair"),
    (TEXTS[0], {"function_to_apply": "softmx"}, "Did you mean 'softmax'"),
    (TEXTS[0], {"function_to_apply": 3}, "function_to_apply"),
    (TEXTS[0], {"top_kk": 2}, "Did you mean 'top_k'"),
    (TEXTS[0], {"top_k": -1}, "top_k"),
    (TEXTS[0], {"top_k": "2"}, "top_k"),
    (TEXTS[0], {"top_k": True}, "top_k"),
    (TEXTS[0], {"truncation": "sideways"}, "truncation"),
    (TEXTS[0], {"max_length": 0}, "max_length"),
    (TEXTS[0], {"padding": "everywhere"}, "padding"),
    (TEXTS[0], {"padding": "max_length", "max_length": 600}, "at most 512"),
    (TEXTS[0], {"batch_size": 0}, "batch_size"),
    (LONG, {}, "truncation=True"),
    (LONG, {"truncation": "only_second"}, "has no pair"),
    ([TEXTS[0], LONG], {"max_length": 64}, "truncation=True"),
])
def test_bad_input(inputs, kwargs, match, runtime_pipeline):
    runtime = runtime_pipeline("bert", TASK)
    with pytest.raises(InputError, match=match) as info:
        runtime(inputs, **kwargs)
    assert "Note:" in str(info.value)


def test_bad_pipeline_arguments(runtime_pipeline):
    for defaults in ({"function_to_apply": "relu"}, {"top_k": -2}, {"truncate": True}):
        with pytest.raises(InputError, match="Note:"):
            runtime_pipeline("bert", TASK, **defaults)


# Longformer (global attention on <s>, fed by the runtime), BigBird (full attention) and XLNet
# (left padding, <sep> <cls> last, summary of the last token), with tokenizers of their own
# kinds: tests/support/long_text_checkpoints.py.
@pytest.mark.parametrize("model_type", sorted(m for m, task in TINY_LONG_TEXT if task == TASK))
def test_long_text_encoders_match_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    for inputs, kwargs in CASES:
        if kwargs.get("max_length") == 10:  # the question alone is longer in these vocabularies
            with pytest.raises(Exception, match="too short to respect"):
                reference(inputs, **kwargs)
            with pytest.raises(InputError, match="cannot be cut to max_length=10"):
                runtime(inputs, **kwargs)
            continue
        with pytest.warns(UserWarning) if "return_all_scores" in kwargs else nullcontext():
            expected = reference(inputs, **kwargs)
        assert_same_small(runtime(inputs, **kwargs), expected,
                          f"{model_type} {inputs!r:.40} {kwargs}")
