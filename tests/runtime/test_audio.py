"""Audio from user inputs: every kind of input, every bit depth and channel count as ffmpeg
decodes them for transformers, resampling to the model's rate, and a clear error for each bad
input."""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
from audio_samples import JFK

from runtime.audio.loading import STEREO_TO_MONO, load_audio, load_audios, resample
from runtime.errors import InputError

RATE = 16000


def tone(rate: int, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    """Band-limited test audio (frames x channels, float64): tones well inside the band of
    both ``rate`` and 16 kHz, a different mix per channel, peak under 0.9."""
    t = np.arange(int(rate * seconds)) / rate
    high = 6000 if rate >= RATE else 2500
    columns = [0.3 * np.sin(2 * np.pi * (440 + 110 * c) * t) + 0.2 * np.sin(2 * np.pi * 1500 * t
               + c) + 0.1 * np.sin(2 * np.pi * high * t) for c in range(channels)]
    return np.stack(columns, axis=1)


def written(path: Path, frames: np.ndarray, rate: int, subtype: str, fmt: str = "WAV") -> Path:
    soundfile.write(path, frames, rate, subtype=subtype, format=fmt)
    return path


def torchaudio_resample(signal: np.ndarray, orig: int, new: int) -> np.ndarray:
    """torchaudio.functional.resample's defaults (Hann-windowed sinc, lowpass_filter_width 6,
    rolloff 0.99, float32 kernel), rewritten here with torch since torchaudio is not
    installed: transformers' audio-classification pipeline resamples dicts with it."""
    import torch

    gcd = math.gcd(orig, new)
    orig, new = orig // gcd, new // gcd
    width_zeros, base = 6, min(orig, new) * 0.99
    width = math.ceil(width_zeros * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float32)[None, None] / orig
    t = (torch.arange(0, -new, -1, dtype=torch.float32)[:, None, None] / new + idx) * base
    t = t.clamp(-width_zeros, width_zeros)
    window = torch.cos(t * math.pi / width_zeros / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.tensor(1.0), t.sin() / t) * window * (base / orig)
    padded = torch.nn.functional.pad(torch.from_numpy(signal)[None], (width, width + orig))
    out = torch.nn.functional.conv1d(padded[:, None], kernel, stride=orig)
    out = out.transpose(1, 2).reshape(-1)
    return out[:math.ceil(new * signal.size / orig)].numpy()


@functools.cache
def jfk_frames() -> tuple[np.ndarray, int]:
    return soundfile.read(JFK, dtype="float32", always_2d=True)


# --- jfk.flac: 24-bit stereo 44.1 kHz ---------------------------------------------------------
def test_jfk_flac_loads_as_ffmpeg_mixes_it_then_resampled_with_soxr():
    signal = load_audio(JFK, RATE)
    assert signal.dtype == np.float32 and signal.shape == (176000,) and signal.flags.c_contiguous
    frames, rate = jfk_frames()
    assert (frames.shape, rate) == ((485100, 2), 44100)
    mono = (frames[:, 0] + frames[:, 1]) * np.float32(STEREO_TO_MONO)
    np.testing.assert_array_equal(signal, resample(mono, 44100, RATE))
    assert 0.15 < float(np.sqrt(np.mean(signal ** 2))) < 0.25  # speech, at ffmpeg's level


def test_jfk_resampled_differs_from_torchaudio_by_the_documented_amount():
    """The bound runtime/audio/loading.py states: soxr and torchaudio's resampler agree to 5e-3 at
    worst, 1e-4 RMS, on the speech of jfk.flac."""
    frames, _ = jfk_frames()
    mono = frames.mean(axis=1)
    ours, theirs = resample(mono, 44100, RATE), torchaudio_resample(mono, 44100, RATE)
    assert ours.shape == theirs.shape == (176000,)
    difference = ours - theirs
    assert np.abs(difference).max() < 5e-3
    assert np.sqrt(np.mean(difference ** 2)) < 1e-4


# --- every kind of input ----------------------------------------------------------------------
def test_every_kind_of_input_gives_the_same_signal(tmp_path):
    frames = tone(RATE)
    path = written(tmp_path / "tone.wav", frames, RATE, "FLOAT")
    data = path.read_bytes()
    expected = frames[:, 0].astype(np.float32)
    kinds = {
        "str path": str(path), "Path": path, "bytes": data, "bytearray": bytearray(data),
        "memoryview": memoryview(data), "file object": io.BytesIO(data),
        "float32 array": expected, "float64 array": frames[:, 0],
        "dict raw": {"raw": expected, "sampling_rate": RATE},
        "dict array (datasets)": {"array": frames[:, 0], "sampling_rate": RATE, "path": "x.wav"},
        "dict with stride": {"raw": expected, "sampling_rate": RATE, "stride": (100, 100)},
        "(1, samples) array": expected[None],
    }
    for kind, item in kinds.items():
        signal = load_audio(item, RATE)
        assert signal.dtype == np.float32 and signal.ndim == 1, kind
        np.testing.assert_allclose(signal, expected, atol=1e-7, err_msg=kind)


def test_torch_tensors_are_taken_through_their_array_interface():
    import torch

    values = torch.linspace(-0.5, 0.5, 100)
    np.testing.assert_array_equal(load_audio(values, RATE), values.numpy())
    np.testing.assert_array_equal(load_audio({"raw": values, "sampling_rate": RATE}, RATE),
                                  values.numpy())
    with pytest.raises(InputError, match="detach"):
        load_audio(torch.zeros(10, requires_grad=True), RATE)


def test_float16_arrays_become_float32_and_the_input_is_not_changed():
    array = np.linspace(-1, 1, 50).astype(np.float16)
    before = array.copy()
    signal = load_audio(array, RATE)
    assert signal.dtype == np.float32
    np.testing.assert_array_equal(array, before)
    np.testing.assert_array_equal(signal, array.astype(np.float32))


def test_lists_are_batches_and_single_inputs_are_flagged():
    one = np.zeros(10, np.float32)
    signals, single = load_audios(one, RATE)
    assert single and len(signals) == 1
    signals, single = load_audios([one, {"raw": np.ones(20), "sampling_rate": RATE}], RATE)
    assert not single and [s.size for s in signals] == [10, 20]
    signals, single = load_audios((one,), RATE)
    assert not single and len(signals) == 1
    signals, single = load_audios(np.zeros((2, 30), np.float32), RATE)  # one stereo signal
    assert single and signals[0].shape == (30,)


# --- bit depths, formats and channels ---------------------------------------------------------
@pytest.mark.parametrize(("fmt", "subtype", "step"), [
    ("WAV", "PCM_U8", 2 / 2 ** 8), ("WAV", "PCM_16", 2 / 2 ** 16), ("WAV", "PCM_24", 2 / 2 ** 24),
    ("WAV", "PCM_32", 2 / 2 ** 32), ("WAV", "FLOAT", 1e-7), ("WAV", "DOUBLE", 1e-7),
    ("FLAC", "PCM_S8", 2 / 2 ** 8), ("FLAC", "PCM_16", 2 / 2 ** 16),
    ("FLAC", "PCM_24", 2 / 2 ** 24), ("AIFF", "PCM_16", 2 / 2 ** 16),
])
def test_every_bit_depth_decodes_to_the_same_floats(tmp_path, fmt, subtype, step):
    frames = tone(RATE, 0.25)
    path = written(tmp_path / f"tone.{fmt.lower()}", frames, RATE, subtype, fmt)
    signal = load_audio(path, RATE)
    assert signal.dtype == np.float32 and signal.shape == (frames.shape[0],)
    np.testing.assert_allclose(signal, frames[:, 0], atol=step)


def test_ogg_vorbis_and_mp3_decode(tmp_path):
    frames = tone(RATE)
    for fmt, subtype in (("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")):
        path = written(tmp_path / f"tone.{fmt.lower()}", frames, RATE, subtype, fmt)
        signal = load_audio(path, RATE)
        assert abs(signal.size - RATE) <= 1200, fmt  # codec delay and padding
        # lossy, and shifted by the codec's delay: compare the loudness only
        assert abs(np.std(signal[2000:-2000]) - np.std(frames[:, 0])) < 0.02, fmt


def test_stereo_files_are_mixed_down_as_ffmpeg_does(tmp_path):
    frames = tone(RATE, 0.5, channels=2)
    path = written(tmp_path / "stereo.wav", frames, RATE, "FLOAT")
    expected = (frames[:, 0] + frames[:, 1]) * math.sqrt(0.5)
    np.testing.assert_allclose(load_audio(path, RATE), expected, atol=1e-6)
    same = written(tmp_path / "same.wav", np.repeat(frames[:, :1], 2, axis=1), RATE, "FLOAT")
    np.testing.assert_allclose(load_audio(same, RATE), frames[:, 0] * math.sqrt(2), atol=1e-6)


def test_files_of_more_channels_are_averaged(tmp_path):
    frames = tone(RATE, 0.25, channels=6)
    path = written(tmp_path / "surround.wav", frames, RATE, "FLOAT")
    np.testing.assert_allclose(load_audio(path, RATE), frames.mean(axis=1), atol=1e-6)


def test_channels_first_arrays_are_averaged_as_transformers_does():
    stereo = tone(RATE, 0.25, channels=2).T.astype(np.float32)
    np.testing.assert_array_equal(load_audio(stereo, RATE), stereo.mean(axis=0))
    np.testing.assert_array_equal(load_audio({"raw": stereo, "sampling_rate": RATE}, RATE),
                                  stereo.mean(axis=0))


# --- resampling -------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_to_16k_keeps_the_length_and_the_tones(tmp_path, rate):
    frames = tone(rate, 2.0)
    t = np.arange(2 * RATE) / RATE
    high = 6000 if rate >= RATE else 2500
    expected = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1500 * t)
                + 0.1 * np.sin(2 * np.pi * high * t))
    for item in (written(tmp_path / "tone.wav", frames, rate, "FLOAT"),
                 {"raw": frames[:, 0].astype(np.float32), "sampling_rate": rate}):
        signal = load_audio(item, RATE)
        assert abs(signal.size - 2 * RATE) <= 1
        # tones well inside the band survive: the same samples away from the edges
        middle = slice(500, 2 * RATE - 500)
        np.testing.assert_allclose(signal[middle], expected[middle], atol=2e-3)
        reference = torchaudio_resample(frames[:, 0].astype(np.float32), rate, RATE)
        np.testing.assert_allclose(signal[middle], reference[middle], atol=3e-3)


def test_the_rate_of_the_model_is_any_positive_rate():
    signal = {"raw": np.zeros(4410, np.float32), "sampling_rate": 44100}
    assert load_audio(signal, 8000).size == 800
    assert load_audio(signal, 16000.0).size == 1600
    assert load_audio({"raw": np.zeros(100, np.float32), "sampling_rate": np.int64(16000)},
                      16000).size == 100


def test_resample_is_a_no_op_at_the_same_rate():
    signal = np.ones(10, np.float32)
    assert resample(signal, 16000, 16000) is signal


# --- bad inputs -------------------------------------------------------------------------------
@functools.cache
def truncated_flac() -> bytes:
    data = JFK.read_bytes()
    return data[: len(data) // 2]


BAD_ARRAYS = {
    "empty": (np.zeros(0, np.float32), "empty"),
    "empty dict": ({"raw": np.zeros(0, np.float32), "sampling_rate": RATE}, "empty"),
    "all NaN": (np.full(100, np.nan, np.float32), "100 NaN and 0 infinite samples of 100"),
    "one NaN": (np.array([0.0, np.nan, 0.5]), "1 NaN .* sample 1"),
    "infinity": (np.array([np.inf, 0.0, -np.inf]), "2 infinite"),
    "int16": (np.zeros(10, np.int16), r"int16.*array / 2\*\*15"),
    "int32": (np.zeros(10, np.int32), r"2\*\*31"),
    "uint8": (np.zeros(10, np.uint8), r"\(array - 2\*\*7\) / 2\*\*7"),
    "bool": (np.zeros(10, bool), "float32 array"),
    "complex": (np.zeros(10, np.complex64), "float32 array"),
    "(samples, channels)": (np.zeros((1000, 2), np.float32), r"array\.T"),
    "square": (np.zeros((100, 100), np.float32), "at most 8 channels"),
    "too many channels": (np.zeros((9, 1000), np.float32), "at most 8 channels"),
    "3-D": (np.zeros((1, 2, 100), np.float32), "list of 1-D arrays"),
    "too short to resample": ({"raw": np.zeros(1, np.float32), "sampling_rate": 44100},
                              "shorter than one sample"),
}


@pytest.mark.parametrize("name", BAD_ARRAYS)
def test_bad_arrays_are_refused_clearly(name):
    item, message = BAD_ARRAYS[name]
    with pytest.raises(InputError, match=message) as caught:
        load_audio(item, RATE)
    assert "Note:" in str(caught.value)


BAD_DICTS = {
    "no sampling_rate": ({"raw": np.zeros(10, np.float32)}, "needs 'sampling_rate'"),
    "no array": ({"sampling_rate": RATE}, r"needs 'raw' \(or 'array'\)"),
    "neither": ({"audio": np.zeros(3)}, "and 'sampling_rate'; got the keys"),
    "a list signal": ({"raw": [0.0, 0.1], "sampling_rate": RATE}, "np.asarray"),
    "a path signal": ({"raw": "speech.wav", "sampling_rate": RATE}, "not in a dict"),
    "zero rate": ({"raw": np.zeros(10), "sampling_rate": 0}, "positive number of Hz"),
    "text rate": ({"raw": np.zeros(10), "sampling_rate": "16k"}, "positive number of Hz"),
    "bool rate": ({"raw": np.zeros(10), "sampling_rate": True}, "positive number of Hz"),
    "NaN rate": ({"raw": np.zeros(10), "sampling_rate": float("nan")}, "positive number"),
}


@pytest.mark.parametrize("name", BAD_DICTS)
def test_bad_dicts_are_refused_clearly(name):
    item, message = BAD_DICTS[name]
    with pytest.raises(InputError, match=message) as caught:
        load_audio(item, RATE)
    assert "Note:" in str(caught.value)


def test_bad_files_are_refused_clearly(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 10)
    cases = {
        "text file": (text, "not an audio file soundfile can decode"),
        "truncated flac": (truncated_flac(), "truncated"),
        "random bytes": (bytes(range(256)) * 4, "not an audio file"),
        "empty bytes": (b"", "is empty"),
        "missing file": (str(tmp_path / "missing.wav"), "No such file"),
        "missing Path": (tmp_path / "missing.flac", "No such file"),
        "directory": (tmp_path, "is a directory"),
        "http URL": ("https://example.com/speech.wav", "does not download"),
        "an empty WAV": (written(tmp_path / "empty.wav", np.zeros((0, 1)), RATE, "PCM_16"),
                         "empty"),
    }
    for name, (item, message) in cases.items():
        with pytest.raises(InputError, match=message) as caught:
            load_audio(item, RATE)
        assert "Note:" in str(caught.value), name


def test_a_truncated_flac_file_fails_when_loaded(tmp_path):
    path = tmp_path / "partial.flac"
    path.write_bytes(truncated_flac())
    with pytest.raises(InputError, match=f"The file {path}.*partial download"):
        load_audio(path, RATE)


@pytest.mark.parametrize("item", [None, 3, 0.5, object(), [0.1, 0.2]])
def test_wrong_types_are_refused_clearly(item):
    with pytest.raises(InputError, match="Cannot read audio from|Audio input 0 of 2") as caught:
        load_audios(item, RATE)
    assert "Note:" in str(caught.value)


def test_errors_in_a_batch_name_the_input():
    with pytest.raises(InputError, match="Audio input 1 of 2: The array is empty"):
        load_audios([np.zeros(3, np.float32), np.zeros(0, np.float32)], RATE)
    with pytest.raises(InputError, match="At least one audio input"):
        load_audios([], RATE)


@pytest.mark.parametrize("rate", [0, -16000, "16000", None, True, float("inf")])
def test_a_bad_model_rate_is_refused(rate):
    with pytest.raises(InputError, match="The model's sampling_rate must be a positive number"):
        load_audio(np.zeros(3, np.float32), rate)
