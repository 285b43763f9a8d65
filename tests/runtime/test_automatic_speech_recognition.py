"""automatic-speech-recognition (CTC): the runtime on exported Wav2Vec2 and HuBERT bundles gives
what transformers.pipeline gives on the same tiny checkpoints: the same transcripts, character
and word timestamps, and the same stitched text for long audio cut into chunks. (Whisper:
test_whisper.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from audio_samples import generated_signals, jfk_16k
from compare import assert_same
from speech_checkpoints import TINY_SPEECH

from runtime.errors import InputError

TASK = "automatic-speech-recognition"
CTC = sorted(model_type for model_type, task in TINY_SPEECH
             if task == TASK and model_type != "whisper")
CASES = [{}, {"return_timestamps": "char"}, {"return_timestamps": "word"},
         {"chunk_length_s": 1.0}, {"chunk_length_s": 1.0, "stride_length_s": 0.25},
         {"chunk_length_s": 2.0, "stride_length_s": [0.5, 0.2], "return_timestamps": "word"}]


@pytest.mark.parametrize("model_type", CTC)
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    texts = 0
    for signal in [jfk_16k()[:5 * 16000], *generated_signals()]:
        for kwargs in CASES:
            expected = reference(signal.copy(), **kwargs)
            assert_same(runtime(signal, **kwargs), expected,
                        f"{model_type} {len(signal)} {kwargs}")
            texts += bool(expected["text"])
    assert texts > 5  # the tiny models do emit characters


def test_bad_input_is_refused(runtime_pipeline):
    """(Silence gives what transformers gives: generated_signals holds silence.)"""
    transcribe = runtime_pipeline("wav2vec2", TASK)
    with pytest.raises(InputError):
        transcribe(np.zeros(0, np.float32))
    with pytest.raises(InputError):
        transcribe(np.full(1000, np.nan, np.float32))
    with pytest.raises(InputError, match="return_timestamps"):
        transcribe(generated_signals()[0], return_timestamps=True)
    with pytest.raises(InputError, match="chunk_length_s"):
        transcribe(generated_signals()[0], chunk_length_s=0.1, stride_length_s=1)


def test_jfk_flac_file_is_transcribed_like_its_array(runtime_pipeline):
    from audio_samples import JFK

    transcribe = runtime_pipeline("wav2vec2", TASK)
    assert transcribe(str(JFK)) == transcribe(jfk_16k())
    assert transcribe(JFK.read_bytes()) == transcribe(jfk_16k())


def test_the_bundle_family_picks_ctc_or_whisper(tiny_bundle):
    from runtime import pipeline
    from runtime.tasks.automatic_speech_recognition import (
        AutomaticSpeechRecognitionPipeline,
        WhisperSpeechRecognitionPipeline,
    )

    assert type(pipeline(TASK, model=tiny_bundle("wav2vec2", TASK))) is \
        AutomaticSpeechRecognitionPipeline
    assert type(pipeline(model=tiny_bundle("whisper", TASK))) is \
        WhisperSpeechRecognitionPipeline
