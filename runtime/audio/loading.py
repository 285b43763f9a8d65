"""User inputs to mono float32 signals at the model's rate, as transformers' audio pipelines
make them.

A signal may be given as a file path (``str`` or ``os.PathLike``), the bytes of an audio file, a
binary file object, a 1-D float numpy array (taken to be at the model's rate already, as
transformers takes it), a ``{"raw" or "array": array, "sampling_rate": int}`` dict (transformers'
and ``datasets``' form; resampled when the rate differs), or a list of those (a batch).

Files are decoded by libsndfile through soundfile (WAV, FLAC, OGG Vorbis and Opus, MP3, AIFF and
the other formats it reads; any bit depth, integer or float; integers scaled to [-1, 1) as ffmpeg
scales them) and resampled with libsoxr at its "HQ" setting. transformers decodes files with the
``ffmpeg`` program instead (``ffmpeg_read``: ``-ac 1 -ar <rate> -f f32le``), so:

- a stereo file is mixed down as ffmpeg mixes it to float output: ``(left + right) / sqrt(2)``
  (ffmpeg's matrix, left unnormalized for float samples; 3 dB above the mean of the channels
  when they are alike). A file of three or more channels is averaged, where ffmpeg weighs the
  channels by its layout (centre, surround and LFE levels). A 2-D array is averaged over its
  first axis, as transformers' speech-recognition pipeline averages it.
- resampled signals differ slightly from ffmpeg's and from torchaudio's (which transformers'
  audio-classification pipeline uses for a dict at another rate). All are windowed-sinc
  resamplers; soxr's passes the band flat to ~7.6 kHz (of 8) where torchaudio's default
  filter rolls off from ~6.5 kHz. On ``jfk.flac`` (44.1 to 16 kHz) the two signals differ by
  at most 4.6e-3 (7e-5 RMS; the speech is 0.14 RMS), Wav2Vec2 inputs by 0.03, and Whisper
  log-mel features by 3e-3 below 5 kHz (2e-4 on average over the speech) but up to 0.17
  in the top mel bins (80 of them; 0.34 of 128).
  transformers 4.57's speech-recognition pipeline does not resample a dict's array at all (it
  calls ``F.resample(x, rate, rate, ...)``, a no-op): the runtime does, as its audio-classification
  pipeline does.

Stricter than transformers, and said so in each error: the runtime never downloads (an
``http(s)://`` address is refused); an empty signal, or one holding NaN or infinity, is refused
here rather than turning into NaN scores; an integer array is refused (transformers would take
int16 samples as floats in the thousands); and a 2-D array is only taken as (channels, samples)
when it plainly is one.

>>> signals, single = load_audios("speech.flac", sampling_rate=16000)    # doctest: +SKIP
>>> single, signals[0].dtype, signals[0].ndim                              # doctest: +SKIP
(True, dtype('float32'), 1)
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from numbers import Real
from pathlib import Path

import numpy as np
import soundfile
import soxr

from ..errors import InputError

_KINDS = ("a file path, the bytes of an audio file, a 1-D float numpy array at the model's "
          "sampling rate, or a dict {'raw': array, 'sampling_rate': int}")
_FORMATS = "WAV, FLAC, OGG Vorbis or Opus, MP3, AIFF and the rest of libsndfile's formats"
# ffmpeg's stereo -> mono matrix for float output (libswresample's swr_build_matrix2 with
# maxval INT_MAX: M_SQRT1_2 per channel, not normalized).
STEREO_TO_MONO = math.sqrt(0.5)
# A 2-D array is (channels, samples) when its first axis is this short and the shorter one.
MAX_CHANNELS = 8
RESAMPLE_QUALITY = "HQ"
# The longest recording taken: a request is someone else's, and decoding and resampling hours
# of audio at once asks for GBs (4 h at 48 kHz stereo is 5.5 GB of float32). Longer recordings
# are split by the caller.
MAX_AUDIO_SECONDS = 4 * 3600
MAX_SAMPLING_RATE = 1_000_000


def load_audios(inputs, sampling_rate: int) -> tuple[list[np.ndarray], bool]:
    """(list of mono float32 signals at ``sampling_rate``, whether a single one was given) for
    one input or a list/tuple of them; a numpy array is always one signal.

    >>> signals, single = load_audios([np.zeros(4, np.float32), {"raw": np.ones(8),
    ...                                "sampling_rate": 16000}], sampling_rate=16000)
    >>> [s.shape for s in signals], single
    ([(4,), (8,)], False)
    """
    sampling_rate = _rate(sampling_rate, "The model's sampling_rate")
    if not isinstance(inputs, (list, tuple)):
        return [load_audio(inputs, sampling_rate)], True
    if not inputs:
        raise InputError(
            f"At least one audio input is required, got an empty {type(inputs).__name__}. Note: "
            f"pass one or a non-empty list; an audio input is {_KINDS}."
        )
    signals = []
    for index, item in enumerate(inputs):
        try:
            signals.append(load_audio(item, sampling_rate))
        except InputError as error:
            raise type(error)(f"Audio input {index} of {len(inputs)}: {error}") from error
    return signals, False


def load_audio(item, sampling_rate: int) -> np.ndarray:
    """One mono float32 signal at ``sampling_rate`` (C-contiguous, finite, not empty; the
    caller's own array when it already is one, so never write into it).

    >>> load_audio({"array": np.zeros(441, np.float32), "sampling_rate": 44100}, 16000).shape
    (160,)
    """
    sampling_rate = _rate(sampling_rate, "The model's sampling_rate")
    if isinstance(item, Mapping):
        array, rate = _from_dict(item)
        return _prepared(_mono_array(array, "The dict's array"), rate, sampling_rate,
                         "The dict's array")
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        what = f"The audio data given ({len(data)} bytes)"
        if not data:
            raise InputError(f"{what} is empty. Note: pass the bytes of an audio file "
                             f"({_FORMATS}).")
        return _decoded(io.BytesIO(data), sampling_rate, what)
    if isinstance(item, str):
        return _from_string(item, sampling_rate)
    if isinstance(item, os.PathLike):
        return _from_path(Path(item), sampling_rate)
    if hasattr(item, "read"):
        return _decoded(item, sampling_rate, f"The file object {item!r:.80}")
    if isinstance(item, np.ndarray) or hasattr(item, "__array__"):
        return _prepared(_mono_array(_as_array(item), "The array"), sampling_rate, sampling_rate,
                         "The array")
    raise InputError(
        f"Cannot read audio from {type(item).__name__}: {item!r:.80}. Note: an audio input is "
        f"{_KINDS}, or a list of those."
    )


def resample(signal: np.ndarray, from_rate: float, to_rate: float) -> np.ndarray:
    """``signal`` (1-D float32) from one sampling rate to another with libsoxr ("HQ"); the
    same array when the rates are equal.

    >>> resample(np.zeros(44100, np.float32), 44100, 16000).shape
    (16000,)
    """
    if from_rate == to_rate:
        return signal
    return np.ascontiguousarray(soxr.resample(signal, from_rate, to_rate,
                                              quality=RESAMPLE_QUALITY), dtype=np.float32)


def _from_string(text: str, sampling_rate: int) -> np.ndarray:
    if text.startswith(("http://", "https://")):
        raise InputError(
            f"The runtime does not download audio, and got the address {text!r:.120}. Note: "
            "download it yourself and pass the local path or the file's bytes."
        )
    return _from_path(Path(text), sampling_rate)


def _from_path(path: Path, sampling_rate: int) -> np.ndarray:
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory, not an audio file. Note: pass the path of one "
                         "audio file, or a list of paths.")
    if os.path.exists(path) and not os.path.isfile(path):
        raise InputError(f"{path} is not a regular file (a pipe or a device?). Note: pass the "
                         "path of an audio file.")
    if not os.path.exists(path):
        raise InputError(
            f"No such file: {str(path)!r:.200}. Note: pass the path of an existing audio file "
            f"(relative paths start at {os.getcwd()}), or its bytes."
        )
    try:
        with open(path, "rb") as file:
            return _decoded(file, sampling_rate, f"The file {path}")
    except OSError as error:  # unreadable: permissions, a device, ...
        raise InputError(f"Cannot read {path}: {error}. Note: check that the file is "
                         "readable.") from error


def _decoded(source, sampling_rate: int, what: str) -> np.ndarray:
    """Decode completely (a truncated file fails here), mix down, resample."""
    try:
        with soundfile.SoundFile(source) as sound:
            _check_duration(sound.frames, sound.samplerate, what)
            frames, rate = sound.read(dtype="float32", always_2d=True), sound.samplerate
    except InputError:
        raise
    except (soundfile.SoundFileError, RuntimeError, TypeError, ValueError) as error:
        reason = str(error).replace(f"{source!r}", "").replace("Error opening :", "")
        reason = reason.strip().rstrip(".")
        raise InputError(
            f"{what} is not an audio file soundfile can decode ({reason}). Note: pass a "
            f"complete file in a format libsndfile reads: {_FORMATS}; convert others (M4A, "
            "AAC, WebM, video files) first, e.g. `ffmpeg -i in.m4a out.flac`. A truncated "
            "file (a partial download) or a text file under an audio name cannot be used."
        ) from error
    channels = frames.shape[1]
    if channels == 1:
        signal = frames[:, 0]
    elif channels == 2:
        signal = (frames[:, 0] + frames[:, 1]) * np.float32(STEREO_TO_MONO)
    else:
        signal = frames.mean(axis=1, dtype=np.float32)
    return _prepared(signal, rate, sampling_rate, what)


def _from_dict(item: Mapping) -> tuple[object, float]:
    """(array, rate) from transformers' dict form: "raw" first, else "array" (datasets' key);
    "path" and "stride" (read by the speech-recognition pipeline) and other keys are ignored."""
    raw = item.get("raw")
    array = raw if raw is not None else item.get("array")
    if array is None or "sampling_rate" not in item:
        missing = " and ".join(name for name, absent in (
            ("'raw' (or 'array')", array is None), ("'sampling_rate'", "sampling_rate" not in item)
        ) if absent)
        raise InputError(
            f"An audio dict needs {missing}; got the keys {sorted(map(str, item))}. Note: pass "
            "{'raw': signal, 'sampling_rate': rate}, the signal a 1-D float numpy array and the "
            "rate in Hz it was recorded at (or a bare array already at the model's rate)."
        )
    if isinstance(array, (list, tuple)):
        raise InputError(
            f"The dict's signal is a {type(array).__name__}, not a numpy array. Note: pass "
            "`np.asarray(signal, dtype=np.float32)`, as transformers requires."
        )
    if not (isinstance(array, np.ndarray) or hasattr(array, "__array__")):
        raise InputError(f"The dict's signal is a {type(array).__name__}, not an array. Note: "
                         "the dict holds a decoded signal; pass a file's path or bytes by "
                         "themselves, not in a dict.")
    return _as_array(array), _rate(item["sampling_rate"], "The dict's sampling_rate")


def _as_array(item) -> np.ndarray:
    try:
        return np.asarray(item)
    except Exception as error:  # a tensor on a GPU, one that requires grad, ...
        raise InputError(
            f"Cannot make a numpy array of the {type(item).__name__} given ({error}). Note: "
            "pass a numpy array, e.g. `tensor.detach().cpu().numpy()` for a torch tensor."
        ) from error


def _mono_array(array: np.ndarray, what: str) -> np.ndarray:
    """A float32 1-D signal from a float array of one or (channels, samples) two dimensions."""
    if not np.issubdtype(array.dtype, np.floating):
        if np.issubdtype(array.dtype, np.integer):
            half = f"2**{8 * array.dtype.itemsize - 1}"
            scaled = (f"array / {half}" if np.issubdtype(array.dtype, np.signedinteger)
                      else f"(array - {half}) / {half}")
            note = (f"scale integer samples to [-1, 1] first, e.g. `{scaled}` for "
                    f"{array.dtype}; transformers would take them unscaled")
        else:
            note = "pass a float32 array of samples in [-1, 1]"
        raise InputError(f"{what} holds {array.dtype}, not floating-point samples. Note: {note}.")
    if array.ndim == 2:
        channels, samples = array.shape
        if channels <= MAX_CHANNELS and channels < samples:
            array = array.mean(axis=0)  # transformers' speech-recognition pipeline does so
        elif samples <= MAX_CHANNELS and samples < channels:
            raise InputError(
                f"{what} of shape {array.shape} looks like (samples, channels), the layout "
                "soundfile returns. Note: transformers takes (channels, samples); pass "
                "`array.T`, or mix it down yourself with `array.mean(axis=1)`."
            )
        else:
            raise InputError(
                f"{what} of shape {array.shape} is not a signal: a 2-D array must be "
                f"(channels, samples) with at most {MAX_CHANNELS} channels. Note: pass a 1-D "
                "array per signal; for a batch, pass a list of arrays."
            )
    elif array.ndim != 1:
        raise InputError(
            f"{what} has shape {array.shape}; a signal is 1-D (samples) or 2-D (channels, "
            "samples). Note: for a batch, pass a list of 1-D arrays."
        )
    return array.astype(np.float32, copy=False)


def _check_duration(samples: int, rate: float, what: str) -> None:
    if not 1 <= rate <= MAX_SAMPLING_RATE:
        raise InputError(f"{what} has a sampling rate of {rate:g} Hz, outside 1 Hz to "
                         f"{MAX_SAMPLING_RATE:,} Hz. Note: the file's header is damaged, or the "
                         "rate given is wrong.")
    if samples / rate > MAX_AUDIO_SECONDS:
        raise InputError(
            f"{what} lasts {samples / rate / 3600:.1f} hours, over the limit of "
            f"{MAX_AUDIO_SECONDS / 3600:g} hours (runtime.audio.loading.MAX_AUDIO_SECONDS). "
            "Note: split the recording and pass the parts."
        )


def _prepared(signal: np.ndarray, rate: float, sampling_rate: int, what: str) -> np.ndarray:
    _check_duration(signal.size, rate, what)
    if signal.size == 0:
        raise InputError(f"{what} is empty (no samples). Note: pass a signal of at least one "
                         "sample; for silence, pass zeros.")
    finite = np.isfinite(signal)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        nans = int(np.isnan(signal[bad]).sum())
        raise InputError(
            f"{what} holds {nans} NaN and {bad.size - nans} infinite samples of {signal.size} "
            f"(the first at sample {bad[0]}). Note: a signal must be finite; fix the recording "
            "or replace them, e.g. `np.nan_to_num(signal)`."
        )
    resampled = resample(signal, rate, sampling_rate)
    if resampled.size == 0:
        samples = f"{signal.size} sample" + "s" * (signal.size != 1)
        raise InputError(
            f"{what} of {samples} at {rate:g} Hz is shorter than one sample at the model's "
            f"{sampling_rate} Hz. Note: pass a longer signal."
        )
    return np.ascontiguousarray(resampled, dtype=np.float32)


def _rate(value, what: str) -> float:
    """A sampling rate: a positive finite number of Hz (an int as given, else a float)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
            or value <= 0:
        raise InputError(f"{what} must be a positive number of Hz, got {value!r:.40}. Note: "
                         "e.g. 16000 for a signal sampled at 16 kHz.")
    return int(value) if float(value).is_integer() else float(value)
