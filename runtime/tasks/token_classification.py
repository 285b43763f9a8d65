"""The token-classification task ("ner"): a label for every token, or entities grouped from them.

Reproduces transformers' TokenClassificationPipeline (4.57): the same tokenization, truncation
and stride windows, subword detection, the five aggregation strategies and the same result dicts.
"""

from __future__ import annotations

import operator
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np

from ..errors import EngineError, InputError, did_you_mean
from .base import Pipeline, softmax
from .text import check_batch_size

STRATEGIES = ("none", "simple", "first", "average", "max")
_UPPER_STRATEGIES = tuple(strategy.upper() for strategy in STRATEGIES)
# Strategies that make the tokens of one word agree on a label before grouping.
_WORD_STRATEGIES = ("first", "average", "max")
# At most this many tokens go to the engine in one run, so that a long text cut into many
# windows does not need the activations of all of them in memory at once.
_TOKENS_PER_RUN = 8192

# Arguments transformers takes that the runtime refuses, each with what to do instead.
_REFUSED = {
    "grouped_entities": "it is deprecated in transformers (removed in v5). Note: use "
                        "aggregation_strategy='simple' instead.",
    "ignore_subwords": "it is deprecated in transformers (removed in v5). Note: use "
                       "aggregation_strategy='first', 'average' or 'max' instead.",
    "offset_mapping": "it stands in for the offsets that slow tokenizers lack, and the runtime's "
                      "tokenizer always has offsets. Note: drop the argument; start and end "
                      "already index into the input text.",
}


class TokenClassificationPipeline(Pipeline):
    """Labels the tokens of texts; with an ``aggregation_strategy`` groups them into entities.

    Arguments, to ``pipeline(...)`` or to each call: ``aggregation_strategy`` ("none",
    "simple", "first", "average" or "max"), ``ignore_labels`` (default ``["O"]``), ``stride``
    (tokens shared by consecutive windows of a text longer than the model; needs an aggregation
    strategy), ``is_split_into_words`` and ``delimiter`` (inputs are lists of words),
    ``batch_size`` (windows per engine run; by default as many as fit in 8192 tokens).

    >>> ner = pipeline("token-classification", model="bundle",
    ...                aggregation_strategy="simple")                     # doctest: +SKIP
    >>> ner("My name is Sarah and I live in London")                     # doctest: +SKIP
    [{'entity_group': 'PER', 'score': 0.998, 'word': 'sarah', 'start': 11, 'end': 16},
     {'entity_group': 'LOC', 'score': 0.999, 'word': 'london', 'start': 31, 'end': 37}]
    """

    task = "token-classification"
    parameters = {
        "aggregation_strategy": "none",
        "ignore_labels": ("O",),
        "stride": None,
        "is_split_into_words": False,
        "delimiter": " ",
        "batch_size": None,
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._settings(self.defaults)  # a bad pipeline(...) argument fails here, not at a call

    def arguments(self, given: Mapping, base: Mapping | None = None) -> dict:
        for name, why in _REFUSED.items():
            if name in given:
                raise InputError(f"The {self.task} pipeline does not take {name!r}: {why}")
        # transformers reads None as "not given", so the pipeline's own default stays in force.
        return super().arguments({k: v for k, v in given.items() if v is not None}, base)

    def __call__(self, inputs, **kwargs):
        """Entities of one text (a list of dicts) or of a list of texts (a list of such lists).
        With ``is_split_into_words=True`` the result is always a list of lists, as in
        transformers, even for a single list of words."""
        strategy, ignore, stride, split, delimiter, batch_size = self._settings(
            self.arguments(kwargs))
        if split:
            word_lists = self._word_lists(inputs)
            sentences = [delimiter.join(words) for words in word_lists]
            spans = [_word_spans(words, delimiter) for words in word_lists]
            single = False
        else:
            word_lists = None
            sentences, single = self.texts(
                inputs, note="Note: pass a string or a list of strings; for a text already "
                "split into words pass its list of words with is_split_into_words=True.")
            spans = [None] * len(sentences)
        if not sentences:
            raise InputError(
                "At least one input is required, got an empty list. Note: pass a string or a "
                "non-empty list of strings."
            )
        windows = self._windows(word_lists if split else sentences, stride, split)
        logits = self._logits([window for text_windows in windows for window in text_windows],
                              batch_size)
        results, first = [], 0
        for sentence, text_windows, word_spans in zip(sentences, windows, spans):
            last = first + len(text_windows)
            results.append(self._entities(sentence, text_windows, logits[first:last],
                                          word_spans, strategy, ignore))
            first = last
        return results[0] if single else results

    # --- arguments and inputs ---------------------------------------------------------------
    def _settings(self, args: Mapping) -> tuple[str, tuple, int | None, bool, str, int | None]:
        """The checked (strategy, ignore_labels, stride, is_split_into_words, delimiter,
        batch_size)."""
        strategy = args["aggregation_strategy"]
        # transformers looks the name up upper-cased, so "SIMPLE" and its enum members work.
        if not isinstance(strategy, str) or strategy.upper() not in _UPPER_STRATEGIES:
            raise InputError(
                f"Unknown aggregation_strategy {strategy!r}. " + did_you_mean(strategy, STRATEGIES)
            )
        strategy = STRATEGIES[_UPPER_STRATEGIES.index(strategy.upper())]

        ignore = args["ignore_labels"]
        # A bare string would be tested by substring ("PER" in "I-PER"), so it is refused.
        if not isinstance(ignore, (str, bytes, Mapping)) and isinstance(ignore, Iterable):
            ignore = tuple(ignore)
        if not isinstance(ignore, tuple) or not all(isinstance(label, str) for label in ignore):
            raise InputError(
                f"ignore_labels must be a list of label names, got {ignore!r:.80}. "
                "Note: pass e.g. ignore_labels=['O'], or ignore_labels=[] to keep every label."
            )

        split = args["is_split_into_words"]
        if not isinstance(split, (bool, np.bool_)):
            raise InputError(
                f"is_split_into_words must be True or False, got {split!r:.80}. Note: pass True "
                "when each input is a list of words."
            )
        delimiter = args["delimiter"]
        if not isinstance(delimiter, str):
            raise InputError(
                f"delimiter must be a string, got {delimiter!r:.80}. Note: it joins the words "
                "of an is_split_into_words input back into a text; the default is ' '."
            )
        batch_size = args["batch_size"]
        if batch_size is not None:  # None: as many windows per run as fit in _TOKENS_PER_RUN
            batch_size = check_batch_size(batch_size)
        return (strategy, ignore, self._check_stride(args["stride"], strategy), bool(split),
                delimiter, batch_size)

    def _check_stride(self, stride, strategy: str) -> int | None:
        if stride is None:
            return None
        try:
            if isinstance(stride, (bool, np.bool_)):
                raise TypeError
            stride = operator.index(stride)
        except TypeError:
            raise InputError(
                f"stride must be a whole number of tokens, got {stride!r:.80}. Note: pass e.g. "
                "stride=128, or leave it out to cut long texts at the model's length."
            ) from None
        if stride < 0:
            raise InputError(f"stride must not be negative, got {stride}. Note: pass 0 or more.")
        if strategy == "none":
            # transformers documents this too; it raises only when both come in the same call.
            raise InputError(
                f"stride={stride} needs an aggregation strategy: the entities of overlapping "
                "windows are merged by where they are in the text. Note: pass "
                "aggregation_strategy='simple', 'first', 'average' or 'max' along with stride."
            )
        max_length = self.tokenizer.model_max_length
        if max_length:
            # Special tokens take room in every window; the tokenizer panics if the stride
            # leaves no room for new tokens.
            room = max_length - len(self.tokenizer.encode_batch([""])[0].ids)
            if stride >= room:
                raise InputError(
                    f"stride={stride} is too large: a window holds {room} text tokens "
                    f"(model_max_length {max_length} less {max_length - room} special tokens), "
                    f"and consecutive windows share `stride` of them. Note: pass a stride "
                    f"below {room}."
                )
        return stride

    @staticmethod
    def _word_lists(inputs) -> list[list[str]]:
        """is_split_into_words inputs: one list of words, or a list of such lists."""
        if isinstance(inputs, (list, tuple)):
            if inputs and all(isinstance(word, str) for word in inputs):
                return [list(inputs)]
            if all(isinstance(words, (list, tuple))
                   and all(isinstance(word, str) for word in words) for words in inputs):
                return [list(words) for words in inputs]
        raise InputError(
            f"With is_split_into_words=True, expected a list of words or a list of lists of "
            f"words, got {type(inputs).__name__}: {inputs!r:.80}. Note: pass e.g. "
            "['My', 'name', 'is', 'Sarah'], or pass plain strings without is_split_into_words."
        )

    # --- tokens and logits ------------------------------------------------------------------
    def _windows(self, texts, stride: int | None, split: bool) -> list[list]:
        """The encodings the model sees for each text: one, cut at the model's length as
        transformers cuts it, or with a stride every overlapping window of the whole text."""
        max_length = self.tokenizer.model_max_length
        encodings = self.tokenizer.encode_batch(
            texts, truncation=bool(max_length), stride=stride or 0, is_split_into_words=split
        )
        longest = max((len(encoding.ids) for encoding in encodings), default=0)
        if not max_length and self.max_positions and longest > self.max_positions:
            # transformers cuts nothing then, and the model fails deep inside on a long text.
            raise InputError(
                f"The input is {longest} tokens long, but the model takes at most "
                f"{self.max_positions}, and the tokenizer has no model_max_length to cut it at. "
                "Note: shorten the text, or set model_max_length in the bundle's "
                "tokenizer_config.json so that long texts are cut (or read whole with stride)."
            )
        if stride is None:
            return [[encoding] for encoding in encodings]
        return [[encoding, *encoding.overflowing] for encoding in encodings]

    def _logits(self, windows, batch_size: int | None) -> list[np.ndarray | None]:
        """(tokens, labels) logits of every window (None for a window of no tokens). Only
        windows of one length share a run: unpadded, each row gives what transformers' one-row
        runs give."""
        logits: list[np.ndarray | None] = [None] * len(windows)
        by_length = defaultdict(list)
        for i, window in enumerate(windows):
            by_length[len(window.ids)].append(i)
        for length, members in by_length.items():
            if length == 0:  # a tokenizer without special tokens, on an empty text
                continue
            rows = batch_size or max(1, _TOKENS_PER_RUN // length)
            for first in range(0, len(members), rows):
                part = members[first:first + rows]
                batch = self._output_logits(self.run_text([windows[i] for i in part]),
                                            (len(part), length))
                for row, i in enumerate(part):
                    logits[i] = batch[row]
        return logits

    def _output_logits(self, outputs: Mapping[str, np.ndarray], shape) -> np.ndarray:
        if "logits" not in outputs:
            raise EngineError(
                f"The engine gave no 'logits' output, only {sorted(outputs)}. Note: a "
                "token-classification graph outputs 'logits' (batch, sequence, labels); export "
                "the checkpoint with --task token-classification."
            )
        logits = np.asarray(outputs["logits"])
        if logits.ndim != 3 or logits.shape[:2] != tuple(shape):
            raise EngineError(
                f"The engine's logits have shape {logits.shape}, expected {tuple(shape)} + "
                "(labels,). Note: the graph is not a token-classification head."
            )
        # transformers upcasts half-precision logits before its softmax.
        return logits.astype(np.float32) if logits.dtype.itemsize < 4 else logits

    def _label(self, index) -> str:
        index = int(index)
        if not self.id2label:  # transformers' names for labels a config leaves unnamed
            return f"LABEL_{index}"
        if index not in self.id2label:
            raise EngineError(
                f"The model predicts label {index}, but its config's id2label names only "
                f"{sorted(self.id2label)}. Note: the bundle's config does not match its graph; "
                "export the checkpoint again."
            )
        return self.id2label[index]

    # --- postprocessing (transformers' gather_pre_entities, aggregate, group_entities) -------
    def _entities(self, sentence: str, windows, logits, word_spans, strategy: str,
                  ignore: tuple) -> list[dict]:
        entities = []
        for window, window_logits in zip(windows, logits):
            if window_logits is None:  # no tokens, so nothing ran and nothing is labeled
                continue
            scores = softmax(window_logits, axis=-1)
            pre_entities = self._pre_entities(sentence, window, scores, word_spans, strategy)
            for entity in self._aggregate(pre_entities, strategy):
                if entity.get("entity_group", entity.get("entity")) not in ignore:
                    entities.append(entity)
        if len(windows) > 1:
            entities = _resolve_overlaps(entities)
        return entities

    def _pre_entities(self, sentence: str, window, scores: np.ndarray, word_spans,
                      strategy: str) -> list[dict]:
        """One dict per non-special token: its token, scores, offsets, and whether it
        continues the word before it."""
        # Each attribute of an Encoding builds a new list, so read each once.
        ids, offsets, word_ids = window.ids, window.offsets, window.word_ids
        special = window.special_tokens_mask
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        unk_id = self.tokenizer.special_token_ids["unk_token"]
        # A tokenizer that marks word continuations ("##") tells subwords apart exactly; for
        # others transformers guesses from the characters around the token.
        word_aware = bool(getattr(self.tokenizer.backend.model, "continuing_subword_prefix",
                                  None))
        pre_entities = []
        for idx, token_id in enumerate(ids):
            if special[idx]:
                continue
            word = tokens[idx]
            start, end = offsets[idx]
            if word_spans is not None and word_ids[idx] is not None:
                # Offsets of pre-split words count from the word; make them count from the text.
                start += word_spans[word_ids[idx]]
                end += word_spans[word_ids[idx]]
            word_ref = sentence[start:end]
            if word_aware:
                is_subword = len(word) != len(word_ref)
            else:
                is_subword = start > 0 and " " not in sentence[start - 1:start + 1]
            if token_id == unk_id:
                word = word_ref
                is_subword = False
            pre_entities.append({"word": word, "scores": scores[idx], "start": start,
                                 "end": end, "index": idx, "is_subword": is_subword})
        if pre_entities and not word_aware and strategy in _WORD_STRATEGIES:
            warnings.warn("Tokenizer does not support real words, using fallback heuristic",
                          UserWarning, stacklevel=4)
        return pre_entities

    def _aggregate(self, pre_entities: list[dict], strategy: str) -> list[dict]:
        if strategy == "none":
            entities = []
            for pre in pre_entities:
                best = pre["scores"].argmax()
                entities.append({"entity": self._label(best), "score": float(pre["scores"][best]),
                                 "index": pre["index"], "word": pre["word"],
                                 "start": pre["start"], "end": pre["end"]})
            return entities
        if strategy == "simple":
            entities = []
            for pre in pre_entities:
                best = pre["scores"].argmax()
                entities.append({"entity": self._label(best), "score": pre["scores"][best],
                                 "word": pre["word"], "start": pre["start"], "end": pre["end"]})
        else:
            entities = self._aggregate_words(pre_entities, strategy)
        return self._group_entities(entities)

    def _aggregate_words(self, pre_entities: list[dict], strategy: str) -> list[dict]:
        """One entity per word, its tokens forced to agree on one label."""
        words, group = [], []
        for pre in pre_entities:
            if group and not pre["is_subword"]:
                words.append(self._aggregate_word(group, strategy))
                group = []
            group.append(pre)
        if group:
            words.append(self._aggregate_word(group, strategy))
        return words

    def _aggregate_word(self, group: list[dict], strategy: str) -> dict:
        if strategy == "first":
            scores = group[0]["scores"]
        elif strategy == "max":
            scores = max(group, key=lambda pre: pre["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([pre["scores"] for pre in group]), axis=0)
        best = scores.argmax()
        return {"entity": self._label(best), "score": scores[best],
                "word": self._tokens_to_string([pre["word"] for pre in group]),
                "start": group[0]["start"], "end": group[-1]["end"]}

    def _group_entities(self, entities: list[dict]) -> list[dict]:
        """Adjacent entities of one tag become one group; a B- tag always starts a new one."""
        groups, current = [], []
        for entity in entities:
            if current:
                bi, tag = _bi_tag(entity["entity"])
                _, last_tag = _bi_tag(current[-1]["entity"])
                if tag != last_tag or bi == "B":
                    groups.append(self._group(current))
                    current = []
            current.append(entity)
        if current:
            groups.append(self._group(current))
        return groups

    def _group(self, entities: list[dict]) -> dict:
        return {
            "entity_group": entities[0]["entity"].split("-", 1)[-1],
            "score": float(np.mean(np.nanmean([entity["score"] for entity in entities]))),
            "word": self._tokens_to_string([entity["word"] for entity in entities]),
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }

    def _tokens_to_string(self, tokens: list[str]) -> str:
        # transformers' convert_tokens_to_string: the tokenizer's decoder, without the cleanup
        # that decode() adds.
        decoder = self.tokenizer.backend.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)


def _word_spans(words: list[str], delimiter: str) -> list[int]:
    """Where each word starts in ``delimiter.join(words)``."""
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + len(delimiter)
    return starts


def _bi_tag(label: str) -> tuple[str, str]:
    """("B" or "I", tag) of a label; a label without a B-/I- prefix continues like I-."""
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


def _resolve_overlaps(entities: list[dict]) -> list[dict]:
    """Of entities found in overlapping windows, keep the longest of those that overlap (the
    better scored of equally long ones), as transformers' aggregate_overlapping_entities."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda entity: entity["start"])
    kept, previous = [], entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length = entity["end"] - entity["start"]
            previous_length = previous["end"] - previous["start"]
            if length > previous_length or (length == previous_length
                                             and entity["score"] > previous["score"]):
                previous = entity
        else:
            kept.append(previous)
            previous = entity
    kept.append(previous)
    return kept
