"""token-classification: the runtime on exported bundles gives what transformers.pipeline gives
on the same tiny checkpoints (entities, words, offsets, labels, nesting; scores within 1e-4)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from checkpoints import TINY_CONFIGS, build_tiny_checkpoint
from compare import assert_same
from long_text_checkpoints import TINY_LONG_TEXT

from runtime.errors import InputError
from runtime.tasks import token_classification

TASK = "token-classification"
STRATEGIES = ["none", "simple", "first", "average", "max"]

TEXTS = [
    "Hugging Face Inc. is based in New York City, near the Brooklyn Bridge!",
    "Zoë and François flew from São Paulo to Zürich — naïve café-goers 😀 (unbelievably)",
    "",
    "Antidisestablishmentarianism's grandiloquent, sesquipedalian verbosity?!",
    "x",
]
_PARAGRAPH = ("Part {}: Angela Merkel met Emmanuel Macron in Strasbourg; the Bundesrepublik's "
              "delegation (Ministerialdirigentin Müller-Lüdenscheidt) arrived unbelievably "
              "late, tweeting #transatlantic @UNESCO. ")
# About 660 tokens: cut at 512 without a stride, read whole in overlapping windows with one.
LONG = "".join(_PARAGRAPH.format(i) for i in range(12))
WORDS = [text.split() for text in TEXTS]


@pytest.fixture(scope="module")
def pipelines(runtime_pipeline, reference_pipeline):
    """pipelines(model_type) -> (runtime, reference) for the tiny checkpoint (cached)."""
    cache = {}

    def make(model_type):
        if model_type not in cache:
            runtime = runtime_pipeline(model_type, TASK)
            cache[model_type] = runtime, reference_pipeline(model_type, TASK)
        return cache[model_type]

    return make


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model_type", list(TINY_CONFIGS))
def test_matches_transformers(model_type, strategy, pipelines):
    runtime, reference = pipelines(model_type)
    cases = [(TEXTS + [LONG], {}), (WORDS, {"is_split_into_words": True})]
    if strategy != "none":  # transformers' windows need an aggregation strategy
        cases.append(([LONG, TEXTS[1]], {"stride": 128}))
    for inputs, kwargs in cases:
        kwargs = dict(kwargs, aggregation_strategy=strategy)
        assert_same(runtime(inputs, **kwargs), reference(inputs, **kwargs),
                    f"{model_type} {inputs!r:.30} {kwargs}")


# Each strategy on another model type: the arguments' handling is the same for all of them.
@pytest.mark.parametrize("strategy, model_type", zip(STRATEGIES, ["bert", "albert", "mpnet",
                                                                  "deberta-v2", "distilbert"]))
def test_arguments_match_transformers(strategy, model_type, pipelines):
    runtime, reference = pipelines(model_type)
    cases = [(TEXTS[0], {}), ([TEXTS[1]], {}), (TEXTS[2], {}),
             (TEXTS[1], {"ignore_labels": []}), (TEXTS[0], {"ignore_labels": ("O", "B-PER")}),
             (WORDS[1], {"is_split_into_words": True, "delimiter": "__"}),
             ([["Ann", "", "Lee"], []], {"is_split_into_words": True, "ignore_labels": []})]
    if strategy != "none":
        cases.append(([TEXTS[0], LONG, TEXTS[2]], {"stride": 0, "ignore_labels": ["O"]}))
    for inputs, kwargs in cases:
        kwargs = dict(kwargs, aggregation_strategy=strategy)
        assert_same(runtime(inputs, **kwargs), reference(inputs, **kwargs),
                    f"{model_type} {inputs!r:.30} {kwargs}")


def test_results_are_what_they_claim(pipelines):
    """Independent of transformers: offsets point at the words, subwords join into words,
    the stride reads the text past the model's length, and entities are ordered."""
    runtime, _ = pipelines("bert")
    tokens = runtime(TEXTS[3], ignore_labels=[])
    assert [t["index"] for t in tokens] == list(range(1, len(tokens) + 1))
    for token in tokens:
        assert TEXTS[3][token["start"]:token["end"]].lower() == token["word"].lstrip("#")
    for entity in runtime(TEXTS[3], aggregation_strategy="first", ignore_labels=[]):
        assert TEXTS[3][entity["start"]:entity["end"]].lower().replace(" ", "") == \
            entity["word"].replace(" ", "")
    cut = runtime(LONG, aggregation_strategy="simple", ignore_labels=[])
    whole = runtime(LONG, aggregation_strategy="simple", ignore_labels=[], stride=16)
    assert cut[-1]["end"] < 0.9 * len(LONG) and whole[-1]["end"] == len(LONG.rstrip())
    starts = [entity["start"] for entity in whole]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    # Each window alone, or many in one run: the same entities.
    assert_same(runtime(LONG, aggregation_strategy="max", stride=100, batch_size=1),
                runtime(LONG, aggregation_strategy="max", stride=100))


def test_arguments_of_pipeline_are_defaults(runtime_pipeline, pipelines):
    _, reference = pipelines("roberta")
    runtime = runtime_pipeline("roberta", TASK, aggregation_strategy="average",
                               ignore_labels=["O", "I-ORG"])
    expected = reference(TEXTS, aggregation_strategy="average", ignore_labels=["O", "I-ORG"])
    assert_same(runtime(TEXTS), expected)
    # None means "not given", as in transformers: the pipeline's defaults stay.
    assert_same(runtime(TEXTS, aggregation_strategy=None, ignore_labels=None), expected)
    assert_same(runtime(TEXTS[1], aggregation_strategy="SIMPLE"),
                reference(TEXTS[1], aggregation_strategy="simple", ignore_labels=["O", "I-ORG"]))


@pytest.mark.parametrize("byte_level", [False, True], ids=["whitespace-bpe", "byte-level-bpe"])
def test_tokenizer_without_word_markers(byte_level, tmp_path):
    """A BPE tokenizer marks no word continuations: transformers guesses subwords from the
    characters around each token, and warns for the word strategies; so does the runtime."""
    import transformers

    from exporter import bundle_from_checkpoint
    from runtime import pipeline

    checkpoint = bpe_checkpoint(tmp_path / "checkpoint", byte_level)
    runtime = pipeline(TASK, model=bundle_from_checkpoint(checkpoint, tmp_path / "bundle",
                                                          task=TASK))
    reference = transformers.pipeline(TASK, model=str(checkpoint), device="cpu")
    texts = TEXTS + ["Brooklyn Bridgeworks: unbelievable!", "Ωmega ⚡ unseen"]
    for strategy in STRATEGIES:
        words = strategy in ("first", "average", "max")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = reference(texts, aggregation_strategy=strategy, ignore_labels=[])
        if words:
            with pytest.warns(UserWarning, match="fallback heuristic"):
                actual = runtime(texts, aggregation_strategy=strategy, ignore_labels=[])
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                actual = runtime(texts, aggregation_strategy=strategy, ignore_labels=[])
        assert_same(actual, expected, f"{strategy}")


CORPUS = TEXTS + [_PARAGRAPH.format(i) for i in range(3)] + [
    "Brooklyn bridge workers believe nothing; Paris, London and Berlin agree."]


def bpe_checkpoint(directory, byte_level: bool):
    """The tiny bert checkpoint with a small BPE tokenizer trained here in place of MiniLM's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    build_tiny_checkpoint("bert", TASK, directory)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.txt"):
        (directory / name).unlink(missing_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    if byte_level:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:  # no decoder: transformers joins the tokens with spaces
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        alphabet = []
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=alphabet, show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=512,
    ).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("inputs, kwargs, match", [
    (42, {}, "got int"),
    (None, {}, "got NoneType"),
    ([TEXTS[0], b"bytes"], {}, "got a list holding bytes"),
    ([["Hello", "world"]], {}, "list"),
    ([], {}, "At least one input"),
    (TEXTS[0], {"aggregation_strategy": "smple"}, "Did you mean 'simple'"),
    (TEXTS[0], {"aggregation_strategy": 1}, "aggregation_strategy"),
    (TEXTS[0], {"top_k": 3}, "takes no argument 'top_k'"),
    (TEXTS[0], {"aggregation": "simple"}, "Did you mean 'aggregation_strategy'"),
    (TEXTS[0], {"grouped_entities": True}, "aggregation_strategy='simple'"),
    (TEXTS[0], {"offset_mapping": [(0, 1)]}, "offset_mapping"),
    (TEXTS[0], {"ignore_labels": "O"}, "ignore_labels"),
    (TEXTS[0], {"ignore_labels": ["O", 3]}, "ignore_labels"),
    (LONG, {"stride": 16}, "needs an aggregation strategy"),
    (LONG, {"stride": 16, "aggregation_strategy": "none"}, "needs an aggregation strategy"),
    (LONG, {"stride": 510, "aggregation_strategy": "first"}, "below 510"),
    (LONG, {"stride": 600, "aggregation_strategy": "first"}, "too large"),
    (LONG, {"stride": -1, "aggregation_strategy": "first"}, "negative"),
    (LONG, {"stride": "16", "aggregation_strategy": "first"}, "whole number"),
    (LONG, {"stride": True, "aggregation_strategy": "first"}, "whole number"),
    (TEXTS[0], {"is_split_into_words": True}, "list of words"),
    ([["a", 1]], {"is_split_into_words": True}, "list of words"),
    (["a", ["b"]], {"is_split_into_words": True}, "list of words"),
    ([], {"is_split_into_words": True}, "At least one input"),
    (WORDS, {"is_split_into_words": "yes"}, "is_split_into_words"),
    (WORDS, {"is_split_into_words": True, "delimiter": 0}, "delimiter"),
    (TEXTS[0], {"batch_size": 0}, "batch_size"),
])
def test_bad_input(inputs, kwargs, match, pipelines):
    runtime, _ = pipelines("bert")
    with pytest.raises(InputError, match=match) as info:
        runtime(inputs, **kwargs)
    assert "Note:" in str(info.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"aggregation_strategy": "biggest"}, "aggregation_strategy"),
    ({"stride": 32}, "needs an aggregation strategy"),
    ({"ignore_subwords": True}, "ignore_subwords"),
    ({"batch_size": -2}, "batch_size"),
])
def test_bad_pipeline_arguments(kwargs, match, runtime_pipeline):
    with pytest.raises(InputError, match=match) as info:
        runtime_pipeline("bert", TASK, **kwargs)
    assert "Note:" in str(info.value)


def test_many_windows_run_in_several_engine_runs(pipelines, monkeypatch):
    """With a small token budget per run the windows of a long text spread over several runs,
    and the result stays transformers'."""
    runtime, reference = pipelines("mpnet")
    calls = []
    run_text = runtime.run_text
    monkeypatch.setattr(runtime, "run_text", lambda e, **k: calls.append(len(e)) or run_text(e))
    monkeypatch.setattr(token_classification, "_TOKENS_PER_RUN", 1024)
    kwargs = {"aggregation_strategy": "average", "stride": 400}
    assert_same(runtime([LONG, TEXTS[1]], **kwargs), reference([LONG, TEXTS[1]], **kwargs))
    assert len(calls) >= 3 and max(calls) == 2, calls


def test_fake_engine_without_a_length_limit(tiny_checkpoint):
    """Independent of transformers, on a fake engine whose half-precision logits favour label
    (position % 3): labels, scores and types come out as computed by hand; and with no
    model_max_length nothing is cut, so a text longer than the model is an error."""
    from runtime.backends.engine import FakeEngine, TensorSpec
    from runtime.tasks import TASKS
    from runtime.text.tokenizer import TextTokenizer

    directory = tiny_checkpoint("bert", TASK)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    del config["model_max_length"]
    tokenizer = TextTokenizer((directory / "tokenizer.json").read_text(), config)

    def run(feed):
        batch, length = feed["input_ids"].shape
        logits = np.zeros((batch, length, 3), dtype=np.float16)
        logits[:, np.arange(length), np.arange(length) % 3] = 5.0
        return {"logits": logits}

    engine = FakeEngine([TensorSpec("input_ids", "int64", ("batch", "sequence"))],
                        [TensorSpec("logits", "float16", ("batch", "sequence", 3))], run)
    ner = TASKS[TASK](config={"id2label": {0: "O", 1: "B-PER", 2: "I-PER"},
                              "max_position_embeddings": 512}, engine=engine,
                      tokenizer=tokenizer)
    score = float(np.exp(5.0) / (np.exp(5.0) + 2))
    assert ner("Ann Lee-Smith") == [
        {"entity": "B-PER", "score": pytest.approx(score, abs=1e-4), "index": 1, "word": "ann",
         "start": 0, "end": 3},
        {"entity": "I-PER", "score": pytest.approx(score, abs=1e-4), "index": 2, "word": "lee",
         "start": 4, "end": 7},
        {"entity": "B-PER", "score": pytest.approx(score, abs=1e-4), "index": 4,
         "word": "smith", "start": 8, "end": 13},
    ]
    assert all(type(e["score"]) is float for e in ner(["Ann Lee-Smith"])[0])
    assert ner("Ann Lee-Smith", aggregation_strategy="simple") == [
        {"entity_group": "PER", "score": pytest.approx(score, abs=1e-4), "word": "ann lee",
         "start": 0, "end": 7},
        {"entity_group": "PER", "score": pytest.approx(score, abs=1e-4), "word": "smith",
         "start": 8, "end": 13},
    ]
    text = LONG[:1500]  # not cut: one entity per token but [CLS] and [SEP]
    assert len(ner(text, ignore_labels=[])) == len(tokenizer.encode_batch([text])[0].ids) - 2
    with pytest.raises(InputError, match="no model_max_length") as info:
        ner(LONG, aggregation_strategy="simple", stride=16)
    assert "Note:" in str(info.value)


# Longformer (byte-level BPE: no word markers, so the word strategies guess, and warn, as in
# transformers), BigBird and XLNet (sentencepiece; XLNet pads on the left):
# tests/support/long_text_checkpoints.py.
@pytest.mark.parametrize("model_type", sorted(m for m, task in TINY_LONG_TEXT if task == TASK))
def test_long_text_encoders_match_transformers(model_type, pipelines):
    runtime, reference = pipelines(model_type)
    for strategy in STRATEGIES:
        cases = [(TEXTS + [LONG], {}), (WORDS, {"is_split_into_words": True}),
                 ([TEXTS[0], TEXTS[1]], {"ignore_labels": []})]
        if strategy != "none":
            cases.append(([LONG, TEXTS[1]], {"stride": 128}))
        for inputs, kwargs in cases:
            kwargs = dict(kwargs, aggregation_strategy=strategy)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the fallback heuristic's, in both
                try:
                    expected = reference(inputs, **kwargs)
                except AssertionError as error:  # RoBERTa's BPE takes words with a prefix space
                    assert "add_prefix_space=True" in str(error)
                    with pytest.raises(InputError, match="add_prefix_space"):
                        runtime(inputs, **kwargs)
                    continue
                actual = runtime(inputs, **kwargs)
            assert_same(actual, expected, f"{model_type} {inputs!r:.30} {kwargs}")
