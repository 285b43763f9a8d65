"""image-classification (LeViT with its distillation head, CvT, ImageGPT on color clusters) and
image-segmentation (MaskFormer: panoptic, instance, semantic): the runtime on exported bundles
gives what transformers.pipeline gives on the same tiny checkpoints (labels, order, scores within
1e-4; masks as images with IoU >= 0.99)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from compare import assert_same
from images import all_images, photos
from vision_more_checkpoints import TINY_VISION_MORE

from runtime.errors import InputError
from runtime.vision.processors import ImageProcessor

CLASSIFY, SEGMENT = "image-classification", "image-segmentation"
CLASSIFIERS = [model_type for model_type, task in TINY_VISION_MORE if task == CLASSIFY]
CASES = [{}, {"top_k": 1}, {"top_k": 50, "function_to_apply": "sigmoid"}]
SEGMENT_CASES = [
    {}, {"subtask": "panoptic", "threshold": 0.2, "overlap_mask_area_threshold": 0.9},
    {"subtask": "instance", "threshold": 0.05}, {"subtask": "semantic"}]


@pytest.mark.parametrize("model_type", CLASSIFIERS)
def test_classification_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, CLASSIFY)
    reference = reference_pipeline(model_type, CLASSIFY)
    for image in all_images():
        for kwargs in CASES:
            assert_same(runtime(image, **kwargs), reference(image, **kwargs),
                        f"{model_type} {image.size} {kwargs}")
    images = list(photos()[:3])
    assert_same(runtime(images, batch_size=2), reference(images), f"{model_type} batch")


def test_levit_runs_its_distillation_head(tiny_checkpoint, tiny_bundle, reference_pipeline):
    """facebook/levit-* name LevitForImageClassificationWithTeacher: its logits are the mean of
    the classifier's and the distillation head's, and the bundle's graph is that class's."""
    config = json.loads((tiny_checkpoint("levit", CLASSIFY) / "config.json").read_text())
    assert config["architectures"] == ["LevitForImageClassificationWithTeacher"]
    manifest = json.loads((tiny_bundle("levit", CLASSIFY) / "manifest.json").read_text())
    assert manifest["source"]["architectures"] == ["LevitForImageClassificationWithTeacher"]
    model = reference_pipeline("levit", CLASSIFY).model
    assert type(model).__name__ == "LevitForImageClassificationWithTeacher"


def test_imagegpt_processor_matches_transformers(tiny_checkpoint):
    """The color clusters map every pixel as transformers' processor maps it (input_ids equal),
    for photos, odd sizes, and a batch."""
    import transformers

    directory = tiny_checkpoint("imagegpt", CLASSIFY)
    expected_processor = transformers.ImageGPTImageProcessor.from_pretrained(directory)
    processor = ImageProcessor.from_dir(directory)
    # (the pipeline gives transformers' processor RGB images: it takes no grayscale ones)
    for image in [*all_images(), list(photos()[:3])]:
        ids = processor(image)["input_ids"]
        rgb = [i.convert("RGB") for i in image] if isinstance(image, list) else image.convert(
            "RGB")
        expected = expected_processor(rgb, return_tensors="np")["input_ids"]
        assert ids.dtype == np.int64 and np.array_equal(ids, expected)
        assert ids.shape[1] == 64 and len(np.unique(ids)) > 3


def test_imagegpt_processor_refuses_bad_clusters():
    base = {"image_processor_type": "ImageGPTImageProcessor", "size": {"height": 8, "width": 8}}
    for clusters, match in ((None, "has no clusters"), ([[0, 0]], "number triples"),
                            ([], "number triples"), ([[0, 0, "a"]], "number triples")):
        with pytest.raises(InputError, match=match):
            ImageProcessor.from_config({**base, "clusters": clusters})
    with pytest.raises(InputError, match="do_color_quantize"):
        ImageProcessor.from_config({**base, "clusters": [[0, 0, 0]], "do_color_quantize": False})


def test_maskformer_matches_transformers(runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline("maskformer", SEGMENT)
    reference = reference_pipeline("maskformer", SEGMENT)
    segments = 0
    for image in all_images():
        for kwargs in SEGMENT_CASES:
            expected = reference(image, **kwargs)
            assert_same(runtime(image, **kwargs), expected, f"maskformer {image.size} {kwargs}")
            segments += len(expected)
    assert segments > 4 * len(all_images())  # the comparison saw many masks
    images = list(photos()[:2])
    assert_same(runtime(images), reference(images), "batch")
