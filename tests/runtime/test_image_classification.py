"""image-classification: the runtime on exported bundles gives what transformers.pipeline gives
on the same tiny checkpoints, for real photos and generated images (labels, order, scores within
1e-4)."""

from __future__ import annotations

import numpy as np
import pytest
from compare import assert_same
from images import all_images, photos
from vision_checkpoints import TINY_VISION

from runtime.errors import InputError

TASK = "image-classification"
ARCHITECTURES = [model_type for model_type, task in TINY_VISION if task == TASK]

# (call arguments): every combination runs on every architecture and image.
CASES = [{}, {"top_k": 1}, {"top_k": 3}, {"top_k": 50}, {"function_to_apply": "sigmoid"},
         {"function_to_apply": "NONE", "top_k": 2}]


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    for image in all_images():
        for kwargs in CASES:
            assert_same(runtime(image, **kwargs), reference(image, **kwargs),
                        f"{model_type} {image.size} {kwargs}")
    images = list(photos()[:3])
    assert_same(runtime(images, batch_size=2), reference(images), f"{model_type} batch")


def test_every_input_kind_gives_the_same_result(runtime_pipeline, tmp_path):
    classify = runtime_pipeline("convnext", TASK)
    image = photos()[1]
    path = tmp_path / "coffee.png"
    image.save(path)
    expected = classify(image)
    for given in (str(path), path, path.read_bytes(), np.asarray(image)):
        assert classify(given) == expected
    assert classify([path, image]) == [expected, expected]
    assert classify(images=image) == expected


def test_bad_arguments_are_clear_errors(runtime_pipeline):
    classify = runtime_pipeline("vit", TASK)
    with pytest.raises(InputError, match="top_k must be a positive int"):
        classify(photos()[0], top_k=0)
    with pytest.raises(InputError, match="function_to_apply"):
        classify(photos()[0], function_to_apply="softmin")
    with pytest.raises(InputError, match="batch_size"):
        classify(photos()[0], batch_size=0)
    with pytest.raises(InputError, match="takes no argument 'topk'"):
        classify(photos()[0], topk=1)
