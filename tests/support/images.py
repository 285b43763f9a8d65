"""Test images: real photos bundled with scikit-image, and generated ones of odd sizes."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image


@functools.cache
def photos() -> tuple[Image.Image, ...]:
    """Real photos: RGB of several aspects, and a grayscale one the models get as RGB."""
    from skimage import data

    return tuple(Image.fromarray(array) for array in (
        data.astronaut(), data.coffee(), data.chelsea(), data.camera()))


@functools.cache
def generated() -> tuple[Image.Image, ...]:
    """Seeded smooth-noise images of odd sizes and aspect ratios, (width, height) below."""
    rng = np.random.default_rng(7)
    images = []
    for width, height in ((97, 61), (33, 130), (250, 45)):
        small = rng.integers(0, 256, size=(max(height // 8, 2), max(width // 8, 2), 3),
                             dtype=np.uint8)
        images.append(Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR))
    return tuple(images)


def all_images() -> list[Image.Image]:
    return [*photos(), *generated()]
