"""The anti-aliased resize of OWLv2's image processor, in numpy (no scipy on the device).

transformers' Owlv2ImageProcessor resizes as scikit-image's ``transform.resize`` does, on a
float32 HWC image: a Gaussian blur against aliasing (``scipy.ndimage.gaussian_filter``, sigma
``(in / out - 1) / 2`` per axis, mirrored edges, 4 sigmas of taps), then linear interpolation at
the output pixel centers (``scipy.ndimage.zoom`` with order 1, grid_mode, mirrored edges), then
a clip to the input's range. Each step is repeated here with scipy's order of operations in
float64 and its rounding to float32 after each step, so the pixels agree with it to float32's
last bit or so.

>>> image = np.arange(16, dtype=np.float32).reshape(4, 4, 1) / 15
>>> resize_antialiased(image, (2, 2))[..., 0].astype(float).round(4).tolist()
[[0.2024, 0.3214], [0.6786, 0.7976]]
"""

from __future__ import annotations

import numpy as np

_TRUNCATE = 4.0  # scipy's gaussian_filter default: taps up to 4 sigmas from the center


def _gaussian_weights(sigma: float) -> np.ndarray:
    """scipy's _gaussian_kernel1d, centered: weights[radius + k] for k in -radius..radius."""
    radius = int(_TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * x ** 2)
    return weights / weights.sum()


def _blur_axis(image: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """One pass of scipy's correlate1d with a symmetric kernel, mode "mirror" (d c b | a b c d |
    c b a, numpy's "reflect"): the center tap first, then the pairs from the outermost in, in
    float64; rounded to the image's dtype."""
    weights = _gaussian_weights(sigma)
    radius = len(weights) // 2
    if radius == 0:
        return image
    moved = np.moveaxis(image, axis, 0).astype(np.float64)
    padded = np.pad(moved, [(radius, radius)] + [(0, 0)] * (image.ndim - 1), mode="reflect")
    length = image.shape[axis]
    total = padded[radius:radius + length] * weights[radius]
    for k in range(radius, 0, -1):
        total += (padded[radius - k:radius - k + length]
                  + padded[radius + k:radius + k + length]) * weights[radius - k]
    total = np.moveaxis(total, 0, axis)
    return total.astype(image.dtype)


def _mirror(index: np.ndarray, length: int) -> np.ndarray:
    """scipy's mirror mode for indices (or coordinates) beyond [0, length - 1]."""
    if length <= 1:
        return np.zeros_like(index)
    period = 2 * length - 2
    index = np.abs(index) % period
    return np.where(index > length - 1, period - index, index)


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first index, second index, weight of the second) along one axis: output pixel centers
    mapped into the input (grid_mode), mirrored into range, as scipy's zoom maps them."""
    zoom = np.float64(n_in) / np.float64(n_out)
    coordinates = _mirror((np.arange(n_out, dtype=np.float64) + 0.5) * zoom - 0.5, n_in)
    first = np.floor(coordinates).astype(np.int64)
    return first, _mirror(first + 1, n_in), coordinates - first


def resize_antialiased(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float32 (height, width, channels) image resized to ``size`` = (height, width) as
    Owlv2ImageProcessor.resize does it."""
    out_h, out_w = size
    in_h, in_w = image.shape[:2]
    filtered = image
    for axis, (n_in, n_out) in enumerate(((in_h, out_h), (in_w, out_w))):
        sigma = max(0.0, (n_in / n_out - 1) / 2)
        if sigma > 1e-15:  # scipy skips the axes it would not blur
            filtered = _blur_axis(filtered, sigma, axis)
    # linear interpolation along the width, then the height, in float64 (scipy sums the four
    # products at once; the float64 sums differ in the last bits at most, under float32's)
    rows0, rows1, wy = _linear_taps(in_h, out_h)
    cols0, cols1, wx = _linear_taps(in_w, out_w)
    source = filtered.astype(np.float64)
    wx = wx[None, :, None]
    across = source[:, cols0] * (1 - wx) + source[:, cols1] * wx
    wy = wy[:, None, None]
    resized = (across[rows0] * (1 - wy) + across[rows1] * wy).astype(image.dtype)
    return np.clip(resized, image.min(), image.max())
