"""The text-classification task: labels with scores for texts and text pairs, as transformers'
TextClassificationPipeline gives them (legacy output nesting included)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Integral
from typing import Any

import numpy as np

from ..errors import EngineError, InputError, did_you_mean
from .base import Pipeline, default_labels, sigmoid, softmax
from .text import TOKENIZER_ARGUMENTS, check_batch_size, encode_texts, logits_of, tokenizer_options


class _NotGiven:
    """Default of ``top_k``: transformers tells "not given" (legacy output) from ``None`` (all
    labels)."""

    def __repr__(self) -> str:
        return "<not given>"


NOT_GIVEN = _NotGiven()

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
        self.labels = self.id2label or default_labels(self.config)  # transformers' names
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
