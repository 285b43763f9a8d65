"""automatic-speech-recognition with Whisper: the runtime on the exported tiny Whisper bundle gives
what transformers.pipeline gives on the same checkpoint (same text, same segment timestamps and
languages) on speech, noise, a tone and silence, with the pipeline's defaults (beam search, the
language detected), a language and task given, timestamps, chunks with strides and audio over
30 s; the same token ids as the model's generate() on the same features; and clear errors for
what cannot be done."""

from __future__ import annotations

import doctest
from types import SimpleNamespace

import numpy as np
import pytest
from audio_samples import generated_signals, jfk_16k
from compare import assert_same

from runtime.audio import whisper
from runtime.errors import InputError

torch = pytest.importorskip("torch")

TASK = "automatic-speech-recognition"


@pytest.fixture(scope="module")
def transcribe(tiny_bundle):
    from runtime import pipeline

    return pipeline(TASK, model=tiny_bundle("whisper", TASK))


@pytest.fixture(scope="module")
def reference(reference_pipeline):
    return reference_pipeline("whisper", TASK)


def _signals() -> list[np.ndarray]:
    """5 s of speech, noise, a tone and silence."""
    return [jfk_16k()[:5 * 16000], *generated_signals()]


def _long() -> np.ndarray:
    """jfk.flac three times: 33 s, beyond Whisper's 30 s window."""
    return np.concatenate([jfk_16k()] * 3)


CASES = {  # (how many of _signals(), None for all; arguments)
    "defaults": (None, {}),  # transformers' pipeline: 5 beams, the language detected
    "timestamps": (None, {"num_beams": 1, "return_timestamps": True}),
    # silence left out: with beams and timestamps transformers takes half a minute on it
    "beams-timestamps-language": (3, {"num_beams": 2, "return_timestamps": True,
                                      "return_language": True}),
    "translate-fr": (None, {"num_beams": 1,
                            "generate_kwargs": {"language": "fr", "task": "translate"}}),
    "english-name": (None, {"num_beams": 1, "language": "English", "return_language": True}),
    "token-de": (None, {"num_beams": 1, "generate_kwargs": {"language": "<|de|>"},
                        "max_new_tokens": 4}),
}


@pytest.mark.parametrize(("count", "kwargs"), CASES.values(), ids=CASES)
def test_a_batch_matches_transformers(count, kwargs, transcribe, reference):
    signals = _signals()[:count]
    expected = reference([signal.copy() for signal in signals], **kwargs)
    assert_same(transcribe(signals, **kwargs), expected, str(kwargs))
    assert sum(bool(result["text"]) for result in expected) >= 2  # the tiny model does speak


def test_timestamps_and_languages_are_given(transcribe):
    """The cases above compare something: segments with times, and chunks with languages."""
    speech = _signals()[0]
    chunks = transcribe(speech, **CASES["timestamps"][1])["chunks"]
    assert chunks and all(isinstance(start, float) for start, _ in
                          (chunk["timestamp"] for chunk in chunks))
    chunk = transcribe(speech, **CASES["english-name"][1])["chunks"][0]
    assert list(chunk) == ["language", "text"]


def test_each_window_is_encoded_once(tiny_bundle, reference):
    """Language detection and the first window's decoding share one encoder run (as in
    transformers' generate()), and the default 5 beams keep matching transformers."""
    from runtime import pipeline

    pipe = pipeline(TASK, model=tiny_bundle("whisper", TASK))
    encoder = pipe.model.encoder
    runs = []
    pipe.model.encoder = SimpleNamespace(inputs=encoder.inputs,
                                         run=lambda feed: runs.append(1) or encoder.run(feed))
    speech = _signals()[0]
    assert pipe(speech) == reference(speech.copy())  # the language detected, then decoded
    assert len(runs) == 1
    long = np.concatenate([jfk_16k()] * 3)  # 33 s: window after window
    runs.clear()
    pipe(long, return_timestamps=True, num_beams=1)
    detected = len(runs)
    runs.clear()
    pipe(long, return_timestamps=True, num_beams=1, language="en")
    assert detected == len(runs) >= 2  # detecting the language cost no encoder run


def test_long_form_matches_transformers(transcribe, reference):
    """33 s of speech without chunks: transcribed 30 s window after window."""
    kwargs = {"num_beams": 1, "return_timestamps": True}
    expected = reference(_long(), **kwargs)
    assert_same(transcribe(_long(), **kwargs), expected)
    assert len(expected["chunks"]) > 1


CHUNK_CASES = {  # (seconds of speech, arguments)
    "merged-texts": (22, {"num_beams": 1, "chunk_length_s": 10}),
    "timestamps": (22, {"num_beams": 1, "chunk_length_s": 10, "return_timestamps": True}),
    "uneven-strides": (11, {"num_beams": 1, "chunk_length_s": 4, "stride_length_s": [1, 0.5],
                            "return_timestamps": True}),
}


@pytest.mark.parametrize(("seconds", "kwargs"), CHUNK_CASES.values(), ids=CHUNK_CASES)
def test_chunks_match_transformers(seconds, kwargs, transcribe, reference):
    """Speech cut into overlapping chunks, whose texts are merged on their overlaps (or split
    at their timestamps, those in the strides skipped)."""
    speech = np.concatenate([jfk_16k()] * 2)[:seconds * 16000]
    expected = reference(speech.copy(), **kwargs)
    assert_same(transcribe(speech, **kwargs), expected, str(kwargs))
    assert expected["text"]


def test_long_audio_needs_timestamps_as_in_transformers(transcribe, reference):
    with pytest.raises(ValueError, match="return_timestamps=True"):
        reference(_long(), num_beams=1)
    with pytest.raises(InputError, match="pass return_timestamps=True, or chunk_length_s=30"):
        transcribe(_long(), num_beams=1)


TOKEN_CASES = {
    "greedy": ("speech", {"num_beams": 1}),
    "beams-timestamps": ("speech", {"num_beams": 3, "return_timestamps": True}),
    "translate-de": ("noise", {"num_beams": 1, "language": "de", "task": "translate"}),
    "long-form": ("long", {"num_beams": 1, "return_timestamps": True}),
}


@pytest.mark.parametrize(("signal", "kwargs"), TOKEN_CASES.values(), ids=TOKEN_CASES)
def test_token_ids_match_generate(signal, kwargs, transcribe, reference):
    """The same features in: the same ids out of the runtime's loop and the model's
    generate() (language detection, prompt, processors, windows)."""
    audio = {"speech": _signals()[0], "noise": _signals()[1], "long": _long()}[signal]
    long = len(audio) > transcribe.feature_extractor.n_samples
    features = transcribe.feature_extractor([audio], padding="longest" if long else "max_length",
                                            truncation=not long)["input_features"]
    expected = reference.model.generate(torch.from_numpy(features), **kwargs)[0].tolist()
    assert transcribe.generate_tokens(features, **kwargs) == expected
    assert expected


def test_decoding_matches_transformers_on_random_tokens(transcribe, reference):
    """The result assembly (transformers' _decode_asr) on random windows of text, timestamp,
    language and other special tokens, with and without the strides of chunks: every quirk of
    its state machine, beyond what the tiny model happens to generate."""
    ids = transcribe.tokenizer.token_to_id
    timestamp_begin = ids("<|notimestamps|>") + 1
    languages = [ids(token) for token in ("<|en|>", "<|fr|>", "<|de|>")]
    others = [ids(token) for token in ("<|transcribe|>", "<|endoftext|>", "<|notimestamps|>")]
    rng = np.random.default_rng(0)

    def window() -> list[int]:
        kinds = rng.choice(4, size=rng.integers(0, 14), p=[0.55, 0.3, 0.08, 0.07])
        times = np.sort(rng.integers(0, 1501, size=len(kinds)))
        return [int(rng.integers(300, 900)) if kind == 0 else
                int(timestamp_begin + (times[i] if rng.random() < 0.9 else rng.integers(1501)))
                if kind == 1 else int(rng.choice(languages if kind == 2 else others))
                for i, kind in enumerate(kinds)]

    for case in range(150):
        count = int(rng.integers(1, 4))
        strides = [None] * count
        if case % 2:  # chunks: (chunk, left, right) in seconds, as the pipeline gives them
            strides = [(float(rng.choice([5.0, 10.0, 30.0])), 0.0 if i == 0 else 1.0,
                        0.0 if i == count - 1 else float(rng.choice([0.5, 1.0])))
                       for i in range(count)]
        windows = [window() for _ in range(count)]
        for timestamps, language in ((False, False), (True, False), (True, True), (False, True)):
            outputs = [{"tokens": np.array([tokens])} | ({} if stride is None else
                                                          {"stride": stride})
                       for tokens, stride in zip(windows, strides)]
            expected = reference.tokenizer._decode_asr(
                outputs, return_timestamps=timestamps, return_language=language,
                time_precision=0.02)
            expected = {"text": expected[0], **expected[1]}
            actual = whisper.transcript(list(zip(windows, strides)), transcribe.tokenizer,
                                        timestamps=timestamps, language=language,
                                        time_precision=0.02)
            assert_same(actual, expected, f"{windows} {strides} {timestamps} {language}")


def test_languages_are_read_as_transformers_reads_them():
    from transformers.models.whisper import tokenization_whisper

    assert whisper.LANGUAGES == tokenization_whisper.LANGUAGES
    assert whisper.TO_LANGUAGE_CODE == tokenization_whisper.TO_LANGUAGE_CODE
    assert sorted(whisper.TASKS) == sorted(tokenization_whisper.TASK_IDS)
    lang_to_id = {"<|en|>": 1, "<|zh|>": 2}
    for language in ("en", "EN", "english", "<|en|>"):
        assert whisper.language_token_id(language, lang_to_id) == 1
    assert whisper.language_token_id("mandarin", lang_to_id) == 2
    with pytest.raises(InputError, match="Unknown language 'xx'.*codes are"):
        whisper.language_token_id("xx", lang_to_id)
    with pytest.raises(InputError, match="Unknown language 'klingon'.*names are"):
        whisper.language_token_id("klingon", lang_to_id)
    with pytest.raises(InputError, match=r"no <\|fr\|> token"):
        whisper.language_token_id("french", lang_to_id)


BAD = [
    ({"language": "klingon"}, "Unknown language 'klingon'"),
    ({"generate_kwargs": {"task": "summarize"}}, "task='summarize' is not a Whisper task"),
    ({"task": "translate", "is_multilingual": False}, "English-only"),
    ({"return_timestamps": "word"}, "--word-timestamps"),
    ({"return_timestamps": "char"}, "not possible for Whisper"),
    ({"temperature": -0.7}, "not a temperature"),
    ({"temperature": ()}, "not a temperature"),
    ({"do_sample": True}, "does not make Whisper sample"),
    ({"no_speech_threshold": 0.6}, "needs logprob_threshold"),
    ({"logprob_threshold": "low"}, "must be a number"),
    ({"prompt_ids": [1, 2]}, "prompting with a text"),
    ({"generate_kwargs": {"return_timestamps": True}}, "arguments of the pipeline"),
    ({"num_return_sequences": 2, "num_beams": 2}, "one transcript per input"),
    ({"max_new_tokens": 446}, "the model has 448"),
    ({"chunk_length_s": -1}, "chunk_length_s must be a number"),
    ({"return_language": "yes"}, "return_language must be True or False"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_arguments_are_refused_clearly(kwargs, message, transcribe):
    with pytest.raises(InputError, match=message):
        transcribe(_signals()[2], **kwargs)


def test_bad_signals_are_refused_and_temperature_zero_is_greedy(transcribe):
    from runtime import pipeline

    with pytest.raises(InputError, match="empty"):
        transcribe(np.zeros(0, np.float32))
    with pytest.raises(InputError, match="NaN"):
        transcribe(np.full(1000, np.nan, np.float32))
    tone = _signals()[2]
    assert transcribe(tone, num_beams=1, temperature=0.0) == transcribe(tone, num_beams=1)
    english_only = pipeline(model=transcribe.bundle, is_multilingual=False)  # a default
    with pytest.raises(InputError, match="English-only"):
        english_only(tone, language="en")


def test_the_whisper_module_examples():
    assert doctest.testmod(whisper).failed == 0
