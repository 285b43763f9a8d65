"""Export configs edgeport adds to optimum-onnx's, one file per architecture, one row each here.

A row gives optimum the ``OnnxConfig`` it lacks for a model_type, the tasks it serves, and the
export-time patches that keep the traced graph's dims dynamic. The config's model patcher applies
the patches while optimum traces; ``export_patches`` applies them for a trace made elsewhere.

>>> CUSTOM_CONFIGS["mask2former"].tasks
('image-segmentation',)
>>> config = custom_onnx_config(model, "image-segmentation")                # doctest: +SKIP
>>> with export_patches(model):   # only for a trace outside optimum        # doctest: +SKIP
...     torch.onnx.export(model, ...)
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass

from optimum.exporters.onnx import OnnxConfig

from runtime.errors import ExportError

from . import mask2former
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
    return row.onnx_config(model.config, task=task)


def export_patches(model) -> AbstractContextManager[None]:
    """The model's export-time patches, applied inside a ``with`` block (none for a model_type
    without a row). optimum's export applies them already through the config's model patcher."""
    row = CUSTOM_CONFIGS.get(model.config.model_type)
    return applied(row.patches if row else ())


__all__ = ["CUSTOM_CONFIGS", "CustomConfig", "ExportPatch", "custom_onnx_config", "export_patches"]
