"""The text-classification task: labels with scores for texts and text pairs, as transformers'
TextClassificationPipeline gives them (legacy output nesting included)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Integral
from typing import Any

import numpy as np

from ..errors import EngineError, InputError, did_you_mean
from .base import Pipeline, sigmoid, softmax


class _NotGiven:
    """Default of ``top_k``: transformers tells "not given" (legacy output) from ``None`` (all
    labels)."""

    def __repr__(self) -> str:
        return "<not given>"


NOT_GIVEN = _NotGiven()

# The tokenizer keyword arguments the text pipelines pass through, as transformers does.
TOKENIZER_ARGUMENTS = {"truncation": None, "max_length": None, "padding": None,
                       "add_special_tokens": None}
_TRUNCATIONS = (True, False, "longest_first", "only_first", "only_second", "do_not_truncate")
_PADDINGS = (True, False, "longest", "max_length", "do_not_pad")


def tokenizer_options(given: Mapping[str, Any],
                      max_positions: int | None) -> tuple[dict[str, Any], int | None]:
    """Checked tokenizer arguments -> (keyword arguments of ``encode_batch``, ``pad_to``).

    ``given`` holds some of truncation, max_length, padding, add_special_tokens (None = not
    given). Padding only matters with "max_length": a batch is always padded to its longest
    row, and a lone text (batch_size=1, the default) needs none.

    >>> tokenizer_options({"truncation": True, "padding": "max_length"}, 512)
    ({'truncation': True, 'max_length': None, 'add_special_tokens': True}, 512)
    """
    unknown = set(given) - set(TOKENIZER_ARGUMENTS)
    if unknown:
        raise InputError(
            f"Unknown tokenizer arguments {sorted(unknown)}. Note: accepted are "
            f"{', '.join(TOKENIZER_ARGUMENTS)}."
        )
    truncation = given.get("truncation")
    if truncation is None or truncation == "do_not_truncate":
        truncation = False
    if not any(truncation is t or (isinstance(t, str) and truncation == t) for t in _TRUNCATIONS):
        raise InputError(
            f"Unknown truncation {truncation!r}. Note: use True, False, 'longest_first', "
            "'only_first', 'only_second' or 'do_not_truncate'."
        )
    max_length = given.get("max_length")
    if max_length is not None and (
        not isinstance(max_length, Integral) or isinstance(max_length, bool) or max_length < 1
    ):
        raise InputError(
            f"max_length must be a positive int, got {max_length!r}. Note: it counts tokens, "
            "special tokens included."
        )
    padding = given.get("padding")
    if padding is None:
        padding = False
    if not any(padding is p or (isinstance(p, str) and padding == p) for p in _PADDINGS):
        raise InputError(
            f"Unknown padding {padding!r}. Note: use True, False, 'longest', 'max_length' or "
            "'do_not_pad'."
        )
    pad_to = None
    if padding == "max_length":
        pad_to = max_length or max_positions
        if pad_to is None:
            raise InputError(
                "padding='max_length' needs a length: this model declares no maximum. Note: "
                "pass max_length as well."
            )
        if max_positions and pad_to > max_positions:
            raise InputError(
                f"padding='max_length' pads to {pad_to} tokens, but the model takes at most "
                f"{max_positions}. Note: pass a max_length of at most {max_positions}."
            )
    special = given.get("add_special_tokens")
    if special is None:
        special = True
    if not isinstance(special, bool):
        raise InputError(
            f"add_special_tokens must be True or False, got {special!r}. Note: it defaults to "
            "True."
        )
    encode = {"truncation": truncation, "max_length": None if max_length is None
              else int(max_length), "add_special_tokens": special}
    return encode, None if pad_to is None else int(pad_to)


def encode_texts(tokenizer, texts, pairs=None, **options):
    """``tokenizer.encode_batch`` with a clear error where the tokenizers library raises a bare
    Exception: truncation='only_second' on a too long text that has no pair."""
    try:
        return tokenizer.encode_batch(texts, pairs, **options)
    except Exception as exc:
        if "Second sequence not provided" not in str(exc):
            raise
        raise InputError(
            "truncation='only_second' cuts the second text of a pair, but a text to cut has no "
            "pair. Note: use truncation=True (or 'only_first') for single texts."
        ) from None


def check_batch_size(batch_size) -> int:
    if not isinstance(batch_size, Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(
            f"batch_size must be a positive int, got {batch_size!r}. Note: it is how many texts "
            "run at once (default 1, as in transformers)."
        )
    return int(batch_size)


def logits_of(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    if "logits" not in outputs:
        raise EngineError(
            f"The graph has no output named 'logits'; it gives {sorted(outputs)}. Note: export "
            "the checkpoint again with `edgeport export` for this task."
        )
    # float32 as transformers computes scores (the graph may run in float16).
    return np.asarray(outputs["logits"], dtype=np.float32)


_FUNCTIONS = {"softmax": softmax, "sigmoid": sigmoid, "none": lambda x: x}


class TextClassificationPipeline(Pipeline):
    """Labels of texts (or ``{"text": ..., "text_pair": ...}`` pairs) with their scores.

    Output shapes follow transformers exactly: a single string without ``top_k`` gives a list
    of one dict, ``top_k=None`` gives every label sorted by score, a pair gives a dict.

    >>> classify = pipeline("text-classification", model="bundle")        # doctest: +SKIP
    >>> classify("I love this!")                                            # doctest: +SKIP
    [{'label': 'positive', 'score': 0.98}]
    """

    task = "text-classification"
    parameters = {
        "top_k": NOT_GIVEN,
        "function_to_apply": None,
        "return_all_scores": None,
        "batch_size": 1,
        **TOKENIZER_ARGUMENTS,
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.labels = self.id2label or {
            # transformers' config gives these labels to a config.json without id2label.
            i: f"LABEL_{i}" for i in range(int(self.config.get("num_labels", 2)))
        }
        self._init_postprocess = self._postprocess_options(self.defaults)
        tokenizer_options(self._tokenizer_arguments(self.defaults), self.max_positions)
        check_batch_size(self.defaults["batch_size"])

    def __call__(self, inputs, **kwargs):
        args = self.arguments(kwargs)
        # As in transformers, call arguments override those of pipeline(...) one by one.
        post = {**self._init_postprocess, **self._postprocess_options(kwargs)}
        function = post.get("function_to_apply", "default")
        if function == "default":
            function = self._default_function()
        top_k, legacy = post.get("top_k", 1), post.get("legacy", True)

        items, single = self._items(inputs)
        options, pad_to = tokenizer_options(self._tokenizer_arguments(args), self.max_positions)
        batch_size = check_batch_size(args["batch_size"])
        results = []
        for start in range(0, len(items), batch_size):
            logits = self._logits(items[start:start + batch_size], options, pad_to)
            results += [self._format(_FUNCTIONS[function](row), top_k, legacy) for row in logits]
        if not single:
            return results
        # transformers wraps the result of a lone string (not of a pair) when the call has no
        # top_k: the legacy `[{"label": ..., "score": ...}]`.
        if isinstance(inputs, str) and "top_k" not in kwargs:
            return [results[0]]
        return results[0]

    # --- arguments --------------------------------------------------------------------------
    @staticmethod
    def _tokenizer_arguments(args: Mapping[str, Any]) -> dict:
        return {k: args[k] for k in TOKENIZER_ARGUMENTS if args.get(k) is not None}

    def _postprocess_options(self, given: Mapping[str, Any]) -> dict:
        """transformers' _sanitize_parameters on one set of arguments (pipeline(...)'s or a
        call's): top_k, "legacy" output, function_to_apply, when given."""
        options = {}
        top_k = given.get("top_k", NOT_GIVEN)
        return_all_scores = given.get("return_all_scores")
        if return_all_scores is None:
            return_all_scores = self.config.get("return_all_scores")
        if top_k is not NOT_GIVEN:
            if top_k is not None and (
                not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k < 0
            ):
                raise InputError(
                    f"top_k must be a non-negative int or None, got {top_k!r}. Note: top_k=None "
                    "gives the scores of every label."
                )
            options.update(top_k=None if top_k is None else int(top_k), legacy=False)
        elif return_all_scores is not None:
            # Deprecated in transformers; still honored: all labels, in label order.
            options["top_k"] = None if return_all_scores else 1
        function = given.get("function_to_apply")
        if function is not None:
            name = function.lower() if isinstance(function, str) else function
            if name not in (*_FUNCTIONS, "default"):
                raise InputError(
                    f"Unknown function_to_apply {function!r}. "
                    + did_you_mean(str(name), [*_FUNCTIONS, "default"])
                )
            options["function_to_apply"] = name
        return options

    def _default_function(self) -> str:
        """transformers' choice from the config: regression -> none, multi-label or a single
        label -> sigmoid, several labels -> softmax."""
        problem = self.config.get("problem_type")
        if problem == "regression":
            return "none"
        if problem == "multi_label_classification" or len(self.labels) == 1:
            return "sigmoid"
        if problem == "single_label_classification" or len(self.labels) > 1:
            return "softmax"
        return "none"

    # --- inputs -----------------------------------------------------------------------------
    @classmethod
    def _items(cls, inputs) -> tuple[list[tuple[str, str | None]], bool]:
        """[(text, text_pair or None)] and whether a single input was given."""
        if isinstance(inputs, (str, Mapping)):
            return [cls._item(inputs)], True
        if isinstance(inputs, Iterable) and not isinstance(inputs, bytes):
            return [cls._item(item) for item in inputs], False
        raise InputError(
            f"Expected a text, got {type(inputs).__name__}: {inputs!r:.80}. Note: pass a string, "
            'a {"text": ..., "text_pair": ...} dict, or a list of those.'
        )

    @staticmethod
    def _item(item) -> tuple[str, str | None]:
        if isinstance(item, str):
            return item, None
        if isinstance(item, Mapping):
            unknown = set(item) - {"text", "text_pair"}
            text, pair = item.get("text"), item.get("text_pair")
            if unknown or not isinstance(text, str) or not isinstance(pair, (str, type(None))):
                raise InputError(
                    f"A text pair must be a dict of strings with keys 'text' and 'text_pair', "
                    f"got {item!r:.120}. Note: pass "
                    '{"text": "My text", "text_pair": "My pair"}.'
                )
            return text, pair
        if isinstance(item, (list, tuple)):
            raise InputError(
                f"Got a list inside the list of inputs: {item!r:.80}. Note: to send text pairs, "
                'pass a dict {"text": "My text", "text_pair": "My pair"} (or a list of them).'
            )
        raise InputError(
            f"Expected a text, got {type(item).__name__}: {item!r:.80}. Note: pass a string, "
            'a {"text": ..., "text_pair": ...} dict, or a list of those.'
        )

    # --- model ------------------------------------------------------------------------------
    def _logits(self, items, options: dict, pad_to: int | None) -> np.ndarray:
        """[len(items), num_labels] logits; singles and pairs are encoded apart (the backend
        takes one kind per call) and run together."""
        encodings = [None] * len(items)
        for paired in (False, True):
            rows = [i for i, (_, pair) in enumerate(items) if (pair is not None) == paired]
            if rows:
                texts = [items[i][0] for i in rows]
                pairs = [items[i][1] for i in rows] if paired else None
                for i, encoding in zip(rows, encode_texts(self.tokenizer, texts, pairs,
                                                          **options)):
                    encodings[i] = encoding
        self.tokenizer.check_length(encodings, self.max_positions)
        logits = logits_of(self.run_text(encodings, pad_to=pad_to))
        missing = [i for i in range(logits.shape[-1]) if i not in self.labels]
        if missing:
            raise EngineError(
                f"The model gives {logits.shape[-1]} scores, but config.json has no label for "
                f"{missing}. Note: the bundle's id2label must name every class."
            )
        return logits

    def _format(self, scores: np.ndarray, top_k: int | None, legacy: bool):
        if top_k == 1 and legacy:
            best = int(scores.argmax())
            return {"label": self.labels[best], "score": scores[best].item()}
        results = [{"label": self.labels[i], "score": s.item()} for i, s in enumerate(scores)]
        if not legacy:
            results.sort(key=lambda r: r["score"], reverse=True)
            if top_k is not None:
                results = results[:top_k]
        return results
