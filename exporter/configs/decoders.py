"""Decoder-only LMs: what optimum-onnx's configs leave out, so that the traced graph computes
what transformers' ``generate()`` computes at every length.

- ``Gemma2OnnxConfig``, ``Gemma3TextOnnxConfig``: optimum's configs give Gemma 2 and Gemma 3 no
  ``position_ids`` input, so the graph counts positions from the cache length: a left-padded row
  of a batch then gets other rotary angles than ``generate()`` gives it (the logits agree, since
  RoPE is relative, but the cached keys do not). These take ``position_ids``, as Llama's do.
- ``export_patches``: LongRoPE (Phi-3.5, Phi-4-mini) switches from its short to its long
  frequency factors once a sequence passes ``original_max_position_embeddings``, behind a
  Python ``if``: a trace keeps the branch of the traced length and is wrong past it (or below
  it). The patch computes both and selects with ``torch.where`` on the largest position, in the
  graph.
- ``check_rope_scaling``: the RoPE scalings the graph computes exactly, and an ExportError
  naming any other (never a silently wrong graph).

>>> sorted(EXACT_ROPE_TYPES)
['default', 'linear', 'llama3', 'longrope', 'yarn']
"""

from __future__ import annotations

import inspect

import torch
from optimum.exporters.onnx.config import TextDecoderWithPositionIdsOnnxConfig
from optimum.exporters.onnx.model_configs import Gemma2OnnxConfig as _Gemma2
from optimum.exporters.onnx.model_configs import Gemma3TextOnnxConfig as _Gemma3Text

from runtime.errors import ExportError

from .patching import ExportPatch

TASKS = ("text-generation",)

# RoPE scalings whose frequencies are fixed at load time (default, linear, llama3, yarn), or
# chosen in the graph by the LongRoPE patch. "dynamic" (NTK) recomputes them from the length
# in Python, which a trace would freeze.
EXACT_ROPE_TYPES = frozenset({"default", "linear", "llama3", "yarn", "longrope"})


class Gemma2OnnxConfig(TextDecoderWithPositionIdsOnnxConfig, _Gemma2):
    """optimum's Gemma 2 config, with ``position_ids``."""


class Gemma3TextOnnxConfig(TextDecoderWithPositionIdsOnnxConfig, _Gemma3Text):
    """optimum's Gemma 3 (text) config, with ``position_ids``."""


def rope_type(config: dict) -> str | None:
    """The RoPE scaling type of a config.json ("default" without scaling), or None without
    RoPE."""
    scaling = config.get("rope_scaling")
    if scaling is None:
        return "default" if "rope_theta" in config else None
    if not isinstance(scaling, dict):
        raise ExportError(f"config.json's rope_scaling is {type(scaling).__name__}, not an "
                          "object. Note: fix rope_scaling (or remove it).")
    return scaling.get("rope_type", scaling.get("type", "default"))


def check_rope_scaling(config: dict) -> None:
    """An ExportError naming a RoPE scaling the traced graph would not compute exactly."""
    kind = rope_type(config)
    if kind is not None and kind not in EXACT_ROPE_TYPES:
        raise ExportError(
            f"config.json's rope_scaling type {str(kind)[:40]!r} is not supported: it computes "
            "its frequencies from the sequence length in Python, and a traced graph would keep "
            f"those of one length. Note: supported types are {', '.join(sorted(EXACT_ROPE_TYPES))}."
        )


def _longrope_forward(self, x, position_ids):
    """A rotary embedding's forward with LongRoPE's factors chosen in the graph: the long
    factors once the largest position reaches ``original_max_position_embeddings``, as
    transformers' ``dynamic_rope_update`` chooses them per call."""
    config = self.config
    original = getattr(config, "original_max_position_embeddings", None) or (
        config.max_position_embeddings)
    short, _ = self.rope_init_fn(config, x.device)
    long, _ = self.rope_init_fn(config, x.device, seq_len=original + 1)
    inv_freq = torch.where(torch.max(position_ids) + 1 > original, long, short)
    body = inspect.unwrap(_ORIGINAL_FORWARDS[type(self)])  # under no_grad and the update
    saved = self.inv_freq
    self.inv_freq = inv_freq
    try:
        return body(self, x, position_ids)
    finally:
        self.inv_freq = saved


_ORIGINAL_FORWARDS: dict[type, object] = {}


def export_patches(model) -> tuple[ExportPatch, ...]:
    """The patches a decoder's trace needs: the LongRoPE patch on each rotary embedding class
    of the model that uses LongRoPE."""
    patches = {}
    for module in model.modules():
        cls = type(module)
        if getattr(module, "rope_type", None) == "longrope" and cls not in patches:
            if "forward" not in vars(cls):
                raise ExportError(f"{cls.__name__} has no forward of its own to patch for "
                                  "LongRoPE. Note: report this architecture.")
            _ORIGINAL_FORWARDS[cls] = vars(cls)["forward"]
            patches[cls] = ExportPatch("longrope", cls, "forward", _longrope_forward)
    return tuple(patches.values())
