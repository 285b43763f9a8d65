"""Vision task metrics on hand-made cases with known answers: box IoU, AP and mAP@0.5, mIoU of
label maps, depth errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration import metrics
from calibration.metrics import (
    average_precision,
    box_iou,
    depth_errors,
    detection_map,
    matched_detections,
    mean_iou,
    metric_drop,
)


def test_box_iou():
    iou = box_iou([[0, 0, 2, 2], [0, 0, 0, 5]], [[1, 1, 3, 3], [0, 0, 2, 2], [2, 0, 4, 2],
                                                  [-1, -1, 3, 3]])
    # overlap 1 of union 7; identical; touching edges only; contained 4 in 16
    np.testing.assert_allclose(iou[0], [1 / 7, 1.0, 0.0, 0.25])
    np.testing.assert_array_equal(iou[1], 0.0)  # a box of no area
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)
    # IoU does not depend on the unit, even one per axis: relative boxes are fine
    a, b = np.array([[0.1, 0.2, 0.5, 0.6]]), np.array([[0.2, 0.1, 0.6, 0.7]])
    scale = np.array([640, 480, 640, 480])
    assert box_iou(a, b)[0, 0] == pytest.approx(box_iou(a * scale, b * scale)[0, 0])


def test_average_precision_is_the_area_under_the_monotone_curve():
    # precision 1 up to recall 0.5, then (after a false positive) 2/3 at recall 1
    assert average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(5 / 6)
    assert average_precision([0.25, 0.5, 0.75, 1.0], [1.0] * 4) == 1.0
    # a false positive first: the envelope lifts it to the later precision of 2/3
    assert average_precision([0.0, 0.5, 1.0], [0.0, 0.5, 2 / 3]) == pytest.approx(2 / 3)
    assert average_precision([0.0, 0.0], [0.0, 0.0]) == 0.0


TRUTH = [([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1]),
         ([[0, 0, 10, 10], [5, 5, 25, 25]], [1, 2])]


def test_map_is_one_for_the_truth_itself():
    found = [(boxes, labels, [0.9] * len(labels)) for boxes, labels in TRUTH]
    result = detection_map(TRUTH, found)
    assert result == {"map": 1.0, "per_class": {1: 1.0, 2: 1.0}, "truth": 4, "predictions": 4}


def test_map_counts_misses_false_positives_and_duplicates():
    found = [
        # image 0: a hit, a duplicate of it (a false positive), the second box shifted to IoU
        # 25/175 (a miss)
        ([[0, 0, 10, 10], [0, 0, 10, 10], [25, 25, 35, 35]], [1, 1, 1], [0.9, 0.8, 0.7]),
        # image 1: class 1 hit at IoU 81/100, the class 2 box found with the wrong label
        ([[1, 1, 10, 10], [5, 5, 25, 25]], [1, 1], [0.6, 0.5]),
    ]
    result = detection_map(TRUTH, found)
    # class 1, ranked 0.9 hit, 0.8 dup, 0.7 miss, 0.6 hit, 0.5 (wrong class 2 box) miss:
    # recall 1/3, 1/3, 1/3, 2/3, 2/3 at precision 1, 1/2, 1/3, 1/2, 2/5 -> AP 1/3 + 1/3 * 1/2
    assert result["per_class"][1] == pytest.approx(0.5)
    assert result["per_class"][2] == 0.0  # no prediction of class 2 at all
    assert result["map"] == pytest.approx(0.25)
    assert result["truth"] == 4 and result["predictions"] == 5


def test_map_ranks_across_images_and_ignores_classes_without_truth():
    truth = [([[0, 0, 1, 1]], [0]), ([[0, 0, 1, 1]], [0])]
    found = [([[0, 0, 1, 1], [5, 5, 6, 6]], [0, 7], [0.2, 0.99]),  # class 7 has no truth
             ([[3, 3, 4, 4]], [0], [0.9])]  # a false positive ranked first
    result = detection_map(truth, found)
    # class 0: 0.9 false, 0.2 hit -> recall 0, 1/2 at precision 0, 1/2 -> AP 1/4
    assert result["per_class"] == {0: 0.25} and result["map"] == 0.25


def test_iou_threshold_is_inclusive_and_matching_takes_the_best_free_box():
    truth = [([[0, 0, 4, 4], [0, 0, 4, 2]], [3, 3])]
    # IoU exactly 0.5 with the second box is a hit (recall 1/2); 0.45 is not
    assert detection_map(truth, [([[0, 0, 4, 1]], [3], [1.0])])["per_class"][3] == 0.5
    assert detection_map(truth, [([[0, 0, 4, 0.9]], [3], [1.0])])["per_class"][3] == 0.0
    assert detection_map(truth, [([[0, 0, 4, 0.9]], [3], [1.0])], 0.4)["per_class"][3] == 0.5
    # the first prediction takes the box it overlaps most; the second still finds the other
    both = [([[0, 0, 4, 4], [0, 0, 4, 3]], [3, 3], [0.9, 0.8])]
    assert detection_map(truth, both)["map"] == 1.0


def test_map_without_any_truth_is_none():
    assert detection_map([(np.zeros((0, 4)), [])], [([[0, 0, 1, 1]], [0], [0.9])])["map"] is None
    with pytest.raises(ValueError, match="1 images of truth but 2"):
        detection_map(TRUTH[:1], [([], [], [])] * 2)


def test_matched_detections():
    truth = ([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 2])
    assert matched_detections(truth, ([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 2], [.9, .8])) == 2
    assert matched_detections(truth, ([[0, 0, 10, 10], [0, 0, 10, 10]], [1, 1], [.9, .8])) == 1
    assert matched_detections(truth, ([[20, 20, 30, 30]], [1], [.9])) == 0  # wrong label
    assert matched_detections(truth, (np.zeros((0, 4)), [], [])) == 0


def test_mean_iou():
    ref = np.array([[0, 0, 1, 1], [2, 2, 1, 1]])
    assert mean_iou([ref], [ref])["miou"] == 1.0
    out = np.array([[0, 1, 1, 1], [2, 2, 1, 3]])
    result = mean_iou([ref], [out])
    # class 0: 1 of 2; class 1: 3 of 5; class 2: 2 of 2; class 3 (only in the variant): 0 of 1
    assert result["per_class"] == {0: 0.5, 1: 0.6, 2: 1.0, 3: 0.0}
    assert result["miou"] == pytest.approx(2.1 / 4) and result["classes"] == 4
    assert result["pixel_accuracy"] == 6 / 8
    # pooled over maps, not a mean of per-map mIoUs
    pooled = mean_iou([np.zeros((1, 4), int), np.ones((1, 1), int)],
                      [np.zeros((1, 4), int), np.zeros((1, 1), int)])
    assert pooled["per_class"] == {0: 0.8, 1: 0.0} and pooled["miou"] == 0.4
    with pytest.raises(ValueError, match="different shapes"):
        mean_iou([ref], [ref[:1]])


def test_depth_errors():
    ref, out = np.array([[1.0, 2.0], [4.0, 0.0]]), np.array([[1.0, 2.5], [3.0, 7.0]])
    result = depth_errors([ref], [out])
    assert result["rmse"] == pytest.approx(math.sqrt((0.25 + 1 + 49) / 4))
    # AbsRel and delta1 where the reference depth is positive: 0, 0.25, 0.25 and 1 of 3
    assert result["abs_rel"] == pytest.approx(0.5 / 3) and result["delta1"] == pytest.approx(1 / 3)
    assert (result["pixels"], result["valid"]) == (4, 3)
    assert depth_errors([ref], [ref])["abs_rel"] == 0.0
    assert depth_errors([np.array([2.0])], [np.array([-1.0])])["delta1"] == 0.0


def test_metric_drop_follows_the_metric_direction():
    assert metric_drop("top1_agreement", 1.0) == 0.0
    assert metric_drop("map50", 0.75) == 0.25
    assert metric_drop("depth_abs_rel", 0.03) == 0.03
    assert metric_drop("wer", 0.12) == 0.12
    assert metrics.LOWER_IS_BETTER == {"depth_abs_rel", "wer", "cer", "action_abs_error"}


def test_docstring_examples_hold():
    import doctest

    assert doctest.testmod(metrics).failed == 0
