"""The runtime's audio feature extractors against transformers', built from the same
preprocessor_config.json dicts: same keys, shapes and dtypes, values within 1e-4, on real speech
(jfk.flac at 16 kHz) and generated signals, alone and in padded batches."""

from __future__ import annotations

import functools
import json
import time

import numpy as np
import pytest
import soundfile
import soxr
from audio_samples import JFK

from runtime.audio.features import (
    EXTRACTORS,
    MODEL_TYPES,
    FeatureExtractor,
    Wav2Vec2FeatureExtractor,
    WhisperFeatureExtractor,
    mel_filter_bank,
)
from runtime.errors import BundleNotFoundError, InputError

TOLERANCE = 1e-4
RATE = 16000

# The preprocessor_config.json of Hub checkpoints, as from_pretrained reads them.
HUB_CONFIGS = {
    "facebook/wav2vec2-base-960h": {
        "do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1, "padding_side": "right", "padding_value": 0.0,
        "return_attention_mask": False, "sampling_rate": 16000},
    "superb/hubert-base-superb-ks": {
        "do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1, "padding_side": "right", "padding_value": 0,
        "return_attention_mask": True, "sampling_rate": 16000},
    "facebook/hubert-large-ls960-ft (do_normalize false)": {
        "do_normalize": False, "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1, "padding_side": "right", "padding_value": 0.0,
        "processor_class": "Wav2Vec2Processor", "return_attention_mask": True,
        "sampling_rate": 16000},
    "openai/whisper-tiny": {
        "chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": 80, "hop_length": 160, "n_fft": 400, "n_samples": 480000,
        "nb_max_frames": 3000, "padding_side": "right", "padding_value": 0.0,
        "processor_class": "WhisperProcessor", "return_attention_mask": False,
        "sampling_rate": 16000},
    "openai/whisper-large-v3": {
        "chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": 128, "hop_length": 160, "n_fft": 400, "n_samples": 480000,
        "nb_max_frames": 3000, "padding_side": "right", "padding_value": 0.0,
        "processor_class": "WhisperProcessor", "return_attention_mask": False,
        "sampling_rate": 16000},
    "facebook/s2t-small-librispeech-asr": {
        "do_ceptral_normalize": True, "feature_extractor_type": "Speech2TextFeatureExtractor",
        "feature_size": 80, "normalize_means": True, "normalize_vars": True,
        "num_mel_bins": 80, "padding_side": "right", "padding_value": 0.0,
        "return_attention_mask": True, "sampling_rate": 16000},
}
WAV2VEC2 = [name for name, c in HUB_CONFIGS.items() if c["feature_size"] == 1]
WHISPER = [name for name, c in HUB_CONFIGS.items()
           if c["feature_extractor_type"] == "WhisperFeatureExtractor"]
SPEECH2TEXT = "facebook/s2t-small-librispeech-asr"


@functools.cache
def jfk() -> np.ndarray:
    """jfk.flac at 16 kHz: the channels averaged, resampled once with soxr, given to both."""
    frames, rate = soundfile.read(JFK, dtype="float32", always_2d=True)
    return soxr.resample(frames.mean(axis=1), rate, RATE, quality="HQ").astype(np.float32)


@functools.cache
def signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(5 * RATE) / RATE
    sweep = 0.5 * np.sin(2 * np.pi * (20 * t + (8000 - 20) / (2 * 5) * t ** 2))
    return {
        "jfk": jfk(),
        "silence": np.zeros(RATE, np.float32),
        "sine sweep": sweep.astype(np.float32),
        "white noise": (0.1 * rng.standard_normal(3 * RATE)).astype(np.float32),
        "one sample": np.array([0.25], np.float32),
        "100 samples": (0.3 * rng.standard_normal(100)).astype(np.float32),
        "quiet noise": (1e-4 * rng.standard_normal(RATE)).astype(np.float32),
    }


def reference(name: str):
    import transformers

    config = HUB_CONFIGS[name]
    return getattr(transformers, config["feature_extractor_type"]).from_dict(config)


def ours(name: str) -> FeatureExtractor:
    return FeatureExtractor.from_config(HUB_CONFIGS[name])


def assert_same(ours_out: dict, theirs: dict, tolerance: float = TOLERANCE):
    assert set(ours_out) == set(theirs)
    for key, value in ours_out.items():
        expected = np.asarray(theirs[key])
        assert value.dtype == expected.dtype and value.shape == expected.shape, key
        np.testing.assert_allclose(value, expected, rtol=0, atol=tolerance, err_msg=key)


# --- Wav2Vec2 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", WAV2VEC2)
@pytest.mark.parametrize("signal", ["jfk", "silence", "sine sweep", "white noise", "one sample",
                                    "100 samples", "quiet noise"])
def test_wav2vec2_matches_transformers_on_one_signal(name, signal):
    audio = signals()[signal]
    theirs = reference(name)(audio, sampling_rate=RATE, return_tensors="np")
    assert_same(ours(name)([audio]), theirs)


@pytest.mark.parametrize("name", WAV2VEC2)
def test_wav2vec2_batches_are_normalized_per_signal_and_padded(name):
    """transformers' extractor with an attention mask (and its pipelines' batching) normalizes
    each signal over its own samples, then pads with padding_value."""
    batch = [signals()["jfk"][:40000], signals()["white noise"], signals()["100 samples"]]
    theirs = reference(name)(batch, sampling_rate=RATE, padding=True, return_attention_mask=True,
                             return_tensors="np")
    result = ours(name)(batch, return_attention_mask=True)
    assert_same(result, theirs)
    assert result["input_values"].shape == (3, 48000)
    assert result["attention_mask"].sum(axis=1).tolist() == [40000, 48000, 100]
    if not HUB_CONFIGS[name]["return_attention_mask"]:
        assert set(ours(name)(batch)) == {"input_values"}
    # each row equals the signal through transformers alone, padded after
    alone = reference(name)(batch[2], sampling_rate=RATE, return_tensors="np")["input_values"]
    np.testing.assert_allclose(result["input_values"][2, :100], alone[0], atol=TOLERANCE)
    assert not result["input_values"][2, 100:].any()


def test_wav2vec2_pads_on_the_left_and_with_the_padding_value():
    extractor = Wav2Vec2FeatureExtractor({"padding_side": "left", "padding_value": -1.0,
                                          "do_normalize": False})
    result = extractor([np.ones(2, np.float32), np.full(4, 0.5, np.float32)],
                       return_attention_mask=True)
    np.testing.assert_array_equal(result["input_values"], [[-1, -1, 1, 1], [0.5] * 4])
    np.testing.assert_array_equal(result["attention_mask"], [[0, 0, 1, 1], [1, 1, 1, 1]])
    assert result["attention_mask"].dtype == np.int32


# --- Whisper ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", WHISPER)
def test_whisper_mel_filters_are_transformers(name):
    np.testing.assert_allclose(ours(name).mel_filters, reference(name).mel_filters, atol=1e-12)


@pytest.mark.parametrize("name", WHISPER)
@pytest.mark.parametrize("signal", ["jfk", "silence", "sine sweep", "white noise", "one sample",
                                    "100 samples", "quiet noise"])
def test_whisper_matches_transformers_on_one_signal(name, signal, monkeypatch):
    """Against both of transformers' log-mels: torch.stft (used when torch is installed) and
    its numpy spectrogram."""
    from transformers.models.whisper import feature_extraction_whisper

    audio = signals()[signal]
    result = ours(name)([audio])
    assert result["input_features"].shape == (1, HUB_CONFIGS[name]["feature_size"], 3000)
    assert_same(result, reference(name)(audio, sampling_rate=RATE, return_tensors="np"))
    monkeypatch.setattr(feature_extraction_whisper, "is_torch_available", lambda: False)
    assert_same(result, reference(name)(audio, sampling_rate=RATE, return_tensors="np"),
                tolerance=1e-5)


@pytest.mark.parametrize("name", WHISPER)
def test_whisper_batches_with_attention_masks(name):
    batch = [signals()["jfk"], signals()["100 samples"], signals()["sine sweep"][:12345]]
    theirs = reference(name)(batch, sampling_rate=RATE, return_attention_mask=True,
                             return_tensors="np")
    result = ours(name)(batch, return_attention_mask=True)
    assert_same(result, theirs)
    assert result["attention_mask"].shape == (3, 3000)
    assert result["attention_mask"].sum(axis=1).tolist() == [1100, 1, 78]


def test_whisper_cuts_long_signals_at_30_seconds():
    rng = np.random.default_rng(1)
    long = np.concatenate([np.tile(jfk(), 3), 0.05 * rng.standard_normal(RATE)]).astype(
        np.float32)  # 34 s
    name = "openai/whisper-tiny"
    result = ours(name)([long])
    assert_same(result, reference(name)(long, sampling_rate=RATE, return_tensors="np"))
    np.testing.assert_array_equal(result["input_features"],
                                  ours(name)([long[:480000]])["input_features"])


def test_whisper_long_form_keeps_the_whole_signal():
    """The speech-recognition pipeline's long-form call: no truncation, padded to the longest,
    with the frame mask (lengths not a multiple of the hop: the last partial frame is dropped)."""
    long = np.tile(jfk(), 3)[:500077]
    short = jfk()[:160 * 7 + 3]
    name = "openai/whisper-tiny"
    theirs = reference(name)([long, short], sampling_rate=RATE, truncation=False,
                             padding="longest", return_attention_mask=True, return_tensors="np")
    result = ours(name)([long, short], truncation=False, padding="longest",
                        return_attention_mask=True)
    assert_same(result, theirs)
    assert result["input_features"].shape == (2, 80, 3125)
    assert result["attention_mask"].sum(axis=1).tolist() == [3125, 8]


def test_whisper_config_mask_is_by_frame():
    """A config with return_attention_mask true gives the frame mask; transformers gives the
    sample mask (1 x 480000) unless the call asks for it too, which no model can take."""
    config = dict(HUB_CONFIGS["openai/whisper-tiny"], return_attention_mask=True)
    result = FeatureExtractor.from_config(config)([jfk()])
    assert result["attention_mask"].shape == (1, 3000)
    assert result["attention_mask"].sum() == 1100


def test_whisper_other_sizes_and_dither():
    config = {"feature_extractor_type": "WhisperFeatureExtractor", "chunk_length": 2,
              "n_fft": 512, "hop_length": 128, "feature_size": 40}
    import transformers

    audio = signals()["white noise"]
    theirs = transformers.WhisperFeatureExtractor.from_dict(config)(
        audio, sampling_rate=RATE, return_tensors="np")
    assert_same(FeatureExtractor.from_config(config)([audio]), theirs)
    dithered = FeatureExtractor.from_config({**config, "dither": 1e-3})([audio])["input_features"]
    plain = theirs["input_features"]
    assert dithered.shape == plain.shape and 0 < np.abs(dithered - plain).max() < 0.5


def whole_log_mel(extractor: WhisperFeatureExtractor, waveform: np.ndarray) -> np.ndarray:
    """The log-mel computed plainly, every frame of the whole reflect-padded waveform (the
    runtime's before it skipped zero frames; transformers' numpy path, all frames at once)."""
    half = extractor.n_fft // 2
    padded = np.pad(waveform, half, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, extractor.n_fft)
    spectrum = np.fft.rfft(frames[::extractor.hop_length][:-1] * extractor.window, axis=-1)
    mel = (np.abs(spectrum) ** 2) @ extractor.mel_filters
    log_spec = np.log10(np.maximum(mel, 1e-10)).T.astype(np.float32)
    return (np.maximum(log_spec, log_spec.max() - np.float32(8.0)) + 4) / 4


@pytest.mark.parametrize("config", [
    {}, {"feature_size": 128}, {"n_fft": 401, "hop_length": 100, "feature_size": 40},
    {"n_fft": 64, "hop_length": 7, "feature_size": 10, "padding_side": "left"},
    {"padding_side": "left"}, {"padding_value": 0.5},
])
def test_whisper_skips_only_frames_of_zeros(config):
    """Frames of the zero padding are not computed, and frames reaching past the signal are
    cut from it with their reflect padding: the features are those of every frame computed,
    whatever the signal's place, its zero runs, the padding side and value, and the lengths."""
    extractor = FeatureExtractor.from_config({"feature_extractor_type": "WhisperFeatureExtractor",
                                              "chunk_length": 1, **config})
    rng = np.random.default_rng(2)
    half = extractor.n_fft // 2
    for size in (1, 2, half - 1, half, half + 1, 2 * extractor.n_fft + 3, 9000, 16000, 17000):
        signal = (0.1 * rng.standard_normal(size)).astype(np.float32)
        for zeros in ((0, 0), (size // 3, 0), (0, size // 3), (size // 4, size // 4),
                      (half - 1, half - 1), (half, half), (half + 1, half + 1)):
            edited = signal.copy()
            edited[:zeros[0]] = 0
            edited[len(edited) - zeros[1]:] = 0
            for options in ({}, {"padding": "longest", "truncation": False}):
                kept = edited if options else edited[:extractor.n_samples]
                length = kept.size if options else extractor.n_samples
                if extractor.frames(length) == 0:
                    continue
                waveform, mask = extractor.padded([kept], length)
                result = extractor([edited], return_attention_mask=True, **options)
                np.testing.assert_allclose(result["input_features"][0],
                                           whole_log_mel(extractor, waveform[0]), rtol=0,
                                           atol=3e-7, err_msg=f"{size} {zeros} {options}")
                frames = result["input_features"].shape[-1]
                np.testing.assert_array_equal(result["attention_mask"],
                                              mask[:, ::extractor.hop_length][:, :frames])
                np.testing.assert_allclose(extractor.log_mel(waveform[0]),
                                           result["input_features"][0], rtol=0, atol=0)


def test_whisper_log_mel_of_30_seconds_is_fast():
    extractor = ours("openai/whisper-large-v3")
    audio = np.tile(jfk(), 3)[:480000]
    extractor([audio])
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        extractor([audio])
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.1, timings


def test_mel_filter_bank_is_slaney():
    filters = mel_filter_bank(201, 80, 0.0, 8000.0, 16000)
    assert filters.shape == (201, 80) and (filters >= 0).all()
    assert (filters.max(axis=0) > 0).all()  # no empty filter


# --- Speech2Text -------------------------------------------------------------------------------
@pytest.mark.parametrize("signal", ["jfk", "silence", "sine sweep", "white noise",
                                    "quiet noise"])
def test_speech2text_matches_transformers_on_one_signal(signal):
    """Kaldi filterbanks and utterance CMVN as transformers' numpy path computes them (no
    torchaudio here); silence is -inf in both (0 / 0 in the normalization)."""
    audio = signals()[signal]
    with np.errstate(divide="ignore", invalid="ignore"):
        theirs = reference(SPEECH2TEXT)(audio, sampling_rate=RATE, return_tensors="np")
    assert_same(ours(SPEECH2TEXT)([audio]), theirs)


def test_speech2text_batches_are_normalized_per_signal_and_padded():
    batch = [signals()["jfk"][:40000], signals()["white noise"], signals()["sine sweep"][:7000]]
    theirs = reference(SPEECH2TEXT)(batch, sampling_rate=RATE, padding=True,
                                    return_attention_mask=True, return_tensors="np")
    ours_out = ours(SPEECH2TEXT)(batch)
    assert ours_out["input_features"].shape == (3, 298, 80)
    assert_same(ours_out, theirs)
    dithered = FeatureExtractor.from_config({**HUB_CONFIGS[SPEECH2TEXT], "dither": 4.0})
    assert np.isfinite(dithered([signals()["silence"]])["input_features"]).all()


def test_speech2text_refuses_a_signal_shorter_than_a_frame():
    with pytest.raises(InputError, match="shorter than one Speech2TextFeatureExtractor frame"):
        ours(SPEECH2TEXT)([signals()["100 samples"]])


# --- dispatch and configs ---------------------------------------------------------------------
def test_every_extractor_has_a_parity_case():
    tested = {config["feature_extractor_type"] for config in HUB_CONFIGS.values()}
    assert tested == set(EXTRACTORS)


@pytest.mark.parametrize(("model_type", "expected"), [
    ("wav2vec2", "Wav2Vec2FeatureExtractor"), ("hubert", "Wav2Vec2FeatureExtractor"),
    ("wavlm", "Wav2Vec2FeatureExtractor"), ("whisper", "WhisperFeatureExtractor"),
    ("speech_to_text", "Speech2TextFeatureExtractor"),
])
def test_model_type_is_the_fallback(model_type, expected):
    extractor = FeatureExtractor.from_config({"sampling_rate": 16000}, model_type=model_type)
    assert type(extractor).__name__ == expected
    assert set(MODEL_TYPES.values()) == set(EXTRACTORS.values())


def test_unknown_type_suggests_the_closest():
    with pytest.raises(InputError, match="no feature extractor 'WhisperFeatureExtracter'. Did "
                                         "you mean 'WhisperFeatureExtractor'?"):
        FeatureExtractor.from_config({"feature_extractor_type": "WhisperFeatureExtracter"})
    with pytest.raises(InputError, match="known values are: Speech2TextFeatureExtractor, "
                                         "Wav2Vec2FeatureExtractor, WhisperFeatureExtractor"):
        FeatureExtractor.from_config({"feature_extractor_type": "ASTFeatureExtractor"})
    with pytest.raises(InputError, match="names the image processor 'ViTImageProcessor'"):
        FeatureExtractor.from_config({"image_processor_type": "ViTImageProcessor"})
    with pytest.raises(InputError, match="model type 'bert' has no default extractor"):
        FeatureExtractor.from_config({}, model_type="bert")


def test_from_dir_reads_the_extractor_and_the_model_type(tmp_path):
    with pytest.raises(BundleNotFoundError, match="No preprocessor_config.json"):
        FeatureExtractor.from_dir(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"feature_size": 128}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    extractor = FeatureExtractor.from_dir(tmp_path)
    assert isinstance(extractor, WhisperFeatureExtractor) and extractor.feature_size == 128
    assert extractor.sampling_rate == 16000 and extractor.model_input_names == ("input_features",)
    (tmp_path / "preprocessor_config.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a JSON object"):
        FeatureExtractor.from_dir(tmp_path)


def test_model_input_names_follow_the_mask():
    assert ours("facebook/wav2vec2-base-960h").model_input_names == ("input_values",)
    assert ours("superb/hubert-base-superb-ks").model_input_names == ("input_values",
                                                                      "attention_mask")
    assert set(ours("superb/hubert-base-superb-ks")([jfk()])) == {"input_values",
                                                                   "attention_mask"}


@pytest.mark.parametrize(("config", "message"), [
    ({"feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 2},
     "feature_size=2"),
    ({"feature_extractor_type": "Wav2Vec2FeatureExtractor", "sampling_rate": "16k"},
     "sampling_rate must be an integer"),
    ({"feature_extractor_type": "Wav2Vec2FeatureExtractor", "sampling_rate": 0},
     "sampling_rate=0"),
    ({"feature_extractor_type": "Wav2Vec2FeatureExtractor", "padding_side": "middle"},
     "padding_side='middle'"),
    ({"feature_extractor_type": "Wav2Vec2FeatureExtractor", "padding_value": "zero"},
     "padding_value must be a number"),
    ({"feature_extractor_type": "WhisperFeatureExtractor", "hop_length": 0}, "hop_length=0"),
    ({"feature_extractor_type": "WhisperFeatureExtractor", "n_fft": 400.5},
     "n_fft must be an integer"),
])
def test_bad_configs_are_refused_clearly(config, message):
    with pytest.raises(InputError, match=message) as caught:
        FeatureExtractor.from_config(config)
    assert "Note:" in str(caught.value)
    with pytest.raises(InputError, match="must be a dict"):
        FeatureExtractor.from_config([config])


def test_bad_calls_are_refused_clearly():
    extractor = ours("openai/whisper-tiny")
    for bad in ([], "speech.wav", [np.zeros(0, np.float32)], [np.zeros((2, 10), np.float32)],
                [np.zeros(10, np.int16)], [[0.1, 0.2]]):
        with pytest.raises(InputError, match="load_audios") as caught:
            extractor(bad)
        assert "Note:" in str(caught.value)
    with pytest.raises(InputError, match="Signal 1 given to WhisperFeatureExtractor holds NaN"):
        extractor([jfk(), np.array([0.0, np.nan], np.float32)])
    with pytest.raises(InputError, match="Did you mean 'longest'"):
        extractor([jfk()], padding="longer")


def test_a_single_array_is_a_batch_of_one():
    extractor = ours("facebook/wav2vec2-base-960h")
    np.testing.assert_array_equal(extractor(jfk())["input_values"],
                                  extractor([jfk()])["input_values"])
    assert extractor.sampling_rate == 16000


def test_whisper_refuses_a_signal_too_short_for_one_frame():
    from runtime import InputError
    from runtime.audio.features import FeatureExtractor

    extractor = FeatureExtractor.from_config({"feature_extractor_type": "WhisperFeatureExtractor"})
    with pytest.raises(InputError, match="100 samples long, too short for one Whisper frame"):
        extractor([np.ones(100, np.float32)], padding="longest")
    assert extractor([np.ones(100, np.float32)])["input_features"].shape == (1, 80, 3000)
