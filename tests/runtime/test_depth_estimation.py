"""depth-estimation: the runtime on exported bundles gives what transformers.pipeline gives on
the same tiny checkpoints (GLPN, DPT): predicted depth at the image's size, and the depth
image."""

from __future__ import annotations

import numpy as np
import pytest
from compare import assert_same
from images import all_images, photos
from vision_checkpoints import TINY_VISION

from runtime.errors import InputError

TASK = "depth-estimation"
ARCHITECTURES = [model_type for model_type, task in TINY_VISION if task == TASK]


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    for image in all_images():
        result = runtime(image)
        assert_same(result, reference(image), f"{model_type} {image.size}")
        assert result["predicted_depth"].shape == (image.height, image.width)
        assert result["predicted_depth"].dtype == np.float32
    images = list(photos()[:2])
    assert_same(runtime(images), reference(images), "batch")


def test_unknown_argument_is_a_clear_error(runtime_pipeline):
    with pytest.raises(InputError, match="takes no argument 'top_k'"):
        runtime_pipeline("glpn", TASK)(photos()[0], top_k=1)
