"""The object-detection task: labelled boxes in pixel coordinates of the original image, as
transformers' ObjectDetectionPipeline gives them (DETR, YOLOS)."""

from __future__ import annotations

from numbers import Real

from ..errors import InputError
from ..vision.postprocess import detections
from .vision import ImagePipeline


class ObjectDetectionPipeline(ImagePipeline):
    """``[{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}]`` per image: every
    detection whose score is above ``threshold``, in the model's query order.

    >>> detect = pipeline("object-detection", model="detr-bundle")      # doctest: +SKIP
    >>> detect("street.jpg", threshold=0.9)[0]                           # doctest: +SKIP
    {'score': 0.998, 'label': 'car', 'box': {'xmin': 12, 'ymin': 40, 'xmax': 230, 'ymax': 190}}
    """

    task = "object-detection"
    parameters = {"threshold": 0.5, "timeout": None}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        _threshold(self.defaults)

    def __call__(self, inputs=None, **kwargs):
        if "images" in kwargs:  # transformers' keyword for the inputs
            inputs = kwargs.pop("images")
        threshold = _threshold(self.arguments(kwargs))
        images, single = self.images(inputs)
        results = []
        for image in images:  # one at a time, as transformers does: no padding between images
            outputs = self.run_images([image])
            [found] = detections(outputs["logits"], outputs["pred_boxes"], threshold=threshold,
                                 target_sizes=[(image.height, image.width)])
            results.append([{"score": d["score"], "label": self.label(d["label"]), "box": d["box"]}
                            for d in found])
        return results[0] if single else results

    def label(self, index: int) -> str:
        return self.id2label.get(index, f"LABEL_{index}")


def _threshold(args) -> float:
    threshold = args["threshold"]
    if not isinstance(threshold, Real) or isinstance(threshold, bool):
        raise InputError(f"threshold must be a number, got {threshold!r}. Note: detections "
                         "scoring above it are kept (default 0.5).")
    return float(threshold)
