"""runtime.vision.antialias against what it repeats: Owlv2ImageProcessor.resize (scipy's
gaussian_filter and zoom) on padded photos, down to a small size and up to OWLv2's real 960,
within one float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest
from images import generated, photos

from runtime.vision.antialias import resize_antialiased


def _padded(image) -> np.ndarray:
    """An image as OWLv2's processor has it before resizing: [0, 1], gray below or right."""
    pixels = (np.asarray(image.convert("RGB")).astype(np.float64) / 255).astype(np.float32)
    side = max(pixels.shape[:2])
    square = np.full((side, side, 3), 0.5, np.float32)
    square[:pixels.shape[0], :pixels.shape[1]] = pixels
    return square


@pytest.mark.parametrize("size", [(48, 48), (960, 960), (37, 100)])
def test_matches_scipy_through_transformers(size):
    from transformers import Owlv2ImageProcessor

    reference = Owlv2ImageProcessor()
    for image in [*photos()[:2], *generated()]:
        square = _padded(image)
        expected = reference.resize(square, size={"height": size[0], "width": size[1]},
                                    input_data_format="channels_last")
        got = resize_antialiased(square, size)
        assert got.dtype == np.float32 and got.shape == (*size, 3)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1.2e-7, err_msg=str(image.size))


@pytest.mark.parametrize("shape, size", [((1, 30, 3), (1, 10)), ((1, 30, 3), (4, 10)),
                                         ((3, 5, 3), (20, 2)), ((4, 6, 3), (9, 2))])
def test_thin_and_tiny_images_match_scipy(shape, size):
    """Sides of one pixel, and blur kernels wider than the image (mirrored again and again)."""
    from scipy import ndimage

    image = np.random.default_rng(1).random(shape, dtype=np.float32)
    factors = np.divide(image.shape, (*size, 3))
    blurred = ndimage.gaussian_filter(image, np.maximum(0, (factors - 1) / 2), mode="mirror")
    expected = ndimage.zoom(blurred, 1 / factors, order=1, mode="mirror", grid_mode=True)
    expected = np.clip(expected, image.min(), image.max())
    np.testing.assert_allclose(resize_antialiased(image, size), expected, rtol=0, atol=1.2e-7)


def test_an_unchanged_size_is_the_image():
    same = np.random.default_rng(0).random((7, 5, 3), dtype=np.float32)
    np.testing.assert_array_equal(resize_antialiased(same, (7, 5)), same)
