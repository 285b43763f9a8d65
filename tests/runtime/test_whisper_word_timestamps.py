"""Whisper's word timestamps and temperature fallback: the runtime on the tiny Whisper bundle
exported with its alignment heads' graph gives what transformers.pipeline gives with
return_timestamps="word" (the same words, the same start and end times) on real speech; its
dynamic time warping and median filter are transformers' own; and the fallback decodes a
window again, at the same temperatures, exactly when transformers does."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from audio_samples import generated_signals, jfk_16k
from compare import assert_same

from runtime.audio import whisper_fallback, whisper_timing
from runtime.errors import InputError

torch = pytest.importorskip("torch")

TASK = "automatic-speech-recognition"


@pytest.fixture(scope="module")
def word_bundle(tiny_checkpoint, tmp_path_factory):
    from exporter import bundle_from_checkpoint

    return bundle_from_checkpoint(tiny_checkpoint("whisper", TASK),
                                  tmp_path_factory.mktemp("whisper-words") / "bundle",
                                  task=TASK, word_timestamps=True)


@pytest.fixture(scope="module")
def transcribe(word_bundle):
    from runtime import pipeline

    return pipeline(TASK, model=word_bundle)


@pytest.fixture(scope="module")
def reference(tiny_checkpoint):
    """A pipeline of its own: word timestamps switch transformers' model to eager attention,
    which the shared reference pipeline must not see."""
    import transformers

    return transformers.pipeline(TASK, model=str(tiny_checkpoint("whisper", TASK)), device="cpu")


def _speech() -> np.ndarray:
    return jfk_16k()[:5 * 16000]


CASES = {  # (signal, arguments)
    # eos held back: many words, and windows decoded past the audio's end
    "greedy-many-words": ("speech", {"num_beams": 1, "min_new_tokens": 30}),
    "beams-language": ("speech", {"num_beams": 2, "return_language": True}),
    "noise-french": ("noise", {"num_beams": 1, "language": "fr"}),
}


@pytest.mark.parametrize(("signal", "kwargs"), CASES.values(), ids=CASES)
def test_word_timestamps_match_transformers(signal, kwargs, transcribe, reference):
    audio = {"speech": _speech(), "noise": generated_signals()[0]}[signal]
    expected = reference(audio.copy(), return_timestamps="word", **kwargs)
    actual = transcribe(audio, return_timestamps="word", **kwargs)
    assert_same(actual, expected, str(kwargs))
    assert expected["chunks"] and all(len(chunk["timestamp"]) == 2
                                      for chunk in expected["chunks"])


def test_many_words_are_timed(transcribe):
    """The case above compares something: several words, at several times."""
    chunks = transcribe(_speech(), return_timestamps="word",
                        **CASES["greedy-many-words"][1])["chunks"]
    assert len(chunks) >= 4
    assert len({chunk["timestamp"] for chunk in chunks}) >= 2


def test_a_bundle_without_the_alignment_graph_says_how_to_get_it(tiny_bundle):
    from runtime import pipeline

    pipe = pipeline(TASK, model=tiny_bundle("whisper", TASK))
    with pytest.raises(InputError, match="edgeport export --word-timestamps"):
        pipe(_speech(), return_timestamps="word")


def test_warping_and_filter_are_transformers():
    from transformers.models.whisper.generation_whisper import (
        _dynamic_time_warping,
        _median_filter,
    )

    rng = np.random.default_rng(0)
    for case in range(40):
        matrix = rng.standard_normal((int(rng.integers(1, 20)), int(rng.integers(1, 60))))
        if case % 3 == 0:
            matrix = np.round(matrix, 1)  # ties
        for got, want in zip(whisper_timing.dynamic_time_warping(matrix),
                             _dynamic_time_warping(matrix)):
            np.testing.assert_array_equal(got, want)
        values = rng.standard_normal((3, 5, int(rng.integers(1, 30)))).astype(np.float32)
        np.testing.assert_array_equal(whisper_timing.median_filter(values, 7),
                                      _median_filter(torch.from_numpy(values), 7).numpy())


def test_words_are_split_as_transformers_splits_them(transcribe, reference):
    from transformers.models.whisper.tokenization_whisper import _combine_tokens_into_words

    rng = np.random.default_rng(1)
    eos = transcribe.tokenizer.token_to_id("<|endoftext|>")
    for _ in range(60):
        tokens = rng.integers(0, eos, size=int(rng.integers(1, 12))).tolist()
        for language in (None, "english", "japanese"):
            words, _, indices = _combine_tokens_into_words(reference.tokenizer, tokens, language)
            assert whisper_timing.words(transcribe.tokenizer, tokens, language) == (words,
                                                                                    indices)


# --- the temperature fallback -----------------------------------------------------------------
FALLBACK = {  # generate_kwargs; transformers' decisions are deterministic for these
    "never": {"temperature": (0.0, 0.4), "logprob_threshold": -50.0},
    "unlikely": {"temperature": (0.0, 0.4), "logprob_threshold": -1.0},
    "compresses": {"temperature": (0.0, 0.4, 0.8), "compression_ratio_threshold": 100.0},
    "no-speech-skip": {"temperature": (0.0, 0.4), "logprob_threshold": -1.0,
                       "no_speech_threshold": 0.0},
    "no-speech-kept": {"temperature": (0.0, 0.4), "logprob_threshold": -1.0,
                       "no_speech_threshold": 1.0},
    "sample": {"temperature": 0.7},
}


@pytest.mark.parametrize("generate_kwargs", FALLBACK.values(), ids=FALLBACK)
def test_fallback_decides_as_transformers(generate_kwargs, transcribe, reference,
                                          monkeypatch):
    """Each decoding of a window, at which temperature, sampling or not, with how many beams:
    the same in both; the result too when the last decoding is greedy (sampled tokens come
    from different random numbers)."""
    from transformers.generation.utils import GenerationMixin

    import runtime.tasks.automatic_speech_recognition as asr

    theirs, ours = [], []
    generate, run = GenerationMixin.generate, asr.run

    def recorded_generate(self, *args, generation_config=None, **kwargs):
        c = generation_config
        theirs.append((c.do_sample, c.temperature, c.num_beams))
        return generate(self, *args, generation_config=generation_config, **kwargs)

    def recorded_run(model, feed, mask, config, **kwargs):
        ours.append((config.do_sample, config.temperature, config.num_beams))
        return run(model, feed, mask, config, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", recorded_generate)
    monkeypatch.setattr(asr, "run", recorded_run)
    expected = reference(_speech(), generate_kwargs=dict(generate_kwargs))
    actual = transcribe(_speech(), generate_kwargs=dict(generate_kwargs))
    assert ours == theirs
    if not theirs[-1][0]:
        assert actual == expected
    else:  # sampled, at the temperature transformers sampled at (compared above)
        assert ours[-1][0] and ours[-1][1] > 0


def test_fallback_cases_cover_each_outcome():
    """The cases above see a fallback to sampling, none, and a skipped window."""
    assert whisper_fallback.fallback_decision(
        tokens=[5, 6], vocab_size=1000, compression_threshold=None, logprob=np.float32(-2),
        logprob_threshold=-1.0, no_speech=0.9, no_speech_threshold=0.5) == (False, True)
    assert whisper_fallback.fallback_decision(
        tokens=[5, 6], vocab_size=1000, compression_threshold=None, logprob=np.float32(-2),
        logprob_threshold=-1.0, no_speech=None, no_speech_threshold=None) == (True, False)


def test_scores_and_ratio_are_transformers():
    from transformers import WhisperForConditionalGeneration as Whisper

    rng = np.random.default_rng(2)
    for temperature in (0.0, 0.5):
        scores = rng.standard_normal((6, 50)).astype(np.float32)
        tokens = rng.integers(0, 50, size=7)
        want = Whisper._retrieve_avg_logprobs(
            [torch.from_numpy(row) for row in scores], torch.from_numpy(tokens), temperature)
        # float32 log_softmax: numpy's and torch's may differ in the last bit
        np.testing.assert_allclose(whisper_fallback.average_logprob(scores, tokens, temperature),
                                   want.item(), rtol=1e-6)
        assert whisper_fallback.compression_ratio(tokens, 51865) == (
            Whisper._retrieve_compression_ratio(torch.from_numpy(tokens), 51865))


def test_the_module_examples():
    assert doctest.testmod(whisper_timing).failed == 0
    assert doctest.testmod(whisper_fallback).failed == 0
