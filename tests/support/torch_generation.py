"""The GenerationModel protocol over a transformers PyTorch model, so that the runtime's search
can be checked against ``model.generate()`` on the same weights.

It feeds the model exactly what transformers' ``generate()`` feeds it (``prepare_inputs_for_
generation`` and ``_update_model_kwargs_for_generation``): on the first step the whole prompt,
then only the tokens the KV cache does not hold; the 2-D attention mask of the whole sequence;
GPT-2's position ids from the mask (``cumsum - 1``, pads at 1); ``cache_position``; and
``logits_to_keep=1`` where the model takes it. The encoder runs once in ``begin``, on the
unexpanded batch, as in transformers.

    >>> model = TorchGenerationModel(GPT2LMHeadModel(config))              # doctest: +SKIP
    >>> generate(model, input_ids, attention_mask, max_length=20)          # doctest: +SKIP
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput


@dataclass(frozen=True)
class TorchState:
    cache: Any  # DynamicCache or EncoderDecoderCache; copied before it is changed
    attention_mask: torch.Tensor  # decoder-only: of the sequence so far; else the encoder's
    encoder_hidden_states: torch.Tensor | None = None


class TorchGenerationModel:
    """A transformers model (GPT2LMHeadModel, BartForConditionalGeneration,
    T5ForConditionalGeneration, ...) as a runtime GenerationModel."""

    def __init__(self, model):
        self.model = model.eval()
        self.is_encoder_decoder = bool(model.config.is_encoder_decoder)
        self.vocab_size = model.get_output_embeddings().out_features
        parameters = inspect.signature(model.forward).parameters
        self._position_ids = not self.is_encoder_decoder and "position_ids" in parameters
        self._extra = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
        self.calls = 0  # forward passes, for tests that count them

    def begin(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> TorchState:
        ids = torch.from_numpy(np.asarray(input_ids, dtype=np.int64))
        mask = torch.from_numpy(np.asarray(attention_mask, dtype=np.int64))
        config = self.model.config
        if not self.is_encoder_decoder:
            return TorchState(DynamicCache(config=config), mask)
        with torch.no_grad():
            encoded = self.model.get_encoder()(input_ids=ids, attention_mask=mask,
                                               return_dict=True)
        cache = EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))
        return TorchState(cache, mask, encoded.last_hidden_state)

    def expand(self, state: TorchState, rows: np.ndarray) -> TorchState:
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        cache = copy.deepcopy(state.cache)  # the protocol: never change a state in place
        cache.reorder_cache(index)  # index_select on every layer that holds something
        hidden = state.encoder_hidden_states
        return TorchState(cache, state.attention_mask.index_select(0, index),
                          None if hidden is None else hidden.index_select(0, index))

    def next_logits(self, state: TorchState, sequences: np.ndarray):
        sequences = torch.from_numpy(np.asarray(sequences, dtype=np.int64))
        cache = copy.deepcopy(state.cache)
        held = cache.get_seq_length()
        new = sequences[:, held:]
        inputs = dict(past_key_values=cache, use_cache=True, return_dict=True,
                      cache_position=torch.arange(held, sequences.shape[1]), **self._extra)
        mask = state.attention_mask
        if self.is_encoder_decoder:
            inputs.update(decoder_input_ids=new, attention_mask=mask,
                          encoder_outputs=BaseModelOutput(state.encoder_hidden_states))
        else:
            grow = sequences.shape[1] - mask.shape[1]
            mask = torch.cat([mask, mask.new_ones((len(mask), grow))], dim=-1)
            inputs.update(input_ids=new, attention_mask=mask)
            if self._position_ids:
                positions = mask.cumsum(-1) - 1
                positions.masked_fill_(mask == 0, 1)
                inputs["position_ids"] = positions[:, -new.shape[1]:]
        with torch.no_grad():
            outputs = self.model(**inputs)
        self.calls += 1
        logits = outputs.logits[:, -1, :].to(dtype=torch.float32).numpy().copy()
        return logits, replace(state, cache=outputs.past_key_values, attention_mask=mask)
