"""Whisper's temperature fallback, as transformers 4.57's ``generate_with_fallback`` decides it,
in plain Python and numpy. The speech-recognition pipeline decodes each 30 s window at the
first temperature of ``temperature`` (0.0: greedy or beam search; above 0: sampling at that
temperature, one beam), and decodes it again at the next one while the window

- compresses too well: its tokens' zlib compression ratio is above
  ``compression_ratio_threshold`` (repetitions), or
- is too unlikely: the average log-probability of its tokens (the eos included) is below
  ``logprob_threshold``;

and skips it (no text) when, besides being too unlikely, its <|nospeech|> probability after
<|startoftranscript|> is above ``no_speech_threshold``. The last temperature's tokens stay.

>>> compression_ratio([7] * 40, 51865) > 2.4    # a repetition compresses well
True
>>> fallback_decision(tokens=[7] * 40, vocab_size=51865, compression_threshold=2.4,
...                   logprob=None, logprob_threshold=None, no_speech=None,
...                   no_speech_threshold=None)
(True, False)
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from numbers import Real

import numpy as np

from ..errors import InputError


def temperatures(value) -> tuple[float | None, ...]:
    """The temperatures to decode with, in order: ``temperature`` as the call gives it (one
    number, or a list or tuple of them), checked. None (not given) decodes once, greedily or
    with beams."""
    items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not items or not all(item is None or (isinstance(item, Real) and not isinstance(
            item, bool) and math.isfinite(item) and item >= 0) for item in items):
        raise InputError(
            f"temperature={value!r} is not a temperature or a list of them. Note: give numbers "
            "from 0 (e.g. temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0) for the fallback; 0.0 "
            "decodes greedily or with beams, above 0 samples).")
    return tuple(None if item is None else float(item) for item in items)


def kept_tokens(sequence: Sequence[int], prompt_length: int, pad_token_id: int | None,
                eos_token_id) -> np.ndarray:
    """A decoded window's tokens as the fallback judges them: without the prompt and the
    padding, the eos kept (``generate_with_fallback``: "we do not remove the eos token id
    since it is needed for avg logprob calculation").

    >>> kept_tokens([1, 2, 5, 6, 0, 0, 0], 2, 0, 0).tolist()
    [5, 6, 0]
    """
    tokens = np.asarray(sequence)[prompt_length:]
    eos = () if eos_token_id is None else tuple(np.atleast_1d(eos_token_id).tolist())
    if pad_token_id is not None and len(tokens) and tokens[-1] == pad_token_id:
        count = int((tokens == pad_token_id).sum()) - (pad_token_id in eos)
        if count:
            tokens = tokens[:-count]
    return tokens


def compression_ratio(tokens: Sequence[int], vocab_size: int) -> float:
    """Bytes of the tokens (each in the fewest whole bytes the vocabulary needs, little endian)
    over bytes of their zlib compression (``_retrieve_compression_ratio``)."""
    width = int(math.log2(vocab_size) / 8) + 1
    data = b"".join(int(t).to_bytes(width, "little") for t in tokens)
    return len(data) / len(zlib.compress(data))


def average_logprob(scores: np.ndarray, tokens: Sequence[int],
                    temperature: float | None) -> np.float32:
    """The mean log-probability of ``tokens`` under the search's processed scores (steps x
    vocabulary, float32; sampling's divided by the temperature, which is multiplied back), in
    float32 as transformers sums it (``_retrieve_avg_logprobs``)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    if len(scores) > len(tokens):
        scores = scores[:len(tokens)]
    else:
        tokens = tokens[len(tokens) - len(scores):]
    rescale = np.float32(temperature if temperature else 1)
    shifted = scores * rescale
    with np.errstate(invalid="ignore", over="ignore"):
        top = shifted.max(axis=-1, keepdims=True)
        logprobs = shifted - top - np.log(np.exp(shifted - top).sum(axis=-1, keepdims=True))
    total = np.float32(0.0)
    for step, token in enumerate(tokens):
        total = np.float32(total + logprobs[step, token])
    return np.float32(total / np.float32(len(tokens))) if len(tokens) else np.float32(np.nan)


def fallback_decision(*, tokens: Sequence[int], vocab_size: int,
                      compression_threshold: float | None, logprob: np.float32 | None,
                      logprob_threshold: float | None, no_speech: float | None,
                      no_speech_threshold: float | None) -> tuple[bool, bool]:
    """(decode the window again at the next temperature, skip the window) as
    ``_need_fallback`` decides."""
    again = skip = False
    if compression_threshold is not None:
        again = compression_ratio(tokens, vocab_size) > compression_threshold
    if logprob_threshold is not None and logprob < np.float32(logprob_threshold):
        again = True
    if (no_speech_threshold is not None and logprob < np.float32(logprob_threshold)
            and no_speech > no_speech_threshold):
        again, skip = False, True
    return again, skip


def check_thresholds(extras) -> dict:
    """The fallback's thresholds from the call or generation_config.json: numbers or None.
    no_speech_threshold needs logprob_threshold (transformers fails without it)."""
    found = {}
    for name in ("compression_ratio_threshold", "logprob_threshold", "no_speech_threshold"):
        value = extras.get(name)
        if value is not None and not (isinstance(value, Real) and not isinstance(value, bool)
                                      and math.isfinite(value)):
            raise InputError(f"{name} must be a number, got {value!r:.80}. Note: e.g. "
                             "compression_ratio_threshold=2.4, logprob_threshold=-1.0, "
                             "no_speech_threshold=0.6.")
        found[name] = None if value is None else float(value)
    if found["no_speech_threshold"] is not None and found["logprob_threshold"] is None:
        raise InputError("no_speech_threshold skips a window only when its tokens are also too "
                         "unlikely, so it needs logprob_threshold. Note: pass "
                         "logprob_threshold=-1.0 too.")
    return found
