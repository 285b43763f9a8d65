"""What the text tasks share: tokenizer arguments passed through as transformers does, batch
sizes, and reading logits from a graph's outputs."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral
from typing import Any

import numpy as np

from ..errors import EngineError, InputError

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
        if "too short to respect the provided max_length" in str(exc):
            raise InputError(
                f"The input cannot be cut to max_length={options.get('max_length')} with "
                f"truncation={options.get('truncation')!r}: what may not be cut (the other "
                "text of a pair, the special tokens) is that long already, as transformers "
                "also says. Note: pass a larger max_length, or truncation='longest_first'."
            ) from None
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
