"""What the generation loop needs from a model: the one protocol between search and graphs.

The search (greedy, sampling, beam search) never sees graphs, caches or encoders. It holds a
``state`` per batch and asks the model for the logits of the next position:

    state = model.begin(input_ids, attention_mask)     # encoder-decoder: runs the encoder here
    state = model.expand(state, rows)                   # e.g. rows = [0, 0, 0, 0, 1, 1, 1, 1]
    logits, state = model.next_logits(state, sequences) # (rows, vocab) float32

``sequences`` is always the whole sequence so far, as transformers keeps it: for a decoder-only
model the prompt plus the generated tokens (left-padded prompts, with ``attention_mask`` telling
the padding); for an encoder-decoder model the decoder's sequence, starting with
``decoder_start_token_id``. The model feeds only the tokens its cache does not hold yet, keeps
the attention mask and position ids of every row, and returns the logits of the last position.

An encoder-decoder model whose encoder reads something other than token ids (Whisper's log-mel
``input_features``) is begun with its encoder's feed instead: a mapping by input name, with
``attention_mask`` None (or the mask the encoder takes). The model feeds its encoder by the
names it declares; a text prompt is the feed ``{"input_ids": ..., "attention_mask": ...}``.

``expand`` selects rows of the state, in the order given, repeating rows as needed: it expands
a batch to ``batch * num_beams`` rows (after the first decoder step, which runs once per prompt:
transformers expands before it and runs it on every copy, to the same logits), and reorders the
cache after each beam search step. A state is never modified in place: ``expand`` and
``next_logits`` return new states (they may share arrays with the old one), so a search can
keep both.

Implementations: ``runtime.generation.onnx_model`` (the bundle's graphs through ONNX Runtime),
and in the tests one that wraps a transformers model, so the search is checked against
``transformers.generate`` on the same weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class GenerationModel(Protocol):
    """A model the generation loop can drive; see the module docstring."""

    is_encoder_decoder: bool
    vocab_size: int  # the width of the logits (may exceed the tokenizer's vocabulary)

    def begin(self, input_ids: np.ndarray | Mapping[str, np.ndarray],
              attention_mask: np.ndarray | None) -> Any:
        """The state for a batch of (left-padded, for decoder-only models) prompts, or of an
        encoder-decoder model's encoder feed (a mapping by input name)."""
        ...

    def expand(self, state: Any, rows: np.ndarray) -> Any:
        """A state of ``len(rows)`` rows: row i of the result is row ``rows[i]`` of ``state``."""
        ...

    def next_logits(self, state: Any, sequences: np.ndarray) -> tuple[np.ndarray, Any]:
        """(float32 logits (rows, vocab) of the position after ``sequences``, the new state)."""
        ...
