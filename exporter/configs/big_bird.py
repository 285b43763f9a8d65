"""BigBird: exported with full attention (``attention_type="original_full"``).

Block-sparse attention gathers its random and sliding blocks with shapes and indices computed in
Python and numpy from the length: it cannot be traced into a graph that holds at other lengths.
transformers itself runs full attention whenever an input has at most
``(5 + 2 * num_random_blocks) * block_size`` tokens (704 for the released checkpoints: block
size 64, 3 random blocks), and once it has done so, a model keeps full attention for every later
input (``BigBirdModel.forward`` calls ``set_attention_type("original_full")``). The graph gives
what transformers gives up to that length; a longer input gets full attention where a
transformers model that has not yet seen a short input would use block-sparse attention. The
bundle's config.json says ``"attention_type": "original_full"``, and validation compares with
the PyTorch model in that mode.

optimum's own config (input_ids and attention_mask, as BigBird's tokenizer gives) serves the
trace.
"""

from __future__ import annotations

from optimum.exporters.onnx.model_configs import BigBirdOnnxConfig

TASKS = ("text-classification", "token-classification", "question-answering", "fill-mask",
         "feature-extraction")
ATTENTION = "original_full"


def max_full_attention_tokens(config) -> int:
    """The longest input transformers runs with full attention on a block-sparse model."""
    return (5 + 2 * config.num_random_blocks) * config.block_size


def full_attention(model) -> None:
    """Switch the loaded model to full attention, in its config too (so the bundle's
    config.json says what the graph computes)."""
    model.base_model.set_attention_type(ATTENTION)
    model.config.attention_type = ATTENTION


__all__ = ["ATTENTION", "BigBirdOnnxConfig", "TASKS", "full_attention",
           "max_full_attention_tokens"]
