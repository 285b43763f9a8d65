"""Greedy search, sampling and beam search over a GenerationModel, token for token as
transformers' ``generate()`` (4.57: ``GenerationMixin._sample`` and ``_beam_search``).

The search knows no graphs and no generation config. It takes resolved numbers (``max_length``,
the eos and pad ids) and plain callables for everything that varies per model and per call:

    logits_processor(sequences, scores) -> scores     the processors, then (when sampling) the
                                                      warpers, composed in transformers' order
    stop(sequences, scores) -> bool per row           extra stopping criteria (stop strings)
    on_tokens(tokens)                                 each step's new tokens, one per row

    >>> class Counting:  # a toy model whose next token is always (last token + 1) % 5
    ...     is_encoder_decoder, vocab_size = False, 5
    ...     def begin(self, input_ids, attention_mask): return None
    ...     def expand(self, state, rows): return None
    ...     def next_logits(self, state, sequences):
    ...         return np.eye(5, dtype=np.float32)[(sequences[:, -1] + 1) % 5], None
    >>> generate(Counting(), np.array([[0, 1], [3, 3]]), max_length=5, eos_token_id=4).sequences
    array([[0, 1, 2, 3, 4],
           [3, 3, 4, 4, 4]])

The arithmetic follows transformers' on purpose, because the chosen tokens depend on it: scores
stay float32; beam search takes ``log_softmax`` of the raw logits *before* the processors and adds
it to the running beam scores; a finished hypothesis scores ``sum_logprobs / generated_len **
length_penalty``; masked candidates get ``-1e9`` added (not replaced), so several masks stack.
Ties between equal scores go to the lower index (torch.topk leaves their order unspecified).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np

from ..errors import InputError
from .model import GenerationModel

LogitsProcessor = Callable[[np.ndarray, np.ndarray], np.ndarray]
StopCheck = Callable[[np.ndarray, Any], np.ndarray]

# transformers' "impossible" score: added to the candidates a step must not pick.
_MASKED = np.float32(-1.0e9)
# Beam search's token buffers start with room for this many new tokens and double as needed:
# transformers allocates max_length up front, which for max_new_tokens=10**9 is tens of GB
# before the first step (generation usually ends at an eos long before max_length).
_FIRST_ROOM = 64


class GenerateOutput(NamedTuple):
    """What generate() returns.

    sequences: (batch * num_return_sequences, length) int64, the rows of one input together;
        decoder-only models: the (left-padded) prompt and the new tokens; encoder-decoder
        models: the decoder's sequence, from decoder_start_token_id.
    sequences_scores: beam search only, the (batch * num_return_sequences,) float32 scores of
        the returned hypotheses (length-penalized), as transformers' ``sequences_scores``.
    """

    sequences: np.ndarray
    sequences_scores: np.ndarray | None = None


def generate(
    model: GenerationModel,
    input_ids: np.ndarray | Mapping[str, np.ndarray],
    attention_mask: np.ndarray | None = None,
    *,
    max_length: int,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    decoder_start_token_id: int | None = None,
    decoder_input_ids: np.ndarray | None = None,
    do_sample: bool = False,
    num_beams: int = 1,
    num_return_sequences: int = 1,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    logits_processor: LogitsProcessor | None = None,
    stop: StopCheck | None = None,
    rng: np.random.Generator | int | None = None,
    on_tokens: Callable[[np.ndarray], None] | None = None,
) -> GenerateOutput:
    """Generate from a batch of prompts: greedy (the default), sampling (``do_sample``), beam
    search (``num_beams > 1``) or beam sampling (both).

    input_ids, attention_mask: (batch, length) prompts, left-padded for decoder-only models;
        for encoder-decoder models, the encoder's input: token ids, or the encoder's feed by
        input name (Whisper's ``{"input_features": ...}``; attention_mask None).
    max_length: the longest sequence: prompt included for decoder-only models, the decoder's
        sequence (start token included) for encoder-decoder ones.
    eos_token_id: one id or several; a row is done when it emits one. None: only max_length
        (and ``stop``) end a row.
    pad_token_id: what rows that are done get while others go on; defaults to the first eos.
    decoder_start_token_id, decoder_input_ids: encoder-decoder models only: the decoder starts
        with decoder_input_ids when given (decoder_start_token_id is put in front when no row
        starts with it, as transformers does), else with decoder_start_token_id alone.
    logits_processor: ``(sequences, scores) -> scores`` applied to every step's float32 scores;
        beam search applies it to log-probabilities, as transformers does.
    stop: ``(sequences, scores) -> bool per row``, more stopping criteria (stop strings); the
        scores are the step's processed ones (beam search: those of each candidate's beam).
    rng: sampling's random numbers: a numpy Generator, or an int seed (reproducible).
    on_tokens: called with each step's new tokens, shape (rows,), never the prompt; finished
        rows show the pad id. Greedy and sampling only, as transformers' streamers.
    """
    if isinstance(input_ids, Mapping) and model.is_encoder_decoder:
        batch = _check_encoder_feed(input_ids)
    else:
        input_ids, attention_mask = _check_prompts(input_ids, attention_mask)
        batch = len(input_ids)
    eos = _eos_ids(eos_token_id)
    if pad_token_id is None and len(eos):
        pad_token_id = int(eos[0])  # transformers: "Setting pad_token_id to eos_token_id"
    _check_search(num_beams, num_return_sequences, do_sample, early_stopping, on_tokens)
    if model.is_encoder_decoder:
        sequences = _decoder_prompt(decoder_input_ids, decoder_start_token_id, batch)
        _check_decoder_prompt(sequences, model.vocab_size)
    else:
        if input_ids.shape[1] == 0:
            raise InputError(
                "The prompt is empty. Note: a decoder-only model needs at least one token to "
                "start from; put the model's BOS token first."
            )
        sequences = input_ids
    if not isinstance(max_length, Integral) or max_length <= sequences.shape[1]:
        what = "decoder_input_ids" if model.is_encoder_decoder else "input_ids"
        raise InputError(
            f"max_length is {max_length}, but the {what} are already {sequences.shape[1]} tokens "
            "long. Note: max_length counts the prompt too; raise it, or set max_new_tokens."
        )

    state = model.begin(input_ids, attention_mask)
    expand = max(num_beams, num_return_sequences)  # as transformers expands its inputs
    first = None  # the first step's (logits, state), when it is run before the expansion
    if expand > 1:
        # transformers runs the first step on every copy of each prompt; the copies' logits
        # are the same, so it runs here once per prompt, and its outputs are expanded
        rows = np.repeat(np.arange(batch), expand)
        logits, state = model.next_logits(state, sequences)
        first = (np.asarray(logits)[rows], model.expand(state, rows))
        sequences = sequences[rows]
    stopping = _Stopping(int(max_length), eos, stop)
    process = logits_processor or _identity
    sampler = None  # None: pick the best tokens; a Generator: draw them
    if do_sample:
        sampler = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if num_beams == 1:
        return _greedy_or_sample(model, state, sequences, process, stopping, pad_token_id,
                                 sampler, on_tokens, first)
    return _beam_search(model, state, sequences, process, stopping, pad_token_id, num_beams,
                        num_return_sequences, float(length_penalty), early_stopping, sampler,
                        first)


def _step(model, state, sequences, first):
    """The logits and state of the next step: ``first`` when given (the first step, already
    run), else the model's."""
    return first if first is not None else model.next_logits(state, sequences)


def _greedy_or_sample(model, state, sequences, process, stopping, pad_token_id, rng, on_tokens,
                      first=None):
    """transformers' ``_sample``: one token per row and step until every row is done."""
    unfinished = np.ones(len(sequences), dtype=bool)
    while True:
        (logits, state), first = _step(model, state, sequences, first), None
        scores = process(sequences, np.asarray(logits, dtype=np.float32))
        if rng is not None:
            tokens = _draw(softmax(scores), rng)
        else:
            tokens = np.argmax(scores, axis=-1)
        if len(stopping.eos):  # transformers pads done rows only when an eos can end them
            tokens = np.where(unfinished, tokens, pad_token_id)
        sequences = np.concatenate([sequences, tokens[:, None].astype(np.int64)], axis=1)
        if on_tokens is not None:
            on_tokens(sequences[:, -1].copy())
        unfinished &= ~stopping(sequences, scores)
        if not unfinished.any():
            return GenerateOutput(sequences)


def _beam_search(model, state, sequences, process, stopping, pad_token_id, num_beams,
                 num_return_sequences, length_penalty, early_stopping, rng, first=None):
    """transformers' ``_beam_search`` (the vectorized one of 4.50+).

    Each step keeps ``keep`` candidates per input (enough that ``num_beams`` of them are still
    running even when every beam picks an eos), continues the best ``num_beams`` running ones,
    and merges the top-``num_beams`` candidates that finished into a ``num_beams``-slot buffer
    of hypotheses sorted by length-penalized score.
    """
    rows, prompt_len = sequences.shape
    batch, beams, max_length = rows // num_beams, num_beams, stopping.max_length
    keep = max(2, 1 + len(stopping.eos)) * beams
    # transformers: `pad_token_id or eos_token_id[0]` -- a pad id of 0 pads with the eos id.
    fill = (pad_token_id or int(stopping.eos[0])) if len(stopping.eos) else -1

    # Running beams and finished hypotheses live in buffers of up to max_length tokens, grown
    # as the sequences grow.
    running = np.full((batch, beams, min(max_length, prompt_len + _FIRST_ROOM)), fill,
                      dtype=np.int64)
    running[:, :, :prompt_len] = sequences.reshape(batch, beams, prompt_len)
    running_scores = np.zeros((batch, beams), dtype=np.float32)
    running_scores[:, 1:] = _MASKED  # only the first beam's tokens count on the first step
    finished = running.copy()
    finished_scores = np.full((batch, beams), _MASKED, dtype=np.float32)
    finished_lengths = np.zeros((batch, beams), dtype=np.int64)  # generated tokens
    is_finished = np.zeros((batch, beams), dtype=bool)
    improvable = np.ones(batch, dtype=bool)  # can a running beam still beat a finished one?
    among_top = np.arange(keep) < beams  # only these candidates may become hypotheses

    cur_len = prompt_len
    while True:
        if cur_len == running.shape[2]:  # full: double the room (cur_len < max_length here)
            width = min(max_length, 2 * cur_len)
            running, finished = _widened(running, width, fill), _widened(finished, width, fill)
        flat = running[:, :, :cur_len].reshape(rows, cur_len)
        (logits, state), first = _step(model, state, flat, first), None
        log_probs = process(flat, log_softmax(np.asarray(logits, dtype=np.float32)))
        vocab = log_probs.shape[-1]
        totals = (log_probs.reshape(batch, beams, vocab) + running_scores[:, :, None])
        totals = totals.reshape(batch, beams * vocab)

        # The best `keep` continuations over all beams of each input (or `keep` drawn ones).
        if rng is not None:
            picked = _draw_distinct(softmax(totals), keep, rng)
        else:
            picked = _top_k(totals, keep)
        scores = _gather(totals, picked)
        source = picked // vocab  # the beam each candidate continues
        candidates = _gather(running, source)
        candidates[:, :, cur_len] = picked % vocab
        step_scores = None  # for the caller's stop(): the scores each candidate was drawn from
        if stopping.extra is not None:
            step_scores = log_probs[(np.arange(batch)[:, None] * beams + source).ravel()]
        done = stopping(candidates[:, :, :cur_len + 1].reshape(batch * keep, cur_len + 1),
                        step_scores).reshape(batch, keep)

        # The best candidates still running become the next step's beams.
        running_candidates = scores + done * _MASKED
        chosen = _top_k(running_candidates, beams)
        running = _gather(candidates, chosen)
        running_scores = _gather(running_candidates, chosen)
        running_source = _gather(source, chosen)

        # Finished candidates among the top `beams` join the hypotheses if they score better.
        just_finished = done & among_top
        final = _penalized(scores, cur_len + 1 - prompt_len, length_penalty)
        full = is_finished.all(axis=1) & (early_stopping is True)
        final += full[:, None] * _MASKED
        final += ~improvable[:, None] * _MASKED
        final += ~just_finished * _MASKED
        merged = np.concatenate([finished_scores, final], axis=1)
        best = _top_k(merged, beams)
        finished_scores = _gather(merged, best)
        finished = _gather(np.concatenate([finished, candidates], axis=1), best)
        lengths = np.full((batch, keep), cur_len + 1 - prompt_len)
        finished_lengths = _gather(np.concatenate([finished_lengths, lengths], axis=1), best)
        is_finished = _gather(np.concatenate([is_finished, just_finished], axis=1), best)

        cur_len += 1
        improvable &= _can_improve(running_scores, finished_scores, is_finished, cur_len,
                                   prompt_len, max_length, length_penalty, early_stopping)
        all_full = is_finished.all() and early_stopping is True
        if not improvable.any() or all_full or done.all():
            break
        # The cache follows the beams (transformers reorders it after the last step too).
        state = model.expand(state, (np.arange(batch)[:, None] * beams + running_source).ravel())

    # The hypotheses are sorted best first; return the best num_return_sequences of each input,
    # cut to the longest of them.
    length = prompt_len + int(finished_lengths[:, :num_return_sequences].max())
    sequences = finished[:, :num_return_sequences, :length].reshape(-1, length)
    return GenerateOutput(sequences, finished_scores[:, :num_return_sequences].reshape(-1))


def _penalized(scores: np.ndarray, length: int, length_penalty: float) -> np.ndarray:
    """``scores / length ** length_penalty`` in float32, as transformers divides. Where the
    power leaves float64 (a length_penalty of 1e308), Python raises an OverflowError; here it
    divides by inf (or, for a very negative penalty, by 0) instead."""
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        return scores / np.float32(np.float64(length) ** length_penalty)


def _widened(tokens: np.ndarray, width: int, fill: int) -> np.ndarray:
    """``tokens`` (batch, beams, length) with ``fill`` columns added up to ``width``."""
    wider = np.full((*tokens.shape[:2], width), fill, dtype=tokens.dtype)
    wider[:, :, :tokens.shape[2]] = tokens
    return wider


def _can_improve(running_scores, finished_scores, is_finished, cur_len, prompt_len, max_length,
                 length_penalty, early_stopping):
    """transformers' ``_check_early_stop_heuristic``: could the best running beam still beat the
    worst finished hypothesis? early_stopping=False assumes the best score comes at the current
    length; "never" with a positive length penalty assumes it at max_length."""
    if early_stopping == "never" and length_penalty > 0.0:
        best_length = max_length - prompt_len
    else:
        best_length = cur_len - prompt_len
    best_possible = _penalized(running_scores[:, :1], best_length, length_penalty)
    worst_finished = np.where(is_finished, finished_scores.min(axis=1, keepdims=True), _MASKED)
    return (best_possible > worst_finished).any(axis=1)


@dataclass(frozen=True)
class _Stopping:
    """transformers' default stopping criteria: MaxLengthCriteria, EosTokenCriteria, and the
    caller's extra ones (StopStringCriteria). True for each row that is done."""

    max_length: int
    eos: np.ndarray
    extra: StopCheck | None

    def __call__(self, sequences: np.ndarray, scores: Any) -> np.ndarray:
        done = np.full(len(sequences), sequences.shape[1] >= self.max_length)
        if len(self.eos):
            done |= np.isin(sequences[:, -1], self.eos)
        if self.extra is not None:
            done |= np.asarray(self.extra(sequences, scores), dtype=bool).reshape(len(sequences))
        return done


def log_softmax(x: np.ndarray) -> np.ndarray:
    """log_softmax over the last axis, in x's precision (float32 here, as torch computes it)."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    """softmax over the last axis; -inf scores get probability 0."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One token per row, drawn with the row's probabilities (torch.multinomial, num_samples=1).
    A token of probability 0 is never drawn."""
    _check_probabilities(probs)
    cdf = np.cumsum(probs, axis=-1, dtype=np.float64)
    target = (1.0 - rng.random(len(probs))) * cdf[:, -1]  # in (0, total]
    return np.minimum((cdf < target[:, None]).sum(axis=-1), probs.shape[-1] - 1)


def _draw_distinct(probs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct indices per row drawn without replacement, in the order drawn (the
    exponential-race form of successive sampling, as torch.multinomial uses)."""
    _check_probabilities(probs)
    with np.errstate(divide="ignore", invalid="ignore"):
        race = probs / rng.exponential(size=probs.shape)
    return _top_k(race, k)


def _check_probabilities(probs: np.ndarray) -> None:
    if not np.isfinite(probs).all():
        rows = np.flatnonzero(~np.isfinite(probs).all(axis=-1)).tolist()
        raise InputError(
            f"Cannot sample: every token of row(s) {rows} has a score of -inf (or the scores are "
            "not finite). Note: the logits processors (bad_words_ids, suppress_tokens, top_k, "
            "top_p, ...) must leave at least one token possible."
        )


def _top_k(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values of each row, largest first; ties go to the lower index."""
    if k >= x.shape[-1]:
        return np.argsort(-x, axis=-1, kind="stable")[:, :k]
    kth = -np.partition(-x, k - 1, axis=-1)[:, k - 1]  # the k-th largest value of each row
    out = np.empty((len(x), k), dtype=np.int64)
    for row, (values, threshold) in enumerate(zip(x, kth)):
        contenders = np.flatnonzero(values >= threshold)  # all of the top k, and their ties
        out[row] = contenders[np.argsort(-values[contenders], kind="stable")[:k]]
    return out


def _gather(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """array (batch, n, ...) -> (batch, k, ...): entries ``index`` (batch, k) of each input."""
    return np.take_along_axis(array, index.reshape(index.shape + (1,) * (array.ndim - 2)), axis=1)


def _identity(sequences: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return scores


def _check_prompts(input_ids, attention_mask) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(input_ids)
    if ids.ndim != 2 or not (ids.dtype.kind in "iu" or ids.size == 0) or len(ids) == 0:
        raise InputError(
            f"input_ids must be a (batch, length) array of token ids, got shape {ids.shape} and "
            f"dtype {ids.dtype}. Note: tokenize a batch of texts, padding them to one length."
        )
    ids = ids.astype(np.int64)
    if attention_mask is None:
        return ids, np.ones_like(ids)
    mask = np.asarray(attention_mask)
    if mask.shape != ids.shape:
        raise InputError(
            f"attention_mask has shape {mask.shape}, but input_ids has {ids.shape}. Note: pass "
            "the attention_mask the tokenizer made with these input_ids."
        )
    return ids, mask.astype(np.int64)


def _check_encoder_feed(feed: Mapping[str, np.ndarray]) -> int:
    """The batch size of an encoder feed: arrays by input name, one row per input."""
    rows = {name: np.shape(array)[0] if np.ndim(array) else None for name, array in feed.items()}
    if not rows or None in rows.values() or len(set(rows.values())) != 1 or 0 in rows.values():
        raise InputError(
            f"An encoder feed must map input names to arrays of the same (non-zero) batch size, "
            f"got {rows}. Note: e.g. {{'input_features': features}} with features of shape "
            "(batch, mel bins, frames)."
        )
    return next(iter(rows.values()))


def _eos_ids(eos_token_id) -> np.ndarray:
    if eos_token_id is None:
        return np.zeros(0, dtype=np.int64)
    ids = np.atleast_1d(np.asarray(eos_token_id))
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise InputError(
            f"eos_token_id must be a token id or a list of them, got {eos_token_id!r}. "
            "Note: the ids are in the model's generation_config.json."
        )
    return ids.astype(np.int64)


def _decoder_prompt(decoder_input_ids, decoder_start_token_id, batch: int) -> np.ndarray:
    if decoder_input_ids is None:
        if decoder_start_token_id is None:
            raise InputError(
                "An encoder-decoder model needs decoder_start_token_id to start the decoder. "
                "Note: it is in the model's generation_config.json or config.json."
            )
        return np.full((batch, 1), decoder_start_token_id, dtype=np.int64)
    ids = np.asarray(decoder_input_ids, dtype=np.int64)
    if ids.ndim != 2 or len(ids) != batch:
        raise InputError(
            f"decoder_input_ids must be a ({batch}, length) array, got shape {ids.shape}. "
            "Note: give one decoder prompt per input, padded to one length."
        )
    if decoder_start_token_id is not None and (
        ids.shape[1] == 0 or (ids[:, 0] != decoder_start_token_id).all()
    ):
        start = np.full((batch, 1), decoder_start_token_id, dtype=np.int64)
        ids = np.concatenate([start, ids], axis=1)
    return ids


def _check_decoder_prompt(ids: np.ndarray, vocab_size: int) -> None:
    """The decoder's prompt comes from the model's settings (decoder_start_token_id, Whisper's
    language and task tokens): an id the model has no embedding for would fail inside the
    graph, with a message that does not say which setting is wrong."""
    outside = sorted(set(ids[(ids < 0) | (ids >= vocab_size)].tolist()))
    if outside:
        raise InputError(
            f"The decoder's prompt {ids[0].tolist()[:10]} holds token ids {outside[:10]}, "
            f"outside the model's {vocab_size} tokens. Note: they come from "
            "decoder_start_token_id (and for Whisper, its language, task and timestamp tokens) "
            "in the bundle's generation_config.json, or from the call; fix them there."
        )


def _check_search(num_beams, num_return_sequences, do_sample, early_stopping, on_tokens) -> None:
    for name, value in (("num_beams", num_beams), ("num_return_sequences", num_return_sequences)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}.")
    if num_beams == 1 and num_return_sequences > 1 and not do_sample:
        raise InputError(
            f"num_return_sequences is {num_return_sequences}, but greedy search returns one "
            "sequence per input. Note: set do_sample=True, or num_beams >= "
            "num_return_sequences for beam search."
        )
    if num_beams > 1 and num_return_sequences > num_beams:
        raise InputError(
            f"num_return_sequences ({num_return_sequences}) is larger than num_beams "
            f"({num_beams}). Note: beam search returns at most num_beams sequences per input; "
            f"set num_beams >= {num_return_sequences}."
        )
    if not (early_stopping is True or early_stopping is False or early_stopping == "never"):
        raise InputError(
            f"early_stopping must be True, False or 'never', got {early_stopping!r}."
        )
    if on_tokens is not None and num_beams > 1:
        raise InputError(
            "Streaming tokens cannot be used with beam search. Note: set num_beams=1, or do "
            "not stream (transformers' streamers have the same limit)."
        )
