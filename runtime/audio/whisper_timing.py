"""Whisper's word timestamps, as transformers 4.57 computes them, in numpy:

    token_timestamps    the time of each token of a decoded window, from its alignment heads'
                        cross-attention weights: normalized over the tokens, median-filtered
                        over time, averaged over heads, then dynamic time warping; a token's
                        time is where the warping path reaches it
                        (``WhisperGenerationMixin._extract_token_timestamps``)
    words               the words of a run of text tokens, with the indices of their tokens:
                        split at spaces (or at whole characters, for languages written without
                        them), punctuation merged into its neighbours
                        (``tokenization_whisper._combine_tokens_into_words``)

The weights come from the bundle's ``decoder_alignment_model`` graph (exporter/
whisper_alignment.py), run once on the tokens the search chose. The warping path's ties are
broken as transformers breaks them (diagonal, then up, then left), with its float32 costs:

>>> text, time = dynamic_time_warping(np.array([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]))
>>> text.tolist(), time.tolist()
([0, 1, 1], [0, 1, 2])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError

# The bundle's graph of the alignment heads' weights (exporter/whisper_alignment.py): input_ids
# and encoder_hidden_states in, (batch, heads, decoder_sequence, encoder positions) out.
ALIGNMENT_GRAPH = "decoder_alignment_model"
ALIGNMENT_OUTPUT = "alignment_weights"
# transformers' defaults for _combine_tokens_into_words
PREPEND_PUNCTUATIONS = "\"'“¡¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
# languages written without spaces: split at whole characters instead
_WITHOUT_SPACES = {"chinese", "japanese", "thai", "lao", "myanmar", "cantonese"}


def median_filter(values: np.ndarray, width: int) -> np.ndarray:
    """The median of each ``width`` values along the last axis, the edges reflected (torch's
    'reflect' padding); unchanged when the axis is not longer than half the width.

    >>> median_filter(np.array([[1.0, 9.0, 2.0, 3.0]], dtype=np.float32), 3).tolist()
    [[9.0, 2.0, 3.0, 2.0]]
    """
    if width <= 0 or width % 2 != 1:
        raise InputError(f"median_filter_width must be an odd number above 0, got {width!r}. "
                         "Note: fix it in the bundle's config.json (Whisper's is 7).")
    pad = width // 2
    if values.shape[-1] <= pad:
        return values
    padded = np.pad(values, [(0, 0)] * (values.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.sort(windows, axis=-1)[..., pad]


def dynamic_time_warping(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(text indices, time indices) of the cheapest path through ``matrix`` (tokens x time),
    as transformers' ``_dynamic_time_warping``: float32 costs, ties to the diagonal step, then
    the step from above. Computed an anti-diagonal at a time (each cell needs only the two
    diagonals before it), which gives the same costs as its cell-by-cell loop."""
    matrix = np.asarray(matrix, dtype=np.float64)
    rows, cols = matrix.shape
    cost = np.full((rows + 1, cols + 1), np.inf, dtype=np.float32)
    trace = np.full((rows + 1, cols + 1), -1, dtype=np.int8)
    cost[0, 0] = 0
    for diagonal in range(2, rows + cols + 1):
        i = np.arange(max(1, diagonal - cols), min(rows, diagonal - 1) + 1)
        j = diagonal - i
        c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
        step = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2))
        best = np.choose(step, [c0, c1, c2])
        cost[i, j] = (matrix[i - 1, j - 1] + best.astype(np.float64)).astype(np.float32)
        trace[i, j] = step
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j = rows, cols
    text, time = [], []
    while i > 0 or j > 0:
        text.append(i - 1)
        time.append(j - 1)
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.array(text[::-1]), np.array(time[::-1])


def token_timestamps(weights: np.ndarray, prompt_length: int, length: int, *,
                     num_frames: int | None, filter_width: int,
                     time_precision: float = 0.02) -> np.ndarray:
    """The float32 time (in seconds from the window's start) of each of the ``length`` tokens
    of a decoded window (prompt included), from ``weights``: the alignment heads'
    cross-attention weights (heads x positions x encoder positions) of its positions before the
    last (the last token is never fed back in generation). The prompt's tokens get 0, the last
    token the time of the one before. ``num_frames``: the window's feature frames holding
    audio (the weights past them, two frames per encoder position, are left out)."""
    weights = np.asarray(weights, dtype=np.float32)[:, prompt_length:length - 1]
    stamps = np.zeros(length, dtype=np.float32)
    if weights.shape[1] == 0:  # one token generated: no weights for it
        return stamps
    if num_frames is not None:
        # twice, as transformers crops (for a batch that shares num_frames, then per input):
        # the second matters only past the audio's end, where num_frames is negative
        weights = weights[..., :num_frames // 2][..., :num_frames // 2]
    std = weights.std(axis=-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):  # one token: NaN, as in transformers
        matrix = (weights - weights.mean(axis=-2, keepdims=True)) / std
    matrix = median_filter(matrix, filter_width).mean(axis=0)
    text, time = dynamic_time_warping(-matrix.astype(np.float64))
    jumps = np.pad(np.diff(text), (1, 0), constant_values=1).astype(bool)
    jump_times = time[jumps] * time_precision
    stamps[prompt_length:length - 1] = jump_times
    stamps[length - 1] = jump_times[-1]
    return stamps


# --- words ------------------------------------------------------------------------------------
def words(tokenizer, tokens: Sequence[int], language: str | None) -> tuple[list[str],
                                                                         list[list[int]]]:
    """(words, the indices of each word's tokens) of a run of text tokens, as transformers'
    ``_combine_tokens_into_words`` (``language``: a language's name, like "english"; None is
    English)."""
    language = language or "english"
    eos = tokenizer.token_to_id("<|endoftext|>")
    if language in _WITHOUT_SPACES:
        found, indices = _split_on_unicode(tokenizer, tokens)
    else:
        found, indices = _split_on_spaces(tokenizer, tokens, eos)
    _merge_punctuations(found, indices)
    return found, indices


def _split_on_unicode(tokenizer, tokens: Sequence[int]) -> tuple[list[str], list[list[int]]]:
    """Pieces that decode to whole characters."""
    tokens = [int(t) for t in tokens]
    full = tokenizer.decode(tokens)
    replacement = "\ufffd"
    found, indices, current, offset = [], [], [], 0
    for index in range(len(tokens)):
        current.append(index)
        decoded = tokenizer.decode([tokens[i] for i in current])
        at = offset + decoded.index(replacement) if replacement in decoded else None
        if at is None or (at < len(full) and full[at] == replacement):
            found.append(decoded)
            indices.append(current)
            current = []
            offset += len(decoded)
    return found, indices


def _split_on_spaces(tokenizer, tokens: Sequence[int], eos: int | None
                     ) -> tuple[list[str], list[list[int]]]:
    pieces, piece_indices = _split_on_unicode(tokenizer, tokens)
    found: list[str] = []
    indices: list[list[int]] = []
    for piece, index in zip(pieces, piece_indices):
        special = eos is not None and int(tokens[index[0]]) >= eos
        if special or piece.startswith(" ") or piece.strip() in _PUNCTUATION or not found:
            found.append(piece)
            indices.append(list(index))
        else:
            found[-1] += piece
            indices[-1].extend(index)
    return found, indices


def _merge_punctuations(found: list[str], indices: list[list[int]]) -> None:
    """Opening punctuation joins the word after it, closing punctuation the word before."""
    i, j = len(found) - 2, len(found) - 1
    while i >= 0:
        if found[i].startswith(" ") and found[i].strip() in PREPEND_PUNCTUATIONS:
            found[j] = found[i] + found[j]
            indices[j] = indices[i] + indices[j]
            found[i], indices[i] = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(found):
        if not found[i].endswith(" ") and found[j] in APPEND_PUNCTUATIONS:
            found[i] += found[j]
            indices[i] += indices[j]
            found[j], indices[j] = "", []
        else:
            i = j
        j += 1
    # each list loses its empty entries on its own, as in transformers
    found[:] = [word for word in found if word]
    indices[:] = [index for index in indices if index]


def word_chunks(tokenizer, tokens: Sequence[int], times: Sequence[tuple[float, float]],
                language: str | None, with_language: bool) -> list[dict]:
    """The pipeline's chunks of one segment's text tokens: ``{"text": word, "timestamp":
    (start of its first token, end of its last)}`` (and ``"language"``), as transformers'
    ``_collate_word_timestamps``."""
    found, indices = words(tokenizer, tokens, language)
    extra = {"language": language} if with_language else {}
    return [{"text": word, "timestamp": (times[index[0]][0], times[index[-1]][1]), **extra}
            for word, index in zip(found, indices)]
