"""Generation arguments are bounded by what the model can hold: a max_new_tokens of 10**9 is an
InputError that names the model's limit and the config.json key it comes from (or edgeport's
cap, for a model with relative positions), beam search does not allocate for max_length up
front, and arguments of the wrong type, sign or value (NaN) are InputErrors."""

from __future__ import annotations

import math
import re
import tracemalloc

import numpy as np
import pytest

from runtime.errors import BundleError, InputError
from runtime.generation import (
    MAX_LENGTH_WITHOUT_POSITIONS,
    model_generation_config,
    resolve_generation_config,
    run,
)
from runtime.generation.config import MAX_BEAMS
from runtime.generation.search import generate
from runtime.tasks.base import config_count, config_positions

PROMPTS = np.array([[0, 1], [3, 3]])
MASK = np.ones_like(PROMPTS)


class Counting:
    """A toy model whose next token is (last token + 1) % 5: it reaches eos 4 within 5 steps."""

    is_encoder_decoder, vocab_size = False, 5

    def begin(self, input_ids, attention_mask):
        return None

    def expand(self, state, rows):
        return None

    def next_logits(self, state, sequences):
        return np.eye(5, dtype=np.float32)[(sequences[:, -1] + 1) % 5], None


def _config(**kwargs):
    return resolve_generation_config(model_generation_config(None, {"eos_token_id": 4}),
                                     **kwargs)


def test_max_new_tokens_beyond_the_model_positions_names_the_key():
    with pytest.raises(InputError, match=r"would reach 1000000002 positions .*but the model has "
                                         r"1024 \(config.json's n_positions\)\. Note: lower"):
        run(Counting(), PROMPTS, MASK, _config(max_new_tokens=10**9), max_positions=1024,
            max_positions_key="n_positions")


def test_a_model_without_positions_is_capped():
    with pytest.raises(InputError, match=f"over edgeport's limit of "
                                         f"{MAX_LENGTH_WITHOUT_POSITIONS}.*no position limit"):
        run(Counting(), PROMPTS, MASK, _config(max_new_tokens=10**9, num_beams=4))
    with pytest.raises(InputError, match="over edgeport's limit"):
        run(Counting(), PROMPTS, MASK, _config(max_length=10**12))
    # under the cap, generation ends at the eos as before
    for num_beams in (1, 2):
        output = run(Counting(), PROMPTS, MASK, _config(max_new_tokens=1000, num_beams=num_beams))
        assert output.sequences.tolist() == [[0, 1, 2, 3, 4], [3, 3, 4, 4, 4]]


@pytest.mark.parametrize("num_beams", [1, 4])
def test_a_huge_max_length_allocates_nothing_up_front(num_beams):
    tracemalloc.start()
    try:
        output = generate(Counting(), PROMPTS, MASK, max_length=10**9, eos_token_id=4,
                          num_beams=num_beams)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert output.sequences[0].tolist()[:5] == [0, 1, 2, 3, 4]
    assert peak < 2**20  # beam search used to allocate 2 x 4 x 10**9 int64 (64 GB) here


def test_beam_search_grows_its_buffers_past_the_first_room():
    class Late(Counting):
        vocab_size = 3

        def next_logits(self, state, sequences):  # token 1 until length 150, then eos 2
            token = 2 if sequences.shape[1] >= 150 else 1
            logits = np.zeros((len(sequences), 3), np.float32)
            logits[:, token] = 5.0
            return logits, None

    output = generate(Late(), np.array([[0]]), np.array([[1]]), max_length=10**6,
                      eos_token_id=2, num_beams=3, num_return_sequences=2)
    assert output.sequences.shape == (2, 151)
    assert output.sequences[0].tolist() == [0] + [1] * 149 + [2]


@pytest.mark.parametrize(("arguments", "words"), [
    ({"max_new_tokens": "10"}, ["max_new_tokens", "'10'"]),
    ({"max_new_tokens": -1}, ["max_new_tokens", "-1"]),
    ({"max_new_tokens": True}, ["max_new_tokens", "True"]),
    ({"max_new_tokens": 2.5}, ["max_new_tokens", "2.5"]),
    ({"max_length": False}, ["max_length", "False"]),
    ({"max_length": math.nan}, ["max_length", "nan"]),
    ({"num_beams": 0}, ["num_beams", "0"]),
    ({"num_beams": True}, ["num_beams", "True"]),
    ({"num_beams": 10**6}, ["num_beams", f"from 1 to {MAX_BEAMS}"]),
    ({"num_beams": 4, "num_return_sequences": -2}, ["num_return_sequences", "-2"]),
    ({"do_sample": True, "num_return_sequences": 10**6}, ["num_return_sequences",
                                                          str(MAX_BEAMS)]),
    ({"do_sample": True, "top_k": -1}, ["top_k", "-1"]),
    ({"do_sample": True, "top_k": "5"}, ["top_k", "'5'"]),
    ({"do_sample": True, "top_p": math.nan}, ["top_p", "nan"]),
    ({"do_sample": True, "top_p": 2}, ["top_p", "2"]),
    ({"do_sample": True, "temperature": math.nan}, ["temperature", "nan"]),
    ({"do_sample": True, "temperature": math.inf}, ["temperature", "inf"]),
    ({"do_sample": True, "temperature": -1.0}, ["temperature", "-1.0"]),
    ({"do_sample": True, "temperature": "hot"}, ["temperature", "'hot'"]),
    ({"do_sample": "yes"}, ["do_sample", "'yes'"]),
    ({"num_beams": 2, "length_penalty": math.nan}, ["length_penalty", "nan"]),
    ({"repetition_penalty": math.inf}, ["repetition_penalty", "inf"]),
    ({"max_time": math.nan}, ["max_time", "nan"]),
])
def test_bad_generation_arguments_are_input_errors(arguments, words):
    with pytest.raises(InputError) as caught:
        _config(**arguments)
    for word in words:
        assert word in str(caught.value)


def test_forced_tokens_outside_the_vocabulary_are_input_errors():
    with pytest.raises(InputError, match=r"forced_eos_token_id holds \[9\], outside the model's 5"):
        run(Counting(), PROMPTS, MASK, _config(max_new_tokens=1, forced_eos_token_id=9))

    class EncoderDecoder(Counting):
        is_encoder_decoder = True

    with pytest.raises(InputError, match=r"forced_bos_token_id holds \[70\]"):
        run(EncoderDecoder(), PROMPTS, MASK, _config(max_new_tokens=2, forced_bos_token_id=70,
                                                     decoder_start_token_id=0))


@pytest.mark.parametrize("value", ["1024", True, 0, -1, 1024.5, [1024], {"n": 1}])
def test_position_limits_in_config_json_are_checked(value):
    with pytest.raises(BundleError, match=re.escape(f"config.json has n_positions={value!r}:")):
        config_positions({"n_positions": value}, ("n_positions", "max_position_embeddings"))
    assert config_positions({"max_position_embeddings": 512, "n_positions": None},
                            ("n_positions", "max_position_embeddings")) == (
        512, "max_position_embeddings")
    assert config_count({}, "max_source_positions") is None


def test_a_t5_bundle_refuses_max_new_tokens_beyond_the_cap(tiny_bundle):
    from runtime import pipeline

    rewrite = pipeline("text2text-generation", model=tiny_bundle("t5", "text2text-generation"))
    with pytest.raises(InputError, match="would reach 1000000001 positions .*over edgeport's "
                                         "limit"):
        rewrite("translate this", max_new_tokens=10**9)
    with pytest.raises(InputError, match="num_beams"):
        rewrite("translate this", num_beams=10**6, max_new_tokens=2)
    with pytest.raises(InputError, match="temperature"):
        rewrite("translate this", do_sample=True, temperature=math.nan, max_new_tokens=2)
    assert rewrite("translate this", num_beams=2, max_new_tokens=3)[0]["generated_text"] \
        is not None


@pytest.mark.parametrize(("extras", "words"), [
    ({"no_timestamps_token_id": "50363"}, ["no_timestamps_token_id='50363'"]),
    ({"max_initial_timestamp_index": -1}, ["max_initial_timestamp_index=-1"]),
    ({"lang_to_id": ["<|en|>"]}, ["lang_to_id=['<|en|>']"]),
    ({"task_to_id": {"transcribe": "7"}}, ["task_to_id="]),
    ({"forced_decoder_ids": [1, 2]}, ["forced_decoder_ids=[1, 2]"]),
    ({"forced_decoder_ids": [[1, "en"]]}, ["forced_decoder_ids"]),
    ({"task": "summarize", "task_to_id": {"transcribe": 7}}, ["no 'summarize' task token"]),
])
def test_whisper_settings_from_generation_config_json_are_checked(extras, words):
    from runtime.audio.whisper import prompt_tokens
    from runtime.generation import GenerationConfig

    config = GenerationConfig.from_dict({"decoder_start_token_id": 1, **extras})
    with pytest.raises(InputError) as caught:
        prompt_tokens(config, timestamps=False, detect_language=lambda: 2)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(("config", "words"), [
    ({"id2label": ["NEGATIVE", "POSITIVE"]}, ["id2label", "not a JSON object"]),
    ({"id2label": {"zero": "NEGATIVE"}}, ["id2label", "'zero'", "not a class id"]),
    ({"num_labels": "2"}, ["num_labels='2'"]),
    ({"num_labels": 10**12}, ["num_labels=1000000000000", "over the limit"]),
])
def test_labels_in_config_json_are_checked(config, words):
    from runtime.tasks.base import config_id2label, default_labels

    with pytest.raises(BundleError) as caught:
        config_id2label(config) or default_labels(config)
    for word in words:
        assert word in str(caught.value)
    assert config_id2label({"id2label": {"1": "POS", "0": "NEG"}}) == {0: "NEG", 1: "POS"}
    assert default_labels({}) == {0: "LABEL_0", 1: "LABEL_1"}
