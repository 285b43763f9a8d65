"""The fill-mask task: the likeliest tokens for each mask token of a text, as transformers'
FillMaskPipeline gives them."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from numbers import Integral

import numpy as np

from ..errors import InputError, TaskError
from .base import Pipeline, softmax
from .text import check_batch_size, encode_texts, logits_of, tokenizer_options

_DEFAULT_TOP_K = 5


class FillMaskPipeline(Pipeline):
    """Predictions for the mask tokens of texts: score, token id, token string and the text
    with the token filled in. A text with several masks gives one list per mask.

    >>> fill = pipeline("fill-mask", model="bundle")                        # doctest: +SKIP
    >>> fill("Paris is the [MASK] of France.", top_k=1)                    # doctest: +SKIP
    [{'score': 0.95, 'token': 3007, 'token_str': 'capital',
      'sequence': 'paris is the capital of france.'}]
    """

    task = "fill-mask"
    # None means "not given": a call's None keeps what pipeline(...) set, as in transformers.
    parameters = {"top_k": None, "targets": None, "tokenizer_kwargs": None, "batch_size": None}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.tokenizer.mask_token_id is None:
            raise TaskError(
                "This bundle's tokenizer defines no mask token. Note: fill-mask needs a model "
                "trained with masked language modeling and its tokenizer's mask_token."
            )
        self._check_top_k(self.defaults["top_k"])
        self._default_targets = self._target_ids(self.defaults["targets"])
        self._tokenizer_options(self.defaults["tokenizer_kwargs"])
        check_batch_size(self.defaults["batch_size"] or 1)

    def __call__(self, inputs, **kwargs):
        self.arguments(kwargs)  # rejects unknown names
        given = {k: v for k, v in kwargs.items() if v is not None}
        args = {**self.defaults, **given}
        top_k = self._check_top_k(args["top_k"])
        target_ids = (self._target_ids(given["targets"]) if "targets" in given
                      else self._default_targets)
        options, pad_to = self._tokenizer_options(args["tokenizer_kwargs"])
        batch_size = check_batch_size(args["batch_size"] or 1)

        texts, single = self.texts(inputs)
        encodings = encode_texts(self.tokenizer, texts, **options)
        for text, encoding in zip(texts, encodings):
            if self.tokenizer.mask_token_id not in encoding.ids:
                cut = " (truncation may have cut it off)" if options["truncation"] else ""
                mask = self.tokenizer.mask_token
                raise InputError(
                    f"No mask token ({mask}) found in the input{cut}: {text!r:.80}. Note: write "
                    f"{mask} where the token to predict goes, e.g. 'Paris is the {mask} of "
                    "France.'"
                )
        self.tokenizer.check_length(
            encodings, self.max_positions,
            fix="pass tokenizer_kwargs={'truncation': True} to cut it to the model's length "
                "(keep the mask token near the start)")

        results = []
        for start in range(0, len(encodings), batch_size):
            batch = encodings[start:start + batch_size]
            logits = logits_of(self.run_text(batch, pad_to=pad_to))
            for encoding, row in zip(batch, logits):
                results.append(self._predictions(encoding, row, top_k, target_ids))
        # transformers unwraps a one-text list too.
        return results[0] if single or len(results) == 1 else results

    # --- arguments --------------------------------------------------------------------------
    @staticmethod
    def _check_top_k(top_k) -> int:
        if top_k is None:
            return _DEFAULT_TOP_K
        if not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k < 0:
            raise InputError(
                f"top_k must be a non-negative int, got {top_k!r}. Note: it is how many tokens "
                f"to propose per mask (default {_DEFAULT_TOP_K})."
            )
        return int(top_k)

    def _tokenizer_options(self, tokenizer_kwargs):
        if tokenizer_kwargs is None:
            tokenizer_kwargs = {}
        if not isinstance(tokenizer_kwargs, Mapping):
            raise InputError(
                f"tokenizer_kwargs must be a dict, got {type(tokenizer_kwargs).__name__}. "
                "Note: pass e.g. tokenizer_kwargs={'truncation': True}."
            )
        return tokenizer_options(
            {k: v for k, v in tokenizer_kwargs.items() if v is not None}, self.max_positions
        )

    def _target_ids(self, targets) -> np.ndarray | None:
        """Vocabulary ids of the targets. As in transformers, a target that is not a vocabulary
        token stands for the first token it tokenizes to (with a warning)."""
        if targets is None:
            return None
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise InputError(
                f"targets must be a string or a list of strings, got {targets!r:.80}. Note: "
                "pass tokens of the vocabulary, e.g. targets=['paris', 'london']."
            )
        ids = []
        for target in targets:
            id_ = self.tokenizer.token_to_id(target)
            if id_ is None:
                tokens = self.tokenizer.encode_batch(
                    [target], add_special_tokens=False, truncation=True, max_length=1
                )[0].ids
                if not tokens:
                    warnings.warn(
                        f"The target {target!r} is not in the vocabulary and tokenizes to "
                        "nothing; it is ignored.", UserWarning, stacklevel=3,
                    )
                    continue
                id_ = tokens[0]
                warnings.warn(
                    f"The target {target!r} is not in the vocabulary; it is replaced with its "
                    f"first token {self.tokenizer.convert_ids_to_tokens([id_])[0]!r}.",
                    UserWarning, stacklevel=3,
                )
            ids.append(id_)
        # transformers' order (that of a set), which decides between equal scores.
        ids = list(set(ids))
        if not ids:
            raise InputError(
                f"No usable target in {targets!r:.80}. Note: give at least one target that is "
                "a token of the vocabulary or tokenizes to one."
            )
        return np.array(ids, dtype=np.int64)

    # --- model ------------------------------------------------------------------------------
    def _predictions(self, encoding, logits: np.ndarray, top_k: int, target_ids):
        """transformers' postprocess for one text; ``logits`` is [padded length, vocab]."""
        ids = np.asarray(encoding.ids, dtype=np.int64)
        if self.tokenizer.padding_side == "left":
            logits = logits[logits.shape[0] - len(ids):]
        masked = np.flatnonzero(ids == self.tokenizer.mask_token_id)
        probs = softmax(logits[masked])
        if target_ids is not None:
            probs = probs[:, target_ids]
            top_k = min(top_k, len(target_ids))
        elif top_k > probs.shape[-1]:
            raise InputError(
                f"top_k={top_k} is more than the {probs.shape[-1]} tokens of the vocabulary. "
                f"Note: use top_k <= {probs.shape[-1]}."
            )
        order = np.argsort(-probs, axis=-1, kind="stable")[:, :top_k]
        single_mask = len(masked) == 1
        pad_id = self.tokenizer.pad_token_id
        result = []
        for i, position in enumerate(masked):
            row = []
            for index in order[i]:
                token = int(target_ids[index]) if target_ids is not None else int(index)
                tokens = ids.copy()
                tokens[position] = token
                if pad_id is not None:
                    tokens = tokens[tokens != pad_id]
                # As transformers: special tokens are dropped for one mask; with several they
                # stay, else the other masks would vanish from the sequence.
                sequence = self.tokenizer.decode(tokens, skip_special_tokens=single_mask)
                row.append({"score": probs[i, index].item(), "token": token,
                            "token_str": self.tokenizer.decode([token]), "sequence": sequence})
            result.append(row)
        return result[0] if single_mask else result
