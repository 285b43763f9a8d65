"""The image-segmentation task: labelled masks, as transformers' ImageSegmentationPipeline gives
them. Semantic models (SegFormer) give one mask per class present; Mask2Former and MaskFormer
give panoptic, instance or semantic segments, chosen by ``subtask``."""

from __future__ import annotations

from numbers import Real

from ..errors import EngineError, InputError
from ..vision.postprocess import (
    choose_subtask,
    mask2former_instance_segmentation,
    mask2former_panoptic_segmentation,
    mask2former_semantic_segmentation,
    query_mask_size,
    segments_from_label_map,
    segments_from_segmentation,
    semantic_segmentation,
)
from .vision import ImagePipeline

_QUERY_OUTPUTS = ("class_queries_logits", "masks_queries_logits")  # Mask2Former's


class ImageSegmentationPipeline(ImagePipeline):
    """``[{"score", "label", "mask"}]`` per image; each mask a PIL image of mode "L" at the
    image's size, 255 inside the segment. Semantic segments have score None.

    >>> segment = pipeline("image-segmentation", model="mask2former")    # doctest: +SKIP
    >>> [s["label"] for s in segment("street.jpg", subtask="instance")]   # doctest: +SKIP
    ['car', 'person', 'person']
    """

    task = "image-segmentation"
    parameters = {"subtask": None, "threshold": 0.9, "mask_threshold": 0.5,
                  "overlap_mask_area_threshold": 0.5, "timeout": None}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        outputs = {spec.name for spec in self.engine.outputs}
        if set(_QUERY_OUTPUTS) <= outputs:
            self.subtasks = ("panoptic", "instance", "semantic")
        elif "logits" in outputs:
            self.subtasks = ("semantic",)
        else:
            raise EngineError(
                f"The graph gives {sorted(outputs)}, neither per-pixel 'logits' nor Mask2Former's "
                f"{list(_QUERY_OUTPUTS)}. Note: export the checkpoint again with `edgeport "
                "export` for image-segmentation."
            )
        self.mask_size = query_mask_size(self.config.get("model_type"))
        self._check(self.defaults)

    def __call__(self, inputs=None, **kwargs):
        if "images" in kwargs:  # transformers' keyword for the inputs
            inputs = kwargs.pop("images")
        args = self._check(self.arguments(kwargs))
        subtask = choose_subtask(args["subtask"], self.subtasks)
        images, single = self.images(inputs)
        results = []
        for image in images:  # one at a time, as transformers does: no padding between images
            size = [(image.height, image.width)]
            outputs = self.run_images([image])
            if subtask == "semantic" and "logits" in outputs:
                segments = segments_from_label_map(semantic_segmentation(outputs["logits"],
                                                                         size)[0])
            elif subtask == "semantic":
                segments = segments_from_label_map(mask2former_semantic_segmentation(
                    *(outputs[name] for name in _QUERY_OUTPUTS), size,
                    mask_size=self.mask_size)[0])
            else:
                segments = self._segments(subtask, outputs, args, size)
            results.append([{**s, "label": self.label(s["label"])} for s in segments])
        return results[0] if single else results

    def _segments(self, subtask: str, outputs, args, size) -> list[dict]:
        logits = [outputs[name] for name in _QUERY_OUTPUTS]
        if subtask == "panoptic":
            [found] = mask2former_panoptic_segmentation(
                *logits, threshold=args["threshold"], mask_threshold=args["mask_threshold"],
                overlap_mask_area_threshold=args["overlap_mask_area_threshold"],
                target_sizes=size, mask_size=self.mask_size)
        else:  # transformers gives Mask2Former's instance method only the threshold
            [found] = mask2former_instance_segmentation(*logits, threshold=args["threshold"],
                                                        target_sizes=size,
                                                        mask_size=self.mask_size)
        return segments_from_segmentation(found["segmentation"], found["segments_info"])

    def label(self, index: int) -> str:
        return self.id2label.get(index, f"LABEL_{index}")

    def _check(self, args):
        for name in ("threshold", "mask_threshold", "overlap_mask_area_threshold"):
            value = args[name]
            if not isinstance(value, Real) or isinstance(value, bool):
                raise InputError(f"{name} must be a number, got {value!r}. Note: the defaults "
                                 "are threshold=0.9, mask_threshold=0.5, "
                                 "overlap_mask_area_threshold=0.5.")
        choose_subtask(args["subtask"], self.subtasks)
        return args
