"""What the image tasks share: images in, the bundle's image processor, feeds for the graph."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..vision.images import load_images
from .base import Pipeline


class ImagePipeline(Pipeline):
    """Base of the pipelines that read images: file paths, bytes, PIL images, numpy HWC
    arrays, or lists of them (``runtime.vision.images.load_images``)."""

    preprocessors: ClassVar[tuple[str, ...]] = ("image_processor",)

    @staticmethod
    def images(inputs):
        """(list of RGB PIL images, whether a single image was given)."""
        return load_images(inputs)

    def image_feed(self, images) -> dict[str, np.ndarray]:
        """The image processor's arrays for ``images``, holding only the graph's inputs."""
        arrays = self.image_processor(images)
        return {name: arrays[name] for name in arrays if name in self.input_names}

    def run_images(self, images) -> dict[str, np.ndarray]:
        return self.engine.run(self.image_feed(images))
