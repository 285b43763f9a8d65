"""Stopping criteria: transformers' (generation/stopping_criteria.py), in numpy.

Each is called as ``criterion(input_ids, scores=None) -> (rows,) bool`` after the new tokens
are appended; True means that row is done. The search keeps transformers' per-row
``unfinished_sequences``:

    unfinished &= ~criteria(sequences, scores)       # a finished row stays finished
    # and, when criteria.has_eos, the rows already finished get pad_token_id as next token

    >>> import numpy as np
    >>> from runtime.generation.config import GenerationConfig
    >>> criteria = stopping_criteria(GenerationConfig(max_length=4, eos_token_id=[2, 3]))
    >>> criteria(np.array([[5, 6, 2], [5, 6, 7]]))
    array([ True, False])
    >>> criteria(np.array([[5, 6, 7, 8]]))
    array([ True])
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from .config import GenerationConfig

_UNSEEN = object()


class MaxLengthCriteria:
    """Every row is done once the sequences are ``max_length`` long (prompt included)."""

    def __init__(self, max_length: int):
        self.max_length = max_length

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        return np.full(input_ids.shape[0], input_ids.shape[1] >= self.max_length)


class MaxTimeCriteria:
    """Every row is done once ``max_time`` seconds have passed since ``initial_timestamp``
    (default: when the criterion was made)."""

    def __init__(self, max_time: float, initial_timestamp: float | None = None):
        self.max_time = max_time
        self.initial_timestamp = time.time() if initial_timestamp is None else initial_timestamp

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        return np.full(input_ids.shape[0], time.time() - self.initial_timestamp > self.max_time)


class EosTokenCriteria:
    """A row is done when its last token is one of ``eos_token_id``."""

    def __init__(self, eos_token_id):
        if isinstance(eos_token_id, numbers.Integral):
            eos_token_id = [eos_token_id]
        self.eos_token_id = np.asarray(list(eos_token_id), dtype=np.int64)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        return np.isin(input_ids[:, -1], self.eos_token_id)


class StopStringCriteria:
    """A row is done when one of ``stop_strings`` appears in its text and overlaps its last
    token: transformers' StopStringCriteria, with the same observable steps.

    As transformers does, each token stands for its own text (the tokenizer's decoder applied to
    that token after a fixed prefix, so "Ġthe" or "▁the" reads " the"), only the last
    ``len(longest stop string)`` tokens are looked at (a token is at least one character, so a
    stop string cannot span more), the prompt counts as text, and a stop string must end inside
    the last token: it may start inside an earlier token and may be followed, within the last
    token, by more text ("st" + "opera" stops at "stop"). A stop string already complete before
    the last token does not stop the row again. Ids the tokenizer does not know break a match.

    transformers precomputes a table over the whole vocabulary; here a token's text is computed
    the first time the token is seen, with the same result. ``tokenizer`` is a TextTokenizer
    (its shared backend is read) or a ``tokenizers.Tokenizer``.
    """

    _PREFIX = "abcdef"  # transformers' static_prefix

    def __init__(self, tokenizer, stop_strings: str | Sequence[str]):
        if isinstance(stop_strings, str):
            stop_strings = [stop_strings]
        self.stop_strings = tuple(stop_strings)
        if not self.stop_strings or not all(isinstance(s, str) and s for s in self.stop_strings):
            raise InputError(f"stop_strings must be non-empty strings, got {stop_strings!r}.")
        self.maximum_token_len = max(len(s) for s in self.stop_strings)
        self._tokenizer = tokenizer
        backend = self._backend
        self._prefix_tokens = [backend.id_to_token(i) for i in
                               backend.encode(self._PREFIX, add_special_tokens=False).ids]
        self._texts: dict[int, str | None] = {}

    @property
    def _backend(self):
        # TextTokenizer.backend is the tokenizers.Tokenizer all threads read (never changed)
        return getattr(self._tokenizer, "backend", self._tokenizer)

    def token_text(self, token_id: int) -> str | None:
        """The text ``token_id`` stands for in a stop-string match (None: not a token)."""
        text = self._texts.get(token_id, _UNSEEN)
        if text is _UNSEEN:
            text = self._texts[token_id] = self._read_token(token_id)
        return text

    def _read_token(self, token_id: int) -> str | None:
        backend = self._backend
        token = backend.id_to_token(token_id) if token_id >= 0 else None
        if token is None:
            return None
        decoder = backend.decoder
        tokens = [*self._prefix_tokens, token]
        text = decoder.decode(tokens) if decoder is not None else " ".join(tokens)
        start = text.find(self._PREFIX)
        return None if start < 0 else text[start + len(self._PREFIX):]

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        window = input_ids[:, -self.maximum_token_len:].tolist()
        return np.array([self._row_matches([self.token_text(t) for t in row]) for row in window],
                        dtype=bool)

    def _row_matches(self, texts: list[str | None]) -> bool:
        last = texts[-1] if texts else None
        if last is None:
            return False
        for stop in self.stop_strings:
            # the stop string ends after the first `end` characters of the last token
            for end in range(1, len(last) + 1):
                head = last[:end]
                if len(head) >= len(stop):
                    if head.endswith(stop):
                        return True
                    continue
                if not stop.endswith(head):
                    continue
                matched = end
                for text in reversed(texts[:-1]):
                    if text is None:
                        break
                    remaining = stop[:len(stop) - matched]
                    if len(text) >= len(remaining):
                        if text.endswith(remaining):
                            return True
                        break
                    if not remaining.endswith(text):
                        break
                    matched += len(text)
        return False


class StoppingCriteriaList(list):
    """Criteria combined by "or": ``criteria(input_ids, scores) -> (rows,) bool``."""

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        done = np.zeros(input_ids.shape[0], dtype=bool)
        for criterion in self:
            done |= criterion(input_ids, scores)
        return done

    @property
    def max_length(self) -> int | None:
        for criterion in self:
            if isinstance(criterion, MaxLengthCriteria):
                return criterion.max_length
        return None

    @property
    def has_eos(self) -> bool:
        """transformers' ``has_eos_stopping_criteria``: finished rows are padded."""
        return any(isinstance(criterion, EosTokenCriteria) for criterion in self)


def stopping_criteria(config: GenerationConfig, tokenizer=None) -> StoppingCriteriaList:
    """transformers' ``_get_stopping_criteria`` for ``config`` (as ``generation_config_for_inputs``
    returns it): max_length, max_time, stop_strings (needs the tokenizer), eos."""
    criteria = StoppingCriteriaList()
    if config.max_length is not None:
        criteria.append(MaxLengthCriteria(config.max_length))
    if config.max_time is not None:
        criteria.append(MaxTimeCriteria(config.max_time))
    if config.stop_strings is not None:
        if tokenizer is None:
            raise InputError(
                "stop_strings are set, but no tokenizer was given to read the generated text. "
                "Note: pass the bundle's tokenizer (generate(..., tokenizer=...)), or "
                "stop_strings=None."
            )
        criteria.append(StopStringCriteria(tokenizer, config.stop_strings))
    if config.eos_token_ids is not None:
        criteria.append(EosTokenCriteria(config.eos_token_ids))
    return criteria
