"""Whisper's word timestamps: the graph of its alignment heads' cross-attention weights.

transformers times Whisper's tokens (``return_timestamps="word"``) from the decoder's
cross-attention weights of a few "alignment heads" (generation_config.json's
``alignment_heads``, [[layer, head], ...]): dynamic time warping over them maps each token to
an audio position. Transformers.js exports the weights of every layer as more outputs of its
decoder (``output_attentions``); edgeport keeps the default graphs as they are and adds, on
request (``bundle_from_checkpoint(..., word_timestamps=True)``, ``edgeport export
--word-timestamps``), one graph:

    decoder_alignment_model.onnx
        input_ids              (batch, decoder_sequence) int64: a whole decoded sequence
        encoder_hidden_states  (batch, 1500, d_model): the encoder's output for its window
        alignment_weights      (batch, alignment heads, decoder_sequence, 1500): the softmax
                               weights of each alignment head, in generation_config's order

The runtime (``runtime.audio.whisper_timing``) runs it once per decoded window, on the tokens
the search chose: what transformers gathers step by step during generation, computed in one
pass (eager attention, as transformers forces for token timestamps). Validated against PyTorch
at two batch sizes and two decoder lengths, as every graph.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np

from runtime.audio.whisper_timing import ALIGNMENT_GRAPH, ALIGNMENT_OUTPUT
from runtime.errors import ExportError

from .validate import BATCH_SIZES, validate_graph

# Decoder lengths of the validation cases: a short and a long decoded window.
ALIGNMENT_LENGTHS = (5, 23)


def alignment_heads(model) -> list[tuple[int, int]]:
    """The checkpoint's alignment heads, checked against the decoder's layers and heads."""
    heads = getattr(model.generation_config, "alignment_heads", None)
    config = model.config
    layers, per_layer = config.decoder_layers, config.decoder_attention_heads
    if not heads:
        raise ExportError(
            "Word timestamps need the checkpoint's alignment heads, and its "
            "generation_config.json has no alignment_heads. Note: add them ([[layer, head], "
            "...], as openai's checkpoints list them), or export without --word-timestamps.")
    if not (isinstance(heads, (list, tuple)) and all(
            isinstance(pair, (list, tuple)) and len(pair) == 2
            and all(isinstance(i, int) and not isinstance(i, bool) for i in pair)
            and 0 <= pair[0] < layers and 0 <= pair[1] < per_layer for pair in heads)):
        raise ExportError(
            f"generation_config.json's alignment_heads={repr(heads)[:120]} is not a list of "
            f"[layer, head] pairs within the decoder's {layers} layers of {per_layer} heads. "
            "Note: fix it in the checkpoint's generation_config.json.")
    return [(int(layer), int(head)) for layer, head in heads]


def _alignment_module(model, heads):
    import torch

    class AlignmentHeads(torch.nn.Module):
        """The decoder on a whole sequence, giving its alignment heads' cross-attention."""

        def __init__(self):
            super().__init__()
            self.decoder = model.get_decoder()

        def forward(self, input_ids, encoder_hidden_states):
            out = self.decoder(input_ids=input_ids, encoder_hidden_states=encoder_hidden_states,
                               output_attentions=True, use_cache=False, return_dict=True)
            weights = torch.stack([out.cross_attentions[layer][:, head]
                                   for layer, head in heads], dim=1)
            return {ALIGNMENT_OUTPUT: weights}

    return AlignmentHeads().eval()


@contextlib.contextmanager
def _eager_attention(model):
    """Attention weights exist in eager attention only (transformers switches to it for token
    timestamps too); the model's own setting comes back afterwards."""
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = before


@contextlib.contextmanager
def _traceable_masks():
    """transformers (>= 4.53) builds the causal mask with vmap and looks for packed sequences
    with torch.diff, which TorchScript cannot trace: optimum's replacements while tracing, as
    optimum's model patcher does for its own graphs."""
    from optimum.exporters.onnx import model_patcher
    from transformers import masking_utils

    packed = masking_utils.find_packed_sequence_indices
    masking_utils.ALL_MASK_ATTENTION_FUNCTIONS.register(
        "eager", model_patcher.eager_mask_without_vmap)
    masking_utils.find_packed_sequence_indices = (
        model_patcher.find_packed_sequence_indices_patched)
    try:
        yield
    finally:
        masking_utils.ALL_MASK_ATTENTION_FUNCTIONS.register("eager", masking_utils.eager_mask)
        masking_utils.find_packed_sequence_indices = packed


def alignment_graph_from_model(model, path: Path, *, atol: float, opset: int | None = None,
                               seed: int = 0) -> dict:
    """Trace the alignment heads' graph of a Whisper model to ``path`` and validate it against
    PyTorch; the validation report (a ValidationError when they disagree)."""
    import torch

    heads = alignment_heads(model)
    config = model.config
    positions, width = config.max_source_positions, config.d_model
    with _eager_attention(model), torch.no_grad():
        module = _alignment_module(model, heads)
        example = (torch.full((2, 3), int(config.decoder_start_token_id or 0), dtype=torch.int64),
                   torch.zeros((2, positions, width), dtype=torch.float32))
        try:
            with _traceable_masks(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", message="Exporting aten::index operator")
                torch.onnx.export(
                    module, example, str(path),
                    input_names=["input_ids", "encoder_hidden_states"],
                    output_names=[ALIGNMENT_OUTPUT], opset_version=opset or 18, dynamo=False,
                    dynamic_axes={"input_ids": {0: "batch", 1: "decoder_sequence"},
                                  "encoder_hidden_states": {0: "batch"},
                                  ALIGNMENT_OUTPUT: {0: "batch", 2: "decoder_sequence"}})
        except Exception as exc:
            raise ExportError(f"Tracing Whisper's alignment heads failed: "
                              f"{str(exc).strip().splitlines()[0][:300] if str(exc) else exc!r}"
                              ". Note: export without --word-timestamps.") from exc
        rng = np.random.default_rng(seed)
        feeds = []
        for batch in BATCH_SIZES:
            for length in ALIGNMENT_LENGTHS:
                ids = rng.integers(0, config.vocab_size, size=(batch, length), dtype=np.int64)
                hidden = rng.standard_normal((batch, positions, width)).astype(np.float32)
                feeds.append(({"graph": ALIGNMENT_GRAPH, "batch": batch,
                               "decoder_sequence": length},
                              {"input_ids": ids, "encoder_hidden_states": hidden}))
        return validate_graph(module, path, feeds, atol=atol)
