"""runtime.vision.postprocess gives what transformers gives on the same raw model outputs.

Seeded random outputs of realistic shapes go both to our numpy functions and to transformers: to
the image processors' post_process_* methods, and to the pipelines' own ``postprocess`` (run on a
stand-in for the pipeline object, with id2label mapping every class id to itself), so that the
whole output structure is compared. Masks and label maps must be identical, scores within 1e-5,
boxes identical (the pipeline truncates them to ints).

The resize functions repeat torch's CPU kernels bit for bit where torch runs its AVX512 kernels
(checked exactly there); on other CPUs they are checked to 1e-5 and label maps to 99.99%.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers
from compare import assert_same
from PIL import Image
from transformers.modeling_outputs import (
    DepthEstimatorOutput,
    ImageClassifierOutput,
    SemanticSegmenterOutput,
)
from transformers.models.detr.modeling_detr import DetrObjectDetectionOutput
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerForUniversalSegmentationOutput,
)

from runtime.errors import InputError
from runtime.vision import postprocess as vp

EXACT = torch.backends.cpu.get_cpu_capability() == "AVX512"


class _Ids(dict):
    """id2label that names every class by its id, so labels compare as ints."""

    def __missing__(self, key):
        return int(key)


def _pipeline_postprocess(pipeline_class, processor=None, **config):
    """``pipeline_class.postprocess`` bound to a stand-in pipeline holding ``processor`` and a
    model config with ``config``."""
    config = SimpleNamespace(id2label=_Ids(), **config)
    fake = SimpleNamespace(image_processor=processor, tokenizer=None, framework="pt",
                           model=SimpleNamespace(config=config))
    if hasattr(pipeline_class, "_get_bounding_box"):
        fake._get_bounding_box = functools.partial(pipeline_class._get_bounding_box, fake)
    return functools.partial(pipeline_class.postprocess, fake)


def _assert_same_map(actual: np.ndarray, expected, where: str):
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{where}: {actual.shape} != {expected.shape}"
    agreement = (actual == expected).mean()
    assert agreement == 1 or (not EXACT and agreement >= 0.9999), f"{where}: {agreement:.6f}"


def _assert_same_output(actual: list[dict], expected: list[dict], where: str):
    """The pipeline's list of {"score", "label", "mask"}: masks identical (on AVX512)."""
    assert_same(actual, expected, where, atol=1e-5)
    for i, (a, e) in enumerate(zip(actual, expected)):
        _assert_same_map(np.asarray(a["mask"]), np.asarray(e["mask"]), f"{where}[{i}]")
        assert a["mask"].mode == "L"


# --- interpolation ----------------------------------------------------------------------------

RESIZES = [  # (N, C, H, W) -> (h, w): up, down, odd, mixed, same, from and to one pixel
    ((1, 2, 16, 16), (64, 64)), ((1, 5, 61, 97), (244, 388)), ((2, 1, 97, 61), (23, 17)),
    ((1, 20, 13, 29), (101, 7)), ((1, 37, 31, 33), (45, 50)), ((1, 1, 120, 90), (480, 641)),
    ((1, 4, 9, 9), (9, 9)), ((1, 6, 1, 1), (5, 7)), ((1, 2, 40, 30), (1, 1)),
    ((3, 2, 96, 96), (384, 384)), ((1, 17, 7, 150), (30, 600)),
]


@pytest.mark.parametrize("shape, size", RESIZES)
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_resize_matches_torch(shape, size, mode):
    rng = np.random.default_rng(sum(shape) + sum(size))
    x = (rng.standard_normal(shape) * rng.choice([1.0, 30.0])).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode=mode,
                                               align_corners=False).numpy()
    actual = {"bilinear": vp.resize_bilinear, "bicubic": vp.resize_bicubic}[mode](x, size)
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * np.abs(x).max())
    if EXACT:
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("shape, size", RESIZES)
def test_resize_nearest_matches_torch(shape, size):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode="nearest")
    np.testing.assert_array_equal(vp.resize_nearest(x, size), expected.numpy())
    assert vp.resize_nearest(x > 0, size).dtype == bool


def test_resize_rejects_bad_arguments():
    with pytest.raises(InputError, match="Note: add the missing axes"):
        vp.resize_bilinear(np.zeros((4, 4), np.float32), (2, 2))
    with pytest.raises(InputError, match="both > 0"):
        vp.resize_bicubic(np.zeros((1, 1, 4, 4), np.float32), (0, 2))


# --- object detection -------------------------------------------------------------------------

def _detector_outputs(rng, batch=1, queries=100, classes=92):
    """DETR-like outputs: most queries say "no object", a dozen are confident of a class."""
    logits = rng.normal(0, 1, (batch, queries, classes)).astype(np.float32)
    logits[..., -1] += 4
    for b in range(batch):
        confident = rng.choice(queries, 14, replace=False)
        logits[b, confident, rng.integers(0, classes - 1, 14)] += rng.uniform(4, 12, 14)
    centers = rng.uniform(0, 1, (batch, queries, 2))
    extents = rng.uniform(0.02, 0.9, (batch, queries, 2))  # some boxes leave the image
    return logits, np.concatenate([centers, extents], axis=-1).astype(np.float32)


@pytest.mark.parametrize("processor", [transformers.DetrImageProcessor,
                                       transformers.YolosImageProcessor])
def test_detections_match_the_processor(processor):
    rng = np.random.default_rng(1)
    logits, boxes = _detector_outputs(rng, batch=3)
    sizes = [(480, 640), (333, 500), (61, 97)]
    outputs = SimpleNamespace(logits=torch.from_numpy(logits), pred_boxes=torch.from_numpy(boxes))
    for threshold in (0.3, 0.5, 0.9):
        expected = processor().post_process_object_detection(
            outputs, threshold=threshold, target_sizes=torch.IntTensor(sizes))
        actual = vp.detections(logits, boxes, threshold=threshold, target_sizes=sizes)
        for got, want in zip(actual, expected):
            assert [d["label"] for d in got] == want["labels"].tolist()
            np.testing.assert_allclose([d["score"] for d in got], want["scores"].numpy(),
                                       atol=1e-5)
            boxes_got = [[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in got]
            assert boxes_got == want["boxes"].int().tolist()
    assert 5 <= len(actual[0]) < 100 and min(b["box"]["xmin"] for b in actual[0]) <= 0


def test_detections_match_the_pipeline():
    rng = np.random.default_rng(2)
    postprocess = _pipeline_postprocess(transformers.ObjectDetectionPipeline,
                                        transformers.DetrImageProcessor())
    for height, width in [(480, 640), (45, 250)]:
        logits, boxes = _detector_outputs(rng)
        outputs = DetrObjectDetectionOutput(logits=torch.from_numpy(logits),
                                            pred_boxes=torch.from_numpy(boxes))
        outputs["target_size"] = torch.IntTensor([[height, width]])
        for kwargs in ({}, {"threshold": 0.9}):
            expected = postprocess(outputs, **kwargs)
            actual = vp.detections(logits, boxes, target_sizes=[(height, width)], **kwargs)[0]
            assert_same(actual, expected, f"{(height, width)} {kwargs}", atol=1e-5)
            assert expected


# --- semantic segmentation (SegFormer) --------------------------------------------------------

@pytest.mark.parametrize("shape, sizes", [
    ((2, 150, 64, 64), [(256, 256), (375, 500)]),  # ADE20k classes, logits at 1/4
    ((1, 19, 128, 256), [(512, 1024)]),            # Cityscapes
    ((1, 5, 16, 16), [(61, 97)]),                  # a tiny model on a small image
])
def test_semantic_segmentation_matches_segformer(shape, sizes):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal(shape) * 3).astype(np.float32)
    outputs = SimpleNamespace(logits=torch.from_numpy(logits))
    processor = transformers.SegformerImageProcessor()
    for size_list in (sizes, None):
        expected = processor.post_process_semantic_segmentation(outputs, target_sizes=size_list)
        actual = vp.semantic_segmentation(logits, size_list)
        for i, (got, want) in enumerate(zip(actual, expected)):
            _assert_same_map(got, want.numpy(), f"image {i}, sizes {size_list}")


@pytest.mark.parametrize("processor", [transformers.SegformerImageProcessor,
                                       transformers.DPTImageProcessor,
                                       transformers.BeitImageProcessor])
def test_semantic_segments_match_the_pipeline(processor):
    rng = np.random.default_rng(4)
    logits = (rng.standard_normal((1, 8, 16, 24)) * 3).astype(np.float32)
    logits[:, 2] -= 20  # a class absent from the map
    outputs = SemanticSegmenterOutput(logits=torch.from_numpy(logits))
    outputs["target_size"] = [(61, 97)]
    expected = _pipeline_postprocess(transformers.ImageSegmentationPipeline, processor())(outputs)
    actual = vp.segments_from_label_map(vp.semantic_segmentation(logits, [(61, 97)])[0])
    _assert_same_output(actual, expected, processor.__name__)
    assert [s["label"] for s in actual] == [0, 1, 3, 4, 5, 6, 7]


def _smooth_logits(rng, shape, noise=0.1):
    """Logits like a segmentation model's: regions where one class leads, edges between them."""
    coarse = rng.standard_normal((*shape[:2], 6, 6)).astype(np.float32) * 4
    smooth = vp.resize_bilinear(coarse, shape[2:])
    return smooth + (rng.standard_normal(shape) * noise).astype(np.float32)


@pytest.mark.parametrize("shape, sizes", [
    ((1, 150, 128, 128), [(480, 640)]),           # a 640x480 photo through SegFormer (ADE20k)
    ((2, 150, 64, 64), [(512, 512), (375, 500)]),
    ((1, 19, 128, 256), [(100, 90)]),              # downscaled
])
def test_semantic_segmentation_of_smooth_logits_matches_segformer(shape, sizes):
    """Realistic logits take the pruned path (only classes that can win resized); exact still."""
    logits = _smooth_logits(np.random.default_rng(5), shape)
    outputs = SimpleNamespace(logits=torch.from_numpy(logits))
    expected = transformers.SegformerImageProcessor().post_process_semantic_segmentation(
        outputs, target_sizes=sizes)
    actual = vp.semantic_segmentation(logits, sizes)
    for i, (got, want, size) in enumerate(zip(actual, expected, sizes)):
        assert vp._argmax_bilinear_pruned(logits[i], size) is not None
        _assert_same_map(got, want.numpy(), f"image {i}, size {size}")


def _argmax_logits(kind: str, rng, shape) -> np.ndarray:
    if kind == "smooth":
        return _smooth_logits(rng, shape)
    if kind == "noise":
        return (rng.standard_normal(shape) * 3).astype(np.float32)
    if kind == "ties":  # few distinct values: classes tie exactly at many pixels
        return rng.integers(0, 3, shape).astype(np.float32)
    if kind == "constant":
        return np.full(shape, 0.5, np.float32)
    return _smooth_logits(rng, shape) * np.float32(1e-38)  # "tiny": subnormal products


ARGMAX_SHAPES = [  # (N, C, h, w) -> sizes: up, down, same, odd, one row or column, one class
    ((2, 150, 32, 48), [(128, 192), (90, 131)]), ((1, 19, 137, 153), [(100, 61)]),
    ((1, 7, 70, 70), [(70, 70)]), ((1, 5, 1, 30), [(61, 97)]), ((1, 6, 25, 1), [(180, 3)]),
    ((1, 1, 8, 8), [(80, 80)]), ((1, 4, 3, 5), [(200, 70)]),
    ((1, 19, 37, 53), [(23, 17)]),  # small: semantic_segmentation takes the channels-last kernel
]


@pytest.mark.parametrize("shape, sizes", ARGMAX_SHAPES)
@pytest.mark.parametrize("kind", ["smooth", "noise", "ties", "constant", "tiny"])
def test_pruned_argmax_is_the_banded_one(shape, sizes, kind, monkeypatch):
    """The pruned argmax gives the banded path's labels bit for bit, also where it would give way
    to it (forced here), and in many small bands and chunks."""
    logits = _argmax_logits(kind, np.random.default_rng(sum(shape)), shape)
    expected = [vp._argmax_bilinear_banded(item[None], size) for item, size in zip(logits, sizes)]
    monkeypatch.setattr(vp, "_PAIR_COST", 0)
    for band_elements in (1 << 22, 1000):
        monkeypatch.setattr(vp, "_BAND_ELEMENTS", band_elements)
        for item, size, want in zip(logits, sizes, expected):
            got = vp._argmax_bilinear_pruned(item, size)
            assert got.dtype == want.dtype and np.array_equal(got, want), (band_elements, size)
        for got, want, size in zip(vp.semantic_segmentation(logits, sizes), expected, sizes):
            assert np.array_equal(got, want) or vp._uses_channels_last(logits, size)


def test_pruned_argmax_allows_for_rounding(monkeypatch):
    """Interpolating a constant can round to the next float32 up or down, so a class one ulp
    below another everywhere still wins the pixels where they come out tied: the pruning's
    margin must keep it a candidate."""
    monkeypatch.setattr(vp, "_PAIR_COST", 0)  # 2 candidates of 2 classes: pruned nonetheless
    levels = np.random.default_rng(7).uniform(0.5, 100, 300).astype(np.float32)
    pairs = np.stack([levels, np.nextafter(levels, np.float32(np.inf))], axis=1)
    logits = np.broadcast_to(pairs[:, :, None, None], (*pairs.shape, 2, 7)).copy()
    sizes = [(2, 200)] * len(logits)
    expected = [vp._argmax_bilinear_banded(item[None], size) for item, size in zip(logits, sizes)]
    assert any((want == 0).any() for want in expected)  # some ties, won by the first class
    for got, want in zip(vp.semantic_segmentation(logits, sizes), expected):
        assert np.array_equal(got, want)


def test_pruned_argmax_gives_way_to_the_banded_one():
    """Noise (most classes can win everywhere) and non-finite logits go the banded way."""
    rng = np.random.default_rng(6)
    noise = (rng.standard_normal((150, 32, 32)) * 3).astype(np.float32)
    assert vp._argmax_bilinear_pruned(noise, (128, 128)) is None
    smooth = _smooth_logits(rng, (1, 10, 32, 32))[0]
    assert vp._argmax_bilinear_pruned(smooth, (128, 128)) is not None
    for bad in (np.nan, np.inf, -np.inf):
        logits = smooth.copy()
        logits[3, 5, 7] = bad
        assert vp._argmax_bilinear_pruned(logits, (128, 128)) is None
        assert np.array_equal(vp.semantic_segmentation(logits[None], [(128, 128)])[0],
                              vp._argmax_bilinear_banded(logits[None], (128, 128)))


# --- Mask2Former ------------------------------------------------------------------------------

def _mask2former_outputs(rng, labels, queries=20, classes=10, size=(96, 96)):
    """Mask2Former-like outputs at 1/4 of a 384x384 input: the first len(labels) queries are
    confident of their label, with round masks, some overlapping; the others say "no object".
    Query 1 overlaps query 0 and is less sure, so it loses most of its pixels to it."""
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    centers = rng.uniform(0, 1, (queries, 2)) * size
    radii = rng.uniform(0.08, 0.2, queries) * min(size)
    centers[1], radii[1] = centers[0] + (0.5 * radii[0], 0), 0.9 * radii[0]
    masks = np.empty((queries, *size), np.float32)
    for q, ((cy, cx), radius) in enumerate(zip(centers, radii)):
        distance = np.hypot(yy - cy, xx - cx)
        masks[q] = 20 * (radius - distance) / radius + rng.normal(0, 0.5, size)
    logits = rng.normal(0, 1, (queries, classes + 1)).astype(np.float32)
    logits[:, -1] += 5
    for q, label in enumerate(labels):
        logits[q, -1] -= 5
        logits[q, label] += 10 if q != 1 else 6
    return logits[None], masks[None]


# Labels of the confident queries: 1 and 3 repeat, for fusing; a fused label comes back after
# a new one, which makes transformers reuse an id.
LABELS = [0, 1, 2, 1, 3, 4, 3, 5, 1, 6]


def _mask2former_case(seed=5, **kwargs):
    logits, masks = _mask2former_outputs(np.random.default_rng(seed), LABELS, **kwargs)
    outputs = Mask2FormerForUniversalSegmentationOutput(
        class_queries_logits=torch.from_numpy(logits), masks_queries_logits=torch.from_numpy(masks))
    return logits, masks, outputs


@pytest.mark.parametrize("fuse", [None, {1, 3}])
@pytest.mark.parametrize("size", [(300, 451), None, (40, 50)])
def test_mask2former_panoptic_matches_the_processor(fuse, size):
    logits, masks, outputs = _mask2former_case()
    sizes = None if size is None else [size]
    for kwargs in ({"threshold": 0.9, "mask_threshold": 0.5, "overlap_mask_area_threshold": 0.5},
                   {"threshold": 0.5, "overlap_mask_area_threshold": 0.8}):
        expected = transformers.Mask2FormerImageProcessor().post_process_panoptic_segmentation(
            outputs, label_ids_to_fuse=fuse, target_sizes=sizes, **kwargs)[0]
        actual = vp.mask2former_panoptic_segmentation(logits, masks, label_ids_to_fuse=fuse,
                                                      target_sizes=sizes, **kwargs)[0]
        assert_same(actual["segments_info"], expected["segments_info"], f"{kwargs}", atol=1e-5)
        _assert_same_map(actual["segmentation"], expected["segmentation"], f"{kwargs}")
        assert actual["segmentation"].dtype == np.int32
    # The case is not trivial: a query above the threshold made no segment, and fusing shared ids.
    info = expected["segments_info"]
    assert 5 <= len(info) < len(LABELS)
    assert (len({s["id"] for s in info}) < len(info)) == bool(fuse)


def test_mask2former_panoptic_without_objects():
    logits, masks, outputs = _mask2former_case()
    logits, masks = logits[:, len(LABELS):], masks[:, len(LABELS):]  # only "no object" queries
    actual = vp.mask2former_panoptic_segmentation(logits, masks, target_sizes=[(30, 40)])[0]
    assert actual["segments_info"] == [] and actual["segmentation"].shape == (30, 40)
    assert (actual["segmentation"] == -1).all()


@pytest.mark.parametrize("queries, classes, size", [
    (20, 10, (300, 451)), (20, 10, None), (64, 133, (300, 451))])
def test_mask2former_instance_matches_the_processor(queries, classes, size):
    """Few classes: torch's topk comes out in nth_element's order; many: best first."""
    logits, masks, outputs = _mask2former_case(6, queries=queries, classes=classes)
    sizes = None if size is None else [size]
    processor = transformers.Mask2FormerImageProcessor()
    for threshold, binary in ((0.5, False), (0.8, True), (0.9, False)):
        expected = processor.post_process_instance_segmentation(
            outputs, threshold=threshold, target_sizes=sizes, return_binary_maps=binary)[0]
        actual = vp.mask2former_instance_segmentation(
            logits, masks, threshold=threshold, target_sizes=sizes, return_binary_maps=binary)[0]
        assert_same(actual["segments_info"], expected["segments_info"], f"{threshold}", atol=1e-5)
        _assert_same_map(actual["segmentation"], expected["segmentation"], f"{threshold}")
    assert len(expected["segments_info"]) >= 3  # at threshold 0.9


def test_torch_topk_order_is_repeated():
    rng = np.random.default_rng(7)
    for n, k in [(50, 10), (200, 20), (2000, 100), (8512, 64), (5, 5), (1, 1), (70, 1)]:
        for values in (rng.standard_normal(n), rng.integers(0, 4, n), np.sort(rng.random(n))):
            values = values.astype(np.float32)
            expected = torch.from_numpy(values).topk(k, sorted=False).indices.tolist()
            assert vp._torch_topk_unsorted(values, k) == expected, (n, k)


@pytest.mark.parametrize("size", [(300, 451), None])
def test_mask2former_semantic_matches_the_processor(size):
    logits, masks, outputs = _mask2former_case()
    sizes = None if size is None else [size]
    expected = transformers.Mask2FormerImageProcessor().post_process_semantic_segmentation(
        outputs, target_sizes=sizes)[0].numpy()
    actual = vp.mask2former_semantic_segmentation(logits, masks, sizes)[0]
    # Each class's score is a matrix product: numpy sums it in another order than torch, so
    # a pixel where two classes tie to the last bit may differ (none does here).
    _assert_same_map(actual, expected, "semantic")
    assert len(np.unique(actual)) >= 5


# Which post_process_*_segmentation methods a processor has (the last two: made up).
SUBTASKS_OF = {"mask2former": {"panoptic", "instance", "semantic"}, "segformer": {"semantic"},
               "instance-only": {"instance"}, "no-instance": {"panoptic", "semantic"}}


@pytest.mark.parametrize("subtask, threshold", [(None, 0.9), ("instance", 0.8),
                                                ("semantic", None), ("panoptic", 0.5)])
def test_mask2former_segments_match_the_pipeline(subtask, threshold):
    logits, masks, outputs = _mask2former_case()
    outputs["target_size"] = [(200, 300)]
    postprocess = _pipeline_postprocess(transformers.ImageSegmentationPipeline,
                                        transformers.Mask2FormerImageProcessor())
    kwargs = {} if threshold is None else {"threshold": threshold}
    expected = postprocess(outputs, subtask=subtask, **kwargs)

    chosen = vp.choose_subtask(subtask, SUBTASKS_OF["mask2former"])
    threshold = 0.9 if threshold is None else threshold  # the pipeline's defaults below
    if chosen == "semantic":
        label_map = vp.mask2former_semantic_segmentation(logits, masks, [(200, 300)])[0]
        actual = vp.segments_from_label_map(label_map)
    else:
        if chosen == "panoptic":
            result = vp.mask2former_panoptic_segmentation(
                logits, masks, threshold=threshold, mask_threshold=0.5,
                overlap_mask_area_threshold=0.5, target_sizes=[(200, 300)])[0]
        else:
            result = vp.mask2former_instance_segmentation(logits, masks, threshold=threshold,
                                                          target_sizes=[(200, 300)])[0]
        actual = vp.segments_from_segmentation(result["segmentation"], result["segments_info"])
    _assert_same_output(actual, expected, f"{subtask}")
    assert len(expected) >= 3


@pytest.mark.parametrize("model", list(SUBTASKS_OF))
@pytest.mark.parametrize("subtask", [None, "panoptic", "instance", "semantic", "panoptik"])
def test_choose_subtask_as_the_pipeline(model, subtask):
    """The pipeline picks by which post_process_* methods the processor has."""

    class Chose(Exception):
        pass

    def method(name):
        def post_process(*args, **kwargs):
            raise Chose(name)
        return post_process

    processor = type("Processor", (), {f"post_process_{name}_segmentation": method(name)
                                       for name in SUBTASKS_OF[model]})()
    outputs = {"target_size": [(4, 4)]}
    try:
        _pipeline_postprocess(transformers.ImageSegmentationPipeline, processor)(
            outputs, subtask=subtask)
    except Chose as chose:
        assert vp.choose_subtask(subtask, SUBTASKS_OF[model]) == str(chose)
    except ValueError:
        with pytest.raises(InputError, match="is not supported by this model"):
            vp.choose_subtask(subtask, SUBTASKS_OF[model])


# --- depth estimation -------------------------------------------------------------------------

@pytest.mark.parametrize("processor, depth_shape, image_size", [
    (transformers.GLPNImageProcessor, (1, 352, 480), (375, 500)),  # depth at the input size
    (transformers.DPTImageProcessor, (1, 384, 384), (480, 640)),
    (transformers.DPTImageProcessor, (1, 32, 48), (61, 97)),
])
def test_depth_matches_the_pipeline(processor, depth_shape, image_size):
    rng = np.random.default_rng(8)
    smooth = vp.resize_bilinear(rng.uniform(0, 10, (1, 1, 6, 8)).astype(np.float32),
                                depth_shape[1:])[0]
    depth = (smooth + rng.normal(0, 0.05, depth_shape)).astype(np.float32)
    outputs = DepthEstimatorOutput(predicted_depth=torch.from_numpy(depth))
    outputs["target_size"] = image_size
    expected = _pipeline_postprocess(transformers.DepthEstimationPipeline, processor())(outputs)
    actual = vp.depth_estimation(depth, [image_size])[0]
    assert list(actual) == list(expected)
    np.testing.assert_allclose(actual["predicted_depth"], expected["predicted_depth"].numpy(),
                               rtol=1e-5, atol=1e-5)
    assert actual["depth"].mode == expected["depth"].mode == "L"
    if EXACT:
        np.testing.assert_array_equal(actual["predicted_depth"], expected["predicted_depth"])
        np.testing.assert_array_equal(np.asarray(actual["depth"]), np.asarray(expected["depth"]))
    else:
        assert np.abs(np.asarray(actual["depth"], int) - np.asarray(expected["depth"])).max() <= 1


def test_depth_of_a_constant_map_is_black():
    """The pipeline divides 0 by 0 there and casts the NaNs to 0 (with a warning)."""
    result = vp.depth_estimation(np.ones((1, 8, 6), np.float32), [(8, 6)])[0]
    assert isinstance(result["depth"], Image.Image) and result["depth"].size == (6, 8)
    assert np.asarray(result["depth"]).max() == 0


# --- image classification ---------------------------------------------------------------------

@pytest.mark.parametrize("num_labels, problem_type", [
    (10, None), (10, "single_label_classification"), (10, "multi_label_classification"),
    (1, None), (3, "regression"),
])
def test_top_classes_match_the_pipeline(num_labels, problem_type):
    rng = np.random.default_rng(9)
    logits = (rng.standard_normal((1, num_labels)) * 3).astype(np.float32)
    logits[0, -1] = logits[0, 0]  # a tie: the pipeline keeps class order
    outputs = ImageClassifierOutput(logits=torch.from_numpy(logits))
    postprocess = _pipeline_postprocess(transformers.ImageClassificationPipeline,
                                        num_labels=num_labels, problem_type=problem_type)
    for kwargs in ({}, {"top_k": 1}, {"top_k": 3}, {"top_k": 50},
                   {"function_to_apply": "sigmoid"}, {"function_to_apply": "none", "top_k": 2},
                   {"function_to_apply": "softmax", "top_k": num_labels}):
        expected = postprocess(outputs, **kwargs)
        actual = vp.top_classes(logits[0], problem_type=problem_type, **kwargs)
        assert actual == expected, kwargs  # the same numpy arithmetic: equal to the last bit


def test_top_classes_rejects_an_unknown_function():
    with pytest.raises(InputError, match="Did you mean 'sigmoid'"):
        vp.top_classes(np.zeros(3, np.float32), function_to_apply="sigmod")
