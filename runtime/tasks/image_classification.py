"""The image-classification task: labels with scores for images, as transformers'
ImageClassificationPipeline gives them."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from ..errors import EngineError, InputError
from ..vision.postprocess import top_classes
from .base import default_labels
from .text import check_batch_size, logits_of
from .vision import ImagePipeline


class ImageClassificationPipeline(ImagePipeline):
    """The ``top_k`` best labels of each image, best first.

    >>> classify = pipeline("image-classification", model="vit-bundle")   # doctest: +SKIP
    >>> classify("cat.jpg", top_k=2)                                      # doctest: +SKIP
    [{'label': 'tabby cat', 'score': 0.91}, {'label': 'tiger cat', 'score': 0.05}]
    """

    task = "image-classification"
    parameters = {"top_k": 5, "function_to_apply": None, "batch_size": 1, "timeout": None}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.labels = self.id2label or default_labels(self.config)
        self._top_k(self.defaults)
        # an unknown function_to_apply fails now, not at the first call
        top_classes(np.zeros(2), function_to_apply=self._function(self.defaults))

    def __call__(self, inputs=None, **kwargs):
        if "images" in kwargs:  # transformers' keyword for the inputs
            inputs = kwargs.pop("images")
        args = self.arguments(kwargs)
        top_k = self._top_k(args)
        function = self._function(args)
        images, single = self.images(inputs)
        batch_size = check_batch_size(args["batch_size"])
        results = []
        for start in range(0, len(images), batch_size):
            logits = logits_of(self.run_images(images[start:start + batch_size]))
            if logits.shape[-1] > len(self.labels):
                raise EngineError(
                    f"The model gives {logits.shape[-1]} scores, but config.json names only "
                    f"{len(self.labels)} labels. Note: the bundle's id2label must name every class."
                )
            for row in logits:
                ranked = top_classes(row, top_k=top_k, function_to_apply=function,
                                     problem_type=self.config.get("problem_type"))
                results.append([{"label": self.labels[r["label"]], "score": r["score"]}
                                 for r in ranked])
        return results[0] if single else results

    @staticmethod
    def _function(args) -> str | None:
        """function_to_apply; None (and transformers' "default") lets the config decide."""
        function = args["function_to_apply"]
        return None if function == "default" else function

    @staticmethod
    def _top_k(args) -> int:
        top_k = args["top_k"]
        if not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k < 1:
            raise InputError(
                f"top_k must be a positive int, got {top_k!r}. Note: top_k larger than the "
                "number of labels gives every label."
            )
        return int(top_k)
