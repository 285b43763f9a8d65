"""Metrics for comparing a variant's outputs with a reference's: pure numpy, no graphs.

Numeric metrics compare two arrays (max and mean abs error, cosine, SQNR); task metrics compare
what a user would see (labels, entities, answer spans, embeddings, boxes, label maps, depth),
always with the reference taken as the truth. Every function here is a plain function of
arrays, so each can be checked on hand-made cases.

>>> top1_agreement(np.array([[0.0, 1.0], [2.0, 1.0]]), np.array([[0.0, 1.0], [0.0, 1.0]]))
{'agreement': 0.5, 'flips': [1], 'count': 2}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

# Abs errors are histogrammed on log10 bins over this range; smaller (non-zero) errors fall in
# the first bin and larger ones in the last, and exact zeros are counted on their own.
HISTOGRAM_LOG10_RANGE = (-9.0, 2.0)
HISTOGRAM_BINS_PER_DECADE = 2


# --- numeric ----------------------------------------------------------------------------------
def _pair(reference, candidate) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(candidate, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"Cannot compare arrays of shapes {ref.shape} and {out.shape}.")
    return ref, out


def max_abs_error(reference, candidate) -> float:
    """The largest absolute difference (0.0 for empty arrays).

    >>> max_abs_error([1.0, 2.0, 3.0], [1.0, 2.5, 2.0])
    1.0
    """
    ref, out = _pair(reference, candidate)
    return float(np.abs(ref - out).max()) if ref.size else 0.0


def mean_abs_error(reference, candidate) -> float:
    """The mean absolute difference (0.0 for empty arrays).

    >>> mean_abs_error([1.0, 2.0, 3.0], [1.0, 2.5, 2.0])
    0.5
    """
    ref, out = _pair(reference, candidate)
    return float(np.abs(ref - out).mean()) if ref.size else 0.0


def cosine_similarity(reference, candidate) -> float:
    """Cosine of the two arrays taken as flat vectors. Two all-zero arrays are identical (1.0);
    one all-zero array against a non-zero one shares no direction (0.0).

    >>> cosine_similarity([1.0, 0.0], [1.0, 1.0])
    0.7071067811865475
    >>> cosine_similarity([0.0, 0.0], [0.0, 0.0])
    1.0
    """
    ref, out = _pair(reference, candidate)
    ref, out = ref.ravel(), out.ravel()
    norms = float(np.linalg.norm(ref) * np.linalg.norm(out))
    if norms == 0.0:
        return 1.0 if not np.any(ref) and not np.any(out) else 0.0
    return float(np.clip(np.dot(ref, out) / norms, -1.0, 1.0))


def sqnr_db(reference, candidate) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - out)^2).
    ``inf`` when the arrays are identical; higher is better (about 6 dB per bit).

    >>> sqnr_db([3.0, 4.0], [3.0, 3.0])
    13.979400086720377
    >>> sqnr_db([1.0], [1.0])
    inf
    """
    ref, out = _pair(reference, candidate)
    return sqnr_from_sums(float(np.sum(ref * ref)), float(np.sum((ref - out) ** 2)))


def sqnr_from_sums(signal: float, noise: float) -> float:
    """SQNR in dB from summed signal and noise power (for streaming over samples).

    >>> sqnr_from_sums(100.0, 1.0)
    20.0
    """
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def relative_error(reference, candidate) -> float:
    """||ref - out|| / ||ref||: the error of a tensor relative to its size, so that tensors of
    different scales (logits, attention probabilities) can be compared. 0 for two zero arrays.

    >>> relative_error([3.0, 4.0], [3.0, 3.0])
    0.2
    """
    ref, out = _pair(reference, candidate)
    return relative_from_sums(float(np.sum(ref * ref)), float(np.sum((ref - out) ** 2)))


def relative_from_sums(signal: float, noise: float) -> float:
    """sqrt(noise / signal) from summed powers; inf when a zero signal meets a non-zero error.

    >>> relative_from_sums(25.0, 1.0)
    0.2
    """
    if noise == 0.0:
        return 0.0
    if signal == 0.0:
        return math.inf
    return math.sqrt(noise / signal)


def histogram_edges() -> np.ndarray:
    """The log10 bin edges of abs-error histograms.

    >>> histogram_edges()[:3].tolist()
    [-9.0, -8.5, -8.0]
    """
    low, high = HISTOGRAM_LOG10_RANGE
    count = int(round((high - low) * HISTOGRAM_BINS_PER_DECADE))
    return np.linspace(low, high, count + 1)


def abs_error_histogram(reference, candidate) -> tuple[np.ndarray, int]:
    """(counts per log10 bin of ``histogram_edges()``, number of exact zeros). Errors below
    the range go to the first bin and above it (infinity too) to the last; NaN errors are
    in neither (count them with ``np.isnan``).

    >>> counts, zeros = abs_error_histogram([0.0, 0.0, 0.0, 0.0], [0.0, 0.002, 2.0, np.nan])
    >>> zeros, histogram_edges()[np.flatnonzero(counts)].tolist()
    (1, [-3.0, 0.0])
    """
    ref, out = _pair(reference, candidate)
    errors = np.abs(ref - out).ravel()
    nonzero = errors[errors > 0]
    edges = histogram_edges()
    logs = np.clip(np.log10(nonzero), edges[0], np.nextafter(edges[-1], -np.inf))
    counts, _ = np.histogram(logs, bins=edges)
    return counts.astype(np.int64), int(np.count_nonzero(errors == 0))


# --- task metrics -----------------------------------------------------------------------------
def top1_agreement(reference_logits, candidate_logits) -> dict:
    """How often the top-1 class of each row agrees, and which rows flipped.

    Rows are samples (shape [samples, classes]).

    >>> ref = np.eye(3)[[0, 1, 2, 0]]
    >>> top1_agreement(ref, np.eye(3)[[0, 1, 1, 0]])
    {'agreement': 0.75, 'flips': [2], 'count': 4}
    """
    ref = np.asarray(reference_logits)
    out = np.asarray(candidate_logits)
    if ref.shape != out.shape or ref.ndim != 2:
        raise ValueError(f"Expected two [samples, classes] arrays, got {ref.shape} and "
                         f"{out.shape}.")
    same = ref.argmax(axis=-1) == out.argmax(axis=-1)
    count = int(same.size)
    return {"agreement": float(same.mean()) if count else 1.0,
            "flips": [int(i) for i in np.flatnonzero(~same)], "count": count}


def position_agreement(reference_logits, candidate_logits, positions) -> tuple[int, int]:
    """(agreeing, counted): top-1 agreement over the last axis at the positions where
    ``positions`` (a bool array of the leading shape) is true; fill-mask per token.

    >>> ref = np.eye(4)[[[0, 1, 2]]]                 # [batch 1, 3 tokens, vocab 4]
    >>> out = np.eye(4)[[[0, 3, 2]]]
    >>> position_agreement(ref, out, np.array([[True, True, False]]))
    (1, 2)
    """
    ref = np.asarray(reference_logits)
    out = np.asarray(candidate_logits)
    where = np.asarray(positions, dtype=bool)
    if ref.shape != out.shape or where.shape != ref.shape[:-1]:
        raise ValueError(f"Shapes do not fit: {ref.shape}, {out.shape}, positions {where.shape}.")
    same = ref.argmax(axis=-1) == out.argmax(axis=-1)
    return int(same[where].sum()), int(where.sum())


def bio_spans(labels: Sequence[str]) -> set[tuple[int, int, str]]:
    """Entity spans (first token, last token, type) of a BIO label sequence.

    ``B-X`` starts an entity; ``I-X`` continues an entity of type X or, after anything else,
    starts one (as seqeval's default mode reads IOB2); ``O`` is outside. A label without a
    ``B-``/``I-`` prefix (``PER``, ``LABEL_3``) is its own type, and a run of it is one entity.

    >>> sorted(bio_spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "LOC", "LOC"]))
    [(0, 1, 'PER'), (3, 3, 'LOC'), (4, 4, 'LOC'), (5, 6, 'LOC')]
    """
    spans = set()
    start, kind, plain = None, None, False

    def close(end):
        if start is not None:
            spans.add((start, end, kind))

    for i, label in enumerate(labels):
        prefix, _, rest = label.partition("-")
        if label == "O":
            close(i - 1)
            start, kind, plain = None, None, False
        elif prefix == "B" and rest:
            close(i - 1)
            start, kind, plain = i, rest, False
        elif prefix == "I" and rest:
            if start is None or kind != rest or plain:
                close(i - 1)
                start, kind, plain = i, rest, False
        elif not (start is not None and plain and kind == label):
            close(i - 1)
            start, kind, plain = i, label, True
    close(len(labels) - 1)
    return spans


def entity_f1(reference_labels: Sequence[Sequence[str]],
              candidate_labels: Sequence[Sequence[str]]) -> dict:
    """Micro precision, recall and F1 of entities (exact span and type), the reference's
    entities taken as the truth. With no entity on either side the two agree fully (1.0).

    >>> ref = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    >>> out = [["B-PER", "O", "O", "B-LOC"], ["O", "B-ORG"]]
    >>> entity_f1(ref, out)
    {'precision': 0.6666666666666666, 'recall': 0.6666666666666666, 'f1': 0.6666666666666666, \
'entities': 3}
    """
    if len(reference_labels) != len(candidate_labels):
        raise ValueError(f"{len(reference_labels)} reference sequences but "
                         f"{len(candidate_labels)} candidate sequences.")
    truth = found = hits = 0
    for ref, out in zip(reference_labels, candidate_labels):
        ref_spans, out_spans = bio_spans(ref), bio_spans(out)
        truth += len(ref_spans)
        found += len(out_spans)
        hits += len(ref_spans & out_spans)
    precision = hits / found if found else (1.0 if not truth else 0.0)
    recall = hits / truth if truth else (1.0 if not found else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "entities": truth}


def best_span(start_logits, end_logits, allowed=None, max_length: int = 15) -> tuple[int, int]:
    """The (start, end) token pair with the highest start + end logit among valid spans:
    start <= end, at most ``max_length`` tokens, both ends where ``allowed`` is true (all
    positions when None). Ties go to the earliest span. (-1, -1) when nothing is allowed.

    >>> best_span([0, 5, 1, 0], [0, 1, 0, 6], allowed=[False, True, True, True])
    (1, 3)
    >>> best_span([0, 5, 1, 0], [0, 1, 0, 6], max_length=1)
    (1, 1)
    """
    start = np.asarray(start_logits, dtype=np.float64).ravel()
    end = np.asarray(end_logits, dtype=np.float64).ravel()
    if start.shape != end.shape:
        raise ValueError(f"start and end logits differ in length: {start.size} != {end.size}.")
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}.")
    ok = np.ones(start.size, bool) if allowed is None else np.asarray(allowed, bool).ravel()
    if ok.shape != start.shape:
        raise ValueError(f"allowed has {ok.size} positions, the logits {start.size}.")
    scores = start[:, None] + end[None, :]
    index = np.arange(start.size)
    length = index[None, :] - index[:, None]
    valid = (length >= 0) & (length < max_length) & ok[:, None] & ok[None, :]
    if not valid.any():
        return -1, -1
    scores = np.where(valid, scores, -np.inf)
    s, e = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(s), int(e)


def span_overlap_f1(reference: tuple[int, int], candidate: tuple[int, int]) -> float:
    """Token-overlap F1 of two inclusive spans (as SQuAD's F1, over token positions).

    >>> span_overlap_f1((2, 5), (4, 7))
    0.5
    >>> span_overlap_f1((2, 5), (2, 5))
    1.0
    """
    (rs, re_), (cs, ce) = reference, candidate
    if rs < 0 or cs < 0:  # no valid span on one side: they agree only when both have none
        return 1.0 if rs < 0 and cs < 0 else 0.0
    overlap = max(0, min(re_, ce) - max(rs, cs) + 1)
    if overlap == 0:
        return 0.0
    precision = overlap / (ce - cs + 1)
    recall = overlap / (re_ - rs + 1)
    return 2 * precision * recall / (precision + recall)


def span_agreement(reference_spans: Sequence[tuple[int, int]],
                   candidate_spans: Sequence[tuple[int, int]]) -> dict:
    """Exact match and mean token-overlap F1 of answer spans, the reference's as the truth,
    and which samples' answers changed.

    >>> span_agreement([(1, 3), (4, 4), (0, 1)], [(1, 3), (4, 5), (6, 7)])
    {'exact_match': 0.3333333333333333, 'f1': 0.5555555555555555, 'changed': [1, 2], 'count': 3}
    """
    if len(reference_spans) != len(candidate_spans):
        raise ValueError(f"{len(reference_spans)} reference spans but {len(candidate_spans)} "
                         "candidate spans.")
    count = len(reference_spans)
    same = [tuple(r) == tuple(c) for r, c in zip(reference_spans, candidate_spans)]
    f1 = [span_overlap_f1(tuple(r), tuple(c)) for r, c in zip(reference_spans, candidate_spans)]
    return {"exact_match": sum(same) / count if count else 1.0,
            "f1": sum(f1) / count if count else 1.0,
            "changed": [i for i, s in enumerate(same) if not s], "count": count}


def context_positions(input_ids, special_ids, token_type_ids=None, attention_mask=None,
                      question_first: bool = True) -> np.ndarray:
    """Where an answer may lie in one question-answering input: the context's tokens, never
    special tokens or padding. With token_type_ids that mark a second segment, the context is
    that segment; otherwise the input is split into segments at special tokens and the context
    is the last one (the first when the context comes first).

    >>> ids = np.array([101, 7, 8, 102, 20, 21, 22, 102, 0])
    >>> context_positions(ids, {0, 101, 102}).astype(int).tolist()
    [0, 0, 0, 0, 1, 1, 1, 0, 0]
    """
    ids = np.asarray(input_ids).ravel()
    real = np.ones(ids.size, bool) if attention_mask is None else (
        np.asarray(attention_mask).ravel() > 0)
    ordinary = real & ~np.isin(ids, sorted(special_ids))
    if token_type_ids is not None:
        types = np.asarray(token_type_ids).ravel()
        if np.any(types[ordinary] > 0):
            return ordinary & (types > 0)
    segments, current = [], []
    for i in range(ids.size):
        if ordinary[i]:
            current.append(i)
        elif current:
            segments.append(current)
            current = []
    if current:
        segments.append(current)
    where = np.zeros(ids.size, bool)
    if segments:
        where[segments[-1] if question_first else segments[0]] = True
    return where


def mean_pool(hidden, attention_mask) -> np.ndarray:
    """Mean of token embeddings over real tokens: [batch, sequence, hidden] -> [batch, hidden].

    >>> mean_pool(np.array([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]]), np.array([[1, 1, 0]]))
    array([[2., 3.]])
    """
    hidden = np.asarray(hidden, dtype=np.float64)
    mask = np.asarray(attention_mask, dtype=np.float64)[..., None]
    return (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)


def embedding_cosines(reference, candidate) -> dict:
    """Per-row cosine of two [samples, features] embedding arrays: min and mean, and the
    index of the worst row.

    >>> embedding_cosines([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]])
    {'min': 0.7071067811865475, 'mean': 0.8535533905932737, 'worst': 1, 'count': 2}
    """
    ref, out = _pair(reference, candidate)
    if ref.ndim != 2:
        raise ValueError(f"Expected [samples, features] arrays, got shape {ref.shape}.")
    cosines = [cosine_similarity(r, o) for r, o in zip(ref, out)]
    if not cosines:
        return {"min": 1.0, "mean": 1.0, "worst": None, "count": 0}
    return {"min": float(min(cosines)), "mean": float(np.mean(cosines)),
            "worst": int(np.argmin(cosines)), "count": len(cosines)}


# --- vision task metrics ----------------------------------------------------------------------
# Task metrics where 0 means "same as the reference" and lower is better; every other task
# metric is 1.0 for "same as the reference" and higher is better.
LOWER_IS_BETTER = frozenset({"depth_abs_rel", "wer", "cer", "action_abs_error"})


def metric_drop(metric: str, value: float) -> float:
    """How far a task metric is from "same as the reference": 1 - value, or the value itself
    for the metrics of LOWER_IS_BETTER.

    >>> metric_drop("top1_agreement", 0.97), metric_drop("depth_abs_rel", 0.02)
    (0.030000000000000027, 0.02)
    """
    return float(value) if metric in LOWER_IS_BETTER else 1.0 - float(value)


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """Intersection over union of every pair of (x0, y0, x1, y1) boxes: an [a, b] array. A box
    of no area has IoU 0 with everything.

    >>> box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [0, 0, 2, 2], [5, 5, 6, 6]]).round(4).tolist()
    [[0.3333, 1.0, 0.0]]
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2])
                    - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3])
                     - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height

    def area(boxes):
        return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1],
                                                                    0, None)

    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def average_precision(recall, precision) -> float:
    """Area under a precision-recall curve (points in ranking order), with precision made
    monotone first: each point takes the best precision reached at its recall or beyond. This
    is the all-point interpolation of PASCAL VOC 2010 and later (COCO samples the same curve at
    101 recalls).

    >>> average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3])
    0.8333333333333333
    """
    recall = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64)])
    precision = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64)])
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * envelope[1:]))


def _match(truth_boxes, predicted_boxes, iou_threshold: float) -> list[int]:
    """Greedy matching in the predictions' order (best score first): each prediction takes the
    still unmatched truth box it overlaps most, when that IoU is at least ``iou_threshold``.
    The index of its truth box, or -1, per prediction."""
    iou = box_iou(predicted_boxes, truth_boxes)
    taken = np.zeros(iou.shape[1], bool)
    matches = []
    for row in iou:
        row = np.where(taken, -1.0, row)
        best = int(np.argmax(row)) if row.size else -1
        if best >= 0 and row[best] >= iou_threshold:
            taken[best] = True
            matches.append(best)
        else:
            matches.append(-1)
    return matches


def _order(scores) -> np.ndarray:
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def detection_map(truth: Sequence, predictions: Sequence, iou_threshold: float = 0.5) -> dict:
    """Mean average precision of detections (mAP@``iou_threshold``), the reference's as truth.

    ``truth`` holds per image ``(boxes, labels)``; ``predictions`` per image ``(boxes, labels,
    scores)``; boxes are (x0, y0, x1, y1) in any one unit (IoU does not depend on it). For each
    class with a truth box, that class's predictions over all images are ranked by score (ties
    in image, then box order); each is a true positive when it matches a still unmatched truth
    box of its image and class with IoU >= ``iou_threshold`` (the one it overlaps most, as
    COCO matches), else a false positive (duplicates included). AP is the area under the
    interpolated precision-recall curve (``average_precision``); mAP is the mean over the
    classes that have truth. Classes with predictions but no truth do not count (as in COCO);
    ``map`` is None when no image has a truth box.

    >>> truth = [([[0, 0, 2, 2], [4, 4, 6, 6]], [1, 1])]
    >>> found = [([[0, 0, 2, 2], [0, 0, 2, 1], [4, 4, 6, 5.5]], [1, 1, 1], [0.9, 0.8, 0.7])]
    >>> detection_map(truth, found)
    {'map': 0.8333333333333333, 'per_class': {1: 0.8333333333333333}, 'truth': 2, \
'predictions': 3}
    """
    if len(truth) != len(predictions):
        raise ValueError(f"{len(truth)} images of truth but {len(predictions)} of predictions.")
    truth = [(np.asarray(b, np.float64).reshape(-1, 4), np.asarray(lab).reshape(-1))
             for b, lab in truth]
    predictions = [(np.asarray(b, np.float64).reshape(-1, 4), np.asarray(lab).reshape(-1),
                    np.asarray(s, np.float64).reshape(-1)) for b, lab, s in predictions]
    classes = sorted({int(c) for _, labels in truth for c in labels})
    per_class = {}
    for cls in classes:
        ranked = [(score, image, index) for image, (_, labels, scores) in enumerate(predictions)
                  for index in np.flatnonzero(labels == cls) for score in [scores[index]]]
        ranked.sort(key=lambda item: -item[0])  # stable: ties keep image and box order
        count = sum(int(np.sum(labels == cls)) for _, labels in truth)
        taken = [np.zeros(int(np.sum(labels == cls)), bool) for _, labels in truth]
        hits = []
        for _, image, index in ranked:
            boxes = truth[image][0][truth[image][1] == cls]
            iou = box_iou(predictions[image][0][index], boxes)[0]
            iou[taken[image]] = -1.0
            best = int(np.argmax(iou)) if iou.size else -1
            hit = best >= 0 and iou[best] >= iou_threshold
            if hit:
                taken[image][best] = True
            hits.append(hit)
        true_positives = np.cumsum(hits, dtype=np.float64)
        ranks = np.arange(1, len(hits) + 1)
        per_class[cls] = average_precision(true_positives / count, true_positives / ranks) \
            if hits else 0.0
    return {"map": float(np.mean(list(per_class.values()))) if per_class else None,
            "per_class": per_class, "truth": sum(len(labels) for _, labels in truth),
            "predictions": sum(len(labels) for _, labels, _ in predictions)}


def matched_detections(truth, predictions, iou_threshold: float = 0.5) -> int:
    """How many of one image's predicted ``(boxes, labels, scores)`` match a truth box of
    ``(boxes, labels)`` one to one: the same label and IoU >= ``iou_threshold``, the
    best-scored prediction matched first.

    >>> matched_detections(([[0, 0, 2, 2], [4, 4, 6, 6]], [1, 2]),
    ...                    ([[0, 0, 2, 2], [4, 4, 6, 6]], [1, 1], [0.9, 0.8]))
    1
    """
    truth_boxes, truth_labels = (np.asarray(a) for a in truth)
    boxes, labels, scores = (np.asarray(a) for a in predictions)
    matched = 0
    for cls in set(np.asarray(labels).reshape(-1).tolist()):
        mine = np.flatnonzero(labels.reshape(-1) == cls)
        mine = mine[_order(scores.reshape(-1)[mine])]
        theirs = np.asarray(truth_boxes, np.float64).reshape(-1, 4)[
            truth_labels.reshape(-1) == cls]
        predicted = np.asarray(boxes, np.float64).reshape(-1, 4)[mine]
        matched += sum(1 for m in _match(theirs, predicted, iou_threshold) if m >= 0)
    return matched


def mean_iou(reference_maps: Sequence, candidate_maps: Sequence) -> dict:
    """Mean intersection over union of label maps, the reference's as truth, pooled over the
    pixels of all maps: for each class present in either side, IoU = pixels both label c /
    pixels either labels c; mIoU is their mean. Also the share of pixels labelled the same.

    >>> mean_iou([np.array([[0, 0], [1, 1]])], [np.array([[0, 1], [1, 1]])])
    {'miou': 0.5833333333333333, 'pixel_accuracy': 0.75, 'per_class': {0: 0.5, 1: \
0.6666666666666666}, 'classes': 2}
    """
    if len(reference_maps) != len(candidate_maps):
        raise ValueError(f"{len(reference_maps)} reference maps but {len(candidate_maps)} "
                         "candidate maps.")
    pairs = [(np.asarray(r).astype(np.int64).ravel(), np.asarray(c).astype(np.int64).ravel())
             for r, c in zip(reference_maps, candidate_maps)]
    for (ref, out), r, c in zip(pairs, reference_maps, candidate_maps):
        if ref.shape != out.shape:
            raise ValueError(f"Label maps of different shapes: {np.shape(r)} and "
                             f"{np.shape(c)}.")
        if (ref.size and ref.min() < 0) or (out.size and out.min() < 0):
            raise ValueError("Label maps hold class ids >= 0.")
    size = max([int(a.max()) + 1 for pair in pairs for a in pair if a.size], default=0)
    confusion = np.zeros((size, size), np.int64)
    for ref, out in pairs:
        confusion += np.bincount(ref * size + out, minlength=size * size).reshape(size, size)
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    per_class = {int(c): float(inter[c] / union[c]) for c in np.flatnonzero(union)}
    total = int(confusion.sum())
    return {"miou": float(np.mean(list(per_class.values()))) if per_class else 1.0,
            "pixel_accuracy": float(inter.sum() / total) if total else 1.0,
            "per_class": per_class, "classes": len(per_class)}


def depth_errors(reference_maps: Sequence, candidate_maps: Sequence) -> dict:
    """The usual depth-estimation errors of candidate depth maps against the reference's,
    pooled over the pixels of all maps: RMSE (in the model's depth unit), AbsRel (mean of
    |d' - d| / d) and delta1 (share of pixels with max(d'/d, d/d') < 1.25). AbsRel and delta1
    are taken where the reference depth d is positive (as depth benchmarks take the pixels
    with valid ground truth); ``valid`` counts those pixels.

    >>> depth_errors([np.array([1.0, 2.0, 4.0])], [np.array([1.0, 2.5, 3.0])])
    {'rmse': 0.6454972243679028, 'abs_rel': 0.16666666666666666, 'delta1': \
0.3333333333333333, 'pixels': 3, 'valid': 3}
    """
    if len(reference_maps) != len(candidate_maps):
        raise ValueError(f"{len(reference_maps)} reference maps but {len(candidate_maps)} "
                         "candidate maps.")
    squared = relative = within = 0.0
    pixels = valid = 0
    for r, c in zip(reference_maps, candidate_maps):
        ref, out = _pair(r, c)
        ref, out = ref.ravel(), out.ravel()
        squared += float(np.sum((ref - out) ** 2))
        pixels += ref.size
        positive = ref > 0
        ref, out = ref[positive], out[positive]
        valid += ref.size
        relative += float(np.sum(np.abs(out - ref) / ref))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.maximum(out / ref, ref / out)
        within += float(np.sum((out > 0) & (ratio < 1.25)))
    return {"rmse": math.sqrt(squared / pixels) if pixels else 0.0,
            "abs_rel": relative / valid if valid else 0.0,
            "delta1": within / valid if valid else 1.0, "pixels": pixels, "valid": valid}


# --- generation -------------------------------------------------------------------------------
def first_divergence(reference: Sequence[int], candidate: Sequence[int]) -> int | None:
    """The first position where two token sequences differ (the shorter one's end when one
    is the other's prefix); None when they are identical.

    >>> first_divergence([5, 6, 7], [5, 6, 8]), first_divergence([5, 6], [5, 6, 7])
    (2, 2)
    >>> first_divergence([5, 6], [5, 6]) is None
    True
    """
    reference, candidate = list(reference), list(candidate)
    for position, (a, b) in enumerate(zip(reference, candidate)):
        if a != b:
            return position
    return None if len(reference) == len(candidate) else min(len(reference), len(candidate))


def token_agreement(references: Sequence[Sequence[int]],
                    candidates: Sequence[Sequence[int]]) -> dict:
    """How far generated token sequences agree with the reference's, pooled over samples; the
    denominators are the longer sequence of each pair, so that stopping early or running on
    both count as disagreement.

    ``prefix``: tokens before the first divergence, over all tokens (after a divergence a
    greedy search continues from another text, so what follows is not counted); ``position``:
    positions holding the same token, divergence or not; ``exact_match``: the share of
    identical sequences; ``first_divergence``: per sample (None: identical).

    >>> token_agreement([[1, 2, 3, 4], [5, 6]], [[1, 2, 9, 4], [5, 6]])
    {'prefix': 0.6666666666666666, 'position': 0.8333333333333334, 'exact_match': 0.5, \
'first_divergence': [2, None], 'tokens': 6, 'count': 2}
    """
    if len(references) != len(candidates):
        raise ValueError(f"{len(references)} reference sequences but {len(candidates)} "
                         "candidate sequences.")
    prefix = same = total = 0
    divergences = []
    for reference, candidate in zip(references, candidates):
        reference, candidate = list(reference), list(candidate)
        where = first_divergence(reference, candidate)
        divergences.append(where)
        longer = max(len(reference), len(candidate))
        total += longer
        prefix += longer if where is None else where
        same += sum(1 for a, b in zip(reference, candidate) if a == b)
    count = len(divergences)
    return {"prefix": prefix / total if total else 1.0,
            "position": same / total if total else 1.0,
            "exact_match": sum(d is None for d in divergences) / count if count else 1.0,
            "first_divergence": divergences, "tokens": total, "count": count}


def _ngrams(tokens: Sequence[int], n: int) -> dict[tuple, int]:
    counts: dict[tuple, int] = {}
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i:i + n])
        counts[gram] = counts.get(gram, 0) + 1
    return counts


def bleu(references: Sequence[Sequence[int]], candidates: Sequence[Sequence[int]],
         max_n: int = 4) -> dict:
    """Corpus BLEU (Papineni et al., 2002) of candidate token sequences, one reference each:
    the geometric mean of the n-gram precisions for n = 1..``max_n`` (each candidate n-gram
    counted at most as often as its reference holds it, pooled over the corpus), times the
    brevity penalty exp(1 - r / c) when the candidates are shorter in all (c < r). No
    smoothing: an order with no matching n-gram makes BLEU 0. An order neither side has an
    n-gram of (every sequence shorter than n) is left out; identical sequences give 1.0.

    >>> round(bleu([[1, 2, 3, 4, 5, 6]], [[1, 2, 3, 4, 5, 7]])["bleu"], 6)  # (5/6*4/5*3/4*2/3)**.25
    0.759836
    >>> result = bleu([[1, 2, 3, 4, 5, 6, 7, 8]], [[1, 2, 3, 4]])           # precise, but short
    >>> result["precisions"], round(result["brevity_penalty"], 6)
    ([1.0, 1.0, 1.0, 1.0], 0.367879)
    """
    if len(references) != len(candidates):
        raise ValueError(f"{len(references)} reference sequences but {len(candidates)} "
                         "candidate sequences.")
    if max_n < 1:
        raise ValueError(f"max_n must be at least 1, got {max_n}.")
    matches, possible, wanted = [0] * max_n, [0] * max_n, [0] * max_n
    reference_length = candidate_length = 0
    for reference, candidate in zip(references, candidates):
        reference, candidate = list(reference), list(candidate)
        reference_length += len(reference)
        candidate_length += len(candidate)
        for n in range(1, max_n + 1):
            theirs, ours = _ngrams(reference, n), _ngrams(candidate, n)
            matches[n - 1] += sum(min(count, theirs.get(gram, 0)) for gram, count in ours.items())
            possible[n - 1] += sum(ours.values())
            wanted[n - 1] += sum(theirs.values())
    orders = [n for n in range(max_n) if possible[n] or wanted[n]]
    precisions = [matches[n] / possible[n] if possible[n] else 0.0 for n in orders]
    if not orders:  # nothing on either side: empty against empty
        score = 1.0
    elif min(precisions) == 0.0:
        score = 0.0
    else:
        score = math.exp(sum(math.log(p) for p in precisions) / len(precisions))
    if candidate_length == 0:
        penalty = 1.0 if reference_length == 0 else 0.0
    else:
        penalty = 1.0 if candidate_length >= reference_length else math.exp(
            1.0 - reference_length / candidate_length)
    return {"bleu": score * penalty, "precisions": precisions, "brevity_penalty": penalty,
            "reference_length": reference_length, "candidate_length": candidate_length,
            "max_n": len(orders)}


# --- speech -----------------------------------------------------------------------------------
def error_rates(references: Sequence[str], candidates: Sequence[str]) -> dict:
    """Word and character error rates of candidate transcripts against reference ones, pooled
    over the corpus: the Levenshtein distance (substitutions, deletions and insertions, through
    rapidfuzz) over the reference's length, in words split at whitespace and in characters
    (spaces included). Texts are compared as written, with no case or punctuation folding: both
    sides come from the same model and tokenizer. A corpus whose references are all empty
    (silence) counts each inserted word or character as one error over one: 0.0 when the
    candidates are empty too, as they should be.

    ``per_sample`` holds each transcript's own WER (its distance over its reference's words,
    or over one word when the reference is empty).

    >>> rates = error_rates(["the cat sat", "hello"], ["the cat sat down", "yellow"])
    >>> rates["wer"], round(rates["cer"], 4), rates["per_sample"]
    (0.5, 0.4375, [0.3333333333333333, 1.0])
    """
    from rapidfuzz.distance import Levenshtein

    if len(references) != len(candidates):
        raise ValueError(f"{len(references)} reference transcripts but {len(candidates)} "
                         "candidate transcripts.")
    words = word_edits = characters = character_edits = 0
    per_sample = []
    for reference, candidate in zip(references, candidates):
        ours, theirs = str(reference).split(), str(candidate).split()
        edits = Levenshtein.distance(ours, theirs)
        per_sample.append(edits / max(len(ours), 1))
        words += len(ours)
        word_edits += edits
        characters += len(reference)
        character_edits += Levenshtein.distance(str(reference), str(candidate))
    return {"wer": word_edits / max(words, 1), "cer": character_edits / max(characters, 1),
            "words": words, "word_edits": word_edits, "characters": characters,
            "character_edits": character_edits, "per_sample": per_sample}


# --- latency ----------------------------------------------------------------------------------
def latency_summary(seconds: Sequence[float]) -> dict:
    """Median and 90th percentile of run times, in milliseconds.

    >>> latency_summary([0.001, 0.002, 0.003, 0.004, 0.010])
    {'median_ms': 3.0, 'p90_ms': 7.6, 'runs': 5}
    """
    times = np.asarray(seconds, dtype=np.float64) * 1000.0
    if times.size == 0:
        raise ValueError("No run times to summarize.")
    return {"median_ms": round(float(np.median(times)), 6),
            "p90_ms": round(float(np.percentile(times, 90)), 6), "runs": int(times.size)}


# --- per-layer error --------------------------------------------------------------------------
def error_growth(nodes: Sequence[Mapping], errors: Mapping[str, float],
                 sources: Sequence[str] = (), exact: Sequence[str] = ()) -> list[dict]:
    """The error each node adds: the relative error of its outputs minus the largest error of
    its activation inputs.

    ``nodes`` are in topological order, each a mapping with ``name``, ``op_type``, ``inputs``
    and ``outputs`` (tensor names). ``errors`` holds the measured relative error of the tensors
    found in both graphs; ``sources`` are the graph inputs, where activations start with no
    error; ``exact`` are tensors that cannot carry a rounding error (integer shapes, indices,
    boolean masks).

    Activations are the sources and what nodes compute from them. A node that reads none
    (a Constant, a Cast or Identity of a weight) computes a weight, not an activation: it gets
    no row, and whatever error its output holds (a changed weight, a constant rounded to
    fp16) is charged to the node that reads it with activations. A float activation that was
    not measured (renamed or fused away in the variant) inherits the largest error of its
    producer's inputs, so the error is charged to the first measured tensor after it. An error
    may be ``inf`` (a tensor holding NaN): the node where it first appears gets an infinite
    growth, the nodes after it none. Returns one row per activation node with a measured
    output, in topological order.

    >>> nodes = [{"name": "mm", "op_type": "MatMul", "inputs": ["x", "w"], "outputs": ["a"]},
    ...          {"name": "relu", "op_type": "Relu", "inputs": ["a"], "outputs": ["b"]}]
    >>> [(r["name"], r["error"], r["growth"]) for r in error_growth(nodes, {"a": 0.5, "b": 0.25},
    ...                                                              sources=["x"])]
    [('mm', 0.5, 0.5), ('relu', 0.25, -0.25)]
    """
    carried: dict[str, float] = {name: 0.0 for name in sources}
    exact = set(exact)
    rows = []
    for index, node in enumerate(nodes):
        incoming = [carried[name] for name in node["inputs"] if name in carried]
        if not incoming:
            continue  # computed from weights and constants alone
        into = max(incoming)
        measured = [errors[name] for name in node["outputs"] if name in errors]
        for name in node["outputs"]:
            if name in errors:
                carried[name] = errors[name]
            elif name in exact:
                carried[name] = 0.0
            else:
                carried[name] = into
        if measured:
            error = max(measured)
            # inf - inf is NaN: a node fed an infinite error adds nothing new.
            growth = 0.0 if error == into else error - into
            rows.append({"index": index, "name": node["name"], "op_type": node["op_type"],
                         "error": error, "input_error": into, "growth": growth})
    return rows
