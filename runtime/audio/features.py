"""Audio feature extractors read from ``preprocessor_config.json``, as data: no transformers needed.

Each class mirrors one transformers feature extractor and reads every field that class reads,
with its defaults; each takes mono float32 signals already at its ``sampling_rate`` (what
``runtime.audio.loading.load_audios`` makes) and returns the model's inputs as numpy arrays:

    FeatureExtractor                  base: from_dir / from_config dispatch, signal checks
    ├── Wav2Vec2FeatureExtractor      raw samples, zero-mean unit-variance per signal, padded
    │                                   -> input_values (+ attention_mask)   wav2vec2, HuBERT, ...
    ├── WhisperFeatureExtractor       30 s padded or cut, log-mel (80 or 128 Slaney bins)
    │                                   -> input_features (+ attention_mask)
    └── Speech2TextFeatureExtractor   Kaldi log mel filterbanks (runtime.audio.kaldi),
                                        utterance CMVN -> input_features + attention_mask

A batch is normalized signal by signal over its own samples and then padded to its longest
signal, as transformers' pipelines batch (each signal through the extractor alone, then
``pad_collate_fn``), and as its extractors give with ``return_attention_mask=True``.

The Whisper log-mel is transformers' numpy ``spectrogram`` (reflect-padded frames, periodic Hann
window, power spectrum, Slaney mel filters, log10 floored at 1e-10, then
``max(x, x.max() - 8)`` and ``(x + 4) / 4``), in float64 as there, but only over the frames that
hold signal: the frames of only zero padding are the floor without being computed (a 5 s signal
is 500 of the 3000 frames), and the rest go through in cache-sized blocks, each windowed,
``rfft``-ed and squared, then weighed by the filters a band of 8 at a time over the bins they
cover (391 of the 16080 weights of 80 filters are not zero). On a busy two-core Xeon, 30 s of
signal take ~7 ms on one core and 5 s ~2 ms, where transformers' torch.stft path takes ~8-10 ms
whatever the length (two threads, all 3000 frames) and its numpy frame loop ~100 ms. The
features are within 2.4e-7 of its numpy path and 5e-5 of its torch path (which differ from each
other by as much) on speech, sweeps and noise.

>>> extractor = FeatureExtractor.from_config({"feature_extractor_type": "WhisperFeatureExtractor"})
>>> extractor([np.zeros(16000, np.float32)])["input_features"].shape
(1, 80, 3000)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError, did_you_mean
from ..preprocessor_config import given, integer, number, read_directory, shown
from . import kaldi

# Bounds on what a preprocessor_config.json may ask for. Real models use 16 kHz (some 8, 22.05,
# 44.1 or 48 kHz); Whisper takes a 400-sample FFT every 160 samples into 80 or 128 mel bins.
MAX_SAMPLING_RATE = 384_000
MAX_N_FFT = 2**15
MAX_FEATURE_SIZE = 1024
MAX_CHUNK_SECONDS = 3600
MAX_PADDING_VALUE = 1e6
# The most values one padded Whisper window may hold (feature_size x frames): Whisper's is
# 80 x 3000; this is 2**26 float32, 256 MB.
MAX_WINDOW_VALUES = 2**26
# The most weights of the mel filters (frequency bins x feature_size, float64): Whisper's are
# 201 x 80; this is 32 MB, which the filter bank's arithmetic takes a few times over.
MAX_FILTER_VALUES = 2**22


class FeatureExtractor:
    """Base of the extractors: ``from_dir`` / ``from_config`` pick the class the config names.

    A subclass sets its transformers name, the model types it is the default of, and
    ``features`` (the model inputs of a batch of checked signals).
    """

    type_name: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()  # config.json model_types it is the default of
    model_input_names: tuple[str, ...] = ()
    default_return_attention_mask: ClassVar[bool] = False

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_dir(cls, directory: str | Path) -> FeatureExtractor:
        """The extractor of a bundle or checkpoint directory (its preprocessor_config.json; a
        config.json beside it gives the model_type when the extractor config names no type)."""
        config, model_type = read_directory(directory, "feature extractor")
        return cls.from_config(config, model_type=model_type)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, model_type: str | None = None
                    ) -> FeatureExtractor:
        """The extractor a preprocessor_config.json dict names (``feature_extractor_type``,
        else the model's ``model_type``). Called on a subclass, that subclass is made whatever
        the config names."""
        if not isinstance(config, Mapping):
            raise InputError(
                f"A feature extractor config must be a dict, got {type(config).__name__}. Note: "
                "pass the parsed preprocessor_config.json."
            )
        if cls is not FeatureExtractor:
            return cls(config)
        return extractor_class(config, model_type=model_type)(config)

    def __init__(self, config: Mapping[str, Any] | None = None):
        config = dict(config or {})
        self.config = config
        self.sampling_rate = integer(config, "sampling_rate", 16000, self.type_name, minimum=1,
                                     maximum=MAX_SAMPLING_RATE)
        # samples are about -1 to 1; a padding of 1e300 would overflow the float32 features
        self.padding_value = number(config, "padding_value", 0.0, self.type_name,
                                    minimum=-MAX_PADDING_VALUE, maximum=MAX_PADDING_VALUE)
        self.padding_side = config.get("padding_side") or "right"
        if self.padding_side not in ("right", "left"):
            raise InputError(
                f"{self.type_name} has padding_side={shown(self.padding_side)}. Note: it is "
                "'right' or 'left' (transformers refuses others too)."
            )
        self.return_attention_mask = bool(
            given(config, "return_attention_mask", self.default_return_attention_mask))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # --- running ----------------------------------------------------------------------------
    def __call__(self, signals: Sequence[np.ndarray] | np.ndarray, *,
                 return_attention_mask: bool | None = None) -> dict[str, np.ndarray]:
        """The model's inputs for a batch of mono float32 signals at ``sampling_rate``; one
        1-D array is a batch of one. ``return_attention_mask`` overrides the config's."""
        raise NotImplementedError

    def checked(self, signals) -> list[np.ndarray]:
        """The signals as a list of non-empty 1-D float32 arrays."""
        if isinstance(signals, np.ndarray) and signals.ndim == 1:
            signals = [signals]
        if not isinstance(signals, Sequence) or isinstance(signals, (str, bytes)) or not signals:
            raise InputError(
                f"{self.type_name} needs a non-empty list of 1-D float signals, got "
                f"{type(signals).__name__}. Note: runtime.audio.loading.load_audios makes them "
                "from paths, bytes, arrays and dicts, at the model's sampling rate."
            )
        checked = []
        for index, signal in enumerate(signals):
            if (not isinstance(signal, np.ndarray) or signal.ndim != 1 or not signal.size
                    or not np.issubdtype(signal.dtype, np.floating)):
                shown = (f"a {signal.dtype} array of shape {signal.shape}"
                         if isinstance(signal, np.ndarray) else type(signal).__name__)
                raise InputError(
                    f"{self.type_name} takes non-empty 1-D float signals, got {shown} at index "
                    f"{index}. Note: runtime.audio.loading.load_audios makes them from paths, "
                    "bytes, arrays and dicts, at the model's sampling rate."
                )
            signal = signal.astype(np.float32, copy=False)
            if not np.isfinite(signal).all():
                raise InputError(
                    f"Signal {index} given to {self.type_name} holds NaN or infinite samples. "
                    "Note: a signal must be finite; runtime.audio.loading.load_audios refuses such "
                    "signals with the position of the first one."
                )
            checked.append(signal)
        return checked

    def padded(self, signals: list[np.ndarray], length: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """(batch x length float32 of the signals padded with padding_value on padding_side,
        batch x length int32 mask of real samples); each signal at most ``length`` long."""
        values = np.full((len(signals), length), self.padding_value, dtype=np.float32)
        mask = np.zeros((len(signals), length), dtype=np.int32)
        for row, mask_row, signal in zip(values, mask, signals):
            span = slice(0, signal.size) if self.padding_side == "right" else slice(
                length - signal.size, length)
            row[span] = signal
            mask_row[span] = 1
        return values, mask

    def wants_mask(self, return_attention_mask: bool | None) -> bool:
        return self.return_attention_mask if return_attention_mask is None else bool(
            return_attention_mask)


class Wav2Vec2FeatureExtractor(FeatureExtractor):
    """The raw samples, each signal normalized to zero mean and unit variance (do_normalize),
    padded to the longest of the batch; attention_mask per return_attention_mask."""

    type_name = "Wav2Vec2FeatureExtractor"
    model_types = ("wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "unispeech",
                   "unispeech-sat", "data2vec-audio", "sew", "sew-d")

    def __init__(self, config=None):
        super().__init__(config)
        feature_size = integer(self.config, "feature_size", 1, self.type_name)
        if feature_size != 1:
            raise InputError(
                f"{self.type_name} has feature_size={feature_size}; the runtime takes raw mono "
                "samples (feature_size 1) only. Note: wav2vec2-style checkpoints have 1."
            )
        self.do_normalize = bool(given(self.config, "do_normalize", True))
        self.model_input_names = (("input_values", "attention_mask")
                                  if self.return_attention_mask else ("input_values",))

    def __call__(self, signals, *, return_attention_mask=None):
        """{"input_values": float32 batch x samples, and "attention_mask": int32 batch x
        samples when asked}, equal to transformers' ``extractor(signals, padding=True,
        return_attention_mask=True)`` (less the mask when not asked)."""
        signals = self.checked(signals)
        if self.do_normalize:
            signals = [_zero_mean_unit_var(signal) for signal in signals]
        values, mask = self.padded(signals, max(signal.size for signal in signals))
        result = {"input_values": values}
        if self.wants_mask(return_attention_mask):
            result["attention_mask"] = mask
        return result


# Whisper's frames go through FRAME_BLOCK at a time (their buffers stay in the cache), weighed
# by MEL_BAND filters at a time: products small enough that OpenBLAS runs them on the calling
# thread (a busy machine stalls its worker threads).
FRAME_BLOCK = 128
MEL_BAND = 8
# np.fft.rfft takes out= from numpy 2.0 (the bundled Triton backend runs numpy 1.x)
_RFFT_OUT = int(np.__version__.split(".")[0]) >= 2
_LOG_FLOOR = np.float32(np.log10(1e-10))


class WhisperFeatureExtractor(FeatureExtractor):
    """Each signal cut or padded to chunk_length seconds, then its log-mel spectrogram:
    feature_size Slaney mel bins from 0 to 8 kHz of an n_fft STFT every hop_length samples."""

    type_name = "WhisperFeatureExtractor"
    model_types = ("whisper",)
    model_input_names = ("input_features",)

    def __init__(self, config=None):
        super().__init__(config)
        name = self.type_name
        self.feature_size = integer(self.config, "feature_size", 80, name, minimum=1,
                                    maximum=MAX_FEATURE_SIZE)
        self.hop_length = integer(self.config, "hop_length", 160, name, minimum=1,
                                  maximum=MAX_N_FFT)
        self.chunk_length = integer(self.config, "chunk_length", 30, name, minimum=1,
                                    maximum=MAX_CHUNK_SECONDS)
        self.n_fft = integer(self.config, "n_fft", 400, name, minimum=1, maximum=MAX_N_FFT)
        # the noise's standard deviation, for samples of about -1 to 1 (transformers' is 0.0,
        # or 1e-5 where set)
        self.dither = number(self.config, "dither", 0.0, name, minimum=0.0, maximum=1.0)
        frames = self.chunk_length * self.sampling_rate // self.hop_length
        if frames * self.feature_size > MAX_WINDOW_VALUES:
            raise InputError(
                f"{name} has chunk_length={self.chunk_length}, sampling_rate="
                f"{self.sampling_rate}, hop_length={self.hop_length} and feature_size="
                f"{self.feature_size}: one window would hold {frames:,} frames x "
                f"{self.feature_size} values = {frames * self.feature_size:,}, over the limit of "
                f"{MAX_WINDOW_VALUES:,}. Note: "
                "fix them in preprocessor_config.json (Whisper's are 30, 16000, 160 and 80)."
            )
        if (1 + self.n_fft // 2) * self.feature_size > MAX_FILTER_VALUES:
            raise InputError(
                f"{name} has n_fft={self.n_fft} and feature_size={self.feature_size}: its mel "
                f"filters would hold {(1 + self.n_fft // 2) * self.feature_size:,} weights, over "
                f"the limit of {MAX_FILTER_VALUES:,}. Note: fix them in preprocessor_config.json "
                "(Whisper's are 400 and 80)."
            )
        # Derived, as transformers derives them: the config's n_samples and nb_max_frames, and
        # its saved mel_filters, are not read.
        self.n_samples = self.chunk_length * self.sampling_rate
        self.nb_max_frames = self.n_samples // self.hop_length
        self.mel_filters = mel_filter_bank(1 + self.n_fft // 2, self.feature_size, 0.0, 8000.0,
                                           self.sampling_rate)
        self.window = hann_window(self.n_fft)
        self._mel_bands = mel_bands(self.mel_filters)
        # dither: Gaussian noise added to every frame, unseeded, as transformers' numpy path
        self._rng = np.random.default_rng() if self.dither else None

    def __call__(self, signals, *, return_attention_mask=None, padding: str = "max_length",
                 truncation: bool = True):
        """{"input_features": float32 batch x feature_size x frames, and "attention_mask":
        int32 batch x frames when asked (by the call, else the config: where only the config
        asks, transformers returns the mask by sample, 1 x 480000, which no model takes).

        By default every signal is cut or padded to chunk_length seconds (3000 frames);
        ``padding="longest"`` with ``truncation=False`` keeps long signals whole (transformers'
        long-form transcription), padding the batch to its longest. Equal to transformers'
        ``extractor(signals, return_attention_mask=..., padding=..., truncation=...)``."""
        if padding not in ("max_length", "longest"):
            raise InputError(
                f"{self.type_name} pads to 'max_length' ({self.chunk_length} s) or 'longest', "
                f"got padding={padding!r}. " + did_you_mean(str(padding), ["longest", "max_length"])
            )
        signals = self.checked(signals)
        if truncation:
            signals = [signal[:self.n_samples] for signal in signals]
        length = max(signal.size for signal in signals)
        if padding == "max_length":
            length = max(length, self.n_samples)
        count = self.frames(length)
        if not count:
            raise InputError(
                f"The audio is {length} samples long, too short for one Whisper frame (a frame "
                f"every {self.hop_length} samples). Note: pad it to 30 s (padding="
                '"max_length", the default) or give a longer signal.'
            )
        features = np.empty((len(signals), self.feature_size, count), np.float32)
        offsets = [0 if self.padding_side == "right" else length - signal.size
                   for signal in signals]
        for signal, offset, out in zip(signals, offsets, features):
            if self.padding_value:  # padded with a constant other than zero: made whole
                waveform = np.full(length, self.padding_value, np.float32)
                waveform[offset:offset + signal.size] = signal
                signal, offset = waveform, 0
            self._log_mel(signal, offset, length, out)
        result = {"input_features": features}
        if self.wants_mask(return_attention_mask):
            starts = np.arange(count) * self.hop_length  # a frame is real where it starts
            result["attention_mask"] = np.stack([
                ((starts >= offset) & (starts < offset + signal.size)).astype(np.int32)
                for signal, offset in zip(signals, offsets)])
        return result

    def frames(self, length: int) -> int:
        """The number of feature frames of a padded signal of ``length`` samples (the windows
        of the reflect-padded signal, less the last, as transformers drops it)."""
        return max(0, (length + 2 * (self.n_fft // 2) - self.n_fft) // self.hop_length)

    def log_mel(self, waveform: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The normalized log-mel spectrogram (feature_size x frames(len), float32) of one
        padded signal, as transformers' ``_np_extract_fbank_features``; written into ``out``
        (a float32 array of that shape) when given."""
        if out is None:
            out = np.empty((self.feature_size, self.frames(len(waveform))), np.float32)
        return self._log_mel(np.asarray(waveform), 0, len(waveform), out)

    def _log_mel(self, signal: np.ndarray, offset: int, length: int, out: np.ndarray
                 ) -> np.ndarray:
        """``log_mel`` of ``signal`` at ``offset`` in ``length`` zeros, into ``out``.

        The zero padding is never made: frames of only zeros have zero power, so their
        log-mel is the floor, log10(1e-10), as when computed; the others are cut from the
        signal, reflect-padded where they reach past its ends (``_padded``). They go through
        in blocks of FRAME_BLOCK frames, each windowed, transformed, squared and weighed by
        the mel filters while in the cache; the filters are taken a band at a time
        (``mel_bands``: only the bins they cover), products small enough that BLAS runs them
        on this thread. transformers computes all frames, in float64 as here, so the
        features are its numpy path's (to the rounding of the mel product's sums)."""
        count = out.shape[-1]
        if not count:
            return out
        first, stop = self._signal_frames(signal, offset, length, count)
        hop, n_fft, bins = self.hop_length, self.n_fft, len(self.mel_filters)
        if first < stop:
            padded = self._padded(signal, offset, length, first * hop,
                                  (stop - 1) * hop + n_fft)
            frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
            size = min(FRAME_BLOCK, stop - first)
            windowed = np.empty((size, n_fft), np.float64)
            spectrum = np.empty((size, bins), np.complex128)
            power = np.empty((size, bins), np.float64)
            mel = np.empty((self.feature_size, stop - first), np.float64)  # filters x frames
            for start in range(0, stop - first, FRAME_BLOCK):
                block = frames[start:start + FRAME_BLOCK]
                size = len(block)
                if self._rng is not None:
                    block = block + self.dither * self._rng.standard_normal(block.shape)
                np.multiply(block, self.window, out=windowed[:size])
                if _RFFT_OUT:
                    np.fft.rfft(windowed[:size], axis=-1, out=spectrum[:size])
                else:  # numpy 1.x (the bundled Triton backend's) has no out= here
                    spectrum[:size] = np.fft.rfft(windowed[:size], axis=-1)
                parts = spectrum[:size].view(np.float64)  # real, imaginary, real, ...
                np.square(parts, out=parts)
                np.add(parts[:, 0::2], parts[:, 1::2], out=power[:size])
                for low, high, bin_low, bin_high, filters in self._mel_bands:
                    np.matmul(filters, power[:size, bin_low:bin_high].T,
                              out=mel[low:high, start:start + size])
            np.maximum(mel, 1e-10, out=mel)
            np.log10(mel, out=out[:, first:stop])  # in float64, rounded to float32 as there
        out[:, :first] = out[:, stop:] = _LOG_FLOOR
        np.maximum(out, out.max() - np.float32(8.0), out=out)
        out += np.float32(4.0)
        out /= np.float32(4.0)
        return out

    def _signal_frames(self, signal: np.ndarray, offset: int, length: int, count: int
                       ) -> tuple[int, int]:
        """(first, stop): the frames before first and from stop on hold only zero samples
        (none when dithered: transformers adds the noise to every frame)."""
        if self._rng is not None:
            return 0, count
        if signal[0] and signal[-1]:
            head, tail = 0, signal.size - 1
        else:
            nonzero = signal != 0
            head = int(nonzero.argmax())
            if not nonzero[head]:
                return 0, 0  # silence
            tail = signal.size - 1 - int(nonzero[::-1].argmax())
        half, hop = self.n_fft // 2, self.hop_length
        head, tail = head + offset, tail + offset  # the first and last non-zero samples
        # frames start every hop samples of the waveform padded with half on each side; the
        # padding reflects the half samples next to each end (without the end itself)
        first = 0 if head <= half else (head + half - self.n_fft + hop) // hop
        stop = count if tail >= length - 1 - half else (tail + half) // hop + 1
        return max(0, min(first, count)), min(stop, count)

    def _padded(self, signal: np.ndarray, offset: int, length: int, start: int, stop: int
                ) -> np.ndarray:
        """``np.pad(waveform, n_fft // 2, mode="reflect")[start:stop]``, where the waveform
        is ``signal`` at ``offset`` in ``length`` zeros, making only that slice."""
        half = self.n_fft // 2

        def waveform(low: int, high: int) -> np.ndarray:  # waveform[low:high]
            if offset <= low and high <= offset + signal.size:
                return signal[low - offset:high - offset]
            part = np.zeros(high - low, np.float32)
            inside = slice(max(low, offset), min(high, offset + signal.size))
            if inside.start < inside.stop:
                part[inside.start - low:inside.stop - low] = signal[inside.start - offset:
                                                                    inside.stop - offset]
            return part

        if half >= length:  # reflected more than once: as numpy does it
            return np.pad(waveform(0, length), half, mode="reflect")[start:stop]
        low, high = start - half, stop - half  # in the waveform, past its ends where padded
        pieces = []
        if low < 0:  # waveform[-j] for j in low..min(high, 0)
            pieces.append(waveform(1 - min(high, 0), 1 - low)[::-1])
        if max(low, 0) < min(high, length):
            pieces.append(waveform(max(low, 0), min(high, length)))
        if high > length:  # waveform[2 (length - 1) - j] for j in max(low, length)..high
            pieces.append(waveform(2 * length - 1 - high,
                                   2 * length - 1 - max(low, length))[::-1])
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


class Speech2TextFeatureExtractor(FeatureExtractor):
    """Kaldi log mel filterbanks (``runtime.audio.kaldi``: num_mel_bins filters, 25 ms frames
    every 10 ms) with utterance-level cepstral mean and variance normalization, padded to the
    longest of the batch with its attention_mask (always made, as transformers' class forces
    return_attention_mask)."""

    type_name = "Speech2TextFeatureExtractor"
    model_types = ("speech_to_text",)
    model_input_names = ("input_features", "attention_mask")
    default_return_attention_mask = True

    def __init__(self, config=None):
        super().__init__(config)
        name = self.type_name
        self.return_attention_mask = True  # transformers sets it whatever the config says
        self.num_mel_bins = integer(self.config, "num_mel_bins", 80, name, minimum=1,
                                    maximum=MAX_FEATURE_SIZE)
        # in 16-bit units (Kaldi's): 4.0 is noise of about 1e-4 for samples of -1 to 1
        self.dither = number(self.config, "dither", 0.0, name, minimum=0.0, maximum=2.0**15)
        self.do_ceptral_normalize = bool(given(self.config, "do_ceptral_normalize", True))
        self.normalize_means = bool(given(self.config, "normalize_means", True))
        self.normalize_vars = bool(given(self.config, "normalize_vars", True))
        self.mel_filters = kaldi.kaldi_mel_filters(self.num_mel_bins, self.sampling_rate)
        self.window = kaldi.povey_window(kaldi.FRAME_LENGTH)
        self._rng = np.random.default_rng() if self.dither else None

    def __call__(self, signals, *, return_attention_mask=None):
        """{"input_features": float32 batch x frames x num_mel_bins, "attention_mask": int32
        batch x frames}, equal to transformers' ``extractor(signals, padding=True)`` (one
        signal: ``extractor(signal)``, which the speech-recognition pipeline calls)."""
        signals = self.checked(signals)
        short = [i for i, signal in enumerate(signals) if signal.size < kaldi.FRAME_LENGTH]
        if short:
            raise InputError(
                f"Signal {short[0]} is {signals[short[0]].size} samples long, shorter than one "
                f"{self.type_name} frame ({kaldi.FRAME_LENGTH} samples, 25 ms at 16 kHz). "
                "Note: give at least 25 ms of audio."
            )
        features = [kaldi.fbank(signal, self.mel_filters, self.window, dither=self.dither,
                                rng=self._rng) for signal in signals]
        frames = max(len(f) for f in features)
        values = np.full((len(features), frames, self.num_mel_bins), self.padding_value,
                         dtype=np.float32)
        mask = np.zeros((len(features), frames), dtype=np.int32)
        for row, mask_row, feature in zip(values, mask, features):
            span = slice(0, len(feature)) if self.padding_side == "right" else slice(
                frames - len(feature), frames)
            row[span] = feature
            mask_row[span] = 1
        if self.do_ceptral_normalize:
            values = np.stack([
                kaldi.utterance_cmvn(row, int(mask_row.sum()),
                                     normalize_means=self.normalize_means,
                                     normalize_vars=self.normalize_vars,
                                     padding_value=self.padding_value)
                for row, mask_row in zip(values, mask)])
        return {"input_features": values, "attention_mask": mask}


def _zero_mean_unit_var(signal: np.ndarray) -> np.ndarray:
    """transformers' zero_mean_unit_var_norm of one signal, in float32 as there."""
    return (signal - signal.mean()) / np.sqrt(signal.var() + 1e-7)


# --- the Whisper filters --------------------------------------------------------------------
def hann_window(length: int) -> np.ndarray:
    """The periodic Hann window (float64), as transformers' ``window_function(length)``."""
    return np.hanning(length + 1)[:-1]


def _hertz_to_mel(freq):
    """The Slaney mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(freq, 1e-300) / 1000.0)
                    * (27.0 / np.log(6.4)), mels)


def _mel_to_hertz(mels):
    mels = np.asarray(mels, dtype=np.float64)
    freq = 200.0 * mels / 3.0
    return np.where(mels >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels - 15.0)), freq)


def mel_filter_bank(num_frequency_bins: int, num_mel_filters: int, min_frequency: float,
                    max_frequency: float, sampling_rate: int) -> np.ndarray:
    """Slaney-normalized triangular filters on the Slaney mel scale (frequency bins x filters,
    float64), as transformers' ``mel_filter_bank(..., norm="slaney", mel_scale="slaney")``.

    >>> mel_filter_bank(201, 80, 0.0, 8000.0, 16000).shape
    (201, 80)
    """
    mel_freqs = np.linspace(_hertz_to_mel(min_frequency), _hertz_to_mel(max_frequency),
                            num_mel_filters + 2)
    filter_freqs = _mel_to_hertz(mel_freqs)
    fft_freqs = np.linspace(0, sampling_rate // 2, num_frequency_bins)
    filter_diff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / filter_diff[:-1]
    up = slopes[:, 2:] / filter_diff[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (filter_freqs[2:num_mel_filters + 2] - filter_freqs[:num_mel_filters]))


def mel_bands(filters: np.ndarray, per_band: int = MEL_BAND
              ) -> list[tuple[int, int, int, int, np.ndarray]]:
    """The filters (frequency bins x filters) ``per_band`` at a time, each band as (first
    filter, stop, first bin, stop, its filters x the bins they cover, C-contiguous). A Slaney
    filter covers a few adjacent bins, so the bands of Whisper's 80 filters of 201 bins hold
    1760 weights where the whole matrix holds 16080 (391 not zero): the same sums of products,
    without most of the zeros.

    >>> [band[:4] for band in mel_bands(mel_filter_bank(201, 80, 0.0, 8000.0, 16000))][:2]
    [(0, 8, 1, 9), (8, 16, 8, 16)]
    """
    bands = []
    for low in range(0, filters.shape[1], per_band):
        high = min(low + per_band, filters.shape[1])
        covered = np.flatnonzero(filters[:, low:high].any(axis=1))
        first, stop = (int(covered[0]), int(covered[-1]) + 1) if covered.size else (0, 0)
        band = np.ascontiguousarray(filters[first:stop, low:high].T)
        bands.append((low, high, first, stop, band))
    return bands


# The table: transformers' class name -> ours.
EXTRACTORS: dict[str, type[FeatureExtractor]] = {cls.type_name: cls for cls in (
    Wav2Vec2FeatureExtractor, WhisperFeatureExtractor, Speech2TextFeatureExtractor,
)}
MODEL_TYPES: dict[str, type[FeatureExtractor]] = {
    model_type: cls for cls in EXTRACTORS.values() for model_type in cls.model_types}


def extractor_class(config: Mapping[str, Any], *, model_type: str | None = None
                    ) -> type[FeatureExtractor]:
    """The class for a preprocessor_config.json dict."""
    given = config.get("feature_extractor_type")
    if given:
        if isinstance(given, str) and given in EXTRACTORS:
            return EXTRACTORS[given]
        raise InputError(f"The runtime has no feature extractor {shown(given)}. "
                         + did_you_mean(str(given)[:200], EXTRACTORS))
    if config.get("image_processor_type"):
        raise InputError(
            f"The preprocessor config names the image processor "
            f"{shown(config['image_processor_type'])}, not an audio feature extractor. Note: the "
            "feature extractors are: " + ", ".join(sorted(EXTRACTORS)) + "."
        )
    if isinstance(model_type, str) and model_type in MODEL_TYPES:
        return MODEL_TYPES[model_type]
    raise InputError(
        "The preprocessor config names no feature_extractor_type"
        + (f", and the model type {model_type!r} has no default extractor" if model_type else "")
        + ". Note: add \"feature_extractor_type\" to preprocessor_config.json, one of: "
        + ", ".join(sorted(EXTRACTORS)) + "."
    )
