"""Kaldi-compatible log mel filterbank features in numpy, as transformers computes them without
torchaudio (``Speech2TextFeatureExtractor._extract_fbank_features``'s numpy path: its
``spectrogram`` with a Povey window and ``mel_filter_bank(..., mel_scale="kaldi",
triangularize_in_mel_space=True)``).

Per frame of 400 samples every 160 (no centering: the last samples that fill no frame are
dropped), on the waveform scaled to 16-bit integers: the frame's mean removed, pre-emphasis
0.97, the Povey window (a Hann window to the power 0.85), a 512-point FFT, the power spectrum
(rounded to complex64 first, as transformers stores it), triangular filters on the Kaldi mel
scale from 20 Hz to the Nyquist frequency, floored at float32's epsilon, natural log.

>>> fbank(np.zeros(16000, np.float32), kaldi_mel_filters(80, 16000), povey_window(400)).shape
(98, 80)
"""

from __future__ import annotations

import numpy as np

FRAME_LENGTH, HOP_LENGTH, FFT_LENGTH = 400, 160, 512  # fixed in transformers' numpy path
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07  # float32's epsilon, Kaldi's floor
_INT16_SCALE = np.float32(2**15)  # Kaldi reads 16-bit samples
_BLOCK = 1024  # frames transformed at a time: a few MB of spectra


def povey_window(length: int) -> np.ndarray:
    """Kaldi's Povey window (float64): the symmetric Hann window to the power 0.85."""
    return np.power(np.hanning(length), 0.85)


def _kaldi_mel(freq):
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def kaldi_mel_filters(num_mel_bins: int, sampling_rate: int,
                      num_frequency_bins: int = FFT_LENGTH // 2 + 1,
                      min_frequency: float = 20.0) -> np.ndarray:
    """Triangular filters on the Kaldi mel scale, triangular in mel (frequency bins x filters,
    float64), as transformers' ``mel_filter_bank(num_frequency_bins, num_mel_bins, 20,
    sampling_rate // 2, sampling_rate, norm=None, mel_scale="kaldi",
    triangularize_in_mel_space=True)``."""
    mel_freqs = np.linspace(_kaldi_mel(min_frequency), _kaldi_mel(sampling_rate // 2),
                            num_mel_bins + 2)
    bin_width = sampling_rate / ((num_frequency_bins - 1) * 2)
    fft_mels = _kaldi_mel(bin_width * np.arange(num_frequency_bins))
    filter_diff = np.diff(mel_freqs)
    slopes = mel_freqs[None, :] - fft_mels[:, None]
    down = -slopes[:, :-2] / filter_diff[:-1]
    up = slopes[:, 2:] / filter_diff[1:]
    return np.maximum(np.zeros(1), np.minimum(down, up))


def frame_count(samples: int) -> int:
    """The frames of a signal of ``samples`` samples (0 when shorter than one frame)."""
    return 0 if samples < FRAME_LENGTH else 1 + (samples - FRAME_LENGTH) // HOP_LENGTH


def fbank(signal: np.ndarray, mel_filters: np.ndarray, window: np.ndarray, *,
          dither: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """The log mel filterbank (frames x filters, float32) of one float signal of about -1 to
    1, at least FRAME_LENGTH samples long; ``dither``: the standard deviation of Gaussian
    noise added to every frame, in 16-bit units (transformers' ``dither``)."""
    waveform = (np.asarray(signal, dtype=np.float32) * _INT16_SCALE).astype(np.float64)
    count = frame_count(waveform.size)
    frames = np.lib.stride_tricks.sliding_window_view(waveform, FRAME_LENGTH)[::HOP_LENGTH]
    out = np.empty((count, mel_filters.shape[1]), np.float32)
    for start in range(0, count, _BLOCK):
        block = frames[start:start + _BLOCK]
        if dither:
            block = block + dither * (rng or np.random.default_rng()).standard_normal(block.shape)
        block = block - block.mean(axis=1, keepdims=True)
        emphasized = np.empty_like(block)
        emphasized[:, 1:] = block[:, 1:] - PREEMPHASIS * block[:, :-1]
        emphasized[:, 0] = block[:, 0] * (1 - PREEMPHASIS)
        emphasized *= window
        spectrum = np.fft.rfft(emphasized, n=FFT_LENGTH, axis=-1).astype(np.complex64)
        power = np.abs(spectrum, dtype=np.float64) ** 2
        mel = np.maximum(MEL_FLOOR, power @ mel_filters)
        out[start:start + len(block)] = np.log(mel)
    return out


def utterance_cmvn(features: np.ndarray, length: int, *, normalize_means: bool = True,
                   normalize_vars: bool = True, padding_value: float = 0.0) -> np.ndarray:
    """transformers' ``Speech2TextFeatureExtractor.utterance_cmvn`` of one padded features
    array (frames x bins, float32): the mean (and the standard deviation) of the first
    ``length`` frames taken out of every frame, the frames from ``length`` on set to
    ``padding_value``."""
    x = features
    if normalize_means:
        x = np.subtract(x, x[:length].mean(axis=0))
    if normalize_vars:
        with np.errstate(divide="ignore", invalid="ignore"):  # silence: 0 / 0, as there
            x = np.divide(x, x[:length].std(axis=0))
    if length < x.shape[0]:
        x = np.array(x)
        x[length:] = padding_value
    return x.astype(np.float32)
