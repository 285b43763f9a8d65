"""The image-feature-extraction task: an image encoder's hidden states (or its pooled output),
as transformers' ImageFeatureExtractionPipeline gives them."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import InputError
from ..vision.processors import ImageProcessor
from .text import check_batch_size
from .vision import ImagePipeline

HIDDEN, POOLED = "last_hidden_state", "pooler_output"


class ImageFeatureExtractionPipeline(ImagePipeline):
    """Features of images: each image gives the graph's first output (the last hidden state)
    with its batch axis of 1, as nested lists (``[1][patches][hidden]`` for ViT,
    ``[1][channels][height][width]`` for ConvNeXt); with ``pool=True`` the pooled output,
    ``[1][hidden]``, for models that have one. ``return_tensors=True`` gives numpy arrays.

    >>> embed = pipeline("image-feature-extraction", model="vit-bundle")   # doctest: +SKIP
    >>> np.shape(embed("cat.jpg"))                                          # doctest: +SKIP
    (1, 197, 768)
    >>> np.shape(embed("cat.jpg", pool=True))                               # doctest: +SKIP
    (1, 768)
    """

    task = "image-feature-extraction"
    parameters = {"pool": False, "return_tensors": False, "image_processor_kwargs": None,
                  "batch_size": 1, "timeout": None}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.output_names = [spec.name for spec in self.engine.outputs]
        self._processor(self.defaults)  # bad image_processor_kwargs fail now

    def __call__(self, inputs=None, **kwargs):
        if "images" in kwargs:  # transformers' keyword for the inputs
            inputs = kwargs.pop("images")
        args = self.arguments(kwargs)
        name = self._output(args["pool"])
        processor = self._processor(args)
        batch_size = check_batch_size(args["batch_size"])
        images, single = self.images(inputs)
        results = []
        for start in range(0, len(images), batch_size):
            arrays = processor(images[start:start + batch_size])
            feed = {key: arrays[key] for key in arrays if key in self.input_names}
            features = self.engine.run(feed)[name]
            for row in range(len(features)):
                one = features[row:row + 1]
                results.append(one if args["return_tensors"] else one.tolist())
        return results[0] if single else results

    def _output(self, pool) -> str:
        """The graph output transformers reads: the first (the hidden states), or the pooled
        output with ``pool``."""
        if not isinstance(pool, (bool, np.bool_)) and pool is not None:
            raise InputError(f"pool must be True or False, got {pool!r:.80}.")
        if not pool:
            return HIDDEN if HIDDEN in self.output_names else self.output_names[0]
        if POOLED not in self.output_names:
            raise InputError(
                "No pooled output was returned: this model has no pooler (its graph gives "
                f"{self.output_names}). Note: call without pool=True for its hidden states, as "
                "transformers does for this model.")
        return POOLED

    def _processor(self, args) -> ImageProcessor:
        """The bundle's image processor, or one with ``image_processor_kwargs`` over its
        settings (transformers passes them to its processor call: {"size": {...}})."""
        given = args["image_processor_kwargs"]
        if given is None:
            return self.image_processor
        if not isinstance(given, Mapping):
            raise InputError(
                f"image_processor_kwargs must be a dict of image processor settings, got "
                f"{type(given).__name__}. Note: like {{\"size\": {{\"height\": 224, "
                "\"width\": 224}}.")
        config = {**self.image_processor.config, **given}
        return type(self.image_processor).from_config(config)
