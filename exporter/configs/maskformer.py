"""MaskFormer: Mask2Former's export config (one graph: pixel_values in, class and mask logits
out), with the patches its own copy of Swin needs.

MaskFormer's Swin backbone is ``MaskFormerSwin*``, a copy of transformers' Swin with the same
Python ``if``s on the traced size: its window padding is cropped off only ``if`` there was
padding, its image padded to whole patches and its odd feature maps to even ones only ``if``
needed. Traced as it is, the graph fails (a Reshape) or silently drops pixels at other sizes;
the same three replacements as mask2former.py's, on MaskFormer's classes, keep them in every
graph. Its window size is fixed (no shrinking for small maps, unlike Swin's classifier), and its
pixel decoder (an FPN) and transformer decoder (DETR's) take their sizes from tensors.

The masks come out at a quarter of the image size; its post-processing (runtime.vision.
postprocess) is Mask2Former's without the 384 x 384 upscaling.

>>> [patch.owner.__name__ for patch in PATCHES]
['MaskFormerSwinLayer', 'MaskFormerSwinPatchEmbeddings', 'MaskFormerSwinPatchMerging']
"""

from __future__ import annotations

import contextlib

from transformers.models.maskformer import modeling_maskformer_swin as swin

from . import mask2former
from .patching import ExportPatch, applied

TASKS = ("image-segmentation",)

# mask2former's replacements are written against Swin's methods, which MaskFormer's copy shares
# line for line (maybe_pad of the layer, the patch embeddings and the patch merging).
PATCHES = (
    ExportPatch("always_crop_window_padding", swin.MaskFormerSwinLayer, "maybe_pad",
                mask2former._swin_pad_to_windows),
    ExportPatch("always_pad_to_patches", swin.MaskFormerSwinPatchEmbeddings, "maybe_pad",
                mask2former._swin_pad_to_patches),
    ExportPatch("always_pad_to_even", swin.MaskFormerSwinPatchMerging, "maybe_pad",
                mask2former._swin_pad_to_even),
)


class MaskFormerModelPatcher(mask2former.Mask2FormerModelPatcher):
    """optimum's model patcher with MaskFormer's patches applied."""

    def __enter__(self):
        self._patches = contextlib.ExitStack()
        self._patches.enter_context(applied(PATCHES))
        try:
            super(mask2former.Mask2FormerModelPatcher, self).__enter__()
        except BaseException:
            self._patches.close()
            raise
        return self


class MaskFormerOnnxConfig(mask2former.Mask2FormerOnnxConfig):
    """MaskFormerForInstanceSegmentation -> class_queries_logits (batch, queries, classes + 1)
    and masks_queries_logits (batch, queries, height / 4, width / 4). ``pixel_mask`` is no
    input: its forward never reads it."""

    _MODEL_PATCHER = MaskFormerModelPatcher
