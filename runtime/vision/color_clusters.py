"""ImageGPT's color quantization: each pixel becomes the id of its nearest color cluster.

The clusters are preprocessor_config.json's ``clusters`` (openai/imagegpt-*: 512 RGB points in
ImageGPT's [-1, 1] range). The distances are computed as transformers' ``color_quantize``
computes them (``|a|^2 - 2 a.b + |b|^2`` in the same dtypes and order), so that a pixel at the
same distance from two clusters up to rounding gets the same id; in chunks of pixels, which
changes no number (each distance reads one pixel and one cluster).

>>> clusters = read_clusters({"clusters": [[-1, -1, -1], [1, 1, 1]]}, "ImageGPT")
>>> nearest_clusters(np.array([[[-0.9, -1, -1], [0.5, 0.2, 0.9]]], np.float32), clusters)
array([[0, 1]])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from ..preprocessor_config import shown

# More clusters than any ImageGPT (512); bounds the distance matrix of a chunk.
MAX_CLUSTERS = 2**16
_CHUNK_PIXELS = 2**14


def read_clusters(config: Mapping[str, Any], type_name: str) -> np.ndarray:
    """The config's ``clusters``: a (clusters, 3) array of finite numbers, as
    ``np.array(clusters)`` makes it in transformers (float64 from JSON floats)."""
    value = config.get("clusters")
    note = ("Note: ImageGPT's processor needs its color clusters, a list of [r, g, b] points in "
            "[-1, 1]; save the processor again with `save_pretrained`.")
    if value is None:
        raise InputError(f"{type_name} has no clusters, so it cannot map pixels to color ids. "
                         + note)
    if not isinstance(value, list) or not value or len(value) > MAX_CLUSTERS or not all(
            isinstance(point, list) and len(point) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
            for point in value):
        raise InputError(f"{type_name} has clusters={shown(value)}: it must be a list of 1 to "
                         f"{MAX_CLUSTERS} [r, g, b] number triples. " + note)
    clusters = np.array(value)
    if not np.isfinite(clusters).all():
        raise InputError(f"{type_name}'s clusters hold a value that is not finite. " + note)
    return clusters


def nearest_clusters(pixels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """(batch, height, width, 3) pixels -> (batch, height * width) int64 ids of the nearest
    cluster, the first of equally near ones (``np.argmin``)."""
    batch = pixels.shape[0]
    flat = pixels.reshape(-1, 3)
    b = clusters.T
    b2 = np.sum(np.square(b), axis=0)
    ids = np.empty(len(flat), dtype=np.int64)
    for start in range(0, len(flat), _CHUNK_PIXELS):
        a = flat[start:start + _CHUNK_PIXELS]
        a2 = np.sum(np.square(a), axis=1)
        distances = a2[:, None] - 2 * np.matmul(a, b) + b2[None, :]
        ids[start:start + len(a)] = np.argmin(distances, axis=1)
    return ids.reshape(batch, -1)
