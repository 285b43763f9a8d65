"""Mask2Former: the optimum-onnx export config optimum lacks, and the export-time patches that
keep the graph's batch, height and width dynamic.

A plain trace of a Swin-backed Mask2Former freezes some of the traced image size into the graph,
in four places, and writes one function as ONNX that gives NaN at some sizes; each patch below
replaces the smallest function that does it, only while the graph is traced
(``Mask2FormerModelPatcher``, the config's model patcher, applies them):

- ``DYNAMIC_OFFSET_NORMALIZER``: the pixel decoder's deformable attention divides its sampling
  offsets by the level sizes taken from a ``torch.tensor`` constant, so any other size gives wrong
  numbers (no error);
- ``REFERENCE_POINTS_WITHOUT_LINSPACE``: the pixel decoder's encoder places its reference points
  with ``torch.linspace``, which the exporter writes as a division by ``size - 1``: NaN for a
  feature map 1 wide or high, so an image side of 32 pixels or less gives wrong numbers (no
  error);
- ``ALWAYS_CROP_WINDOW_PADDING``: Swin crops its window padding off behind a Python ``if``, so a
  graph traced at a size without padding fails at every size with padding (a Reshape error);
- ``ALWAYS_PAD_TO_PATCHES`` and ``ALWAYS_PAD_TO_EVEN``: the same for Swin's padding of the image
  to whole patches and of odd feature maps before patch merging; these matter only for sizes that
  are not multiples of 32, which the patches make work too.

With them, one graph agrees with PyTorch to about 1e-6 at every size and batch tried
(tests/exporter/test_mask2former.py). Mask2Former's processor resizes images to multiples of 32
by default (``size_divisor``).

>>> from transformers import Mask2FormerConfig
>>> config = Mask2FormerOnnxConfig(Mask2FormerConfig(), task="image-segmentation")
>>> list(config.outputs["masks_queries_logits"].values())
['batch_size', 'num_queries', 'mask_height', 'mask_width']
"""

from __future__ import annotations

import contextlib

import torch
from optimum.exporters.onnx.config import VisionOnnxConfig
from optimum.exporters.onnx.model_patcher import ModelPatcher
from optimum.utils.input_generators import DummyVisionInputGenerator
from optimum.utils.normalized_config import NormalizedVisionConfig
from torch import nn
from transformers.models.mask2former import modeling_mask2former as m2f
from transformers.models.swin import modeling_swin as swin

from .patching import ExportPatch, applied

TASKS = ("image-segmentation",)


def _deformable_attention_forward(
    self,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    encoder_hidden_states=None,
    encoder_attention_mask=None,
    position_embeddings: torch.Tensor | None = None,
    reference_points=None,
    spatial_shapes_list=None,
    level_start_index=None,
    output_attentions: bool = False,
):
    """Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention.forward, traceable.

    The original builds the offset normalizer (each level's width and height) with
    ``torch.tensor([[w, h], ...])``: under the tracer that copies the traced sizes into a
    constant, so every other image size samples the wrong points. Here the sizes are stacked
    as tensors, which keeps them tied to the input's shape. Two checks of the original are left
    out, being Python bools under the tracer: that the level sizes add up to the sequence, and
    which kind of reference points came (the encoder only makes 2-d points, never boxes).
    """
    if position_embeddings is not None:
        hidden_states = self.with_pos_embed(hidden_states, position_embeddings)

    batch_size, num_queries, _ = hidden_states.shape
    batch_size, sequence_length, _ = encoder_hidden_states.shape

    value = self.value_proj(encoder_hidden_states)
    if attention_mask is not None:
        value = value.masked_fill(attention_mask[..., None], float(0))
    value = value.view(batch_size, sequence_length, self.n_heads, self.d_model // self.n_heads)
    sampling_offsets = self.sampling_offsets(hidden_states).view(
        batch_size, num_queries, self.n_heads, self.n_levels, self.n_points, 2
    )
    attention_weights = self.attention_weights(hidden_states).view(
        batch_size, num_queries, self.n_heads, self.n_levels * self.n_points
    )
    attention_weights = nn.functional.softmax(attention_weights, -1).view(
        batch_size, num_queries, self.n_heads, self.n_levels, self.n_points
    )
    offset_normalizer = torch.stack(
        [torch.stack([torch.as_tensor(width), torch.as_tensor(height)])
         for height, width in spatial_shapes_list]
    ).to(device=reference_points.device)
    sampling_locations = (
        reference_points[:, :, None, :, None, :]
        + sampling_offsets / offset_normalizer[None, None, None, :, None, :]
    )
    output = m2f.multi_scale_deformable_attention(
        value, spatial_shapes_list, sampling_locations, attention_weights
    )
    output = self.output_proj(output)
    return output, attention_weights


DYNAMIC_OFFSET_NORMALIZER = ExportPatch(
    "dynamic_offset_normalizer",
    m2f.Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention,
    "forward",
    _deformable_attention_forward,
)


def _encoder_reference_points(spatial_shapes_list, valid_ratios, device):
    """Mask2FormerPixelDecoderEncoderOnly.get_reference_points, without ``torch.linspace``.

    The original places each level's reference points at the pixel centres with
    ``torch.linspace(0.5, size - 0.5, size)``. The exporter writes a traced-length linspace as
    ``start + arange(size) * (end - start) / (size - 1)``, which is 0 / 0 = NaN for a level of
    size 1: the 1/32 level (Swin rounds each halving up) of any image 32 pixels or less high or
    wide, such as 96 x 32 (32 is a ``size_divisor`` multiple, reached for long images), and the
    1/16 level too at 16 or less. NaN sampling points make GridSample read wrong values (no
    error), so the encoder's outputs at that level, then every output, are wrong.
    ``arange(size) + 0.5`` gives the same points (exactly: the linspace step is 1) at every size,
    1 included.
    """
    reference_points_list = []
    for level, (height, width) in enumerate(spatial_shapes_list):
        ref_y, ref_x = torch.meshgrid(
            torch.arange(height, dtype=valid_ratios.dtype, device=device) + 0.5,
            torch.arange(width, dtype=valid_ratios.dtype, device=device) + 0.5,
            indexing="ij",
        )
        ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * height)
        ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * width)
        reference_points_list.append(torch.stack((ref_x, ref_y), -1))
    reference_points = torch.cat(reference_points_list, 1)
    return reference_points[:, :, None] * valid_ratios[:, None]


# A staticmethod in transformers, so the replacement must be one too.
REFERENCE_POINTS_WITHOUT_LINSPACE = ExportPatch(
    "reference_points_without_linspace",
    m2f.Mask2FormerPixelDecoderEncoderOnly,
    "get_reference_points",
    staticmethod(_encoder_reference_points),
)


def _swin_pad_to_windows(self, hidden_states, height, width):
    """SwinLayer.maybe_pad, reporting padding so that SwinLayer.forward always crops it off.

    SwinLayer.forward pads the feature map up to whole windows, and afterwards crops the padding
    off only ``if pad_values[3] > 0 or pad_values[5] > 0``: a Python bool, which the tracer fixes
    at the traced size. Traced at a size that needs no padding (224 x 224 with window 7), the
    graph never crops, and every size that does need padding fails in a Reshape. The padding
    itself is computed from traced sizes and stays dynamic; only the reported values change
    (forward reads them for nothing else), so the crop is always in the graph: a crop to the
    unpadded size, which is a no-op where nothing was padded.
    """
    pad_right = (self.window_size - width % self.window_size) % self.window_size
    pad_bottom = (self.window_size - height % self.window_size) % self.window_size
    hidden_states = nn.functional.pad(hidden_states, (0, 0, 0, pad_right, 0, pad_bottom))
    return hidden_states, (0, 0, 0, 1, 0, 1)


ALWAYS_CROP_WINDOW_PADDING = ExportPatch(
    "always_crop_window_padding", swin.SwinLayer, "maybe_pad", _swin_pad_to_windows
)


def _swin_pad_to_patches(self, pixel_values, height, width):
    """SwinPatchEmbeddings.maybe_pad, padding in every graph.

    The original pads the image up to whole patches only ``if width % patch_size != 0``: a
    Python bool fixed at the traced size. Traced at a multiple of the patch size, the graph never
    pads, and the strided convolution silently drops the last rows and columns of any other
    size. Padding by a traced amount (zero where the size fits) keeps it in the graph.
    """
    patch_height, patch_width = self.patch_size
    pad_right = (patch_width - width % patch_width) % patch_width
    pad_bottom = (patch_height - height % patch_height) % patch_height
    return nn.functional.pad(pixel_values, (0, pad_right, 0, pad_bottom))


ALWAYS_PAD_TO_PATCHES = ExportPatch(
    "always_pad_to_patches", swin.SwinPatchEmbeddings, "maybe_pad", _swin_pad_to_patches
)


def _swin_pad_to_even(self, input_feature, height, width):
    """SwinPatchMerging.maybe_pad, padding in every graph.

    The original pads an odd-sized feature map by one row or column only ``if height % 2 == 1
    or width % 2 == 1``: a Python bool fixed at the traced size, so a graph traced at an even
    size fails in a Concat at every odd one (images that are not multiples of 32). Padding by
    the traced ``height % 2`` and ``width % 2`` keeps it in the graph.
    """
    return nn.functional.pad(input_feature, (0, 0, 0, width % 2, 0, height % 2))


ALWAYS_PAD_TO_EVEN = ExportPatch(
    "always_pad_to_even", swin.SwinPatchMerging, "maybe_pad", _swin_pad_to_even
)

PATCHES = (
    DYNAMIC_OFFSET_NORMALIZER,
    REFERENCE_POINTS_WITHOUT_LINSPACE,
    ALWAYS_CROP_WINDOW_PADDING,
    ALWAYS_PAD_TO_PATCHES,
    ALWAYS_PAD_TO_EVEN,
)


class Mask2FormerModelPatcher(ModelPatcher):
    """optimum's model patcher (it picks the outputs), with Mask2Former's patches applied too."""

    def __enter__(self):
        self._patches = contextlib.ExitStack()
        self._patches.enter_context(applied(PATCHES))
        try:
            super().__enter__()
        except BaseException:
            self._patches.close()
            raise
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self._patches.close()
        super().__exit__(exc_type, exc_value, traceback)


class Mask2FormerDummyInputGenerator(DummyVisionInputGenerator):
    """``pixel_values`` for the trace, at 288 x 352 whatever size optimum asks for.

    optimum asks for 64 x 64 by default. The patches make the graph independent of the traced
    size (the tests trace at other sizes too), but a square trace size would hide a height and
    width swapped somewhere, and 288 x 352 needs window padding in every Swin stage for both
    common window sizes (7 and 12), so every size-dependent branch is traced on its general path.
    """

    SUPPORTED_INPUT_NAMES = ("pixel_values",)
    TRACE_HEIGHT = 288
    TRACE_WIDTH = 352

    def __init__(self, task: str, normalized_config: NormalizedVisionConfig, **kwargs):
        super().__init__(task, normalized_config, **kwargs)
        backbone = getattr(normalized_config.config, "backbone_config", None)
        self.num_channels = getattr(backbone, "num_channels", self.num_channels)
        self.height, self.width = self.TRACE_HEIGHT, self.TRACE_WIDTH


class Mask2FormerOnnxConfig(VisionOnnxConfig):
    """Mask2FormerForUniversalSegmentation -> one graph: pixel_values in, class and mask logits
    out. The model's ``pixel_mask`` argument is not an input: its forward never reads it.

    ``masks_queries_logits`` is a quarter of the image size, rounded up (``mask_height`` =
    ceil(height / 4)). Needs opset 16 or newer (GridSample); optimum's default is 18.
    """

    NORMALIZED_CONFIG_CLASS = NormalizedVisionConfig
    DUMMY_INPUT_GENERATOR_CLASSES = (Mask2FormerDummyInputGenerator,)
    # Measured: about 1e-6. The decoder binarizes mask logits (`sigmoid(logit) < 0.5`) for its
    # masked attention, and a logit within rounding noise of 0 can flip and move the outputs by
    # about 1e-3: random weights from transformers' init (mask logits near 1e-3) do that, trained
    # ones (logits far from 0) should not.
    ATOL_FOR_VALIDATION = 1e-4
    _MODEL_PATCHER = Mask2FormerModelPatcher

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        return {"pixel_values": {0: "batch_size", 1: "num_channels", 2: "height", 3: "width"}}

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        return {
            "class_queries_logits": {0: "batch_size", 1: "num_queries"},
            "masks_queries_logits": {
                0: "batch_size", 1: "num_queries", 2: "mask_height", 3: "mask_width",
            },
        }
