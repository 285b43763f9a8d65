"""ViLT: the optimum-onnx export config optimum lacks, and the export-time patch that makes the
graph deterministic and dynamic in batch, text length and image size.

``ViltEmbeddings.visual_embed`` cannot be traced as it is:

- it resizes the position embeddings for each image of the batch to that image's own number of
  patch rows and columns (read from ``pixel_mask``) in a Python loop over the batch: a trace
  unrolls the loop at the traced batch size and bakes in the traced sizes;
- it then *selects* patches with ``nonzero`` and ``torch.multinomial``: the valid patches of
  each image, padded up to the batch's largest count with padding patches drawn at random (with
  ``max_image_length > 0``, a random subset of the valid patches when an image has more). The
  number of image tokens depends on the mask's values, and the draws are random.

``KEEP_EVERY_PATCH`` replaces it with a computation of the same numbers that is a plain graph:

- the bilinear (``align_corners=True``) resize of the position grid to each image's rows and
  columns is written as two interpolation-weight matrices built from the row and column counts
  (zero rows past them: the zero padding of the original), applied with one einsum for the whole
  batch;
- no selection: every patch of the padded canvas stays a token, and the pixel mask (at patch
  resolution) is the attention mask of the image tokens. The padding patches the original draws
  are masked out of attention too, and a patch's position embedding travels with it, so the
  order and number of masked tokens changes nothing that unmasked tokens see: the logits are
  the same (up to float summation order), and the same on every run.

Random patch *sampling* (``max_image_length > 0``, as in ViLT's pre-training) drops real patches
at random, which no deterministic graph can reproduce: the config refuses it (the fine-tuned
checkpoints keep every patch: ``max_image_length = -1``, transformers' default).

The graph: input_ids, attention_mask, token_type_ids [batch, sequence], pixel_values
[batch, 3, height, width], pixel_mask [batch, height, width] -> logits [batch, num_labels]
(ViltForQuestionAnswering). Validated against PyTorch with padded pixel masks
(``validation_feeds``).

>>> from transformers import ViltConfig
>>> sorted(ViltOnnxConfig(ViltConfig(), task="visual-question-answering").inputs)
['attention_mask', 'input_ids', 'pixel_mask', 'pixel_values', 'token_type_ids']
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from optimum.exporters.onnx.config import TextAndVisionOnnxConfig
from optimum.utils.input_generators import DummyTextInputGenerator, DummyVisionInputGenerator
from optimum.utils.normalized_config import NormalizedTextAndVisionConfig
from torch import nn
from transformers.models.vilt import modeling_vilt

from runtime.errors import ExportError

from .patching import ExportPatch

TASKS = ("visual-question-answering",)


def _interpolation_weights(counts: torch.Tensor, length: int | torch.Tensor, grid: int,
                           dtype: torch.dtype) -> torch.Tensor:
    """[batch, length, grid] weights of ``interpolate(..., mode="bilinear",
    align_corners=True)`` along one axis, resizing ``grid`` positions to ``counts[b]`` ones and
    zero past ``counts[b]`` (the zero padding up to ``length``).

    Output position i reads source ``i * (grid - 1) / (count - 1)`` (0 for a count of 1), split
    between its floor and the next position, as PyTorch computes it (the scale in float32).
    """
    positions = torch.arange(length, device=counts.device).to(dtype)[None, :]   # [1, length]
    counts = counts.to(dtype)[:, None]                                          # [batch, 1]
    scale = (grid - 1) / torch.clamp(counts - 1, min=1)
    source = positions * scale
    low = torch.floor(source)
    high = torch.clamp(low + 1, max=grid - 1)
    fraction = source - low
    cells = torch.arange(grid, device=counts.device).to(dtype)[None, None, :]
    weights = ((cells == low[..., None]).to(dtype) * (1 - fraction)[..., None]
               + (cells == high[..., None]).to(dtype) * fraction[..., None])
    inside = (positions < counts).to(dtype)[..., None]
    return weights * inside


def _visual_embed(self, pixel_values, pixel_mask, max_image_length=200):
    """ViltEmbeddings.visual_embed for the trace: every patch kept, masked by the pixel mask
    (the module docstring says why this gives the same logits)."""
    x = self.patch_embeddings(pixel_values)
    batch_size, num_channels, height, width = x.shape
    x_mask = pixel_mask[:, None, :, :].float()
    x_mask = nn.functional.interpolate(x_mask, size=(x.shape[2], x.shape[3])).long()
    x_h = x_mask[:, 0].sum(dim=1)[:, 0]
    x_w = x_mask[:, 0].sum(dim=2)[:, 0]

    patch_dim = self.config.image_size // self.config.patch_size
    dtype = self.position_embeddings.dtype
    spatial_pos = self.position_embeddings[0, 1:, :].transpose(0, 1).reshape(
        num_channels, patch_dim, patch_dim)
    rows = _interpolation_weights(x_h, height, patch_dim, dtype)
    cols = _interpolation_weights(x_w, width, patch_dim, dtype)
    pos_embed = torch.einsum("bip,cpq,bjq->bijc", rows, spatial_pos, cols).reshape(
        batch_size, height * width, num_channels)

    x = x.flatten(2).transpose(1, 2)
    x_mask = x_mask.flatten(1)
    cls_tokens = self.cls_token.expand(batch_size, -1, -1)
    x = torch.cat((cls_tokens, x), dim=1)
    pos_embed = torch.cat(
        (self.position_embeddings[:, 0, :][:, None, :].expand(batch_size, -1, -1), pos_embed),
        dim=1)
    x = self.dropout(x + pos_embed)
    x_mask = torch.cat([torch.ones_like(x_mask[:, :1]), x_mask], dim=1)
    # the patch index is for the pre-training heads only; the embeddings' forward drops it
    return x, x_mask, (None, (height, width))


KEEP_EVERY_PATCH = ExportPatch(
    "keep_every_patch", modeling_vilt.ViltEmbeddings, "visual_embed", _visual_embed
)
PATCHES = (KEEP_EVERY_PATCH,)


class ViltVisionInputGenerator(DummyVisionInputGenerator):
    """pixel_values and pixel_mask for the trace at 96 x 160, not a square: a height and width
    swapped somewhere would show at validation."""

    SUPPORTED_INPUT_NAMES = ("pixel_values", "pixel_mask")

    def __init__(self, task, normalized_config, **kwargs):
        super().__init__(task, normalized_config, **kwargs)
        patch = normalized_config.config.patch_size
        self.height, self.width = 3 * patch, 5 * patch


class ViltOnnxConfig(TextAndVisionOnnxConfig):
    """ViltForQuestionAnswering -> one graph: text and image in, answer logits out."""

    NORMALIZED_CONFIG_CLASS = NormalizedTextAndVisionConfig
    DUMMY_INPUT_GENERATOR_CLASSES = (DummyTextInputGenerator, ViltVisionInputGenerator)
    ATOL_FOR_VALIDATION = 1e-4

    def __init__(self, config, task: str = "visual-question-answering", **kwargs):
        length = getattr(config, "max_image_length", -1)
        if isinstance(length, int) and length > 0:
            raise ExportError(
                f"This ViLT config has max_image_length={length}: PyTorch then keeps a random "
                f"sample of {length} patches of a larger image, which no graph reproduces. "
                "Note: set \"max_image_length\": -1 in config.json (every patch kept, as the "
                "fine-tuned ViLT checkpoints and transformers' default do)."
            )
        super().__init__(config, task=task, **kwargs)

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        text = {0: "batch_size", 1: "sequence_length"}
        return {
            "input_ids": text,
            "attention_mask": text,
            "token_type_ids": text,
            "pixel_values": {0: "batch_size", 1: "num_channels", 2: "height", 3: "width"},
            "pixel_mask": {0: "batch_size", 1: "height", 2: "width"},
        }

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        return {"logits": {0: "batch_size"}}


# Image sizes of the validation (height, width), in multiples of the patch size: not square,
# different in both directions.
_PATCH_GRIDS = ((2, 3), (4, 2))


def validation_feeds(input_names: Sequence[str], config, *, seed: int = 0
                     ) -> Iterator[tuple[dict, dict[str, np.ndarray]]]:
    """(shape, feed) at batch 1 and 3 x sequence 9 and 23 x two image sizes. Every row after the
    first has a shorter text and a smaller image padded at the bottom and right, with its pixel
    mask, as the runtime's processor pads a batch: the masked paths are checked too."""
    from ..validate import BATCH_SIZES, SEQUENCE_LENGTHS, _text_feed

    rng = np.random.default_rng(seed)
    patch = config.patch_size
    for batch in BATCH_SIZES:
        for length in SEQUENCE_LENGTHS:
            for rows, cols in _PATCH_GRIDS:
                height, width = rows * patch, cols * patch
                pixels = rng.standard_normal((batch, config.num_channels, height, width))
                mask = np.zeros((batch, height, width), dtype=np.int64)
                for row in range(batch):
                    # a smaller image below the first, not a whole number of patches
                    valid_h = max(1, height - row * patch - row * patch // 3)
                    valid_w = max(1, width - row * patch // 2 - row)
                    mask[row, :valid_h, :valid_w] = 1
                pixels = (pixels * mask[:, None]).astype(np.float32)
                feed = {**_text_feed(rng, input_names, batch, length, config),
                        "pixel_values": pixels, "pixel_mask": mask}
                shape = {"batch": batch, "sequence": length, "height": height, "width": width}
                yield shape, {name: feed[name] for name in input_names}
