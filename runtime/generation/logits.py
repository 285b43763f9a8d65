"""Logits processors and warpers: transformers' (generation/logits_process.py), in numpy.

Each is a small object called as ``processor(input_ids, scores) -> scores`` with ``input_ids`` the
whole sequences so far, ``(rows, cur_len)`` int64, and ``scores`` the next-token scores,
``(rows, vocab)`` float32 (logits; log-probabilities in beam search). Inputs are never modified.
``logits_processors(config, input_ids_seq_length)`` builds the list transformers'
``_get_logits_processor`` builds, in its order (the order changes the tokens):

    >>> import numpy as np
    >>> from runtime.generation.config import GenerationConfig
    >>> config = GenerationConfig(repetition_penalty=1.2, eos_token_id=2, min_length=3)
    >>> processors = logits_processors(config, input_ids_seq_length=1)
    >>> [type(p).__name__ for p in processors]
    ['RepetitionPenaltyLogitsProcessor', 'MinLengthLogitsProcessor']
    >>> processors(np.array([[0, 1]]), np.array([[1.2, -1.2, 0.5]], dtype=np.float32))
    array([[ 1.  , -1.44,  -inf]], dtype=float32)

Arithmetic is float32 as in torch, so the results equal transformers' bit for bit, with two
exceptions. A softmax (top-p, typical, min-p, epsilon, eta, log_softmax) is summed here in
float64, by torch in float32 with its own vectorized exp: over GPT-2's 50257 tokens torch's sums
are off by about 1e-5 (relative), so log_softmax values differ by up to 2e-5 there (1e-6 over a
thousand tokens), and a token whose probability lies that close to a cut-off can fall on the
other side (the tests saw one such token, in typical, over 50257). These warpers act only when
sampling, whose draws differ from torch's anyway. And one choice torch leaves open: when tied
scores straddle the top-p, typical or min-p cut-off, torch's (unstable) sort keeps an arbitrary
subset of the tied tokens; here the sort is stable, so the tied tokens with the higher ids are
kept.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import InputError
from .config import GenerationConfig
from .search import LogitsProcessor

NEG_INF = np.float32(-np.inf)


def _eos_tuple(eos_token_id) -> tuple[int, ...]:
    if isinstance(eos_token_id, numbers.Integral):
        return (int(eos_token_id),)
    return tuple(int(i) for i in eos_token_id)


def _check_in_vocabulary(name: str, token_ids, vocab_size: int) -> None:
    """A forced token must be one the model can score (torch fails with an index error)."""
    outside = [i for i in token_ids if not 0 <= i < vocab_size]
    if outside:
        raise InputError(f"{name} holds {outside}, outside the model's {vocab_size} tokens. "
                         "Note: fix it in the bundle's generation_config.json, or pass "
                         f"{name}=None.")


def _vocab_mask(vocab_size: int, token_ids: Iterable[int]) -> np.ndarray:
    """(vocab,) bool, True at ``token_ids`` (ids outside the vocabulary are ignored, as torch's
    ``isin`` over ``arange(vocab)`` ignores them)."""
    mask = np.zeros(vocab_size, dtype=bool)
    ids = np.asarray(list(token_ids), dtype=np.int64)
    ids = ids[(ids >= 0) & (ids < vocab_size)]
    mask[ids] = True
    return mask


def softmax(scores: np.ndarray) -> np.ndarray:
    """float32 softmax over the last axis (computed in float64, then rounded)."""
    x = scores.astype(np.float64)
    x = np.exp(x - x.max(axis=-1, keepdims=True))
    return (x / x.sum(axis=-1, keepdims=True)).astype(np.float32)


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """float32 log-softmax over the last axis: what beam search scores (and
    ``renormalize_logits``) apply to the logits. ``scores - max`` is float32 as in torch, the
    log-sum-exp is float64 rounded once; torch sums in float32, so values differ from torch's in
    the last bit or two (relative 2e-7)."""
    shifted = scores - scores.max(axis=-1, keepdims=True)
    total = np.exp(shifted.astype(np.float64)).sum(axis=-1, keepdims=True)
    return (shifted - np.log(total).astype(np.float32)).astype(np.float32)


def _cumsum(probs: np.ndarray) -> np.ndarray:
    # torch's CPU cumsum of float32 accumulates in double
    return np.cumsum(probs.astype(np.float64), axis=-1).astype(np.float32)


def _scatter_back(sorted_values: np.ndarray, order: np.ndarray) -> np.ndarray:
    out = np.empty_like(sorted_values)
    np.put_along_axis(out, order, sorted_values, axis=-1)
    return out


def _kth_largest(scores: np.ndarray, k: int) -> np.ndarray:
    """(rows, 1): the k-th largest score of each row (torch.topk(scores, k)[0][..., -1:])."""
    vocab = scores.shape[-1]
    return np.partition(scores, vocab - k, axis=-1)[..., vocab - k:vocab - k + 1]


class LogitsProcessorList(list):
    """Processors applied in order: ``processors(input_ids, scores) -> scores``."""

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


# --- processors -------------------------------------------------------------------------------
class RepetitionPenaltyLogitsProcessor:
    """Scores of tokens already in the sequence: divided by ``penalty`` when positive,
    multiplied when negative (once per token, however often it occurs)."""

    def __init__(self, penalty: float, prompt_ignore_length: int | None = None):
        if not (isinstance(penalty, numbers.Real) and penalty > 0):
            raise InputError(f"repetition_penalty must be a number above 0, got {penalty!r}. "
                             "Note: 1.0 means no penalty.")
        self.penalty = np.float32(penalty)
        self.prompt_ignore_length = prompt_ignore_length

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self.prompt_ignore_length:
            input_ids = input_ids[:, self.prompt_ignore_length:]
        score = np.take_along_axis(scores, input_ids, axis=1)
        score = np.where(score < 0, score * self.penalty, score / self.penalty)
        out = scores.copy()
        np.put_along_axis(out, input_ids, score, axis=1)
        return out


class NoRepeatNGramLogitsProcessor:
    """Bans every token that would repeat an n-gram of the sequence (prompt included)."""

    def __init__(self, ngram_size: int):
        if not isinstance(ngram_size, numbers.Integral) or ngram_size <= 0:
            raise InputError(f"no_repeat_ngram_size must be a positive integer, got "
                             f"{ngram_size!r}.")
        self.ngram_size = int(ngram_size)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        n = self.ngram_size
        cur_len = input_ids.shape[-1]
        out = scores.copy()
        if cur_len + 1 < n:
            return out
        for row, tokens in enumerate(input_ids.tolist()):
            prefix = tuple(tokens[cur_len + 1 - n:cur_len])
            banned = [tokens[i + n - 1] for i in range(cur_len - n + 1)
                      if tuple(tokens[i:i + n - 1]) == prefix]
            out[row, banned] = NEG_INF
        return out


class MinLengthLogitsProcessor:
    """eos impossible while the sequence (prompt included) is shorter than ``min_length``."""

    def __init__(self, min_length: int, eos_token_id):
        if not isinstance(min_length, numbers.Integral) or min_length < 0:
            raise InputError(f"min_length must be a non-negative integer, got {min_length!r}.")
        self.min_length = int(min_length)
        self.eos_token_id = _eos_tuple(eos_token_id)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] < self.min_length:
            return np.where(_vocab_mask(scores.shape[-1], self.eos_token_id), NEG_INF, scores)
        return scores.copy()


class MinNewTokensLengthLogitsProcessor:
    """eos impossible until ``min_new_tokens`` tokens follow the first
    ``prompt_length_to_skip``."""

    def __init__(self, prompt_length_to_skip: int, min_new_tokens: int, eos_token_id):
        for name, value in (("prompt_length_to_skip", prompt_length_to_skip),
                            ("min_new_tokens", min_new_tokens)):
            if not isinstance(value, numbers.Integral) or value < 0:
                raise InputError(f"{name} must be a non-negative integer, got {value!r}.")
        self.prompt_length_to_skip = int(prompt_length_to_skip)
        self.min_new_tokens = int(min_new_tokens)
        self.eos_token_id = _eos_tuple(eos_token_id)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] - self.prompt_length_to_skip < self.min_new_tokens:
            return np.where(_vocab_mask(scores.shape[-1], self.eos_token_id), NEG_INF, scores)
        return scores.copy()


class ForcedBOSTokenLogitsProcessor:
    """The first generated token (sequence length 1) is ``bos_token_id``."""

    def __init__(self, bos_token_id: int):
        self.bos_token_id = int(bos_token_id)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] == 1:
            _check_in_vocabulary("forced_bos_token_id", [self.bos_token_id], scores.shape[-1])
            out = np.full_like(scores, NEG_INF)
            out[:, self.bos_token_id] = 0
            return out
        return scores


class ForcedEOSTokenLogitsProcessor:
    """The token that reaches ``max_length`` is (one of) ``eos_token_id``."""

    def __init__(self, max_length: int, eos_token_id):
        self.max_length = max_length
        self.eos_token_id = _eos_tuple(eos_token_id)
        if any(i < 0 for i in self.eos_token_id):
            raise InputError(f"forced_eos_token_id must hold non-negative token ids, got "
                             f"{list(self.eos_token_id)}.")

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] == self.max_length - 1:
            _check_in_vocabulary("forced_eos_token_id", self.eos_token_id, scores.shape[-1])
            out = np.full_like(scores, NEG_INF)
            out[:, list(self.eos_token_id)] = 0
            return out
        return scores


class NoBadWordsLogitsProcessor:
    """Bans each token sequence of ``bad_words_ids``: a one-token word always, a longer one when
    the sequence ends with all of it but its last token. A bad word that is exactly one eos id is
    dropped (so generation can end), as in transformers."""

    def __init__(self, bad_words_ids: Sequence[Sequence[int]], eos_token_id=None):
        if (isinstance(bad_words_ids, (str, bytes)) or not isinstance(bad_words_ids, Sequence)
                or len(bad_words_ids) == 0
                or any(isinstance(w, (str, bytes)) or not isinstance(w, Sequence) or len(w) == 0
                       for w in bad_words_ids)
                or any(not isinstance(t, numbers.Integral) or t < 0
                       for w in bad_words_ids for t in w)):
            raise InputError(f"bad_words_ids must be a non-empty list of non-empty lists of "
                             f"token ids, got {bad_words_ids!r}. Note: e.g. [[1234], [56, 78]].")
        words = [tuple(int(t) for t in w) for w in bad_words_ids]
        if eos_token_id is not None:
            eos = _eos_tuple(eos_token_id)
            words = [w for w in words if not (len(w) == 1 and w[0] in eos)]
        self.words = list(dict.fromkeys(words))  # transformers keys a dict by the word: dedup
        self._single: np.ndarray | None = None
        self._vocab_size = None

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        vocab = scores.shape[-1]
        if self._vocab_size != vocab:
            too_big = [t for w in self.words for t in w if t >= vocab]
            if too_big:
                raise InputError(f"bad_words_ids holds token ids {too_big} but the model's "
                                 f"vocabulary has {vocab} ids. Note: token ids come from the "
                                 "model's own tokenizer.")
            self._single = np.zeros(vocab, dtype=np.float32)
            self._single[[w[0] for w in self.words if len(w) == 1]] = NEG_INF
            self._vocab_size = vocab
        bias = np.zeros_like(scores) + self._single
        for word in self.words:
            if len(word) == 1 or len(word) > input_ids.shape[1]:
                continue
            prefix = np.asarray(word[:-1], dtype=input_ids.dtype)
            matching = np.all(input_ids[:, -len(prefix):] == prefix, axis=1)
            bias[:, word[-1]] += np.where(matching, NEG_INF, np.float32(0.0))
        return scores + bias


class SuppressTokensLogitsProcessor:
    """``suppress_tokens`` are never generated."""

    def __init__(self, suppress_tokens: Iterable[int]):
        self.suppress_tokens = tuple(int(t) for t in suppress_tokens)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return np.where(_vocab_mask(scores.shape[-1], self.suppress_tokens), NEG_INF, scores)


class SuppressTokensAtBeginLogitsProcessor:
    """``begin_suppress_tokens`` are not generated when the sequence is ``begin_index`` long (the
    first generated token)."""

    def __init__(self, begin_suppress_tokens: Iterable[int], begin_index: int):
        self.begin_suppress_tokens = tuple(int(t) for t in begin_suppress_tokens)
        self.begin_index = begin_index

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if input_ids.shape[-1] == self.begin_index:
            mask = _vocab_mask(scores.shape[-1], self.begin_suppress_tokens)
            return np.where(mask, NEG_INF, scores)
        return scores


class WhisperTimeStampLogitsProcessor:
    """Whisper's timestamp rules (openai/whisper's ApplyTimestampRules, as transformers has them),
    for sequences whose generated tokens start at ``begin_index``. Token ids from
    ``no_timestamps_token_id + 1`` on are timestamps, 0.02 s apart:

    - <|notimestamps|> is never generated;
    - timestamps come in pairs (the end of a segment, then the start of the next), except a
      single one just before the eos: after a pair comes text, after a lone one a timestamp or
      the eos (no token below ``eos_token_id``); timestamps never go back, and a new pair does
      not start at the time the last one ended;
    - the first token is a timestamp, at most ``max_initial_timestamp_index`` (50: 1 s) in;
    - when the timestamps together are more probable than the likeliest text token, a timestamp
      it is.

    The last rule compares log-probabilities: a float32 log-softmax (summed in float64 here,
    see ``log_softmax``) and a log-sum-exp over the timestamps.
    """

    def __init__(self, no_timestamps_token_id: int, begin_index: int, eos_token_id: int,
                 max_initial_timestamp_index: int | None = None):
        self.no_timestamps_token_id = int(no_timestamps_token_id)
        self.timestamp_begin = self.no_timestamps_token_id + 1
        self.begin_index = int(begin_index)
        self.eos_token_id = int(eos_token_id)
        self.max_initial_timestamp_index = max_initial_timestamp_index

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        begin = self.timestamp_begin
        out = scores.copy()
        out[:, self.no_timestamps_token_id] = NEG_INF
        for row, tokens in enumerate(input_ids[:, self.begin_index:]):
            last_was_timestamp = len(tokens) >= 1 and tokens[-1] >= begin
            penultimate_was_timestamp = len(tokens) < 2 or tokens[-2] >= begin
            if last_was_timestamp:
                if penultimate_was_timestamp:
                    out[row, begin:] = NEG_INF
                else:
                    out[row, :self.eos_token_id] = NEG_INF
            timestamps = tokens[tokens >= begin]
            if timestamps.size:
                last = timestamps[-1] + (0 if last_was_timestamp and not
                                         penultimate_was_timestamp else 1)
                out[row, begin:last] = NEG_INF
        if input_ids.shape[1] == self.begin_index:
            out[:, :begin] = NEG_INF
            if self.max_initial_timestamp_index is not None:
                out[:, begin + self.max_initial_timestamp_index + 1:] = NEG_INF
        logprobs = log_softmax(out)
        for row, values in enumerate(logprobs):
            if _logsumexp(values[begin:]) > values[:begin].max():
                out[row, :begin] = NEG_INF
        return out


def _logsumexp(values: np.ndarray) -> np.float32:
    """log(sum(exp(values))) in float32 (-inf when every value is -inf), as torch.logsumexp."""
    top = values.max()
    if top == NEG_INF:
        return NEG_INF
    return np.float32(top + np.log(np.exp((values - top).astype(np.float64)).sum()))


class InfNanRemoveLogitsProcessor:
    """nan to 0, +-inf to the largest / smallest float32 (``remove_invalid_values``)."""

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        info = np.finfo(scores.dtype)
        out = np.where(np.isnan(scores), np.float32(0.0), scores)
        out = np.where(scores == np.inf, info.max, out)
        return np.where(scores == -np.inf, info.min, out).astype(scores.dtype)


class LogitNormalization:
    """log-softmax of the processed scores (``renormalize_logits``); always last."""

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return log_softmax(scores)


# --- warpers (sampling only) ------------------------------------------------------------------
class TemperatureLogitsWarper:
    """scores / temperature."""

    def __init__(self, temperature: float):
        if not (isinstance(temperature, numbers.Real) and temperature > 0):
            raise InputError(f"temperature must be a number above 0, got {temperature!r}. "
                             "Note: for greedy decoding pass do_sample=False.")
        self.temperature = np.float32(temperature)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # float32 max / 0.5 is -inf, as in torch
            return scores / self.temperature


class TopKLogitsWarper:
    """Keeps the ``top_k`` highest scores (and every score tied with the k-th)."""

    def __init__(self, top_k: int, filter_value: float = -math.inf, min_tokens_to_keep: int = 1):
        if not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool) or top_k <= 0:
            raise InputError(f"top_k must be a positive integer, got {top_k!r}. "
                             "Note: top_k=0 or None disables top-k filtering.")
        self.top_k = max(int(top_k), min_tokens_to_keep)
        self.filter_value = np.float32(filter_value)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        top_k = min(self.top_k, scores.shape[-1])
        return np.where(scores < _kth_largest(scores, top_k), self.filter_value, scores)


class TopPLogitsWarper:
    """Keeps the most probable tokens whose probabilities add up to ``top_p``."""

    def __init__(self, top_p: float, filter_value: float = -math.inf, min_tokens_to_keep: int = 1):
        top_p = float(top_p)
        if top_p < 0 or top_p > 1.0:
            raise InputError(f"top_p must be in [0, 1], got {top_p!r}.")
        _check_min_tokens(min_tokens_to_keep)
        self.top_p = top_p
        self.filter_value = np.float32(filter_value)
        self.min_tokens_to_keep = int(min_tokens_to_keep)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        order = np.argsort(scores, axis=-1, kind="stable")
        cumulative = _cumsum(softmax(np.take_along_axis(scores, order, axis=-1)))
        remove = cumulative <= np.float32(1 - self.top_p)
        remove[..., -self.min_tokens_to_keep:] = False
        return np.where(_scatter_back(remove, order), self.filter_value, scores)


class MinPLogitsWarper:
    """Keeps tokens at least ``min_p`` times as probable as the most probable one."""

    def __init__(self, min_p: float, filter_value: float = -math.inf, min_tokens_to_keep: int = 1):
        if not (0 <= min_p <= 1.0):
            raise InputError(f"min_p must be in [0, 1], got {min_p!r}.")
        _check_min_tokens(min_tokens_to_keep)
        self.min_p = min_p
        self.filter_value = np.float32(filter_value)
        self.min_tokens_to_keep = int(min_tokens_to_keep)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        probs = softmax(scores)
        remove = probs < np.float32(self.min_p) * probs.max(axis=-1, keepdims=True)
        order = np.argsort(-scores, axis=-1, kind="stable")
        remove_sorted = np.take_along_axis(remove, order, axis=-1)
        remove_sorted[..., :self.min_tokens_to_keep] = False
        return np.where(_scatter_back(remove_sorted, order), self.filter_value, scores)


class TypicalLogitsWarper:
    """Typical decoding: keeps the tokens whose information is closest to the entropy, up to
    probability mass ``mass``."""

    def __init__(self, mass: float = 0.9, filter_value: float = -math.inf,
                 min_tokens_to_keep: int = 1):
        mass = float(mass)
        if not (0 < mass < 1):
            raise InputError(f"typical_p must be in (0, 1), got {mass!r}.")
        _check_min_tokens(min_tokens_to_keep)
        self.mass = mass
        self.filter_value = np.float32(filter_value)
        self.min_tokens_to_keep = int(min_tokens_to_keep)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        normalized = log_softmax(scores)
        p = np.exp(normalized)
        with np.errstate(invalid="ignore"):
            entropy = -np.nansum(normalized * p, axis=-1, keepdims=True)
        shifted = np.abs(-normalized - entropy)
        order = np.argsort(shifted, axis=-1, kind="stable")
        sorted_scores = np.take_along_axis(shifted, order, axis=-1)
        cumulative = _cumsum(softmax(np.take_along_axis(scores, order, axis=-1)))
        last = np.minimum((cumulative < np.float32(self.mass)).sum(axis=1),
                          sorted_scores.shape[-1] - 1)
        remove = sorted_scores > np.take_along_axis(sorted_scores, last[:, None], axis=1)
        remove[..., :self.min_tokens_to_keep] = False
        return np.where(_scatter_back(remove, order), self.filter_value, scores)


class EpsilonLogitsWarper:
    """Keeps tokens of probability >= ``epsilon`` (and the ``min_tokens_to_keep`` best)."""

    def __init__(self, epsilon: float, filter_value: float = -math.inf,
                 min_tokens_to_keep: int = 1):
        epsilon = float(epsilon)
        if epsilon <= 0 or epsilon >= 1:
            raise InputError(f"epsilon_cutoff must be in (0, 1), got {epsilon!r}.")
        _check_min_tokens(min_tokens_to_keep)
        self.epsilon = epsilon
        self.filter_value = np.float32(filter_value)
        self.min_tokens_to_keep = int(min_tokens_to_keep)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        remove = softmax(scores) < np.float32(self.epsilon)
        top_k = min(self.min_tokens_to_keep, scores.shape[-1])
        remove &= scores < _kth_largest(scores, top_k)
        return np.where(remove, self.filter_value, scores)


class EtaLogitsWarper:
    """Eta sampling: keeps tokens of probability >= min(epsilon, sqrt(epsilon) * e^-entropy)."""

    def __init__(self, epsilon: float, filter_value: float = -math.inf,
                 min_tokens_to_keep: int = 1):
        epsilon = float(epsilon)
        if epsilon <= 0 or epsilon >= 1:
            raise InputError(f"eta_cutoff must be in (0, 1), got {epsilon!r}.")
        _check_min_tokens(min_tokens_to_keep)
        self.epsilon = np.float32(epsilon)
        self.filter_value = np.float32(filter_value)
        self.min_tokens_to_keep = int(min_tokens_to_keep)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        probs = softmax(scores)
        logp = np.maximum(log_softmax(scores), np.finfo(np.float32).min)
        entropy = -(logp * probs).sum(axis=-1, dtype=np.float32)
        eta = np.minimum(self.epsilon, np.sqrt(self.epsilon) * np.exp(-entropy))[..., None]
        remove = probs < eta
        top_k = min(self.min_tokens_to_keep, scores.shape[-1])
        remove &= scores < _kth_largest(scores, top_k)
        return np.where(remove, self.filter_value, scores)


def _check_min_tokens(value) -> None:
    if not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"min_tokens_to_keep must be a positive integer, got {value!r}.")


# --- the list generate() builds ---------------------------------------------------------------
def logits_processors(config: GenerationConfig, input_ids_seq_length: int,
                      custom: Sequence[LogitsProcessor] = ()) -> LogitsProcessorList:
    """transformers' ``_get_logits_processor``: the processors ``config`` asks for, in its order,
    warpers (temperature, top-k, top-p, min-p, typical, epsilon, eta) included when sampling.

    ``config`` is the one ``generation_config_for_inputs`` returns (max_length and min_length
    counted from the start of the sequence); ``input_ids_seq_length`` is the length of the
    (decoder) input_ids before the first generated token. ``custom`` are the caller's own
    processors (transformers' ``logits_processor`` argument): one of a type the config also
    makes takes that one's place, the others follow the config's, before the warpers.
    """
    c = config
    eos = c.eos_token_ids
    out = LogitsProcessorList()
    if c.repetition_penalty is not None and c.repetition_penalty != 1.0:
        out.append(RepetitionPenaltyLogitsProcessor(c.repetition_penalty))
    if c.no_repeat_ngram_size is not None and c.no_repeat_ngram_size > 0:
        out.append(NoRepeatNGramLogitsProcessor(c.no_repeat_ngram_size))
    if c.bad_words_ids is not None:
        out.append(NoBadWordsLogitsProcessor(c.bad_words_ids, eos))
    if c.min_length is not None and eos is not None and c.min_length > 0:
        out.append(MinLengthLogitsProcessor(c.min_length, eos))
    if c.min_new_tokens is not None and eos is not None and c.min_new_tokens > 0:
        out.append(MinNewTokensLengthLogitsProcessor(input_ids_seq_length, c.min_new_tokens, eos))
    if c.forced_bos_token_id is not None:
        out.append(ForcedBOSTokenLogitsProcessor(c.forced_bos_token_id))
    if c.forced_eos_token_id is not None:
        out.append(ForcedEOSTokenLogitsProcessor(c.max_length, c.forced_eos_token_id))
    if c.remove_invalid_values is True:
        out.append(InfNanRemoveLogitsProcessor())
    if c.suppress_tokens is not None:
        out.append(SuppressTokensLogitsProcessor(c.suppress_tokens))
    if c.begin_suppress_tokens is not None:
        begin_index = input_ids_seq_length
        if not (input_ids_seq_length > 1 or c.forced_bos_token_id is None):
            begin_index += 1
        out.append(SuppressTokensAtBeginLogitsProcessor(c.begin_suppress_tokens, begin_index))
    if custom:
        out = LogitsProcessorList(next((p for p in custom if type(p) is type(made)), made)
                                  for made in out)
        out.extend(p for p in custom if p not in out)
    if c.do_sample:
        # beam sampling keeps one token more than there are eos ids, to explore past them
        keep = (len(eos) + 1 if eos is not None else 2) if c.num_beams > 1 else 1
        if c.temperature is not None and c.temperature != 1.0:
            out.append(TemperatureLogitsWarper(c.temperature))
        if c.top_k is not None and c.top_k != 0:
            out.append(TopKLogitsWarper(c.top_k, min_tokens_to_keep=keep))
        if c.top_p is not None and c.top_p < 1.0:
            out.append(TopPLogitsWarper(c.top_p, min_tokens_to_keep=keep))
        if c.min_p is not None:
            out.append(MinPLogitsWarper(c.min_p, min_tokens_to_keep=keep))
        if c.typical_p is not None and c.typical_p < 1.0:
            out.append(TypicalLogitsWarper(c.typical_p, min_tokens_to_keep=keep))
        if c.epsilon_cutoff is not None and 0.0 < c.epsilon_cutoff < 1.0:
            out.append(EpsilonLogitsWarper(c.epsilon_cutoff, min_tokens_to_keep=keep))
        if c.eta_cutoff is not None and 0.0 < c.eta_cutoff < 1.0:
            out.append(EtaLogitsWarper(c.eta_cutoff, min_tokens_to_keep=keep))
    if c.renormalize_logits is True:
        out.append(LogitNormalization())
    return out


__all__ = [
    "EpsilonLogitsWarper", "EtaLogitsWarper", "ForcedBOSTokenLogitsProcessor",
    "ForcedEOSTokenLogitsProcessor", "InfNanRemoveLogitsProcessor", "LogitNormalization",
    "LogitsProcessorList", "MinLengthLogitsProcessor", "MinNewTokensLengthLogitsProcessor",
    "MinPLogitsWarper", "NoBadWordsLogitsProcessor", "NoRepeatNGramLogitsProcessor",
    "RepetitionPenaltyLogitsProcessor", "SuppressTokensAtBeginLogitsProcessor",
    "SuppressTokensLogitsProcessor", "TemperatureLogitsWarper", "TopKLogitsWarper",
    "TopPLogitsWarper", "TypicalLogitsWarper", "WhisperTimeStampLogitsProcessor", "log_softmax",
    "logits_processors", "softmax",
]
