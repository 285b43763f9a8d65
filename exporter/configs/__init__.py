"""Export configs edgeport adds to optimum-onnx's, one file per concern, one row each here.

A row gives optimum the ``OnnxConfig`` it lacks (or corrects) for a model_type, the tasks it
serves, and the export-time patches that keep the traced graph right at every shape
(mask2former.py: a Swin-backed segmenter's dims; decoders.py: Gemma's position ids, LongRoPE's
factors). ``export_patches`` applies a model's patches around a trace (the export wraps
optimum's in it; a config's model patcher may apply its row's again: patches nest).

>>> CUSTOM_CONFIGS["mask2former"].tasks
('image-segmentation',)
>>> config = custom_onnx_config(model, "image-segmentation")                # doctest: +SKIP
>>> with export_patches(model):                                            # doctest: +SKIP
...     torch.onnx.export(model, ...)
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass

from optimum.exporters.onnx import OnnxConfig

from runtime.errors import ExportError

from . import decoders, mask2former
from .patching import ExportPatch, applied


@dataclass(frozen=True)
class CustomConfig:
    onnx_config: type[OnnxConfig]
    tasks: tuple[str, ...]
    patches: tuple[ExportPatch, ...] = ()


CUSTOM_CONFIGS: dict[str, CustomConfig] = {
    "mask2former": CustomConfig(
        mask2former.Mask2FormerOnnxConfig, mask2former.TASKS, mask2former.PATCHES
    ),
    "gemma2": CustomConfig(decoders.Gemma2OnnxConfig, decoders.TASKS),
    "gemma3_text": CustomConfig(decoders.Gemma3TextOnnxConfig, decoders.TASKS),
}


def custom_onnx_config(model, task: str) -> OnnxConfig | None:
    """The OnnxConfig to pass as ``custom_onnx_configs={"model": ...}``, or None when the
    model_type has no row here (optimum's own config serves it)."""
    row = CUSTOM_CONFIGS.get(model.config.model_type)
    if row is None:
        return None
    if task not in row.tasks:
        raise ExportError(
            f"edgeport's export config for {model.config.model_type!r} does not serve task "
            f"{task!r}. Note: its tasks are: {', '.join(row.tasks)}."
        )
    if task == "text-generation":  # a decoder, traced with its KV cache
        return row.onnx_config(model.config, task=task, use_past=True, use_past_in_inputs=True)
    return row.onnx_config(model.config, task=task)


def export_patches(model) -> AbstractContextManager[None]:
    """The model's export-time patches, applied inside a ``with`` block: its row's (none for a
    model_type without a row), and a decoder's (LongRoPE's frequencies chosen in the graph).
    Patches nest, so a config's model patcher may apply its row's again."""
    row = CUSTOM_CONFIGS.get(model.config.model_type)
    return applied([*(row.patches if row else ()), *decoders.export_patches(model)])


__all__ = ["CUSTOM_CONFIGS", "CustomConfig", "ExportPatch", "custom_onnx_config", "export_patches"]
