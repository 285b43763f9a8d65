"""The question-answering task: extractive answers, as transformers' QuestionAnsweringPipeline.

The context is split into overlapping windows (``max_seq_len`` tokens, ``doc_stride`` tokens of
overlap) exactly as transformers' fast-tokenizer path does, every window is scored, and the best
spans over all windows are merged by answer text. Span selection reproduces transformers'
``select_starts_ends``/``decode_spans`` line for line, quirks included, so that answers, character
spans and scores agree with ``transformers.pipeline("question-answering")``.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import EngineError, InputError
from .base import Pipeline

# transformers' cap on the default window length, and its default overlap cap.
_DEFAULT_MAX_SEQ_LEN = 384
_DEFAULT_MAX_STRIDE = 128
# Windows of one length are run together; this bounds the memory of one engine run.
_MAX_BATCH = 32
_ACCEPTED = (
    "Note: pass question=... and context=... (strings, or a list of questions with one context "
    "or with a list of as many contexts), a dict {'question': ..., 'context': ...}, a list of "
    "such dicts, or two positional strings (question, context)."
)


class QuestionAnsweringPipeline(Pipeline):
    """Answers questions by extracting spans from a context.

    >>> qa = pipeline("question-answering", model="bundle/")           # doctest: +SKIP
    >>> qa(question="Where do I live?", context="I live in Berlin")     # doctest: +SKIP
    {'score': 0.9191, 'start': 10, 'end': 16, 'answer': 'Berlin'}

    One question gives a dict (or a list of dicts when ``top_k`` > 1 and several answers
    remain); several questions give a list of those. ``max_question_len`` is accepted for
    compatibility and, as in transformers with a fast tokenizer, has no effect.
    """

    task = "question-answering"
    parameters = {
        "top_k": 1,
        "doc_stride": None,
        "max_answer_len": 15,
        "max_seq_len": None,
        "max_question_len": 64,
        "handle_impossible_answer": False,
        "align_to_words": True,
    }

    def __call__(self, *args, **kwargs):
        question = kwargs.pop("question", None)
        context = kwargs.pop("context", None)
        options = self.arguments(kwargs)
        _check_options(options)
        examples, single = self._examples(args, question, context)
        if not examples:
            return []
        question_first, scored = self._score_windows(examples, options)
        results = [
            self._answer(context, windows, question_first, options)
            for (_, context), windows in zip(examples, scored)
        ]
        return results[0] if single else results

    # --- inputs -----------------------------------------------------------------------------
    @staticmethod
    def _examples(args, question, context) -> tuple[list[tuple[str, str]], bool]:
        """(question, context) pairs, and whether one result (not a list) is returned. Accepts
        what transformers' QuestionAnsweringArgumentHandler accepts."""
        if args and (question is not None or context is not None):
            raise InputError(
                "Got both positional inputs and question=/context= keyword arguments. "
                + _ACCEPTED
            )
        if args:
            if len(args) == 1:
                inputs = args[0]
            elif len(args) == 2 and all(isinstance(a, str) for a in args):
                inputs = [{"question": args[0], "context": args[1]}]
            else:
                inputs = list(args)
        elif question is not None and context is not None:
            inputs = _pairs_from_keywords(question, context)
        elif question is not None or context is not None:
            missing = "context" if context is None else "question"
            raise InputError(f"No {missing} was given. " + _ACCEPTED)
        else:
            raise InputError("No question and context were given. " + _ACCEPTED)

        if isinstance(inputs, Mapping):
            items, single = [inputs], True
        elif isinstance(inputs, types.GeneratorType):
            # transformers streams a generator's results; here they come back as one list.
            items, single = list(inputs), False
        elif isinstance(inputs, Iterable) and not isinstance(inputs, (str, bytes)):
            items = list(inputs)
            single = len(items) == 1
        else:
            raise InputError(
                f"Expected a dict with 'question' and 'context', got "
                f"{type(inputs).__name__}: {inputs!r:.80}. " + _ACCEPTED
            )
        return [_example(item) for item in items], single

    # --- windows and model ------------------------------------------------------------------
    def _score_windows(self, examples, options):
        """Whether the question comes first, and for each example its windows as
        [(encoding, start logits, end logits), ...]."""
        tok = self.tokenizer
        max_seq_len = options["max_seq_len"]
        if max_seq_len is None:
            max_seq_len = min(tok.model_max_length or _DEFAULT_MAX_SEQ_LEN, _DEFAULT_MAX_SEQ_LEN)
        doc_stride = options["doc_stride"]
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, _DEFAULT_MAX_STRIDE)
        # transformers puts the question first unless the tokenizer pads on the left.
        question_first = tok.padding_side == "right"
        firsts = [q if question_first else c for q, c in examples]
        seconds = [c if question_first else q for q, c in examples]
        self._check_windows(firsts, seconds, question_first, max_seq_len, doc_stride)

        encodings = tok.encode_batch(
            firsts, seconds, truncation="only_second" if question_first else "only_first",
            max_length=max_seq_len, stride=doc_stride,
        )
        windows = [[enc, *enc.overflowing] for enc in encodings]
        flat = [w for example_windows in windows for w in example_windows]
        longest = max(len(w.ids) for w in flat)
        if self.max_positions and longest > self.max_positions:
            raise InputError(
                f"max_seq_len={max_seq_len} makes windows of {longest} tokens, but the model "
                f"takes at most {self.max_positions}. Note: use max_seq_len <= "
                f"{self.max_positions}."
            )
        starts, ends = self._logits(flat)
        scored, position = [], 0
        for example_windows in windows:
            n = len(example_windows)
            scored.append(list(zip(example_windows, starts[position:position + n],
                                   ends[position:position + n])))
            position += n
        return question_first, scored

    def _check_windows(self, firsts, seconds, question_first, max_seq_len, doc_stride):
        """The errors transformers and tokenizers raise (one of them a Rust panic that is no
        Exception), as InputErrors that say which setting to change."""
        # tokenizers' own limit, checked even when no window is needed.
        specials = self.tokenizer.backend.num_special_tokens_to_add(False)
        if doc_stride > max_seq_len - specials:
            raise InputError(
                f"doc_stride={doc_stride} is too large for max_seq_len={max_seq_len}. "
                f"Note: doc_stride can be at most max_seq_len minus {specials} special tokens "
                f"({max_seq_len - specials}), and must be smaller than the context tokens a "
                f"window holds; by default it is min(max_seq_len // 2, {_DEFAULT_MAX_STRIDE})."
            )
        context_index = 1 if question_first else 0
        for full in self.tokenizer.encode_batch(firsts, seconds):
            if len(full.ids) <= max_seq_len:
                continue  # no windows needed
            context_len = sum(1 for s in full.sequence_ids if s == context_index)
            room = max_seq_len - (len(full.ids) - context_len)
            if room <= 0:
                raise InputError(
                    f"The question and special tokens take {len(full.ids) - context_len} "
                    f"tokens, which leaves no room for the context in max_seq_len="
                    f"{max_seq_len}. Note: shorten the question or raise max_seq_len."
                )
            if doc_stride >= room:
                raise InputError(
                    f"doc_stride={doc_stride} must be smaller than the {room} context tokens "
                    f"each window holds (max_seq_len={max_seq_len} minus the question and "
                    f"special tokens). Note: use doc_stride < {room}, or a larger max_seq_len."
                )

    def _logits(self, windows) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Start and end logits of every window, each of shape (1, window length).

        transformers runs one window at a time without padding; windows of equal length are
        batched here, which gives the same inputs and so the same logits."""
        starts: list = [None] * len(windows)
        ends: list = [None] * len(windows)
        by_length: dict[int, list[int]] = {}
        for i, w in enumerate(windows):
            by_length.setdefault(len(w.ids), []).append(i)
        for indices in by_length.values():
            for lo in range(0, len(indices), _MAX_BATCH):
                chunk = indices[lo:lo + _MAX_BATCH]
                out = self.run_text([windows[i] for i in chunk])
                if "start_logits" not in out or "end_logits" not in out:
                    raise EngineError(
                        f"The graph has no start_logits/end_logits outputs (it has "
                        f"{sorted(out)}). Note: export the checkpoint for the "
                        "question-answering task."
                    )
                # transformers computes in float32 (it upcasts bfloat16 the same way).
                start = np.asarray(out["start_logits"], dtype=np.float32)
                end = np.asarray(out["end_logits"], dtype=np.float32)
                for row, i in enumerate(chunk):
                    starts[i] = start[row:row + 1]
                    ends[i] = end[row:row + 1]
        return starts, ends

    # --- answers ----------------------------------------------------------------------------
    def _answer(self, context, scored, question_first, options):
        """transformers' postprocess for one example: spans of every window, merged by text."""
        top_k = options["top_k"]
        align_to_words = options["align_to_words"]
        handle_impossible = options["handle_impossible_answer"]
        # Some candidates are dropped when aligned to words, so transformers asks for more.
        pre_topk = top_k * 2 + 10 if align_to_words else top_k
        cls_id = self.tokenizer.special_token_ids.get("cls_token")
        pad_id = self.tokenizer.pad_token_id
        context_index = 1 if question_first else 0
        min_null_score = 1000000.0
        answers: list[dict[str, Any]] = []
        for enc, start, end in scored:
            ids = np.asarray(enc.ids)
            # 1 where a token cannot be in the answer. With the context first, transformers
            # masks nothing here (only padding, through the attention mask).
            if question_first:
                p_mask = np.array([[s != 1 for s in enc.sequence_ids]])
            else:
                p_mask = np.zeros((1, len(ids)), dtype=np.int64)
            if cls_id is not None:
                p_mask[0, ids == cls_id] = 0  # some models answer "impossible" on CLS
            attention = np.asarray(enc.attention_mask, dtype=np.int64)[None]
            starts, ends, scores, min_null_score = _select_starts_ends(
                start, end, p_mask, attention, min_null_score, pre_topk, handle_impossible,
                options["max_answer_len"],
            )
            # transformers shifts by the pad tokens of the (unpadded) left-padded input.
            offset = int((ids == pad_id).sum()) if self.tokenizer.padding_side == "left" else 0
            for s, e, score in zip(starts, ends, scores):
                first, last = _char_span(enc, int(s) - offset, int(e) - offset, context_index,
                                         align_to_words)
                text = context[first:last]
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same is not None:
                    same["score"] += score.item()
                else:
                    answers.append(
                        {"score": score.item(), "start": first, "end": last, "answer": text}
                    )
        if handle_impossible:
            answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers


def _pairs_from_keywords(question, context) -> list[dict]:
    if isinstance(question, list) and isinstance(context, str):
        return [{"question": q, "context": context} for q in question]
    if isinstance(question, list) and isinstance(context, list):
        if len(question) != len(context):
            raise InputError(
                f"Got {len(question)} questions and {len(context)} contexts. Note: give one "
                "context per question, or a single context (a string) for all of them."
            )
        return [{"question": q, "context": c} for q, c in zip(question, context)]
    if isinstance(question, str) and isinstance(context, str):
        return [{"question": question, "context": context}]
    raise InputError(
        f"Cannot pair question of type {type(question).__name__} with context of type "
        f"{type(context).__name__}. " + _ACCEPTED
    )


def _example(item) -> tuple[str, str]:
    if not isinstance(item, Mapping):
        raise InputError(
            f"Each input must be a dict with 'question' and 'context', got "
            f"{type(item).__name__}: {item!r:.80}. " + _ACCEPTED
        )
    extra = sorted(set(item) - {"question", "context"}, key=str)
    if extra:
        raise InputError(
            f"Unexpected key(s) {extra} in an input dict. Note: a dict holds exactly "
            "'question' and 'context'."
        )
    for key in ("question", "context"):
        if key not in item:
            raise InputError(
                f"An input dict has no {key!r}. Note: give a dict with keys 'question' and "
                "'context'."
            )
        value = item[key]
        if not isinstance(value, str):
            raise InputError(
                f"The {key} must be a string, got {type(value).__name__}: {value!r:.80}. "
                + _ACCEPTED
            )
        if not value:
            raise InputError(f"The {key} is empty. Note: give a non-empty {key} string.")
    return item["question"], item["context"]


def _check_options(options: Mapping[str, Any]) -> None:
    def integer(name, minimum, optional=False):
        value = options[name]
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise InputError(
                f"{name} must be an integer >= {minimum}, got {value!r}. Note: "
                + ("leave it unset for the default, or " if optional else "")
                + f"pass an int of at least {minimum}."
            )

    integer("top_k", 1)
    integer("max_answer_len", 1)
    integer("doc_stride", 0, optional=True)
    integer("max_seq_len", 1, optional=True)
    integer("max_question_len", 1)
    for name in ("handle_impossible_answer", "align_to_words"):
        if not isinstance(options[name], (bool, np.bool_)):
            raise InputError(
                f"{name} must be True or False, got {options[name]!r}. Note: pass a bool."
            )


def _select_starts_ends(start, end, p_mask, attention_mask, min_null_score, top_k,
                        handle_impossible_answer, max_answer_len):
    """transformers' ``select_starts_ends``: probabilities over the allowed tokens, the null
    score, then the best spans."""
    undesired_tokens = np.abs(np.array(p_mask) - 1) & attention_mask
    undesired_tokens_mask = undesired_tokens == 0.0
    # Tokens that cannot be in the answer must not take part in the softmax.
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0  # CLS is never a span
    starts, ends, scores = _decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def _decode_spans(start, end, topk, max_answer_len, undesired_tokens):
    """transformers' ``decode_spans``, kept as it is so that ties and the candidates it lets
    through come out the same (its ``nonzero()`` of a 2-D mask also admits index 0)."""
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    # Spans that end before they start or are longer than max_answer_len score 0.
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    allowed = undesired_tokens.nonzero()
    desired_spans = np.isin(starts, allowed) & np.isin(ends, allowed)
    starts = starts[desired_spans]
    ends = ends[desired_spans]
    scores = candidates[0, starts, ends]
    return starts, ends, scores


def _char_span(enc, s: int, e: int, sequence_index: int, align_to_words: bool) -> tuple[int, int]:
    """Character span of tokens s..e in the context: whole words when align_to_words, else the
    tokens' own offsets (also where a token has no word, such as a special token)."""
    # A negative index (left-padding shift) reaches offsets from the end, as in transformers.
    if align_to_words and s >= 0 and e >= 0:
        start_word = enc.token_to_word(s)
        end_word = enc.token_to_word(e)
        if start_word is not None and end_word is not None:
            first = enc.word_to_chars(start_word, sequence_index=sequence_index)
            last = enc.word_to_chars(end_word, sequence_index=sequence_index)
            if first is not None and last is not None:
                return first[0], last[1]
    return enc.offsets[s][0], enc.offsets[e][1]
