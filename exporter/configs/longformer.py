"""Longformer: what optimum-onnx's config leaves out, so that the traced graph computes what
transformers computes at every batch size, length and number of global tokens.

- optimum traces with no global attention (its dummy ``global_attention_mask`` is all zeros), and
  the model decides in Python whether any token is global (``is_global_attn``): the global
  branch is dropped from the graph, and a classifier (global attention on ``<s>``) or a question
  answerer (on the question) gets other numbers. ``LongformerOnnxConfig`` traces those two heads
  with global tokens, at a length that is no multiple of the attention window (the padding to
  the window is a Python ``if`` too), so both stay in the graph. The other heads set no global
  attention: they are traced without the input, local attention only, as transformers runs
  them. (A graph with the global branch cannot take zero global tokens: its zero-size reshapes
  fail in ONNX Runtime, or crash it; the runtime always gives these heads at least <s>.)
- ``PATCHES``: the sliding-window attention cuts its queries, keys and values into overlapping
  chunks with ``as_strided``, whose strides a trace takes from the traced shape (the graph then
  fails at batch 1 and is wrong at other lengths): the patches build the same chunks from two
  (or three) shifted views of the non-overlapping blocks, reshapes and concatenations whose
  sizes follow the input. The attention's forward counts the global tokens with ``len()`` (a
  constant in a trace): the patched forward reshapes by the embedding size instead.

The runtime feeds ``global_attention_mask`` as transformers' Longformer heads make it when none
is given (``GLOBAL_ATTENTION``, recorded in the manifest's preprocessing): the question's
tokens for question-answering, ``<s>`` for text-classification.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from optimum.exporters.onnx.model_configs import LongformerOnnxConfig as _Longformer
from optimum.utils import DEFAULT_DUMMY_SHAPES
from optimum.utils.input_generators import DummyTextInputGenerator
from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

from .patching import ExportPatch

TASKS = ("text-classification", "token-classification", "question-answering", "fill-mask",
         "feature-extraction")

# task -> the global attention transformers' Longformer head gives itself when the caller gives
# none (LongformerForQuestionAnswering: the tokens before the first </s>; ...ForSequence-
# Classification: <s>; the others: none). The runtime makes the same from the manifest's entry.
GLOBAL_ATTENTION = {"question-answering": "question", "text-classification": "first"}


class _GlobalTokensGenerator(DummyTextInputGenerator):
    """optimum's text inputs at a length past a multiple of 8 (the pad-to-window branch is
    traced), with global attention on the first token of every row and a third of another
    row's (the global branch is traced, with rows of different numbers of global tokens)."""

    SUPPORTED_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids",
                             "global_attention_mask")

    def __init__(self, task, normalized_config, batch_size=DEFAULT_DUMMY_SHAPES["batch_size"],
                 sequence_length=DEFAULT_DUMMY_SHAPES["sequence_length"], **kwargs):
        super().__init__(task, normalized_config, batch_size=batch_size,
                         sequence_length=sequence_length + 3, **kwargs)

    def generate(self, input_name, framework="pt", int_dtype="int64", float_dtype="fp32"):
        shape = (self.batch_size, self.sequence_length)
        if input_name == "global_attention_mask":
            mask = torch.zeros(shape, dtype=torch.int64)
            mask[:, 0] = 1
            mask[-1, : self.sequence_length // 3] = 1
            return mask
        if input_name == "token_type_ids":  # Longformer has one token type
            return torch.zeros(shape, dtype=torch.int64)
        return super().generate(input_name, framework=framework, int_dtype=int_dtype,
                                float_dtype=float_dtype)


class LongformerOnnxConfig(_Longformer):
    """optimum's Longformer config, traced with global tokens and padding to the window."""

    DUMMY_INPUT_GENERATOR_CLASSES = (_GlobalTokensGenerator,)

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        """input_ids and attention_mask (no token_type_ids: Longformer has one token type);
        global_attention_mask for the heads that set global attention. The others are traced
        without it, as transformers runs them (local attention only): their graph has no
        global branch, where a batch without global tokens would make zero-size tensors that
        ONNX Runtime's Reshape cannot take."""
        axes = {0: "batch_size", 1: "sequence_length"}
        inputs = {"input_ids": axes, "attention_mask": dict(axes)}
        if self.task in GLOBAL_ATTENTION:
            inputs["global_attention_mask"] = dict(axes)
        return inputs


def preprocessing(task: str) -> dict:
    """The manifest's record of the global attention the runtime feeds for ``task``."""
    return {"global_attention": GLOBAL_ATTENTION[task]} if task in GLOBAL_ATTENTION else {}


def validation_feeds(input_names, config):
    """exporter.validate's text cases, with a global_attention_mask where the graph takes one:
    on the first token of every row, and on a few more of the first row (rows with different
    numbers of global tokens, as a batch of questions of different lengths has)."""
    from ..validate import validation_feeds as text_feeds

    for shape, feed in text_feeds("text", input_names, config):
        if "global_attention_mask" in input_names:
            mask = np.zeros_like(feed["input_ids"])
            mask[:, 0] = 1
            mask[0, : feed["input_ids"].shape[1] // 3] = 1
            feed["global_attention_mask"] = mask
        yield shape, feed


def _chunk(hidden_states, window_overlap, onnx_export=False):
    """Overlapping chunks of 2w rows at a step of w: [batch*heads, n/w - 1, 2w, dim], each chunk
    a block of w rows followed by the next block."""
    heads, length, dim = hidden_states.shape
    blocks = hidden_states.reshape(heads, -1, window_overlap, dim)
    return torch.cat([blocks[:, :-1], blocks[:, 1:]], dim=2)


def _sliding_chunks_matmul_attn_probs_value(self, attn_probs, value, window_overlap):
    """transformers' ``_sliding_chunks_matmul_attn_probs_value`` with its values' chunks of 3w
    rows at a step of w made from three shifted block views instead of ``as_strided``."""
    batch_size, seq_len, num_heads, head_dim = value.shape
    chunked_attn_probs = attn_probs.transpose(1, 2).reshape(
        batch_size * num_heads, -1, window_overlap, 2 * window_overlap + 1)
    value = value.transpose(1, 2).reshape(batch_size * num_heads, seq_len, head_dim)
    padded_value = torch.nn.functional.pad(value, (0, 0, window_overlap, window_overlap),
                                           value=-1)
    blocks = padded_value.reshape(batch_size * num_heads, -1, window_overlap, head_dim)
    chunked_value = torch.cat([blocks[:, :-2], blocks[:, 1:-1], blocks[:, 2:]], dim=2)
    chunked_attn_probs = self._pad_and_diagonalize(chunked_attn_probs)
    context = torch.einsum("bcwd,bcdh->bcwh", (chunked_attn_probs, chunked_value))
    return context.view(batch_size, num_heads, seq_len, head_dim).transpose(1, 2)


def _self_attention_forward(self, hidden_states, attention_mask=None, layer_head_mask=None,
                            is_index_masked=None, is_index_global_attn=None,
                            is_global_attn=None, output_attentions=False):
    """transformers' ``LongformerSelfAttention.forward`` for inference, with the global tokens'
    outputs reshaped by the embedding size: the original counts them with ``len()`` of a
    tensor, a constant in a trace (the graph then takes the traced number of global tokens
    only), and a reshape of zero rows to (0, -1) divides by zero in ONNX Runtime."""
    hidden_states = hidden_states.transpose(0, 1)
    seq_len, batch_size, embed_dim = hidden_states.size()
    query = self.query(hidden_states) / math.sqrt(self.head_dim)
    query = query.view(seq_len, batch_size, self.num_heads, self.head_dim).transpose(0, 1)
    key = self.key(hidden_states).view(seq_len, batch_size, self.num_heads,
                                       self.head_dim).transpose(0, 1)
    window = self.one_sided_attn_window_size
    attn_scores = self._sliding_chunks_query_key_matmul(query, key, window)
    removed = (attention_mask != 0)[:, :, None, None]
    float_mask = removed.type_as(query).masked_fill(removed, torch.finfo(query.dtype).min)
    attn_scores += self._sliding_chunks_query_key_matmul(
        float_mask.new_ones(size=float_mask.size()), float_mask, window)
    if is_global_attn:
        (max_global, global_nonzero, local_global_nonzero,
         local_no_global_nonzero) = self._get_global_attn_indices(is_index_global_attn)
        global_key_scores = self._concat_with_global_key_attn_probs(
            query_vectors=query, key_vectors=key, max_num_global_attn_indices=max_global,
            is_index_global_attn_nonzero=global_nonzero,
            is_local_index_global_attn_nonzero=local_global_nonzero,
            is_local_index_no_global_attn_nonzero=local_no_global_nonzero)
        attn_scores = torch.cat((global_key_scores, attn_scores), dim=-1)
    attn_probs = torch.nn.functional.softmax(attn_scores, dim=-1, dtype=torch.float32)
    if layer_head_mask is not None:
        attn_probs = layer_head_mask.view(1, 1, -1, 1) * attn_probs
    attn_probs = torch.masked_fill(attn_probs, is_index_masked[:, :, None, None], 0.0)
    attn_probs = attn_probs.type_as(attn_scores)
    value = self.value(hidden_states).view(seq_len, batch_size, self.num_heads,
                                           self.head_dim).transpose(0, 1)
    if is_global_attn:
        attn_output = self._compute_attn_output_with_global_indices(
            value_vectors=value, attn_probs=attn_probs, max_num_global_attn_indices=max_global,
            is_index_global_attn_nonzero=global_nonzero,
            is_local_index_global_attn_nonzero=local_global_nonzero)
    else:
        attn_output = self._sliding_chunks_matmul_attn_probs_value(attn_probs, value, window)
    attn_output = attn_output.transpose(0, 1).reshape(seq_len, batch_size, embed_dim)
    if is_global_attn:
        global_output, _ = self._compute_global_attn_output_from_hidden(
            hidden_states=hidden_states, max_num_global_attn_indices=max_global,
            layer_head_mask=layer_head_mask,
            is_local_index_global_attn_nonzero=local_global_nonzero,
            is_index_global_attn_nonzero=global_nonzero,
            is_local_index_no_global_attn_nonzero=local_no_global_nonzero,
            is_index_masked=is_index_masked)
        nonzero_output = global_output[local_global_nonzero[0], :, local_global_nonzero[1]]
        attn_output[global_nonzero[::-1]] = nonzero_output.reshape(-1, embed_dim)
    return (attn_output.transpose(0, 1),)


PATCHES = (
    ExportPatch("longformer-global-tokens", LongformerSelfAttention, "forward",
                _self_attention_forward),
    ExportPatch("longformer-chunks", LongformerSelfAttention, "_chunk", staticmethod(_chunk)),
    ExportPatch("longformer-value-chunks", LongformerSelfAttention,
                "_sliding_chunks_matmul_attn_probs_value",
                _sliding_chunks_matmul_attn_probs_value),
)
