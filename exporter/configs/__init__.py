"""Export configs edgeport adds to optimum-onnx's, one file per concern, one row each here.

A row gives optimum the ``OnnxConfig`` it lacks (or corrects) for a model_type, the tasks it
serves, and the export-time patches that keep the traced graph right at every shape
(mask2former.py: a Swin-backed segmenter's dims; decoders.py: Gemma's position ids, LongRoPE's
factors; decision_transformer.py: its interleaved sequence's reshapes). ``export_patches``
applies a model's patches around a trace (the export wraps optimum's in it; a config's model
patcher may apply its row's again: patches nest). A row may also force settings on the loaded
model (``prepare``), give its own validation inputs or PyTorch reference, and record entries in
the manifest's preprocessing for the runtime (see ``CustomConfig``).

>>> CUSTOM_CONFIGS["mask2former"].tasks
('image-segmentation',)
>>> config = custom_onnx_config(model, "image-segmentation")                # doctest: +SKIP
>>> with export_patches(model):                                            # doctest: +SKIP
...     torch.onnx.export(model, ...)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from optimum.exporters.onnx import OnnxConfig

from runtime.errors import ExportError

from . import (
    big_bird,
    decision_transformer,
    decoders,
    image_features,
    imagegpt,
    longformer,
    mask2former,
    maskformer,
    vilt,
    visual_bert,
    xlnet,
)
from .patching import ExportPatch, applied


@dataclass(frozen=True)
class CustomConfig:
    onnx_config: type[OnnxConfig]
    tasks: tuple[str, ...]
    patches: tuple[ExportPatch, ...] = ()
    # (input names, model config) -> (shape, feed) of every validation case, where the
    # modality's standard feeds do not fit the graph (ViLT: padded pixel masks beside texts of
    # the same batch; VisualBERT: region features). None: exporter.validate's.
    validation_feeds: Callable[..., Iterator[tuple[dict, dict]]] | None = None
    # model -> None: settings forced on the loaded model before it is traced (ViTMAE: mask_ratio
    # 0); they reach the bundle's config.json.
    prepare: Callable[[object], None] | None = None
    # model -> what validation calls as the PyTorch reference, where the model as it is would
    # draw random numbers (ViTMAE: ordered noise). None: the model itself.
    validation_model: Callable[[object], Callable] | None = None
    # task -> entries the manifest's "preprocessing" records for the runtime, which makes an
    # input from them (Longformer: which tokens get global attention). None: nothing.
    preprocessing: Callable[[str], dict] | None = None


CUSTOM_CONFIGS: dict[str, CustomConfig] = {
    "mask2former": CustomConfig(
        mask2former.Mask2FormerOnnxConfig, mask2former.TASKS, mask2former.PATCHES
    ),
    "gemma2": CustomConfig(decoders.Gemma2OnnxConfig, decoders.TASKS),
    "gemma3_text": CustomConfig(decoders.Gemma3TextOnnxConfig, decoders.TASKS),
    "vilt": CustomConfig(vilt.ViltOnnxConfig, vilt.TASKS, vilt.PATCHES,
                         validation_feeds=vilt.validation_feeds),
    "visual_bert": CustomConfig(visual_bert.VisualBertOnnxConfig, visual_bert.TASKS,
                                validation_feeds=visual_bert.validation_feeds),
    "decision_transformer": CustomConfig(
        decision_transformer.DecisionTransformerOnnxConfig, decision_transformer.TASKS,
        decision_transformer.PATCHES),
    "vit_mae": CustomConfig(
        image_features.ViTMAEFeaturesOnnxConfig, image_features.TASKS,
        image_features.VIT_MAE_PATCHES, prepare=image_features.keep_every_patch,
        validation_model=image_features.ordered_noise_reference),
    "maskformer": CustomConfig(maskformer.MaskFormerOnnxConfig, maskformer.TASKS,
                               maskformer.PATCHES),
    "imagegpt": CustomConfig(imagegpt.ImageGPTOnnxConfig, imagegpt.TASKS, imagegpt.PATCHES,
                             validation_feeds=imagegpt.validation_feeds,
                             validation_model=imagegpt.cached_reference),
    "longformer": CustomConfig(longformer.LongformerOnnxConfig, longformer.TASKS,
                               longformer.PATCHES, validation_feeds=longformer.validation_feeds,
                               preprocessing=longformer.preprocessing),
    "big_bird": CustomConfig(big_bird.BigBirdOnnxConfig, big_bird.TASKS,
                             prepare=big_bird.full_attention),
    "xlnet": CustomConfig(xlnet.XLNetOnnxConfig, xlnet.TASKS),
}


def custom_onnx_config(model, task: str) -> OnnxConfig | None:
    """The OnnxConfig to pass as ``custom_onnx_configs={"model": ...}``, or None when the
    model_type has no row here (optimum's own config serves it)."""
    row = CUSTOM_CONFIGS.get(model.config.model_type)
    if row is None:  # an encoder's features: optimum's config, with the pooled output
        return (image_features.image_features_onnx_config(model)
                if task == image_features.TASK else None)
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


def prepare_model(model) -> None:
    """Apply the settings the model's row forces before tracing (none for most)."""
    row = CUSTOM_CONFIGS.get(model.config.model_type)
    if row is not None and row.prepare is not None:
        row.prepare(model)


def preprocessing_entries(model_type: str, task: str) -> dict:
    """What the manifest's preprocessing records for the runtime beyond the files (none for
    most rows)."""
    row = CUSTOM_CONFIGS.get(model_type)
    return row.preprocessing(task) if row is not None and row.preprocessing else {}


def validation_model(model) -> Callable:
    """The PyTorch reference validation calls: the model, or what its row makes of it."""
    row = CUSTOM_CONFIGS.get(model.config.model_type)
    if row is not None and row.validation_model is not None:
        return row.validation_model(model)
    return model


__all__ = ["CUSTOM_CONFIGS", "CustomConfig", "ExportPatch", "custom_onnx_config", "export_patches",
           "prepare_model", "preprocessing_entries", "validation_model"]
