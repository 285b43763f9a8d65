"""image-feature-extraction: the runtime on exported bundles gives what transformers.pipeline
gives on the same tiny checkpoints: the hidden states (token or feature-map layout), the pooled
output with pool=True, numpy arrays with return_tensors=True, for real photos and generated
images; ViTMAE's patches in image order, where transformers gives them shuffled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compare import assert_same
from images import all_images, photos
from vision_more_checkpoints import TINY_VISION_MORE

from runtime.errors import InputError

TASK = "image-feature-extraction"
ARCHITECTURES = [model_type for model_type, task in TINY_VISION_MORE if task == TASK]
SHUFFLED = {"vit_mae"}  # transformers' forward shuffles the patches with torch.rand noise


@pytest.mark.parametrize("model_type", sorted(set(ARCHITECTURES) - SHUFFLED))
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    pooled = "pooler_output" in {spec.name for spec in runtime.engine.outputs}
    for image in all_images():
        assert_same(runtime(image), reference(image), f"{model_type} {image.size}")
        if pooled:
            assert_same(runtime(image, pool=True), reference(image, pool=True),
                        f"{model_type} {image.size} pooled")
    image = photos()[0]
    assert_same(runtime(image, return_tensors=True), reference(image, return_tensors=True),
                f"{model_type} tensors")
    images = list(photos()[:3])
    assert_same(runtime(images, batch_size=2), reference(images), f"{model_type} batch")
    if not pooled:  # transformers refuses too
        with pytest.raises(ValueError, match="No pooled output"):
            reference(image, pool=True)
        with pytest.raises(InputError, match="No pooled output"):
            runtime(image, pool=True)


def test_vit_mae_gives_every_patch_in_image_order(runtime_pipeline, reference_pipeline):
    """transformers' ViTMAE (mask_ratio 0) gives the class token, then every patch in the order
    of ``argsort(torch.rand(patches))``; the bundle gives them in image order. Replaying the same
    noise puts transformers' patches back in order, and then they are the bundle's."""
    runtime = runtime_pipeline("vit_mae", TASK)
    reference = reference_pipeline("vit_mae", TASK)
    for seed, image in enumerate(all_images()):
        got = np.asarray(runtime(image))
        torch.manual_seed(seed)
        shuffled = np.asarray(reference(image))
        torch.manual_seed(seed)
        order = torch.argsort(torch.rand(1, shuffled.shape[1] - 1), dim=1)[0].numpy()
        assert got.shape == shuffled.shape == (1, 1 + 16, 32)
        assert not np.array_equal(order, np.arange(len(order)))  # the noise did shuffle
        expected = np.concatenate([shuffled[:, :1], np.empty_like(shuffled[:, 1:])], axis=1)
        expected[:, 1 + order] = shuffled[:, 1:]
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=str(image.size))
        assert np.array_equal(np.asarray(runtime(image)), got)  # the same at every run


def test_image_processor_kwargs_change_the_processing(runtime_pipeline, reference_pipeline):
    """transformers passes image_processor_kwargs to its processor call; here they override the
    bundle's settings the same way."""
    runtime = runtime_pipeline("convnext", TASK)
    reference = reference_pipeline("convnext", TASK)
    image = photos()[1]
    kwargs = {"size": {"shortest_edge": 64}}
    assert_same(runtime(image, image_processor_kwargs=kwargs),
                reference(image, image_processor_kwargs=kwargs), "image_processor_kwargs")
    assert np.shape(runtime(image, image_processor_kwargs=kwargs)) != np.shape(runtime(image))


def test_bad_arguments_are_clear_errors(runtime_pipeline):
    embed = runtime_pipeline("vit", TASK)
    image = photos()[0]
    with pytest.raises(InputError, match="pool must be True or False"):
        embed(image, pool="yes")
    with pytest.raises(InputError, match="image_processor_kwargs must be a dict"):
        embed(image, image_processor_kwargs=[("size", 3)])
    with pytest.raises(InputError, match="size"):
        embed(image, image_processor_kwargs={"size": {"height": -1, "width": 3}})
    with pytest.raises(InputError, match="batch_size"):
        embed(image, batch_size=0)
    with pytest.raises(InputError, match="takes no argument 'pooled'"):
        embed(image, pooled=True)
    assert embed(images=image) == embed(image)
