"""Fuzzing a bundle's config.json and generation_config.json: whatever they hold, building the
pipeline of a tiny bundle and running it on a small valid input either works or raises an
EdgeportError, never another exception (a TypeError, a KeyError, a ZeroDivisionError, a
MemoryError ...), and no NaN score comes out.

Each example starts from the files the exporter wrote for one pipeline family and replaces
values (at the top or nested inside), deletes keys, adds keys the runtime reads with junk of
every type, or drops generation_config.json (the generation fields of config.json then count).
The bundle is copied once per family; each example rewrites only the two JSON files of the
copy and restores them after. ``FOUND`` keeps what the fuzzing found as plain cases.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from audio_samples import generated_signals
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from runtime import pipeline
from runtime.errors import EdgeportError

CONFIG, GENERATION = "config.json", "generation_config.json"

# config.json keys the task pipelines and the generation code read, whether or not the tiny
# bundle's file has them: each may be added with a junk value.
CONFIG_KEYS = (
    "id2label", "label2id", "num_labels", "problem_type", "return_all_scores",
    "max_position_embeddings", "n_positions", "max_target_positions", "max_source_positions",
    "vocab_size", "model_type", "is_encoder_decoder", "task_specific_params", "prefix",
    "text_config", "vision_config", "conv_stride", "conv_kernel", "inputs_to_logits_ratio",
    "num_queries", "projection_dim", "logit_scale_init_value", "pad_token_id", "bos_token_id",
    "eos_token_id", "decoder_start_token_id", "forced_bos_token_id", "forced_eos_token_id",
    "max_length", "min_length", "num_beams", "no_repeat_ngram_size", "bad_words_ids",
    "suppress_tokens", "begin_suppress_tokens", "do_sample", "temperature", "length_penalty",
    "early_stopping", "num_return_sequences", "repetition_penalty", "use_cache",
)
# generation_config.json keys, Whisper's own among them.
GENERATION_KEYS = (
    "max_length", "max_new_tokens", "min_length", "min_new_tokens", "early_stopping",
    "max_time", "stop_strings", "do_sample", "num_beams", "num_return_sequences", "temperature",
    "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff",
    "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "bad_words_ids",
    "renormalize_logits", "forced_bos_token_id", "forced_eos_token_id",
    "remove_invalid_values", "suppress_tokens", "begin_suppress_tokens", "pad_token_id",
    "bos_token_id", "eos_token_id", "decoder_start_token_id", "seed", "transformers_version",
    "forced_decoder_ids", "lang_to_id", "task_to_id", "alignment_heads",
    "max_initial_timestamp_index", "no_timestamps_token_id", "prev_sot_token_id",
    "is_multilingual", "return_timestamps", "language", "task", "median_filter_width",
    "sequence_bias", "guidance_scale", "penalty_alpha", "num_beam_groups", "diversity_penalty",
    "low_memory", "watermarking_config", "compression_ratio_threshold", "no_speech_threshold",
    "logprob_threshold", "condition_on_prev_tokens",
)

integers = st.one_of(
    st.integers(-3, 3), st.integers(0, 3000), st.integers(-2**70, 2**70),
    st.sampled_from([2**31, 2**63, 2**64, 10**30, -10**30, 599, 600, 601, 1000, 1106, 2607,
                     2608, 1500, 3000, 448]),
)
floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 1e-320, 1e308, -1e308, 16000.0]))
strings = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "O", "B-PER", "I-", "<|en|>", "en", "english", "transcribe",
                     "translate", "regression", "multi_label_classification",
                     "single_label_classification", "summarization", "translation_en_to_de",
                     "summarize: ", "{}", "never", "4.57.6", "x" * 20_000]),
)
scalars = st.one_of(integers, floats, strings, st.booleans(), st.none())
keys = st.one_of(st.text(max_size=5),
                 st.sampled_from(["0", "1", "2", "-1", "99", "10000000000000000000000", "1.5",
                                  "<|en|>", "transcribe", "summarization",
                                  "translation_en_to_de", "max_position_embeddings", "prefix",
                                  "num_beams", "max_length"]))
junk = st.recursive(
    st.one_of(scalars, st.lists(integers, max_size=4),
              st.lists(st.tuples(integers, st.one_of(integers, st.none())).map(list),
                       max_size=3)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=4)),
    max_leaves=8,
)
# Values of nearly the right shape: token ids, lists of them, tables of them, sizes.
near_misses = st.one_of(
    integers, floats, st.lists(integers, max_size=4),
    st.lists(st.lists(integers, max_size=3), max_size=3),
    st.dictionaries(keys, integers, max_size=3), st.dictionaries(keys, strings, max_size=3),
)
values = st.one_of(junk, near_misses)


def _paths(value, prefix=(), depth=3):
    """Every (key or index, ...) path to a value inside ``value``, ``depth`` levels at most."""
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for key, child in items:
        yield (*prefix, key)
        if depth > 1:
            yield from _paths(child, (*prefix, key), depth - 1)


@st.composite
def mutated(draw, original: dict, known: tuple[str, ...]) -> dict:
    """``original`` with one to three changes: a value (anywhere, or at or inside a key the
    runtime reads) replaced by junk, a key or list item deleted, or a key the runtime reads
    added with junk."""
    document = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        change = draw(st.sampled_from(["replace", "known", "known", "inside-known", "delete"]))
        if change == "known":
            document[draw(st.sampled_from(known))] = draw(values)
            continue
        paths = sorted(_paths(document), key=repr)
        if change == "inside-known":
            paths = [path for path in paths if path[0] in known]
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        if change == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(values)
    return document


@dataclass
class Family:
    model_type: str
    task: str
    inputs: tuple  # the call's positional arguments
    options: tuple[dict, ...] = ({},)  # its keyword arguments: one of these per example
    tasks: tuple[str | None, ...] = (None,)  # the task names pipeline() may be given
    generates: bool = False  # reads generation_config.json
    examples: int = 50


IMAGE = Image.fromarray(np.random.default_rng(3).integers(0, 256, (24, 40, 3), dtype=np.uint8))
SIGNAL = generated_signals()[1][:8000]  # half a second of a 440 Hz tone
FEW = {"max_new_tokens": 3, "num_beams": 1}  # generation kept short: the model is random

FAMILIES = {
    "bert-text-classification": Family(
        "bert", "text-classification",
        (["I love this movie", {"text": "A question?", "text_pair": "An answer."}],),
        ({}, {"top_k": None}, {"top_k": 2})),
    "bert-token-classification": Family(
        "bert", "token-classification", ("My name is Sarah and I live in London",),
        tuple({"aggregation_strategy": strategy}
              for strategy in ("none", "simple", "first", "average", "max"))),
    "bert-question-answering": Family(
        "bert", "question-answering", (),
        ({"question": "Where do I live?", "context": "My name is Sarah and I live in London."},)),
    "bert-fill-mask": Family("bert", "fill-mask", ("Paris is the [MASK] of France.",),
                             ({"top_k": 1}, {"top_k": 3})),
    "bert-feature-extraction": Family("bert", "feature-extraction", ("Hello world",),
                                      examples=20),
    "gpt2-text-generation": Family(
        "gpt2", "text-generation", (["Hello there", "Hi"],),
        ({"max_new_tokens": 3}, {**FEW, "do_sample": False, "batch_size": 2},
         {"max_new_tokens": 3, "do_sample": False, "num_beams": 2, "num_return_sequences": 2},
         {"max_length": 8, "max_new_tokens": None, "do_sample": False}),
        generates=True, examples=80),
    "t5-text2text-generation": Family(
        "t5", "text2text-generation", ("The quick brown fox jumps over the lazy dog.",),
        (FEW, {"max_new_tokens": 3, "num_beams": 2}, {}),
        tasks=(None, "summarization", "translation", "translation_en_to_de"),
        generates=True, examples=80),
    "whisper-speech-recognition": Family(
        "whisper", "automatic-speech-recognition", (SIGNAL,),
        (FEW, {**FEW, "return_timestamps": True}, {**FEW, "return_language": True},
         {**FEW, "language": "en", "task": "transcribe"}, {**FEW, "chunk_length_s": 0.3},
         {"max_new_tokens": 3, "num_beams": 2}, {}),
        generates=True, examples=80),
    "wav2vec2-speech-recognition": Family(
        "wav2vec2", "automatic-speech-recognition", (SIGNAL,),
        ({}, {"return_timestamps": "char"}, {"return_timestamps": "word"},
         {"chunk_length_s": 0.2})),
    "wav2vec2-audio-classification": Family("wav2vec2", "audio-classification", (SIGNAL,),
                                            ({}, {"top_k": 1}), examples=30),
    "vit-image-classification": Family("vit", "image-classification", (IMAGE,),
                                       ({"top_k": 1}, {"top_k": 10})),
    "detr-object-detection": Family("detr", "object-detection", (IMAGE,),
                                    ({"threshold": 0.0},)),
    "clip-zero-shot": Family("clip", "zero-shot-image-classification", (IMAGE,),
                             ({"candidate_labels": ["a cat", "a dog"]},)),
}


@pytest.fixture(scope="module")
def bundle_copies(tiny_bundle, tmp_path_factory):
    """name -> (a copy of the family's bundle, {file name: its original contents or None})."""
    copies = {}

    def make(name: str) -> tuple[Path, dict]:
        if name not in copies:
            family = FAMILIES[name]
            target = tmp_path_factory.mktemp(f"fuzz-{name}") / "bundle"
            shutil.copytree(tiny_bundle(family.model_type, family.task), target)
            originals = {}
            for file in (CONFIG, GENERATION):
                path = target / file
                originals[file] = json.loads(path.read_text()) if path.exists() else None
            copies[name] = target, originals
        return copies[name]

    return make


def _nan_scores(result) -> list:
    """Every NaN number in a pipeline result (scores, features, timestamps)."""
    found = []
    stack = [result]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, np.ndarray) and item.dtype.kind == "f":
            if np.isnan(item).any():
                found.append(item)
        elif isinstance(item, (float, np.floating)) and math.isnan(item):
            found.append(item)
    return found


def _write(path: Path, document) -> None:
    if document is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps(document))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_model_configs_work_or_raise_edgeport_errors(name, bundle_copies):
    family = FAMILIES[name]
    bundle, originals = bundle_copies(name)

    @st.composite
    def documents(draw):
        config = originals[CONFIG]
        generation = originals[GENERATION]
        target = draw(st.sampled_from(["config", "generation", "both", "config-only"])
                      if family.generates else st.just("config"))
        if target in ("config", "both", "config-only"):
            config = draw(mutated(config, CONFIG_KEYS + GENERATION_KEYS))
        if target in ("generation", "both"):
            generation = draw(mutated(generation or {}, GENERATION_KEYS))
        if target == "config-only":  # the generation fields of config.json count then
            generation = None
        return config, generation

    @settings(max_examples=family.examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(documents=documents(), task=st.sampled_from(family.tasks),
           options=st.sampled_from(family.options))
    def run(documents, task, options):
        config, generation = documents
        try:
            _write(bundle / CONFIG, config)
            _write(bundle / GENERATION, generation)
            try:
                result = pipeline(task, model=bundle)(*family.inputs, **options)
            except EdgeportError:
                return
            assert not _nan_scores(result), f"NaN in the result: {result!r:.300}"
        finally:
            _write(bundle / CONFIG, originals[CONFIG])
            _write(bundle / GENERATION, originals[GENERATION])

    run()


H = 2**70  # beyond numpy's int64
# What the fuzzing found, kept as plain cases: (family, config.json changes,
# generation_config.json changes or "drop", call options (over the family's first), words of
# the error, or None when the pipeline works). The comment says what each did before its value
# was checked: mostly another exception than an EdgeportError.
FOUND = [
    ("bert-token-classification", {"id2label": {"0": "O", "1": ["B-PER"]}}, None,
     {"aggregation_strategy": "simple"},
     "id2label has ['B-PER'] for class '1'"),  # AttributeError
    ("vit-image-classification", {"id2label": {"0": {}, "1": None, "2": 2, "3": [], "4": 0.5}},
     None, {}, "not a name (a string)"),  # returned as the labels
    ("clip-zero-shot", {"text_config": 5}, None, {}, "text_config=5"),  # AttributeError
    ("clip-zero-shot", {"text_config": {"max_position_embeddings": "64"}}, None, {},
     "text_config has max_position_embeddings='64'"),  # TypeError
    ("wav2vec2-audio-classification", {"id2label": {"0": "yes", "7": "no"}}, None, {},
     "no label for [1, 2, 3"),  # KeyError
    ("wav2vec2-speech-recognition", {"conv_stride": [5, None]}, None, {},
     "conv_stride=[5, None]"),  # TypeError
    ("wav2vec2-speech-recognition", {"conv_stride": [0]}, None,
     {"return_timestamps": "char"}, "conv_stride=[0]"),  # timestamps all 0.0
    ("wav2vec2-speech-recognition", {"conv_stride": [1e308, 1e308]}, None, {},
     "conv_stride"),  # OverflowError
    ("whisper-speech-recognition", {"conv_stride": [0]}, None, {**FEW, "chunk_length_s": 0.3},
     "conv_stride=[0]"),  # ZeroDivisionError
    ("t5-text2text-generation", {"prefix": 3}, None, FEW, "prefix=3"),  # TypeError
    ("t5-text2text-generation", {"task_specific_params": ["summarization"]}, None, FEW,
     "task_specific_params=['summarization']"),  # AttributeError
    ("t5-text2text-generation",
     {"task_specific_params": {"text2text-generation": {"prefix": 3}}}, None, FEW,
     "task_specific_params['text2text-generation'] has prefix=3"),  # TypeError
    ("t5-text2text-generation", {}, {"decoder_start_token_id": H}, FEW,
     "decoder_start_token_id holds"),  # OverflowError
    ("t5-text2text-generation", {}, {"decoder_start_token_id": -1}, FEW,
     "outside the model's 500 tokens"),  # OverflowError in the tokenizer
    ("t5-text2text-generation", {}, {"decoder_start_token_id": 1000}, FEW,
     "outside the model's 500 tokens"),  # ONNX Runtime's error
    ("t5-text2text-generation", {}, {"pad_token_id": -3, "eos_token_id": [0]},
     {"max_new_tokens": 5, "num_beams": 3, "num_return_sequences": 3},
     "Cannot decode the token ids [-3]"),  # OverflowError: the finished beams are padded
    ("gpt2-text-generation", {}, {"suppress_tokens": [H]}, FEW, "suppress_tokens holds"),
    ("gpt2-text-generation", {"begin_suppress_tokens": [-H]}, "drop", FEW,
     "begin_suppress_tokens holds"),  # OverflowError
    ("gpt2-text-generation", {}, {"pad_token_id": H}, FEW, "pad_token_id holds"),
    ("gpt2-text-generation", {}, {"pad_token_id": 5000},
     {**FEW, "do_sample": False, "batch_size": 2}, None),  # ONNX Runtime's error: the graph
    # looks up the ids of masked positions too
    ("gpt2-text-generation", {}, {"length_penalty": 1e308},
     {"max_new_tokens": 3, "num_beams": 2, "do_sample": False}, None),  # OverflowError
    ("whisper-speech-recognition", {}, {"no_timestamps_token_id": 5000},
     {**FEW, "return_timestamps": True}, "no_timestamps_token_id=5000"),  # IndexError
    ("whisper-speech-recognition", {}, {"lang_to_id": {"<|en|>": 5000}}, FEW,
     "but 5000 is not"),  # IndexError
    ("whisper-speech-recognition", {}, {"lang_to_id": {}}, FEW,
     "lang_to_id is empty"),  # ValueError
    ("whisper-speech-recognition", {}, {"lang_to_id": {"<|en|>": H}}, FEW,
     "lang_to_id="),  # OverflowError
    ("whisper-speech-recognition", {}, {"forced_decoder_ids": [[1, 5000]]}, FEW,
     "outside the model's 2608 tokens"),  # ONNX Runtime's error, which named no setting
    ("whisper-speech-recognition", {}, {"eos_token_id": None, "bos_token_id": None},
     {**FEW, "return_timestamps": True}, "need one eos_token_id"),  # TypeError
    ("whisper-speech-recognition", {"eos_token_id": [-1, 2], "suppress_tokens": [1000]},
     "drop", FEW, None),  # ValueError: the truth value of an array
]


@pytest.mark.parametrize(("name", "config", "generation", "options", "words"), FOUND)
def test_found_escapes_are_edgeport_errors(name, config, generation, options, words,
                                           bundle_copies):
    family = FAMILIES[name]
    bundle, originals = bundle_copies(name)
    options = {**family.options[0], **options}
    try:
        _write(bundle / CONFIG, {**originals[CONFIG], **config})
        _write(bundle / GENERATION, None if generation == "drop"
               else {**(originals[GENERATION] or {}), **(generation or {})})
        if words is None:
            result = pipeline(model=bundle)(*family.inputs, **options)
            assert not _nan_scores(result)
        else:
            with pytest.raises(EdgeportError) as caught:
                pipeline(model=bundle)(*family.inputs, **options)
            assert words in str(caught.value) and "Note:" in str(caught.value)
    finally:
        _write(bundle / CONFIG, originals[CONFIG])
        _write(bundle / GENERATION, originals[GENERATION])
