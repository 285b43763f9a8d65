"""zero-shot-image-classification: CLIP from an exported bundle scores candidate labels as
transformers.pipeline does on the same tiny checkpoint (label order, scores within 1e-4)."""

from __future__ import annotations

import pytest
from compare import assert_same
from images import all_images, photos
from vision_checkpoints import TINY_VISION

from runtime.errors import InputError

TASK = "zero-shot-image-classification"
ARCHITECTURES = [model_type for model_type, task in TINY_VISION if task == TASK]
LABELS = ["cat", "a dog on a sofa", "rocket", "café", "tree"]


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    for image in all_images():
        for kwargs in ({"candidate_labels": LABELS},
                       {"candidate_labels": LABELS[:2], "hypothesis_template": "{}"},
                       {"candidate_labels": ["only one"]}):
            assert_same(runtime(image, **kwargs), reference(image, **kwargs),
                        f"{model_type} {image.size} {kwargs}")
    images = list(photos()[:3])
    assert_same(runtime(images, candidate_labels=LABELS, batch_size=2),
                reference(images, candidate_labels=LABELS), "batch")


def test_labels_given_to_the_pipeline_are_defaults(runtime_pipeline):
    classify = runtime_pipeline("clip", TASK, candidate_labels=LABELS)
    assert [r["label"] for r in classify(photos()[0])] == sorted(
        LABELS, key=[r["label"] for r in classify(photos()[0], candidate_labels=LABELS)].index)


def test_bad_labels_are_clear_errors(runtime_pipeline):
    classify = runtime_pipeline("clip", TASK)
    with pytest.raises(InputError, match="candidate_labels must be a non-empty list"):
        classify(photos()[0])
    with pytest.raises(InputError, match="candidate_labels must be a non-empty list"):
        classify(photos()[0], candidate_labels="cat, dog")
    with pytest.raises(InputError, match="hypothesis_template"):
        classify(photos()[0], candidate_labels=LABELS, hypothesis_template="{0} {1}")
    with pytest.raises(InputError, match="tokens long"):
        classify(photos()[0], candidate_labels=["word " * 100])
