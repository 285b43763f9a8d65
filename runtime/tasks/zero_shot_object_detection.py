"""The zero-shot-object-detection task: boxes of what each candidate label names in an image, as
transformers' ZeroShotObjectDetectionPipeline finds them (OWL-ViT, OWLv2: one graph that
encodes the image and the label texts and gives, for every image patch, a box and a logit per
label)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral

import numpy as np
from PIL import Image

from ..errors import EngineError, InputError
from ..vision.processors import Owlv2ImageProcessor
from .object_detection import _threshold
from .text import check_batch_size, encode_texts
from .vision import ImagePipeline
from .zero_shot_image_classification import ZeroShotImageClassificationPipeline

_BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")
_LABELS_NOTE = ('Note: pass candidate_labels=["cat", "remote control"] (or one string, split at '
                "its commas, as transformers splits it).")


class ZeroShotObjectDetectionPipeline(ImagePipeline):
    """``[{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}]`` for an image: every box
    whose score for a candidate label is above ``threshold``, best first (the first ``top_k``
    of them when given). Boxes are in pixels of the original image.

    Inputs as transformers takes them: an image with ``candidate_labels``; a list of images
    with a list of labels per image; ``{"image", "candidate_labels"}``, or a list of those.
    With ``batch_size``, consecutive images with the same labels run as one batch.

    >>> detect = pipeline("zero-shot-object-detection", model="owlvit")    # doctest: +SKIP
    >>> detect("cats.jpg", candidate_labels=["cat", "remote"])[0]            # doctest: +SKIP
    {'score': 0.287, 'label': 'cat', 'box': {'xmin': 324, 'ymin': 20, 'xmax': 640, 'ymax': 373}}
    """

    task = "zero-shot-object-detection"
    parameters = {"candidate_labels": None, "threshold": 0.1, "top_k": None, "batch_size": 1,
                  "timeout": None}
    preprocessors = ("tokenizer", "image_processor")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        _threshold(self.defaults)
        _top_k(self.defaults)

    def __call__(self, image=None, candidate_labels=None, **kwargs):
        if "text_queries" in kwargs:  # transformers' other name for the labels
            candidate_labels = kwargs.pop("text_queries")
        if candidate_labels is not None:
            kwargs["candidate_labels"] = candidate_labels
        args = self.arguments(kwargs)
        threshold, top_k = _threshold(args), _top_k(args)
        batch_size = check_batch_size(args["batch_size"])
        requests, single = self._requests(image, args["candidate_labels"])
        requests = [(self._image(picture), _labels(labels)) for picture, labels in requests]
        results = []
        start = 0
        while start < len(requests):
            # a batch: the next images that share one list of labels (their queries)
            labels = requests[start][1]
            end = start + 1
            while end < min(start + batch_size, len(requests)) and requests[end][1] == labels:
                end += 1
            images = [picture for picture, _ in requests[start:end]]
            results.extend(self.detect(images, labels, threshold, top_k))
            start = end
        return results[0] if single else results

    def detect(self, images: list[Image.Image], labels: list[str], threshold: float,
               top_k: int | None) -> list[list[dict]]:
        """The detections of ``labels`` in each RGB image: one run of the graph with the
        images, and every label as a query of each (batch x queries text rows)."""
        outputs = self.engine.run({**self.query_feed(labels * len(images)),
                                   **self.image_feed(images)})
        for name in ("logits", "pred_boxes"):
            if name not in outputs:
                raise EngineError(
                    f"The graph has no output named {name!r}; it gives {sorted(outputs)}. Note: "
                    "export the checkpoint again with `edgeport export` for this task.")
        square = isinstance(self.image_processor, Owlv2ImageProcessor)
        return [query_detections(logits, boxes, labels, threshold=threshold, top_k=top_k,
                                 target_size=(image.height, image.width), square=square)
                for logits, boxes, image in zip(outputs["logits"], outputs["pred_boxes"],
                                                images)]

    def _image(self, picture) -> Image.Image:
        images, single = self.images(picture)
        if not single:
            raise InputError(
                f"Each image of zero-shot-object-detection is one image, got a list of "
                f"{len(images)}. Note: pass a list of {{\"image\": ..., \"candidate_labels\": "
                "...}} dicts, one per image.")
        return images[0]

    def query_feed(self, labels: list[str]) -> dict[str, np.ndarray]:
        """The text side of a feed: the queries of each image in turn, padded to the model's
        length as OwlViTProcessor pads them (the logits of a query are those of the query
        alone: causal attention, pooled at its end token)."""
        encodings = encode_texts(self.tokenizer, labels)
        limit = self._max_positions
        self.tokenizer.check_length(encodings, limit, fix="shorten the label")
        return self.text_feed(encodings, pad_to=limit)

    # the text tower's positions, or the tokenizer's limit if lower (16 for OWL-ViT), as CLIP's
    _max_positions = ZeroShotImageClassificationPipeline._max_positions

    def _requests(self, image, labels) -> tuple[list[tuple[object, object]], bool]:
        """[(image, its labels)] and whether one result (not a list of them) is returned."""
        if isinstance(image, Mapping):
            return [_request(image)], True
        if isinstance(image, (list, tuple)) and image and all(
                isinstance(item, Mapping) for item in image):
            return [_request(item) for item in image], False
        if isinstance(image, (list, tuple)):
            # transformers pairs the images with the labels: one entry per image
            if not isinstance(labels, (list, tuple)) or len(labels) != len(image):
                raise InputError(
                    f"For a list of {len(image)} images, candidate_labels is one entry per image "
                    f"(a list of labels or a comma-separated string), got {labels!r:.100}. Note: "
                    'pass candidate_labels=[["cat", "dog"], ["car"]] for two images, as '
                    "transformers pairs them.")
            return list(zip(image, labels)), False
        if image is None:
            raise InputError("zero-shot-object-detection needs an image. Note: pass a path, "
                             "bytes, a PIL image or a numpy array, with candidate_labels.")
        return [(image, labels)], True


def _request(item: Mapping) -> tuple[object, object]:
    missing = [key for key in ("image", "candidate_labels") if key not in item]
    if missing:
        raise InputError(
            f"An input dict has no {' or '.join(repr(k) for k in missing)}. Note: pass "
            '{"image": ..., "candidate_labels": ["cat", "dog"]}.')
    return item["image"], item["candidate_labels"]


def _labels(labels) -> list[str]:
    """A list of label strings; a string is split at its commas, as transformers does."""
    if isinstance(labels, str):
        labels = labels.split(",")
    if (not isinstance(labels, (list, tuple)) or not labels
            or not all(isinstance(label, str) for label in labels)):
        raise InputError(f"candidate_labels must be a non-empty list of strings, got "
                         f"{labels!r:.100}. " + _LABELS_NOTE)
    return list(labels)


def _top_k(args) -> int | None:
    top_k = args["top_k"]
    if top_k is not None and (not isinstance(top_k, Integral) or isinstance(top_k, bool)
                              or top_k < 0):
        raise InputError(f"top_k must be a non-negative int or None, got {top_k!r}. Note: the "
                         "best top_k detections are kept (None or 0: all of them).")
    return None if top_k is None else int(top_k)


def query_detections(logits: np.ndarray, pred_boxes: np.ndarray, labels: Sequence[str], *,
                     threshold: float, top_k: int | None, target_size: tuple[int, int],
                     square: bool = False) -> list[dict]:
    """One image's (patches, queries) logits and (patches, 4) boxes -> the pipeline's list.

    As transformers: for each query in order, the sigmoid of its logit at every patch; the
    patches above ``threshold`` (and not 0) in patch order, their (center x, center y, width,
    height) boxes turned to corners and scaled to ``target_size`` = (height, width), truncated
    to ints; then all sorted by score, stably, best first, and cut to ``top_k`` when it is not
    0 or None. ``square``: OWLv2's boxes are relative to the image padded to a square, and are
    scaled by its longer side.

    >>> found = query_detections(np.array([[2.0, -3.0], [-1.0, 0.5]]),
    ...                          np.array([[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.2, 0.2]]),
    ...                          ["cat", "dog"], threshold=0.3, top_k=None, target_size=(100, 200))
    >>> [(d["label"], round(d["score"], 3), d["box"]["xmin"]) for d in found]
    [('cat', 0.881, 80), ('dog', 0.622, 0)]
    """
    logits = np.asarray(logits, dtype=np.float32)
    boxes = np.asarray(pred_boxes, dtype=np.float32)
    if logits.ndim != 2 or logits.shape[1] != len(labels) or boxes.shape != (len(logits), 4):
        raise EngineError(
            f"The graph gave logits of shape {logits.shape} and pred_boxes of shape "
            f"{boxes.shape} for {len(labels)} queries; expected (patches, {len(labels)}) and "
            "(patches, 4). Note: export the checkpoint again with `edgeport export`.")
    scores = np.float32(1) / (np.float32(1) + np.exp(-logits))
    cx, cy, w, h = np.moveaxis(boxes, -1, 0)
    half = np.float32(0.5)
    corners = np.stack([cx - half * w, cy - half * h, cx + half * w, cy + half * h], axis=-1)
    height, width = target_size
    scale = [max(height, width)] * 4 if square else [width, height, width, height]
    pixels = (corners * np.array(scale, dtype=np.float32)).astype(np.int32)  # toward zero
    results = []
    for query, label in enumerate(labels):
        column = scores[:, query]
        for patch in np.flatnonzero((column > threshold) & (column != 0)):
            results.append({"score": column[patch].item(), "label": label,
                            "box": dict(zip(_BOX_KEYS, pixels[patch].tolist()))})
    results.sort(key=lambda result: result["score"], reverse=True)
    return results[:top_k] if top_k else results
