"""Comparing runtime results with transformers' pipeline results."""

from __future__ import annotations

import numpy as np
from PIL import Image

MASK_IOU = 0.99  # masks as images: the runtime's and transformers' agree at least this well


def assert_same(actual, expected, where="result", *, atol=1e-4, rtol=None):
    """Same structure, key order, types and values; floats within ``atol`` (and, with ``rtol``,
    within that fraction of the expected value plus 1e-7, for small scores). transformers
    sometimes gives numpy floats; the runtime always gives Python floats (JSON-ready)."""
    if isinstance(expected, Image.Image):
        assert_same_image(actual, expected, where)
    elif hasattr(expected, "numpy") and hasattr(expected, "shape"):  # a torch tensor
        assert isinstance(actual, np.ndarray), f"{where}: {type(actual).__name__} is no array"
        expected = expected.numpy()
        assert actual.shape == expected.shape, f"{where}: {actual.shape} != {expected.shape}"
        scale = max(1.0, float(np.abs(expected).max(initial=0)))
        np.testing.assert_allclose(actual, expected, atol=atol * scale, err_msg=where)
    elif isinstance(expected, (float, np.floating)):
        assert type(actual) is float, f"{where}: {actual!r} is not a float"
        diff = abs(actual - float(expected))
        assert diff <= atol, f"{where}: {actual} != {expected}"
        if rtol is not None:
            assert diff <= rtol * abs(expected) + 1e-7, f"{where}: {actual} != {expected}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not a dict"
        assert list(actual) == list(expected), f"{where}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}[{key!r}]", atol=atol, rtol=rtol)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: {actual!r} is not a list"
        assert len(actual) == len(expected), \
            f"{where}: {len(actual)} items != {len(expected)}\n{actual}\n{expected}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{where}[{i}]", atol=atol, rtol=rtol)
    else:
        assert type(actual) is type(expected) and actual == expected, \
            f"{where}: {actual!r} != {expected!r}"


def assert_same_small(actual, expected, where="result"):
    """As assert_same, and small scores within 0.1% (fill-mask and classification scores)."""
    assert_same(actual, expected, where, rtol=1e-3)


def assert_same_image(actual, expected: Image.Image, where="image"):
    """Same mode and size; a binary mask (values 0 and 255) with IoU >= MASK_IOU, any other
    image within one gray level per pixel."""
    assert isinstance(actual, Image.Image), f"{where}: {type(actual).__name__} is not an image"
    assert (actual.mode, actual.size) == (expected.mode, expected.size), \
        f"{where}: {actual.mode} {actual.size} != {expected.mode} {expected.size}"
    a, e = np.asarray(actual), np.asarray(expected)
    if set(np.unique(e)) <= {0, 255} and set(np.unique(a)) <= {0, 255}:
        union = np.logical_or(a > 0, e > 0).sum()
        iou = np.logical_and(a > 0, e > 0).sum() / union if union else 1.0
        assert iou >= MASK_IOU, f"{where}: mask IoU {iou:.4f} < {MASK_IOU}"
    else:
        diff = np.abs(a.astype(np.int32) - e.astype(np.int32)).max(initial=0)
        assert diff <= 1, f"{where}: pixels differ by up to {diff} levels"
