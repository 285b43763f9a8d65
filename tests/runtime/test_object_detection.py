"""object-detection: the runtime on exported bundles gives what transformers.pipeline gives on
the same tiny checkpoints (DETR with a ResNet built from config, YOLOS): same labels and boxes in
pixels of the original image, scores within 1e-4."""

from __future__ import annotations

import pytest
from compare import assert_same
from images import all_images, photos
from vision_checkpoints import TINY_VISION

from runtime.errors import InputError

TASK = "object-detection"
ARCHITECTURES = [model_type for model_type, task in TINY_VISION if task == TASK]
# Random tiny models are unsure of everything (about 1/6 per class): low thresholds make
# detections to compare; the default (0.5) makes none.
THRESHOLDS = [{}, {"threshold": 0.0}, {"threshold": 0.18}, {"threshold": 0.22}]


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    found = 0
    for image in all_images():
        for kwargs in THRESHOLDS:
            expected = reference(image, **kwargs)
            assert_same(runtime(image, **kwargs), expected, f"{model_type} {image.size} {kwargs}")
            found += len(expected)
    assert found > 50  # the comparison saw many boxes
    images = list(photos()[:2])
    assert_same(runtime(images, threshold=0.2), reference(images, threshold=0.2), "batch")


def test_boxes_are_in_pixels_of_the_original_image(runtime_pipeline):
    detect = runtime_pipeline("detr", TASK, threshold=0.0)
    image = photos()[1]  # 600 x 400
    boxes = [d["box"] for d in detect(image)]
    assert len(boxes) == 12  # every query
    assert max(b["xmax"] for b in boxes) > 64 and max(b["ymax"] for b in boxes) > 64


def test_bad_threshold_is_a_clear_error(runtime_pipeline):
    with pytest.raises(InputError, match="threshold must be a number"):
        runtime_pipeline("detr", TASK)(photos()[0], threshold="high")
