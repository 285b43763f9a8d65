"""image-feature-extraction: an image encoder's hidden states, and its pooled output where it
has one, as transformers' ImageFeatureExtractionPipeline reads them (``outputs[0]``, or
``pooler_output`` with ``pool=True``); and ViTMAE, whose features must not be random.

- ``image_features_onnx_config``: optimum's feature-extraction config of the model's type, with
  ``pooler_output`` beside ``last_hidden_state`` where the model gives one (optimum's keeps the
  hidden states only), and the hidden states' own axes named.
- ViTMAE shuffles its patches with ``torch.rand`` noise and keeps the first ``1 - mask_ratio``
  of them, even at mask_ratio 0 (the tokens then come in a random order): a graph traced as it
  is holds a RandomUniformLike and gives other numbers at every run. The export forces
  mask_ratio to 0 (``keep_every_patch``, so the bundle's config.json says 0) and
  ``KEEP_PATCHES_IN_ORDER`` replaces the masking by keeping every patch in image order while the
  graph is traced. Validation runs transformers' own masking with ordered noise (its ``noise``
  argument: ``argsort(arange)`` keeps the order), which is what the graph must equal, and
  checks that the graph draws no random numbers (exporter.validate.check_deterministic).

>>> axes = _hidden_state_axes(3)
>>> axes
{0: 'batch_size', 1: 'patches'}
"""

from __future__ import annotations

import torch
from optimum.exporters.onnx.model_configs import VitMAEOnnxConfig
from transformers.models.vit_mae import modeling_vit_mae as vit_mae

from runtime.errors import ExportError

from .patching import ExportPatch

TASK = "image-feature-extraction"
TASKS = (TASK,)
# The outputs transformers' pipeline may read, in the order a graph gives them.
OUTPUTS = ("last_hidden_state", "pooler_output")


def _hidden_state_axes(rank: int) -> dict[int, str]:
    """The dynamic axes of hidden states of ``rank`` dims: tokens (ViT: batch, patches, hidden)
    or a feature map (ConvNeXt: batch, channels, height, width)."""
    if rank == 3:
        return {0: "batch_size", 1: "patches"}
    if rank == 4:
        return {0: "batch_size", 2: "feature_height", 3: "feature_width"}
    return {0: "batch_size"}


def image_features_onnx_config(model):
    """optimum's feature-extraction OnnxConfig for ``model``'s type, giving every output of
    OUTPUTS the model gives (found by running it once on optimum's dummy inputs)."""
    from optimum.exporters.tasks import TasksManager

    try:
        base = TasksManager.get_exporter_config_constructor(
            "onnx", model=model, task="feature-extraction", library_name="transformers").func
    except (KeyError, ValueError) as exc:
        raise ExportError(
            f"optimum-onnx has no feature-extraction config for {model.config.model_type!r}: "
            f"{str(exc)[:200]}. Note: export it for its other tasks."
        ) from None
    probe = base(model.config, task="feature-extraction")
    with torch.no_grad():
        given = model(**probe.generate_dummy_inputs(framework="pt"))
    ranks = {name: given[name].dim() for name in OUTPUTS
             if isinstance(given.get(name), torch.Tensor)}
    if "last_hidden_state" not in ranks:
        raise ExportError(
            f"{type(model).__name__} gives no last_hidden_state, so it has no image features to "
            "export. Note: export it for its other tasks.")

    class ImageFeaturesOnnxConfig(base):
        @property
        def outputs(self) -> dict[str, dict[int, str]]:
            return {name: (_hidden_state_axes(rank) if name == "last_hidden_state"
                           else {0: "batch_size"}) for name, rank in ranks.items()}

    return ImageFeaturesOnnxConfig(model.config, task="feature-extraction")


# --- ViTMAE ------------------------------------------------------------------------------------

class ViTMAEFeaturesOnnxConfig(VitMAEOnnxConfig):
    """optimum's ViTMAE config (feature-extraction), taking edgeport's task name; the encoder's
    ``last_hidden_state`` out (ViTMAE has no pooler)."""

    def __init__(self, config, task: str = "feature-extraction", **kwargs):
        super().__init__(config, task="feature-extraction" if task == TASK else task, **kwargs)

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        return {"last_hidden_state": _hidden_state_axes(3)}


def keep_every_patch(model) -> None:
    """Force mask_ratio 0 on a loaded ViTMAE: features of every patch, whatever the checkpoint
    was pretrained with (0.75 for facebook/vit-mae-*)."""
    model.config.mask_ratio = 0.0


def _patches_in_order(self, sequence, noise=None):
    """ViTMAEEmbeddings.random_masking at mask_ratio 0, without its random shuffle: every patch,
    in image order; nothing masked (mask all 0); ``ids_restore`` the identity."""
    batch_size, seq_length, _ = sequence.shape
    mask = torch.zeros_like(sequence[:, :, 0])
    ids_restore = torch.arange(seq_length, device=sequence.device).expand(batch_size, -1)
    return sequence, mask, ids_restore


KEEP_PATCHES_IN_ORDER = ExportPatch(
    "keep_patches_in_order", vit_mae.ViTMAEEmbeddings, "random_masking", _patches_in_order)
VIT_MAE_PATCHES = (KEEP_PATCHES_IN_ORDER,)


def ordered_noise_reference(model):
    """What validation compares the ViTMAE graph with: transformers' own forward (its random
    masking included) with noise that sorts to image order, ``noise[i] = i``."""
    if model.config.mask_ratio != 0:
        raise ExportError(f"ViTMAE's mask_ratio is {model.config.mask_ratio}, not 0, at "
                          "validation. Note: report this (keep_every_patch sets it).")

    def forward(pixel_values, **feed):
        patch = model.config.patch_size
        count = (pixel_values.shape[-2] // patch) * (pixel_values.shape[-1] // patch)
        noise = torch.arange(count, dtype=torch.float32).expand(pixel_values.shape[0], -1)
        return model(pixel_values=pixel_values, noise=noise, **feed)

    return forward
