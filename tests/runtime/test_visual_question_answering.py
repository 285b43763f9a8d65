"""visual-question-answering: ViLT from an exported bundle answers as transformers.pipeline does
on the same tiny checkpoint (answer order, sigmoid scores within 1e-4), in every input form,
batched or not; the ViLT image processor matches transformers' exactly."""

from __future__ import annotations

import numpy as np
import pytest
from compare import assert_same
from images import all_images, photos
from multimodal_checkpoints import ANSWERS, TINY_MULTIMODAL

from runtime.errors import InputError
from runtime.vision.processors import ImageProcessor

TASK = "visual-question-answering"
ARCHITECTURES = [model_type for model_type, task in TINY_MULTIMODAL if task == TASK]
QUESTIONS = ["What is in the picture?", "How many cats are there?",
             "Is the sky blue or is it red, and what color is the car next to the tree?"]


def _rgb(images):
    return [image.convert("RGB") for image in images]


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    for image in _rgb(all_images()):
        for question in QUESTIONS:
            assert_same(runtime(image=image, question=question),
                        reference(image=image, question=question), f"{image.size} {question}")
    image = photos()[1]
    for kwargs in ({"top_k": 1}, {"top_k": 3}, {"top_k": 100}):  # 100: every answer
        assert_same(runtime(image=image, question=QUESTIONS[0], **kwargs),
                    reference(image=image, question=QUESTIONS[0], **kwargs), str(kwargs))
    assert len(runtime(image=image, question=QUESTIONS[0], top_k=100)) == len(ANSWERS)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_every_input_form_and_batches(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    images = _rgb(all_images()[:4])  # sizes that pad each other in a batch
    forms = [
        dict(image=images, question=QUESTIONS[0]),
        dict(image=images[0], question=QUESTIONS),
        dict(image=images[:2], question=QUESTIONS[:2]),  # questions outermost
    ]
    for kwargs in forms:
        expected = reference(**kwargs)
        assert_same(runtime(**kwargs), expected, "lists")
        # one engine call for several pairs: texts and images padded, masked in the graph
        assert_same(runtime(**kwargs, batch_size=3), expected, "batch_size=3")
    pairs = [{"image": image, "question": q} for image, q in zip(images, QUESTIONS)]
    assert_same(runtime(pairs[0]), reference(pairs[0]), "dict")
    assert_same(runtime(pairs), reference(pairs), "list of dicts")
    assert_same(runtime(pairs, batch_size=2), reference(pairs), "list of dicts, batched")


def test_image_processor_is_transformers_exactly(tiny_checkpoint):
    from transformers import ViltImageProcessor

    for kwargs in ({}, {"size": {"shortest_edge": 64}, "size_divisor": 16},
                   {"size": 100, "size_divisor": 8, "do_pad": False}):
        reference = ViltImageProcessor(**kwargs)
        ours = ImageProcessor.from_config(reference.to_dict())
        images = _rgb(all_images())
        for image in images:
            got, expected = ours([image]), reference(image, return_tensors="np")
            assert sorted(got) == sorted(expected)
            np.testing.assert_allclose(got["pixel_values"], expected["pixel_values"], atol=1e-6)
        if reference.do_pad:  # a batch padded to its largest image, with the mask
            got, expected = ours(images), reference(images, return_tensors="np")
            np.testing.assert_allclose(got["pixel_values"], expected["pixel_values"], atol=1e-6)
            np.testing.assert_array_equal(got["pixel_mask"], expected["pixel_mask"])


def test_bad_inputs_are_clear_errors(runtime_pipeline):
    answer = runtime_pipeline("vilt", TASK)
    image = photos()[0]
    with pytest.raises(InputError, match="needs a question"):
        answer(image=image)
    with pytest.raises(InputError, match="needs an image"):
        answer(question="what?")
    with pytest.raises(InputError, match="question must be a string"):
        answer(image=image, question=3)
    with pytest.raises(InputError, match="has no 'question'"):
        answer([{"image": image}])
    with pytest.raises(InputError, match="top_k must be a positive int"):
        answer(image=image, question="what?", top_k=0)
    with pytest.raises(InputError, match="tokens long"):
        answer(image=image, question="word " * 60)
    with pytest.raises(InputError, match="takes no argument 'candidate_labels'"):
        answer(image=image, question="what?", candidate_labels=["a"])
    # truncation=True cuts the question to the model's 40 positions, as transformers does
    assert len(answer(image=image, question="word " * 60, truncation=True)) == 5
