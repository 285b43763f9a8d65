"""The automatic-speech-recognition task: audio to text, as transformers'
AutomaticSpeechRecognitionPipeline gives it. CTC models (Wav2Vec2, HuBERT): greedy CTC decoding
(repeats collapsed, the blank dropped, the word delimiter a space), character or word
timestamps, and long audio cut into overlapping chunks (``chunk_length_s``, ``stride_length_s``)
whose logits are stitched without the overlaps."""

from __future__ import annotations

from numbers import Real

import numpy as np

from ..ctc import CtcTokenizer
from ..errors import InputError
from .audio import AudioPipeline


class AutomaticSpeechRecognitionPipeline(AudioPipeline):
    """``{"text": ...}`` per signal; with ``return_timestamps="char"`` or ``"word"`` also
    ``"chunks": [{"text", "timestamp": (start_s, end_s)}]``.

    >>> transcribe = pipeline("automatic-speech-recognition", model="wav2vec2")  # doctest: +SKIP
    >>> transcribe("jfk.flac", chunk_length_s=10)                              # doctest: +SKIP
    {'text': 'AND SO MY FELLOW AMERICANS ASK NOT ...'}
    """

    task = "automatic-speech-recognition"
    parameters = {"chunk_length_s": 0, "stride_length_s": None, "return_timestamps": None,
                  "ignore_warning": None}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.bundle is None:
            raise InputError("The automatic-speech-recognition pipeline reads its vocabulary "
                             "from a bundle. Note: make it with pipeline(model=BUNDLE).")
        self.ctc = CtcTokenizer.from_dir(self.bundle.path)
        self._check(self.defaults)

    def __call__(self, inputs, **kwargs):
        args = self._check(self.arguments(kwargs))
        signals, single = self.signals(inputs)
        results = [self._transcribe(signal, args) for signal in signals]
        return results[0] if single else results

    def _check(self, args):
        stamps = args["return_timestamps"]
        if stamps not in (None, False, "char", "word"):
            raise InputError(
                f"return_timestamps={stamps!r} is not possible for a CTC model. Note: use "
                "'char' or 'word' (True is Whisper's segment timestamps)."
            )
        for name in ("chunk_length_s",):
            if not isinstance(args[name], Real) or isinstance(args[name], bool) or args[name] < 0:
                raise InputError(f"{name} must be a number of seconds >= 0, got {args[name]!r}.")
        return args

    # --- one signal -------------------------------------------------------------------------
    def _transcribe(self, signal: np.ndarray, args) -> dict:
        pieces = []
        for chunk, (left, right) in self._chunks(signal, args):
            tokens = self._tokens(chunk)
            if args["chunk_length_s"]:  # strides in samples -> logits frames, as transformers
                total, left, right = _rescale_stride(len(chunk), left, right,
                                                     1 / self.inputs_to_logits_ratio)
                tokens = tokens[left:total - right]
            pieces.append(tokens)
        tokens = np.concatenate(pieces)
        stamps = args["return_timestamps"]
        if not stamps:
            return {"text": self.ctc.decode(tokens)}
        text, offsets = self.ctc.decode(tokens, offsets=stamps)
        ratio, rate = self.inputs_to_logits_ratio, self.feature_extractor.sampling_rate
        # frames * samples per frame / rate, in that order: transformers' float rounding
        chunks = [{"text": item[stamps], "timestamp": (item["start_offset"] * ratio / rate,
                                                      item["end_offset"] * ratio / rate)}
                  for item in offsets]
        return {"text": text, "chunks": chunks}

    def _tokens(self, chunk: np.ndarray) -> np.ndarray:
        """The argmax of the CTC logits, one id per frame."""
        feed = self.features([chunk], return_attention_mask=True)
        logits = self.engine.run(feed)["logits"]
        return logits[0].argmax(-1)

    def _chunks(self, signal: np.ndarray, args):
        """(chunk, (left stride, right stride)) in samples: the whole signal, or transformers'
        chunk_iter for chunk_length_s > 0 (lengths aligned to the logits frame)."""
        chunk_s = args["chunk_length_s"]
        if not chunk_s:
            yield signal, (0, 0)
            return
        stride_s = args["stride_length_s"]
        if stride_s is None:
            stride_s = chunk_s / 6
        if isinstance(stride_s, Real):
            stride_s = [stride_s, stride_s]
        rate, align = self.feature_extractor.sampling_rate, self.inputs_to_logits_ratio
        chunk_len = int(round(chunk_s * rate / align) * align)
        left = int(round(stride_s[0] * rate / align) * align)
        right = int(round(stride_s[1] * rate / align) * align)
        if chunk_len < left + right:
            raise InputError(
                f"chunk_length_s={chunk_s} is shorter than its strides {list(stride_s)}. Note: "
                "the chunk must be longer than stride_length_s on both sides together."
            )
        if chunk_len - left - right <= 0:
            raise InputError("chunk_length_s leaves nothing between the strides. Note: make "
                             "it longer than both strides together.")
        step = chunk_len - left - right
        for start in range(0, len(signal), step):
            chunk = signal[start:start + chunk_len]
            last = start + chunk_len >= len(signal)
            stride = (0 if start == 0 else left, 0 if last else right)
            if len(chunk) > stride[0]:
                yield chunk, stride
            if last:
                return


def _rescale_stride(samples: int, left: int, right: int, ratio: float) -> tuple[int, int, int]:
    """transformers' rescale_stride: (frames, left, right) of a chunk's stride in samples."""
    token_n = int(round(samples * ratio))
    return token_n, int(round(left / samples * token_n)), int(round(right / samples * token_n))
