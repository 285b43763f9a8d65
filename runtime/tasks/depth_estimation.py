"""The depth-estimation task: the predicted depth at the image's size and a depth image, as
transformers' DepthEstimationPipeline gives them (GLPN, DPT)."""

from __future__ import annotations

from ..vision.postprocess import depth_estimation
from .vision import ImagePipeline


class DepthEstimationPipeline(ImagePipeline):
    """``{"predicted_depth": float32 array (height, width), "depth": PIL image}`` per image;
    the depth image spreads the predicted depth over 0..255. (transformers gives
    ``predicted_depth`` as a torch tensor; here it is a numpy array with the same values.)

    >>> estimate = pipeline("depth-estimation", model="glpn-bundle")      # doctest: +SKIP
    >>> estimate("room.jpg")["depth"].size                                # doctest: +SKIP
    (640, 480)
    """

    task = "depth-estimation"
    parameters = {"timeout": None}

    def __call__(self, inputs=None, **kwargs):
        if "images" in kwargs:  # transformers' keyword for the inputs
            inputs = kwargs.pop("images")
        self.arguments(kwargs)
        images, single = self.images(inputs)
        results = []
        for image in images:  # one at a time, as transformers does
            outputs = self.run_images([image])
            results += depth_estimation(outputs["predicted_depth"], [(image.height, image.width)])
        return results[0] if single else results
