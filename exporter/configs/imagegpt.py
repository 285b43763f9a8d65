"""ImageGPT for image-classification: color-cluster ids in, the classifier's logits out.

ImageGPT reads an image as a sequence of color-cluster ids (its processor resizes the image,
maps each pixel to its nearest cluster and flattens: ``input_ids``), runs a GPT-2-like decoder
over them and classifies the mean of the hidden states. optimum's config is GPT-2's, which asks
for an attention mask the processor never makes; ``ImageGPTOnnxConfig`` takes ``input_ids``
only. In transformers 4.57, ImageGPTModel.forward without a cache (``use_cache=False``, as
optimum traces) computes positions from ``past_length = None`` and raises;
``POSITIONS_WITHOUT_CACHE`` gives it the positions of a first step (0 to length - 1), as it
computes them with a cache.

>>> from transformers import ImageGPTConfig
>>> list(ImageGPTOnnxConfig(ImageGPTConfig(), task="image-classification").inputs)
['input_ids']
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from optimum.exporters.onnx.model_configs import ImageGPTOnnxConfig as _ImageGPT
from transformers.models.imagegpt import modeling_imagegpt as imagegpt

from .patching import ExportPatch

TASKS = ("image-classification",)
BATCH_SIZES = (1, 3)

_MODEL_FORWARD = vars(imagegpt.ImageGPTModel)["forward"]


def _forward_with_positions(self, input_ids=None, past_key_values=None, *args,
                            position_ids=None, **kwargs):
    """ImageGPTModel.forward, given a first step's positions when there is no cache."""
    if position_ids is None and past_key_values is None and input_ids is not None:
        position_ids = torch.arange(input_ids.shape[-1], device=input_ids.device).unsqueeze(0)
    return _MODEL_FORWARD(self, input_ids, past_key_values, *args, position_ids=position_ids,
                          **kwargs)


POSITIONS_WITHOUT_CACHE = ExportPatch(
    "positions_without_cache", imagegpt.ImageGPTModel, "forward", _forward_with_positions)
PATCHES = (POSITIONS_WITHOUT_CACHE,)


class ImageGPTOnnxConfig(_ImageGPT):
    """ImageGPTForImageClassification -> one graph: ``input_ids`` (batch, sequence) in,
    ``logits`` (batch, labels) out."""

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        return {"input_ids": {0: "batch_size", 1: "sequence_length"}}

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        return {"logits": {0: "batch_size"}}


def validation_feeds(input_names: Sequence[str], config, *, seed: int = 0
                     ) -> Iterator[tuple[dict, dict]]:
    """Cluster ids (never the start-of-sequence id, ``vocab_size - 1``) at two batch sizes and
    two lengths: the whole image (``n_positions``, what the processor makes for the
    checkpoint's size) and a third of it, so a traced length shows."""
    rng = np.random.default_rng(seed)
    lengths = (config.n_positions, max(1, config.n_positions // 3))
    for batch in BATCH_SIZES:
        for length in lengths:
            ids = rng.integers(0, config.vocab_size - 1, size=(batch, length), dtype=np.int64)
            yield {"batch": batch, "sequence": length}, {"input_ids": ids}


def cached_reference(model):
    """What validation compares the graph with: the forward transformers' pipeline runs (with
    its cache, ``use_cache=True``, which computes the positions the patch gives; optimum leaves
    the model's config at ``use_cache=False``)."""

    def forward(**feed):
        return model(**feed, use_cache=True)

    return forward
