"""image-segmentation: the runtime on exported bundles gives what transformers.pipeline gives
on the same tiny checkpoints: SegFormer (semantic), Mask2Former with a Swin backbone (panoptic,
instance, semantic). Same labels and scores within 1e-4, masks as images with IoU >= 0.99."""

from __future__ import annotations

import pytest
from compare import assert_same
from images import all_images, photos
from vision_checkpoints import TINY_VISION

from runtime.errors import InputError

TASK = "image-segmentation"
ARCHITECTURES = [model_type for model_type, task in TINY_VISION if task == TASK]
# Random tiny models are unsure: low thresholds make segments to compare.
CASES = {
    "segformer": [{}, {"subtask": "semantic"}],
    "mask2former": [
        {}, {"threshold": 0.3}, {"subtask": "panoptic", "threshold": 0.2},
        {"subtask": "panoptic", "threshold": 0.2, "overlap_mask_area_threshold": 0.9},
        {"subtask": "panoptic", "threshold": 0.2, "mask_threshold": 0.7},
        {"subtask": "instance", "threshold": 0.05}, {"subtask": "instance"},
        {"subtask": "semantic"}],
}


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    segments = 0
    for image in all_images():
        for kwargs in CASES[model_type]:
            expected = reference(image, **kwargs)
            assert_same(runtime(image, **kwargs), expected, f"{model_type} {image.size} {kwargs}")
            segments += len(expected)
    assert segments > 4 * len(all_images())  # the comparison saw many masks
    images = list(photos()[:2])
    assert_same(runtime(images), reference(images), "batch")


def test_semantic_model_refuses_other_subtasks(runtime_pipeline):
    segment = runtime_pipeline("segformer", TASK)
    with pytest.raises(InputError, match="Subtask 'panoptic' is not supported"):
        segment(photos()[0], subtask="panoptic")
    with pytest.raises(InputError, match="Subtask 'panoptic' is not supported"):
        runtime_pipeline("segformer", TASK, subtask="panoptic")


def test_bad_thresholds_are_clear_errors(runtime_pipeline):
    with pytest.raises(InputError, match="mask_threshold must be a number"):
        runtime_pipeline("segformer", TASK)(photos()[0], mask_threshold=None)
