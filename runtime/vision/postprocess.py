"""Vision postprocessing in numpy: raw model outputs in, what transformers' pipelines give out.

Each function mirrors one ``post_process_*`` method of a transformers image processor (4.57) and
the pipeline code around it, on numpy arrays instead of torch tensors:

    resize_bilinear / resize_bicubic / resize_nearest   torch.nn.functional.interpolate
    detections                   DETR, YOLOS: post_process_object_detection + the pipeline's boxes
    semantic_segmentation        SegFormer, DPT, BEiT: logits -> label map at the image size
    mask2former_semantic_segmentation / _instance_ / _panoptic_   Mask2Former's three subtasks
                                 (MaskFormer's too, with mask_size=None: no 384 x 384 upscaling)
    choose_subtask               which of those the image-segmentation pipeline runs
    segments_from_label_map      the pipeline's [{"score": None, "label", "mask"}] (semantic)
    segments_from_segmentation   the pipeline's [{"score", "label", "mask"}] (panoptic, instance)
    depth_estimation             GLPN, DPT: post_process_depth_estimation + the depth image
    top_classes                  the image-classification pipeline's scores and top_k

Labels are class ids here; the task modules map them through the bundle's ``id2label``.

Why the interpolation is written the way it is: label maps are argmaxes and masks are thresholds
of interpolated values, so a last-bit difference from torch can flip a pixel. The resize
functions therefore repeat torch's CPU kernels operation by operation, fused multiply-adds
included (torch's x86 build contracts ``a * b + c`` into one rounding; ``_fma`` does the same in
float64, which is exact for float32 operands). They agree with torch 2.13's AVX512 kernels bit
for bit (tests/runtime/test_vision_postprocess.py checks it); with other builds or CPUs, to the
last bit or two, so a pixel at an exact tie or threshold may flip. Label maps resize only the
classes that can win each pixel (bounds from the input settle most pixels without arithmetic;
the others take the same operations), so they are those of resizing every class, to the bit.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from ..errors import InputError, did_you_mean

# Mask2Former's processor scales the mask logits to this size before anything else, whatever
# size the model ran at (transformers hard-codes it for every checkpoint).
MASK2FORMER_MASK_SIZE = (384, 384)

SUBTASKS = ("panoptic", "instance", "semantic")  # the pipeline's order when subtask is None

Size = tuple[int, int]


# --- interpolation ----------------------------------------------------------------------------

# Floats per SIMD vector in torch's AVX512 kernels: its channels-last bilinear kernel sums the
# four taps in one order for whole vectors of channels and in another for the remaining ones.
_SIMD_FLOATS = 16
# Bound on the float64 temporaries of _fma: images are processed in bands of rows this large.
_BAND_ELEMENTS = 1 << 22


def _fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``a * b + c`` rounded once to float32, like a fused multiply-add."""
    result = np.multiply(a, b, dtype=np.float64)
    result += c
    return result.astype(np.float32)


def _scale(n_in: int, n_out: int) -> np.float32:
    return np.float32(n_in) / np.float32(n_out)


def _source_index(n_in: int, n_out: int) -> np.ndarray:
    """Where each output pixel center falls in the input (align_corners=False), in float32."""
    centers = np.arange(n_out, dtype=np.float32) + np.float32(0.5)
    return _fma(np.full(n_out, _scale(n_in, n_out)), centers, np.full(n_out, -0.5, np.float32))


def _linear_taps(n_in: int, n_out: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Input indices and weights of the two taps of linear interpolation along one axis."""
    if n_in == n_out:
        index = np.arange(n_out)
        return [index, index], [np.ones(n_out, np.float32), np.zeros(n_out, np.float32)]
    source = np.maximum(_source_index(n_in, n_out), np.float32(0))
    first = np.minimum(np.floor(source).astype(np.int64), n_in - 1)
    weight1 = np.clip(source - first.astype(np.float32), 0, 1).astype(np.float32)
    return [first, first + (first < n_in - 1)], [np.float32(1) - weight1, weight1]


def _cubic_taps(n_in: int, n_out: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Input indices and weights of the four taps of torch's bicubic along one axis: A = -0.75,
    indices clamped to the edges."""
    a = np.float32(-0.75)
    source = _source_index(n_in, n_out)
    index = np.minimum(np.floor(source).astype(np.int64), n_in - 1)
    t = np.clip(source - index.astype(np.float32), 0, 1).astype(np.float32)

    def near(x):  # |x| <= 1
        return _fma(np.full_like(x, a + 2), x, np.full_like(x, -(a + 3))) * x * x + np.float32(1)

    def far(x):  # 1 < |x| < 2
        inner = _fma(np.full_like(x, a), x, np.full_like(x, -5 * a))
        return _fma(inner, x, np.full_like(x, 8 * a)) * x - 4 * a

    one = np.float32(1)
    weights = [far(t + one), near(t), near(one - t), far((one - t) + one)]
    return [np.clip(index + offset, 0, n_in - 1) for offset in (-1, 0, 1, 2)], weights


def _weighted_sum(values: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> np.ndarray:
    """``v0*w0 + v1*w1 + ...`` in the order and with the fusing of torch's generic kernel."""
    total = _fma(values[0], weights[0], values[1] * weights[1])
    for value, weight in zip(values[2:], weights[2:]):
        total = _fma(value, weight, total)
    return total


def _bands(rows: int, elements_per_row: int) -> list[slice]:
    step = max(1, _BAND_ELEMENTS // max(elements_per_row, 1))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def _separable(x: np.ndarray, size: Size, taps) -> Iterator[tuple[slice, np.ndarray]]:
    """torch's generic interpolation kernel, one band of output rows at a time: the taps along
    the width for every input row, then along the height. Yields (rows, values)."""
    (row_index, row_weights), (col_index, col_weights) = taps(x.shape[2], size[0]), \
        taps(x.shape[3], size[1])
    per_image = x.shape[0] * x.shape[1]
    along_width = np.empty((*x.shape[:3], size[1]), np.float32)
    for band in _bands(x.shape[2], per_image * size[1]):
        # np.take gathers along the last axis several times faster than x[..., i] does.
        along_width[:, :, band] = _weighted_sum([np.take(x[:, :, band], i, axis=3)
                                                 for i in col_index], col_weights)
    for band in _bands(size[0], per_image * size[1]):
        yield band, _weighted_sum([along_width[:, :, i[band]] for i in row_index],
                                  [w[band, None] for w in row_weights])


def _uses_channels_last(x: np.ndarray, size: Size) -> bool:
    """Whether torch's bilinear takes its channels-last kernel: for small outputs, and for 1x1
    inputs of more than 3 channels (which count as channels-last)."""
    return sum(size) <= 128 or (x.shape[2] * x.shape[3] == 1 and x.shape[1] > 3)


def _bilinear_channels_last(x: np.ndarray, size: Size) -> np.ndarray:
    (rows0, rows1), (row_w0, row_w1) = _linear_taps(x.shape[2], size[0])
    (cols0, cols1), (col_w0, col_w1) = _linear_taps(x.shape[3], size[1])
    row_w0, row_w1 = row_w0[:, None], row_w1[:, None]
    w00, w01, w10, w11 = row_w0 * col_w0, row_w0 * col_w1, row_w1 * col_w0, row_w1 * col_w1

    def taps(rows, cols):
        return x[:, :, rows[:, None], cols[None, :]]

    x00, x01, x10, x11 = taps(rows0, cols0), taps(rows0, cols1), taps(rows1, cols0), \
        taps(rows1, cols1)
    out = np.empty((*x.shape[:2], *size), np.float32)
    split = x.shape[1] - x.shape[1] % _SIMD_FLOATS
    vec, tail = slice(0, split), slice(split, None)
    out[:, vec] = _fma(x00[:, vec], w00,
                       _fma(x01[:, vec], w01, _fma(x11[:, vec], w11, x10[:, vec] * w10)))
    out[:, tail] = _fma(x11[:, tail], w11,
                        _fma(x10[:, tail], w10, _fma(x00[:, tail], w00, x01[:, tail] * w01)))
    return out


def _images_and_size(x: np.ndarray, size) -> tuple[np.ndarray, Size]:
    """``x`` as an (N, C, H, W) array and ``size`` as (height, width), checked."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise InputError(
            f"Expected an (N, C, H, W) array to resize, got shape {x.shape}. Note: add the "
            "missing axes with x[None] or x[None, None]."
        )
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise InputError(f"Cannot resize to {size}. Note: the size is (height, width), both > 0.")
    return x, (height, width)


def resize_bilinear(x: np.ndarray, size: Size) -> np.ndarray:
    """(N, C, H, W) -> (N, C, *size) float32, as ``torch.nn.functional.interpolate(x, size,
    mode="bilinear", align_corners=False)`` on CPU (no antialias: downsampling samples too).

    torch also takes its channels-last kernel for 3 channels when it runs on one thread; that
    case is not followed here (it changes last bits only).

    >>> resize_bilinear(np.array([[[[0.0, 1.0]]]]), (1, 4)).tolist()
    [[[[0.0, 0.25, 0.75, 1.0]]]]
    """
    x, size = _images_and_size(x, size)
    x = _float32(x)
    if _uses_channels_last(x, size):
        return _bilinear_channels_last(x, size)
    out = np.empty((*x.shape[:2], *size), np.float32)
    for rows, values in _separable(x, size, _linear_taps):
        out[:, :, rows] = values
    return out


def resize_bicubic(x: np.ndarray, size: Size) -> np.ndarray:
    """(N, C, H, W) -> (N, C, *size) float32, as ``torch.nn.functional.interpolate(x, size,
    mode="bicubic", align_corners=False)`` on CPU: cubic coefficient -0.75, edges repeated.

    >>> resize_bicubic(np.arange(4.0).reshape(1, 1, 1, 4), (1, 2)).tolist()
    [[[[0.40625, 2.59375]]]]
    """
    x, size = _images_and_size(x, size)
    x = _float32(x)
    out = np.empty((*x.shape[:2], *size), np.float32)
    for rows, values in _separable(x, size, _cubic_taps):
        out[:, :, rows] = values
    return out


def resize_nearest(x: np.ndarray, size: Size) -> np.ndarray:
    """(N, C, H, W) -> (N, C, *size) of x's dtype, as ``interpolate(x, size, mode="nearest")``:
    output pixel i takes input ``floor(i * in / out)`` (torch's legacy nearest, not
    "nearest-exact")."""
    x, (height, width) = _images_and_size(x, size)

    def index(n_in, n_out):
        source = np.arange(n_out, dtype=np.float32) * _scale(n_in, n_out)
        return np.minimum(np.floor(source).astype(np.int64), n_in - 1)

    return x[:, :, index(x.shape[2], height)[:, None], index(x.shape[3], width)[None, :]]


def _argmax_resized(scores: np.ndarray, size: Size | None) -> np.ndarray:
    """(C, h, w) -> the (height, width) argmax over C of the scores resized bilinearly, without
    holding all C resized planes at once (150 classes at 1024 x 1536 would take 1 GB), and
    resizing only the classes that can win where that is cheaper (_argmax_bilinear_pruned)."""
    if size is None:
        return scores.argmax(axis=0)
    x, size = _images_and_size(_float32(scores)[None], size)
    if _uses_channels_last(x, size):
        return _bilinear_channels_last(x, size)[0].argmax(axis=0)
    labels = _argmax_bilinear_pruned(np.ascontiguousarray(x[0]), size)
    return labels if labels is not None else _argmax_bilinear_banded(x, size)


def _argmax_bilinear_banded(x: np.ndarray, size: Size) -> np.ndarray:
    """(1, C, h, w) -> the argmax over C of resize_bilinear(x, size): every class at every pixel,
    one band of rows at a time."""
    labels = np.empty(size, np.int64)
    for rows, values in _separable(x, size, _linear_taps):
        labels[rows] = values[0].argmax(axis=0)
    return labels


# _argmax_bilinear_pruned takes about this many times as long per (pixel, class) pair it
# evaluates as the banded path per pair (gathers instead of slices; measured with 150 classes):
# past 1 / _PAIR_COST of all pairs, it leaves the work to the banded path.
_PAIR_COST = 4


def _argmax_bilinear_pruned(x: np.ndarray, size: Size) -> np.ndarray | None:
    """(C, h, w) -> what _argmax_bilinear_banded gives, to the bit, by resizing only the classes
    that can win a pixel; None when too many can (noise-like scores), for the banded path.

    An output pixel interpolates the 2 x 2 input pixels of its cell (its two row taps by its two
    column taps), so each class's value there lies between that class's least and greatest value
    in the cell, up to a few float32 roundings. Within a cell, a class can only win if its
    greatest value reaches the best least value (less a margin for the roundings); where that
    leaves one class (most cells: segmentation logits have one clear winner away from edges),
    it is the label, without arithmetic. The other pixels evaluate their candidates with the
    banded path's exact operations and take the first largest, as argmax does."""
    classes, height, width = x.shape
    peak = max(float(x.max()), -float(x.min()))
    if not peak < 1e30:  # inf or nan, or near float32's overflow: the bounds don't hold
        return None
    candidate, best = _cell_candidates(x, peak)
    counts = candidate.sum(axis=0)
    ambiguous = counts > 1
    (rows, row_weights), (cols, col_weights) = _linear_taps(height, size[0]), \
        _linear_taps(width, size[1])
    # The pairs to evaluate: the output pixels of each cell (by their first row and column
    # tap) times its candidates, summed over the ambiguous cells.
    pairs = np.bincount(rows[0], minlength=height) @ np.where(ambiguous, counts, 0) \
        @ np.bincount(cols[0], minlength=width)
    if pairs * _PAIR_COST > classes * size[0] * size[1]:
        return None
    labels = best[rows[0][:, None], cols[0][None, :]]
    ys, xs = np.nonzero(ambiguous[rows[0][:, None], cols[0][None, :]])
    if not len(ys):
        return labels
    # The ambiguous cells' candidates, cell after cell, each cell's in class order.
    ambiguous_cells = np.flatnonzero(ambiguous)
    cell_pairs = counts.reshape(-1)[ambiguous_cells]
    cell_start = np.cumsum(cell_pairs) - cell_pairs
    cell_classes = np.nonzero(candidate.reshape(classes, -1)[:, ambiguous_cells].T)[1]
    position = np.empty(counts.size, np.intp)
    position[ambiguous_cells] = np.arange(len(ambiguous_cells))
    pixel_cell = position[rows[0][ys] * width + cols[0][xs]]  # in ambiguous_cells
    pixel_pairs = cell_pairs[pixel_cell]
    # The ambiguous pixels' (pixel, class) pairs, pixel after pixel, in chunks of about
    # _BAND_ELEMENTS / 8 pairs (for the int64 and float64 temporaries).
    chunk_pairs = _BAND_ELEMENTS // 8
    cuts = np.searchsorted(np.cumsum(pixel_pairs), np.arange(chunk_pairs, pairs, chunk_pairs))
    flat = x.reshape(-1)
    for chunk in np.split(np.arange(len(ys)), cuts):
        if not len(chunk):
            continue
        n = pixel_pairs[chunk]
        first = np.cumsum(n) - n  # each pixel's first pair
        pair = np.arange(first[-1] + n[-1])
        label = cell_classes[np.repeat(cell_start[pixel_cell[chunk]] - first, n) + pair]
        out_y, out_x = np.repeat(ys[chunk], n), np.repeat(xs[chunk], n)
        upper = label * (height * width) + rows[0][out_y] * width  # in flat, at column 0
        lower = upper + (rows[1][out_y] - rows[0][out_y]) * width
        left, right = cols[0][out_x], cols[1][out_x]
        weight_left, weight_right = col_weights[0][out_x], col_weights[1][out_x]
        # The banded path's operations, pair by pair: along the width, then the height.
        along_upper = _fma(flat[upper + left], weight_left, flat[upper + right] * weight_right)
        along_lower = _fma(flat[lower + left], weight_left, flat[lower + right] * weight_right)
        value = _fma(along_upper, row_weights[0][out_y], along_lower * row_weights[1][out_y])
        largest = value == np.repeat(np.maximum.reduceat(value, first), n)
        winner = np.minimum.reduceat(np.where(largest, pair, len(pair)), first)
        labels[ys[chunk], xs[chunk]] = label[winner]
    return labels


def _cell_candidates(x: np.ndarray, peak: float) -> tuple[np.ndarray, np.ndarray]:
    """(C, h, w) -> which classes can win somewhere in each cell, (C, h, w) bool, and the class
    of the best least value, (h, w). The cell of input pixel (i, j) is rows i and i + 1 by
    columns j and j + 1 (the last row and column: themselves only)."""
    classes, height, width = x.shape
    # Each interpolation step strays under 3 float32 ulps of the largest magnitude outside the
    # range of its taps, so an output value strays under 2**-21 * peak outside its cell's
    # range; the margin covers both sides of the comparison many times over (and products
    # that underflow, absolutely).
    margin = np.float32(peak * 2.0 ** -16 + 1e-30)
    candidate = np.empty(x.shape, bool)
    best = np.empty(x.shape[1:], np.intp)
    below = np.minimum(np.arange(height) + 1, height - 1)
    for band in _bands(height, classes * width):
        top, bottom = x[:, band], x[:, below[band]]
        low = _with_next_column(np.minimum, np.minimum(top, bottom))
        high = _with_next_column(np.maximum, np.maximum(top, bottom))
        best[band] = low.argmax(axis=0)
        np.greater_equal(high, low.max(axis=0) - margin, out=candidate[:, band])
    return candidate, best


def _with_next_column(op, a: np.ndarray) -> np.ndarray:
    """``op`` of each column of ``a`` and the next one (the last column: itself), by slices
    (several times faster than gathering the columns)."""
    out = np.empty_like(a)
    op(a[..., :-1], a[..., 1:], out=out[..., :-1])
    out[..., -1] = a[..., -1]
    return out


# --- shared pieces ----------------------------------------------------------------------------

def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-x) is inf for very negative x: the result is 0
        return np.float32(1) / (np.float32(1) + np.exp(-x))


def _float32(x) -> np.ndarray:
    return np.asarray(x).astype(np.float32, copy=False)


def _sizes(target_sizes, batch: int, what: str) -> list[Size | None]:
    if target_sizes is None:
        return [None] * batch
    sizes = [(int(h), int(w)) for h, w in target_sizes]
    if len(sizes) != batch:
        raise InputError(
            f"Got {len(sizes)} target sizes for {batch} {what}. Note: give one (height, width) "
            "per image of the batch."
        )
    return sizes


def _mask_image(mask: np.ndarray) -> Image.Image:
    """A boolean mask as the pipelines give it: a PIL image of mode "L", 255 inside, 0 outside."""
    return Image.fromarray(mask.astype(np.uint8) * np.uint8(255))


# --- object detection -------------------------------------------------------------------------

def detections(logits: np.ndarray, pred_boxes: np.ndarray, *, threshold: float = 0.5,
               target_sizes: Iterable[Size]) -> list[list[dict]]:
    """DETR / YOLOS outputs -> per image the object-detection pipeline's list of
    ``{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}``, in query order.

    ``logits`` (N, queries, classes + 1): softmax, the last ("no object") class dropped, the best
    class kept when its probability is above ``threshold``. ``pred_boxes`` (N, queries, 4):
    relative (center x, center y, width, height), scaled to each (height, width) of
    ``target_sizes`` (the original images) and truncated to ints as the pipeline does.

    >>> logits = np.array([[[4.0, 0.0, 0.0], [0.0, 0.0, 4.0]]])
    >>> boxes = np.array([[[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1]]])
    >>> [found] = detections(logits, boxes, threshold=0.5, target_sizes=[(100, 200)])
    >>> [(d["label"], round(d["score"], 4), d["box"]) for d in found]
    [(0, 0.9647, {'xmin': 80, 'ymin': 30, 'xmax': 120, 'ymax': 70})]
    """
    probabilities = _softmax(_float32(logits))[..., :-1]
    scores, labels = probabilities.max(axis=-1), probabilities.argmax(axis=-1)
    cx, cy, w, h = np.moveaxis(_float32(pred_boxes), -1, 0)
    half = np.float32(0.5)
    corners = np.stack([cx - half * w, cy - half * h, cx + half * w, cy + half * h], axis=-1)
    sizes = _sizes(target_sizes, len(corners), "images of detections")
    results = []
    for score, label, box, (height, width) in zip(scores, labels, corners, sizes):
        keep = score > threshold
        pixels = box[keep] * np.array([width, height, width, height], np.float32)
        results.append([
            {"score": s, "label": c, "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), b))}
            for s, c, b in zip(score[keep].tolist(), label[keep].tolist(),
                               pixels.astype(np.int32).tolist())
        ])
    return results


# --- semantic segmentation --------------------------------------------------------------------

def semantic_segmentation(logits: np.ndarray, target_sizes: Iterable[Size] | None = None
                          ) -> list[np.ndarray]:
    """(N, classes, h, w) logits (SegFormer, DPT, BEiT: 1/4 of the input or so) -> per image the
    (height, width) map of class ids: logits resized bilinearly to the target size, then argmax.
    Without target sizes, the argmax at the logits' own size."""
    logits = _float32(logits)
    sizes = _sizes(target_sizes, len(logits), "images of logits")
    return [_argmax_resized(item, size) for item, size in zip(logits, sizes)]


def segments_from_label_map(label_map: np.ndarray) -> list[dict]:
    """The image-segmentation pipeline's output for a semantic map: one
    ``{"score": None, "label": class id, "mask": PIL "L" image}`` per class present, by id."""
    return [{"score": None, "label": int(label), "mask": _mask_image(label_map == label)}
            for label in np.unique(label_map)]


def segments_from_segmentation(segmentation: np.ndarray, segments_info: Iterable[dict]
                               ) -> list[dict]:
    """The image-segmentation pipeline's output for a panoptic or instance result: one
    ``{"score", "label": class id, "mask": PIL "L" image}`` per entry of ``segments_info``, in
    its order (fused segments share one id, hence one mask, as in transformers)."""
    return [{"score": s["score"], "label": s["label_id"],
             "mask": _mask_image(segmentation == s["id"])} for s in segments_info]


def choose_subtask(subtask: str | None, available: Collection[str]) -> str:
    """The subtask the image-segmentation pipeline runs: ``subtask`` if the model's processor has
    it, else with ``subtask=None`` the first of panoptic, instance, semantic that it has.

    >>> choose_subtask(None, {"semantic", "instance", "panoptic"})
    'panoptic'
    """
    for name in SUBTASKS:
        if subtask in (name, None) and name in available:
            return name
    known = [name for name in SUBTASKS if name in available]
    raise InputError(
        f"Subtask {subtask!r} is not supported by this model. "
        + did_you_mean(str(subtask), known)
    )


# --- Mask2Former ------------------------------------------------------------------------------

# The size a query model's mask logits are upscaled to before its post-processing, by
# model_type: Mask2Former's processor upscales to 384 x 384, MaskFormer's keeps the model's size.
QUERY_MASK_SIZES: dict[str, Size | None] = {"maskformer": None}


def query_mask_size(model_type: str | None) -> Size | None:
    """The ``mask_size`` of the mask2former_* functions for a model_type (Mask2Former's for any
    other).

    >>> query_mask_size("maskformer") is None, query_mask_size("mask2former")
    (True, (384, 384))
    """
    return QUERY_MASK_SIZES.get(model_type, MASK2FORMER_MASK_SIZE)


def _mask2former_masks(masks_queries_logits: np.ndarray, mask_size: Size | None) -> np.ndarray:
    """The mask logits upscaled to ``mask_size`` first (Mask2Former: 384 x 384); None keeps
    them at the model's size (MaskFormer's processor, the same post-processing otherwise)."""
    masks = _float32(masks_queries_logits)
    return masks if mask_size is None else resize_bilinear(masks, mask_size)


def mask2former_semantic_segmentation(class_queries_logits: np.ndarray,
                                      masks_queries_logits: np.ndarray,
                                      target_sizes: Iterable[Size] | None = None, *,
                                      mask_size: Size | None = MASK2FORMER_MASK_SIZE
                                      ) -> list[np.ndarray]:
    """Mask2Former outputs -> per image a map of class ids, as
    ``Mask2FormerImageProcessor.post_process_semantic_segmentation``: each class scores
    ``sum over queries of P(class | query) * sigmoid(mask)``; resized bilinearly, then argmax.

    ``class_queries_logits`` (N, queries, classes + 1), ``masks_queries_logits``
    (N, queries, h, w). A pixel where two classes tie to float32 rounding may differ from torch
    (its matrix product sums in another order)."""
    classes = _softmax(_float32(class_queries_logits))[..., :-1]
    probabilities = _sigmoid(_mask2former_masks(masks_queries_logits, mask_size))
    sizes = _sizes(target_sizes, len(classes), "images of Mask2Former outputs")
    maps = []
    for weights, masks, size in zip(classes, probabilities, sizes):
        scores = (weights.T @ masks.reshape(len(masks), -1)).reshape(-1, *masks.shape[1:])
        maps.append(_argmax_resized(scores, size))
    return maps


def mask2former_instance_segmentation(class_queries_logits: np.ndarray,
                                      masks_queries_logits: np.ndarray, *,
                                      threshold: float = 0.5,
                                      target_sizes: Iterable[Size] | None = None,
                                      return_binary_maps: bool = False,
                                      mask_size: Size | None = MASK2FORMER_MASK_SIZE
                                      ) -> list[dict]:
    """Mask2Former outputs -> per image ``{"segmentation", "segments_info"}``, as
    ``post_process_instance_segmentation``: the ``queries`` best (query, class) pairs, in torch's
    own order; a pair is kept when its class probability times the mean mask probability is at
    least ``threshold`` and its mask (logit > 0, nearest-resized) is not empty.

    ``segmentation`` is (height, width) float32: -1 for no instance, else the id of the last
    instance covering the pixel; with ``return_binary_maps`` (and some instance) it is the
    (instances, height, width) 0/1 masks instead. ``segments_info``: ``{"id", "label_id",
    "was_fused": False, "score"}`` with the score rounded to 6 decimals. The pipeline calls this
    with its defaults, only threshold (0.9) and the image size given."""
    masks_logits = _mask2former_masks(masks_queries_logits, mask_size)
    class_logits = _float32(class_queries_logits)
    num_queries, num_classes = class_logits.shape[1], class_logits.shape[2] - 1
    sizes = _sizes(target_sizes, len(class_logits), "images of Mask2Former outputs")
    results = []
    for logits, masks, size in zip(class_logits, masks_logits, sizes):
        scores = _softmax(logits)[:, :-1].reshape(-1)
        top = np.array(_torch_topk_unsorted(scores, num_queries), dtype=np.int64)
        queries, labels = top // num_classes, top % num_classes
        chosen = masks[queries]
        binary = chosen > 0
        inside = (_sigmoid(chosen) * binary).reshape(len(chosen), -1).sum(axis=1, dtype=np.float64)
        area = binary.reshape(len(chosen), -1).sum(axis=1).astype(np.float32) + np.float32(1e-6)
        pred_scores = scores[top] * (inside.astype(np.float32) / area)
        if size is not None:
            binary = resize_nearest(binary[None], size)[0]
        segmentation = np.full(size or binary.shape[1:], -1, np.float32)
        segments, instance_maps = [], []
        for j in range(num_queries):
            score = float(pred_scores[j])
            if score >= threshold and binary[j].any():
                segmentation[binary[j]] = len(segments)
                segments.append({"id": len(segments), "label_id": int(labels[j]),
                                 "was_fused": False, "score": round(score, 6)})
                instance_maps.append(binary[j])
        if return_binary_maps and instance_maps:
            segmentation = np.stack(instance_maps).astype(np.float32)
        results.append({"segmentation": segmentation, "segments_info": segments})
    return results


def mask2former_panoptic_segmentation(class_queries_logits: np.ndarray,
                                      masks_queries_logits: np.ndarray, *,
                                      threshold: float = 0.5, mask_threshold: float = 0.5,
                                      overlap_mask_area_threshold: float = 0.8,
                                      label_ids_to_fuse: Collection[int] | None = None,
                                      target_sizes: Iterable[Size] | None = None,
                                      mask_size: Size | None = MASK2FORMER_MASK_SIZE
                                      ) -> list[dict]:
    """Mask2Former outputs -> per image ``{"segmentation", "segments_info"}``, as
    ``post_process_panoptic_segmentation``: queries whose best class is not "no object" and
    scores above ``threshold`` compete for each pixel (mask probability times score); a query
    becomes a segment when it wins pixels and they are more than ``overlap_mask_area_threshold``
    of its own mask (probability times score >= ``mask_threshold``). Queries of a class in
    ``label_ids_to_fuse`` share one segment id.

    ``segmentation``: (height, width) int32 segment ids from 1, 0 where no segment; float32 -1
    everywhere when no query passes ``threshold``. ``segments_info``: ``{"id", "label_id",
    "was_fused", "score"}``. The pipeline passes threshold (0.9), mask_threshold (0.5),
    overlap_mask_area_threshold (0.5) and the image size; it never fuses labels."""
    fuse = set(label_ids_to_fuse or ())
    class_logits = _float32(class_queries_logits)
    num_labels = class_logits.shape[-1] - 1
    probabilities = _sigmoid(_mask2former_masks(masks_queries_logits, mask_size))
    best = _softmax(class_logits)
    scores, labels = best.max(axis=-1), best.argmax(axis=-1)
    sizes = _sizes(target_sizes, len(class_logits), "images of Mask2Former outputs")
    results = []
    for masks, score, label, size in zip(probabilities, scores, labels, sizes):
        keep = (label != num_labels) & (score > threshold)
        if not keep.any():
            segmentation = np.full(size or masks.shape[1:], -1, np.float32)
            results.append({"segmentation": segmentation, "segments_info": []})
            continue
        results.append(_compute_segments(masks[keep], score[keep], label[keep], mask_threshold,
                                         overlap_mask_area_threshold, fuse, size))
    return results


def _compute_segments(mask_probs, scores, labels, mask_threshold, overlap_threshold, fuse,
                      size) -> dict:
    """transformers' compute_segments (shared by DETR and the MaskFormer family)."""
    if size is not None:
        mask_probs = resize_bilinear(mask_probs[None], size)[0]
    mask_probs = mask_probs * scores[:, None, None]
    winners = mask_probs.argmax(axis=0)
    segmentation = np.zeros(winners.shape, np.int32)
    segments, fused_ids = [], {}
    current_id = 0
    for k, label in enumerate(labels.tolist()):
        mask_k = winners == k
        area = int(mask_k.sum())
        original_area = int((mask_probs[k] >= mask_threshold).sum())
        # transformers divides the two counts as float32 tensors, then compares in Python.
        if area == 0 or original_area == 0 or not float(
                np.float32(area) / np.float32(original_area)) > overlap_threshold:
            continue
        # As in transformers, a fused label's id becomes the current one: the next new segment
        # counts on from it, even onto an id already given.
        current_id = fused_ids[label] if label in fused_ids else current_id + 1
        segmentation[mask_k] = current_id
        segments.append({"id": current_id, "label_id": label, "was_fused": label in fuse,
                         "score": round(float(scores[k]), 6)})
        if label in fuse:
            fused_ids[label] = current_id
    return {"segmentation": segmentation, "segments_info": segments}


def _torch_topk_unsorted(values: np.ndarray, k: int) -> list[int]:
    """Indices of ``torch.topk(values, k, sorted=False)`` on CPU, in torch's order.

    Mask2Former's instance segments come out in this order, which is libstdc++'s: partial_sort
    (best first) when k * 64 <= len(values), else nth_element's introselect, repeated here."""
    vals = values.astype(np.float64).tolist()
    order = list(range(len(vals)))

    def better(i, j):
        return vals[i] > vals[j]

    if k * 64 <= len(order):
        _heap_select(order, 0, k, len(order), better)
        for end in range(k - 1, 0, -1):  # sort_heap
            order[0], order[end] = order[end], order[0]
            _adjust_heap(order, 0, 0, end, order[0], better)
    else:
        _nth_element(order, k - 1, better)
    return order[:k]


def _nth_element(a: list, nth: int, less) -> None:
    """libstdc++'s std::nth_element (introselect) on the list ``a``."""
    first, last = 0, len(a)
    depth = 2 * ((last - first).bit_length() - 1)
    while last - first > 3:
        if depth == 0:
            _heap_select(a, first, nth + 1, last, less)
            a[first], a[nth] = a[nth], a[first]
            return
        depth -= 1
        # The median of a[first + 1], a[mid], a[last - 1] becomes the pivot, at a[first].
        x, y, z = first + 1, first + (last - first) // 2, last - 1
        if less(a[x], a[y]):
            median = y if less(a[y], a[z]) else z if less(a[x], a[z]) else x
        else:
            median = x if less(a[x], a[z]) else z if less(a[y], a[z]) else y
        a[first], a[median] = a[median], a[first]
        pivot, lo, hi = a[first], first + 1, last
        while True:
            while less(a[lo], pivot):
                lo += 1
            hi -= 1
            while less(pivot, a[hi]):
                hi -= 1
            if lo >= hi:
                break
            a[lo], a[hi] = a[hi], a[lo]
            lo += 1
        if lo <= nth:
            first = lo
        else:
            last = lo
    for i in range(first + 1, last):  # insertion sort
        value, j = a[i], i
        if less(value, a[first]):
            a[first + 1:i + 1] = a[first:i]
            a[first] = value
            continue
        while less(value, a[j - 1]):
            a[j] = a[j - 1]
            j -= 1
        a[j] = value


def _heap_select(a: list, first: int, middle: int, last: int, less) -> None:
    """libstdc++'s __heap_select: a[first:middle] becomes a heap of the best of a[first:last]."""
    length = middle - first
    for parent in range((length - 2) // 2, -1, -1):
        _adjust_heap(a, first, parent, length, a[first + parent], less)
    for i in range(middle, last):
        if less(a[i], a[first]):
            value, a[i] = a[i], a[first]
            _adjust_heap(a, first, 0, length, value, less)


def _adjust_heap(a: list, first: int, hole: int, length: int, value, less) -> None:
    """libstdc++'s __adjust_heap followed by __push_heap."""
    top = child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if less(a[first + child], a[first + child - 1]):
            child -= 1
        a[first + hole] = a[first + child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        a[first + hole] = a[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and less(a[first + parent], value):
        a[first + hole] = a[first + parent]
        hole, parent = parent, (parent - 1) // 2
    a[first + hole] = value


# --- depth estimation -------------------------------------------------------------------------

def depth_estimation(predicted_depth: np.ndarray, target_sizes: Iterable[Size] | None = None
                     ) -> list[dict]:
    """(N, h, w) predicted depth (GLPN, DPT) -> per image the depth-estimation pipeline's
    ``{"predicted_depth": float32 array, "depth": PIL "L" image}``.

    ``predicted_depth`` is resized bicubically to the target size (the original image) and
    squeezed, as ``post_process_depth_estimation`` does; ``depth`` spreads it over 0..255:
    ``uint8(255 * (d - min) / (max - min))`` (all 0 for a constant map).
    """
    depth = _float32(predicted_depth)
    sizes = _sizes(target_sizes, len(depth), "depth maps")
    results = []
    for item, size in zip(depth, sizes):
        if size is not None:
            item = resize_bicubic(item[None, None], size).squeeze()
        low, high = item.min(), item.max()
        spread = (item - low) / (high - low) if high > low else np.zeros_like(item)
        image = Image.fromarray((spread * 255).astype(np.uint8))
        results.append({"predicted_depth": item, "depth": image})
    return results


# --- image classification ---------------------------------------------------------------------

_CLASSIFICATION_FUNCTIONS = ("softmax", "sigmoid", "none")


def top_classes(logits: np.ndarray, *, top_k: int | None = 5, function_to_apply: str | None = None,
                problem_type: str | None = None) -> list[dict]:
    """One image's logits (classes,) -> the image-classification pipeline's
    ``[{"label": class id, "score"}]``, best first (ties in class order), ``top_k`` of them
    (None: all).

    ``function_to_apply`` None picks as the pipeline does: sigmoid for
    ``problem_type="multi_label_classification"`` or a single class, else softmax. (The pipeline
    itself treats ``top_k=None`` as 5; the caller maps its arguments.)

    >>> top_classes(np.array([0.0, 2.0, 1.0]), top_k=2)
    [{'label': 1, 'score': 0.6652409434318542}, {'label': 2, 'score': 0.2447284609079361}]
    """
    logits = _float32(logits)
    if function_to_apply is None:
        single = problem_type == "multi_label_classification" or logits.shape[-1] == 1
        function_to_apply = "sigmoid" if single else "softmax"
    function = str(function_to_apply).lower()
    if function not in _CLASSIFICATION_FUNCTIONS:
        raise InputError(f"Unknown function_to_apply {function_to_apply!r}. "
                         + did_you_mean(function, _CLASSIFICATION_FUNCTIONS))
    if function == "softmax":
        scores = _softmax(logits)
    elif function == "sigmoid":
        scores = _sigmoid(logits)
    else:
        scores = logits
    ranked = sorted(enumerate(scores.tolist()), key=lambda item: item[1], reverse=True)
    return [{"label": label, "score": score} for label, score in ranked[:top_k]]
