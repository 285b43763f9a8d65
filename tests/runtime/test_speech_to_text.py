"""automatic-speech-recognition with Speech2Text: the runtime on the exported tiny Speech2Text
bundle gives what transformers.pipeline gives on the same checkpoint (same text: the same
tokens, upper-cased as its tokenizer does) on speech, noise and a tone, with the pipeline's
defaults (5 beams), greedy, a few new tokens, and chunks; the same token ids as the model's
generate(); filterbank features equal to Speech2TextFeatureExtractor's; a tokenizer.json that
tokenizes as the slow Speech2TextTokenizer; and clear errors for what cannot be done."""

from __future__ import annotations

import numpy as np
import pytest
from audio_samples import JFK, generated_signals, jfk_16k
from compare import assert_same
from speech_to_text_checkpoints import TINY_SPEECH_TO_TEXT

from runtime.errors import InputError

torch = pytest.importorskip("torch")

TASK = "automatic-speech-recognition"
((MODEL_TYPE, _),) = TINY_SPEECH_TO_TEXT


@pytest.fixture(scope="module")
def transcribe(runtime_pipeline):
    return runtime_pipeline(MODEL_TYPE, TASK)


@pytest.fixture(scope="module")
def reference(reference_pipeline):
    return reference_pipeline(MODEL_TYPE, TASK)


def _signals() -> list[np.ndarray]:
    """5 s of speech, noise (1.3 s) and a tone (0.7 s)."""
    return [jfk_16k()[:5 * 16000], *generated_signals()[:2]]


CASES = {
    "defaults": {},  # transformers' pipeline: 5 beams, the model's 24 tokens
    "greedy": {"generate_kwargs": {"num_beams": 1}},
    "beams-new-tokens": {"num_beams": 2, "max_new_tokens": 6},
    "chunks": {"chunk_length_s": 2.0, "num_beams": 1},
    "chunks-strides": {"chunk_length_s": 1.5, "stride_length_s": [0.5, 0.25], "num_beams": 2},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_transformers(case, transcribe, reference):
    kwargs = CASES[case]
    texts = set()
    for signal in _signals():
        reference_kwargs = dict(kwargs)
        generation = {k: reference_kwargs.pop(k) for k in ("num_beams", "max_new_tokens")
                      if k in reference_kwargs}
        if generation:
            reference_kwargs["generate_kwargs"] = generation
        expected = reference(signal.copy(), **reference_kwargs)
        assert_same(transcribe(signal, **kwargs), expected, f"{case} {len(signal)}")
        texts.add(expected["text"])
    assert len(texts) > 1 and all(texts)  # the tiny model hears a difference


def test_the_whole_recording_and_its_file(transcribe, reference):
    greedy = {"generate_kwargs": {"num_beams": 1}}
    expected = reference(jfk_16k().copy(), **greedy)
    assert transcribe(jfk_16k(), **greedy) == expected and expected["text"]
    assert transcribe(str(JFK), **greedy) == expected
    assert transcribe([JFK.read_bytes(), jfk_16k()[:16000]], **greedy) == [
        expected, reference(jfk_16k()[:16000].copy(), **greedy)]


@pytest.mark.parametrize("num_beams", [1, 3])
def test_token_ids_match_generate(num_beams, transcribe, reference):
    for signal in _signals():
        inputs = reference.feature_extractor(signal, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            expected = reference.model.generate(**inputs, num_beams=num_beams)[0][1:].tolist()
        features = transcribe.features([signal])
        assert transcribe.generate_tokens(features["input_features"], num_beams=num_beams) \
            == expected
        assert transcribe.generate_tokens(features["input_features"],
                                          features["attention_mask"],
                                          num_beams=num_beams) == expected


def test_features_match_speech2text_feature_extractor(transcribe, reference):
    """One signal as the pipeline calls the extractor, and a padded batch (each signal
    normalized over its own frames, the padding set to padding_value, the mask)."""
    extractor = reference.feature_extractor
    ramp = np.linspace(-0.1, 0.3, 720, dtype=np.float32) ** 3  # three frames
    signals = [jfk_16k(), *_signals(), ramp]
    for signal in signals:
        expected = extractor(signal, sampling_rate=16000, return_attention_mask=True)
        got = transcribe.feature_extractor([signal])
        np.testing.assert_allclose(got["input_features"], np.stack(expected["input_features"]),
                                   atol=1e-4, rtol=0)
        assert got["attention_mask"].tolist() == np.stack(expected["attention_mask"]).tolist()
    expected = extractor(signals[1:], sampling_rate=16000, padding=True,
                         return_attention_mask=True)
    got = transcribe.feature_extractor(signals[1:])
    assert got["input_features"].shape == (4, 498, 80)
    np.testing.assert_allclose(got["input_features"], expected["input_features"], atol=1e-4,
                               rtol=0)
    assert got["attention_mask"].tolist() == np.stack(expected["attention_mask"]).tolist()


def test_tokenizer_json_tokenizes_as_the_slow_tokenizer(transcribe, reference):
    from generation_checkpoints import CORPUS

    slow = reference.tokenizer
    assert type(slow).__name__ == "Speech2TextTokenizer" and slow.do_upper_case
    texts = [*CORPUS[:20], "  Hello,   WORLD!  ", "naïve café ½", "<s> inside </s>", "x"]
    for text in texts:
        ids = slow(text)["input_ids"]
        assert transcribe.tokenizer.encode_batch([text])[0].ids == ids, text
        assert transcribe.tokenizer.decode(ids, skip_special_tokens=True).upper() == \
            slow.decode(ids, skip_special_tokens=True), text


def test_the_bundle_model_type_picks_the_pipeline(tiny_bundle, transcribe):
    from runtime import pipeline
    from runtime.tasks import pipeline_class
    from runtime.tasks.automatic_speech_recognition import WhisperSpeechRecognitionPipeline
    from runtime.tasks.speech_to_text import Speech2TextSpeechRecognitionPipeline

    assert type(transcribe) is Speech2TextSpeechRecognitionPipeline
    assert type(pipeline(model=tiny_bundle(MODEL_TYPE, TASK))) is \
        Speech2TextSpeechRecognitionPipeline
    assert pipeline_class(TASK, "encoder-decoder", "whisper") is WhisperSpeechRecognitionPipeline
    assert pipeline_class(TASK, "encoder-decoder", ["not", "a", "name"]) is \
        WhisperSpeechRecognitionPipeline


@pytest.mark.parametrize("kwargs, message", [
    ({"return_timestamps": True}, "CTC models and Whisper only"),
    ({"return_timestamps": "word"}, "CTC models and Whisper only"),
    ({"return_timestamps": "char"}, "CTC models and Whisper only"),
    ({"chunk_length_s": -1}, "chunk_length_s"),
    ({"chunk_length_s": 1.0, "stride_length_s": 1.0}, "shorter than its strides"),
    ({"generate_kwargs": {"chunk_length_s": 2}}, "arguments of the pipeline"),
    ({"generate_kwargs": [1]}, "generate_kwargs must be a dict"),
    ({"num_return_sequences": 2, "num_beams": 2}, "one transcript per input"),
    ({"max_new_tokens": 2000}, "positions"),
    ({"num_beam": 2}, "num_beams"),
])
def test_bad_arguments_are_refused_clearly(kwargs, message, transcribe):
    with pytest.raises(InputError, match=message):
        transcribe(generated_signals()[1], **kwargs)


def test_bad_signals_are_refused_clearly(transcribe, reference):
    with pytest.raises(InputError, match="shorter than one"):
        transcribe(np.full(399, 0.1, np.float32))
    with pytest.raises(InputError):
        transcribe(np.full(1000, np.nan, np.float32))
    # digital silence: transformers' features are -inf (0 / 0 in the normalization)
    silence = generated_signals()[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        features = reference.feature_extractor(silence, sampling_rate=16000)["input_features"]
    assert not np.isfinite(features[0]).any()
    with pytest.raises(InputError, match="digital silence"):
        transcribe(silence)


def test_audio_beyond_the_encoder_positions_is_refused(tiny_bundle, tmp_path):
    """The exported encoder holds max_source_positions positions (PyTorch would make more)."""
    import json
    import shutil

    from runtime import pipeline

    path = shutil.copytree(tiny_bundle(MODEL_TYPE, TASK), tmp_path / "bundle")
    config = json.loads((path / "config.json").read_text())
    config["max_source_positions"] = 20  # 80 frames: 0.8 s
    (path / "config.json").write_text(json.dumps(config))
    transcribe = pipeline(TASK, model=path)
    with pytest.raises(InputError, match="chunk_length_s"):
        transcribe(generated_signals()[0])
    assert transcribe(generated_signals()[0], chunk_length_s=0.6)["text"]


def test_the_module_examples():
    import doctest

    import runtime.audio.kaldi
    import runtime.tasks

    assert doctest.testmod(runtime.audio.kaldi, extraglobs={"np": np}).failed == 0
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(runtime.tasks.pipeline_class, "pipeline_class",
                            globs={"pipeline_class": runtime.tasks.pipeline_class}):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
