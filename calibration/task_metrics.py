"""Task metrics of ``compare``: each task's outputs reduced to what a user would notice (a label, a
span, an embedding, boxes, a label map, a depth map, a transcript) and scored against the
reference's own result as the truth. One scorer class per task, in the ``SCORERS`` table.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from runtime.audio.ctc import CtcTokenizer
from runtime.bundle import Bundle
from runtime.errors import (
    EngineError,
)
from runtime.text.pooling import SentencePooling
from runtime.text.tokenizer import TextTokenizer
from runtime.vision.postprocess import (
    mask2former_semantic_segmentation,
    query_mask_size,
    semantic_segmentation,
)

from . import metrics
from .data import Samples

# The task metric each task reports first (the one the summary table and manifest show).
TASK_METRICS = {
    "text-classification": "top1_agreement",
    "token-classification": "entity_f1",
    "question-answering": "span_f1",
    "fill-mask": "top1_agreement",
    "feature-extraction": "embedding_cosine_min",
    "image-classification": "top1_agreement",
    "object-detection": "map50",
    "image-segmentation": "miou",
    "depth-estimation": "depth_abs_rel",
    "zero-shot-image-classification": "top1_agreement",
    "zero-shot-object-detection": "map50",
    "visual-question-answering": "top1_agreement",
    "audio-classification": "top1_agreement",
    "automatic-speech-recognition": "wer",
    "reinforcement-learning": "action_abs_error",
    "image-feature-extraction": "embedding_cosine_min",
}
# The reference's detections scoring above this are the truth mAP is measured against: the
# object-detection pipeline's default threshold, so the truth is what a user of it sees.
DETECTION_THRESHOLD = 0.5
# The same for zero-shot-object-detection, whose pipeline keeps scores above 0.1 by default.
QUERY_DETECTION_THRESHOLD = 0.1
DETECTION_IOU = 0.5
# Answer spans longer than this are not answers (transformers' max_answer_len default).
MAX_ANSWER_TOKENS = 15
# How many flipped samples a report lists with their inputs (all indices are kept).
LISTED_CHANGES = 20


class _TaskScorer:
    """Reduces one sample's outputs to what the task metric needs (a label row, a span, an
    embedding, boxes, a label map, a depth map), so that full outputs need not be kept, then
    scores candidate against reference.
    """

    metric = ""

    def __init__(self, bundle: Bundle, tokenizer: TextTokenizer | None,
                 samples: Samples | None = None):
        self.bundle = bundle
        self.tokenizer = tokenizer
        self.special_ids = tokenizer.all_special_ids if tokenizer is not None else set()
        self.samples = samples

    @staticmethod
    def output(outputs: Mapping[str, np.ndarray], name: str) -> np.ndarray:
        if name not in outputs:
            raise EngineError(
                f"The graph has no output {name!r} (it gives {sorted(outputs)}). Note: export "
                "the checkpoint again with `edgeport export` for this task."
            )
        return np.asarray(outputs[name], dtype=np.float32)

    def real_positions(self, feed) -> np.ndarray:
        ids = np.asarray(feed["input_ids"])[0]
        mask = feed.get("attention_mask")
        return np.ones(ids.size, bool) if mask is None else np.asarray(mask)[0] > 0

    def reduce(self, feed, outputs):
        raise NotImplementedError

    def score(self, reference: list, candidate: list, inputs: list) -> dict:
        raise NotImplementedError


def _describe(item) -> str | None:
    """A short text of a raw input for the report (None for .npz rows)."""
    if item is None:
        return None
    if isinstance(item, Mapping):
        text = item.get("text") or f"{item.get('question', '')} | {item.get('context', '')}"
    else:
        text = str(item)
    return text if len(text) <= 100 else text[:97] + "..."


class _Classification(_TaskScorer):
    metric = "top1_agreement"

    def reduce(self, feed, outputs):
        return self.output(outputs, "logits")[0]

    def label(self, index: int) -> str:
        return self.bundle.config.get("id2label", {}).get(str(index), f"LABEL_{index}")

    def score(self, reference, candidate, inputs):
        ref, out = np.stack(reference), np.stack(candidate)
        result = metrics.top1_agreement(ref, out)
        changes = [{"sample": i, "input": _describe(inputs[i]),
                    "reference": self.label(int(ref[i].argmax())),
                    "variant": self.label(int(out[i].argmax()))}
                   for i in result["flips"][:LISTED_CHANGES]]
        return {"metric": self.metric, "value": result["agreement"],
                "flips": result["flips"], "changes": changes, "count": result["count"]}


class _TokenClassification(_TaskScorer):
    metric = "entity_f1"

    def reduce(self, feed, outputs):
        logits = self.output(outputs, "logits")[0]
        ids = np.asarray(feed["input_ids"])[0]
        keep = self.real_positions(feed) & ~np.isin(ids, sorted(self.special_ids))
        id2label = self.bundle.config.get("id2label", {})
        labels = [id2label.get(str(int(i)), f"LABEL_{int(i)}") for i in logits[keep].argmax(-1)]
        return labels, ids[keep]

    def entities(self, labels, ids) -> str:
        spans = sorted(metrics.bio_spans(labels))
        text = "; ".join(f"{kind} {self.tokenizer.decode(ids[s:e + 1].tolist())!r}"
                         for s, e, kind in spans) or "(none)"
        return text if len(text) <= 200 else text[:197] + "..."

    def score(self, reference, candidate, inputs):
        ref_labels = [labels for labels, _ in reference]
        out_labels = [labels for labels, _ in candidate]
        result = metrics.entity_f1(ref_labels, out_labels)
        changed = [i for i, (r, c) in enumerate(zip(ref_labels, out_labels))
                   if metrics.bio_spans(r) != metrics.bio_spans(c)]
        changes = [{"sample": i, "input": _describe(inputs[i]),
                    "reference": self.entities(*reference[i]),
                    "variant": self.entities(*candidate[i])} for i in changed[:LISTED_CHANGES]]
        return {"metric": self.metric, "value": result["f1"], "precision": result["precision"],
                "recall": result["recall"], "entities": result["entities"],
                "flips": changed, "changes": changes, "count": len(reference)}


class _QuestionAnswering(_TaskScorer):
    metric = "span_f1"

    def reduce(self, feed, outputs):
        start = self.output(outputs, "start_logits")[0]
        end = self.output(outputs, "end_logits")[0]
        ids = np.asarray(feed["input_ids"])[0]
        allowed = metrics.context_positions(
            ids, self.special_ids,
            token_type_ids=None if "token_type_ids" not in feed else feed["token_type_ids"][0],
            attention_mask=None if "attention_mask" not in feed else feed["attention_mask"][0],
            question_first=True)  # calibration.data encodes (question, context) in that order
        if not allowed.any():  # no context could be told apart: any real token
            allowed = self.real_positions(feed)
        span = metrics.best_span(start, end, allowed, MAX_ANSWER_TOKENS)
        return span, ids

    def answer(self, span, ids) -> str:
        start, end = span
        if start < 0:
            return "(no span)"
        return f"{self.tokenizer.decode(ids[start:end + 1].tolist())!r} [{start}:{end + 1}]"

    def score(self, reference, candidate, inputs):
        result = metrics.span_agreement([s for s, _ in reference], [s for s, _ in candidate])
        changes = [{"sample": i, "input": _describe(inputs[i]),
                    "reference": self.answer(*reference[i]),
                    "variant": self.answer(*candidate[i])}
                   for i in result["changed"][:LISTED_CHANGES]]
        return {"metric": self.metric, "value": result["f1"],
                "exact_match": result["exact_match"], "flips": result["changed"],
                "changes": changes, "count": result["count"]}


class _FillMask(_TaskScorer):
    metric = "top1_agreement"

    def reduce(self, feed, outputs):
        logits = self.output(outputs, "logits")[0]
        ids = np.asarray(feed["input_ids"])[0]
        masked = ids == self.tokenizer.mask_token_id
        # At the masks when the input has any (what fill-mask answers), else at every token.
        where = masked if masked.any() else self.real_positions(feed)
        return logits[where].argmax(-1), bool(masked.any())

    def score(self, reference, candidate, inputs):
        agree = counted = 0
        changed = []
        for i, ((ref, _), (out, _)) in enumerate(zip(reference, candidate)):
            same = ref == out
            agree += int(same.sum())
            counted += int(same.size)
            if not same.all():
                changed.append(i)
        masked = sum(1 for _, at_masks in reference if at_masks)
        return {"metric": self.metric, "value": agree / counted if counted else 1.0,
                "positions": counted, "samples_with_masks": masked,
                "flips": changed, "changes": [{"sample": i, "input": _describe(inputs[i])}
                                              for i in changed[:LISTED_CHANGES]],
                "count": len(reference)}


class _FeatureExtraction(_TaskScorer):
    metric = "embedding_cosine_min"

    def __init__(self, bundle, tokenizer, samples=None):
        super().__init__(bundle, tokenizer, samples)
        self.pooling = SentencePooling.from_dir(bundle.path)

    def reduce(self, feed, outputs):
        if "sentence_embedding" in outputs:
            return self.output(outputs, "sentence_embedding")[0]
        hidden = self.output(outputs, "last_hidden_state")
        mask = feed.get("attention_mask")
        if mask is None:
            mask = np.ones(hidden.shape[:2], np.int64)
        if "visual_attention_mask" in feed:  # VisualBERT: the regions' tokens follow the text's
            mask = np.concatenate([mask, feed["visual_attention_mask"]], axis=1)
        if self.pooling is not None:
            return self.pooling(hidden, np.asarray(mask))[0]
        return metrics.mean_pool(hidden, mask)[0]

    def score(self, reference, candidate, inputs):
        result = metrics.embedding_cosines(np.stack(reference), np.stack(candidate))
        cosines = [metrics.cosine_similarity(r, c) for r, c in zip(reference, candidate)]
        # Nothing flips for embeddings: the report lists the samples that moved the most.
        lowest = [i for i in np.argsort(cosines, kind="stable")[:5] if cosines[i] < 1 - 1e-9]
        changes = [{"sample": int(i), "input": _describe(inputs[i]), "cosine": cosines[i]}
                   for i in lowest]
        return {"metric": self.metric, "value": result["min"], "mean": result["mean"],
                "worst": result["worst"], "pooling": "sentence-transformers"
                if self.pooling is not None else "mean", "flips": [], "changes": changes,
                "changes_title": "Samples with the lowest cosine", "count": result["count"]}


class _ImageFeatures(_FeatureExtraction):
    """The cosine of each image's features as the pipeline returns them by default: the whole
    last hidden state (every patch, or the whole feature map), flattened."""

    def __init__(self, bundle, tokenizer, samples=None):
        _TaskScorer.__init__(self, bundle, tokenizer, samples)
        self.pooling = None

    def reduce(self, feed, outputs):
        return self.output(outputs, "last_hidden_state")[0].reshape(-1)

    def score(self, reference, candidate, inputs):
        return {**super().score(reference, candidate, inputs),
                "pooling": "none (the whole last hidden state)"}


def _spatial_size(feed) -> tuple[int, int]:
    """(height, width) of the image the model saw: what its maps are compared at."""
    return tuple(int(n) for n in np.shape(feed["pixel_values"])[-2:])


class _ObjectDetection(_TaskScorer):
    """mAP@0.5 of the variant's detections (every query's best class, ranked by score) against
    the reference's detections above DETECTION_THRESHOLD; boxes relative to the image, as the
    graph gives them (IoU does not depend on the unit)."""

    metric = "map50"
    threshold = DETECTION_THRESHOLD

    def reduce(self, feed, outputs):
        logits = self.output(outputs, "logits")[0]
        # As the pipeline's post-processing: softmax, "no object" (the last class) dropped.
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities = (probabilities / probabilities.sum(-1, keepdims=True))[:, :-1]
        cx, cy, w, h = np.moveaxis(self.output(outputs, "pred_boxes")[0], -1, 0)
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
        return boxes, probabilities.argmax(-1), probabilities.max(-1)

    def label(self, index: int) -> str:
        return self.bundle.config.get("id2label", {}).get(str(index), f"LABEL_{index}")

    def describe(self, boxes, labels, scores) -> str:
        found = [f"{self.label(int(c))} {s:.2f}" for c, s in zip(labels, scores)
                 if s > self.threshold]
        text = ", ".join(found) or "(none)"
        return text if len(text) <= 200 else text[:197] + "..."

    def score(self, reference, candidate, inputs):
        def above(boxes, labels, scores):
            keep = scores > self.threshold
            return boxes[keep], labels[keep], scores[keep]

        truth = [above(*r)[:2] for r in reference]
        result = metrics.detection_map(truth, candidate, DETECTION_IOU)
        shown = [above(*c) for c in candidate]
        matched = [metrics.matched_detections(t, c, DETECTION_IOU) for t, c in zip(truth, shown)]
        changed = [i for i, (t, c, m) in enumerate(zip(truth, shown, matched))
                   if not m == len(t[1]) == len(c[1])]
        found, kept = sum(len(c[1]) for c in shown), sum(len(t[1]) for t in truth)
        if result["map"] is None:
            # No truth to rank against: the two agree only when the variant finds nothing too.
            value = 1.0 if found == 0 else 0.0
        else:
            value = result["map"]
        changes = [{"sample": i, "input": _describe(inputs[i]),
                    "reference": self.describe(*reference[i]),
                    "variant": self.describe(*candidate[i])} for i in changed[:LISTED_CHANGES]]
        return {"metric": self.metric, "value": value,
                "threshold": self.threshold, "iou": DETECTION_IOU,
                "truth_boxes": kept, "detections": found,
                "precision": sum(matched) / found if found else (1.0 if not kept else 0.0),
                "recall": sum(matched) / kept if kept else (1.0 if not found else 0.0),
                "per_class": {self.label(c): ap for c, ap in result["per_class"].items()},
                "flips": changed, "changes": changes, "count": len(reference)}


class _ZeroShotObjectDetection(_ObjectDetection):
    """mAP@0.5 as for object detection, where every (patch, text query) pair is a detection of
    that query's label scored by its sigmoid (OWL-ViT: ``logits`` of (patches, queries), one box
    per patch), and the truth is the reference's detections above the zero-shot pipeline's
    default threshold."""

    threshold = QUERY_DETECTION_THRESHOLD

    def reduce(self, feed, outputs):
        logits = self.output(outputs, "logits")[0]
        scores = 1 / (1 + np.exp(-logits))
        cx, cy, w, h = np.moveaxis(self.output(outputs, "pred_boxes")[0], -1, 0)
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
        patches, queries = scores.shape
        return (np.repeat(boxes, queries, axis=0), np.tile(np.arange(queries), patches),
                scores.reshape(-1))

    def label(self, index: int) -> str:
        labels = self.samples.labels if self.samples is not None else None
        return labels[index] if labels and index < len(labels) else f"query {index}"


class _Segmentation(_TaskScorer):
    """mIoU of label maps at the size the model saw: the semantic map a user gets (SegFormer:
    argmax of the bilinearly upsampled logits; Mask2Former: its semantic post-processing)."""

    metric = "miou"

    def reduce(self, feed, outputs):
        size = [_spatial_size(feed)]
        if "logits" in outputs:
            label_map = semantic_segmentation(self.output(outputs, "logits")[:1], size)[0]
        else:
            label_map = mask2former_semantic_segmentation(
                self.output(outputs, "class_queries_logits")[:1],
                self.output(outputs, "masks_queries_logits")[:1], size,
                mask_size=query_mask_size(self.bundle.model_type))[0]
        # compact: one map per sample and engine is kept until the end
        return label_map.astype(np.uint8 if label_map.max(initial=0) < 256 else np.int32)

    def score(self, reference, candidate, inputs):
        result = metrics.mean_iou(reference, candidate)
        each = [metrics.mean_iou([r], [c]) for r, c in zip(reference, candidate)]
        lowest = [i for i in np.argsort([e["miou"] for e in each], kind="stable")[:5]
                  if each[i]["miou"] < 1.0]
        changes = [{"sample": int(i), "input": _describe(inputs[i]), "miou": each[i]["miou"],
                    "pixel_accuracy": each[i]["pixel_accuracy"]} for i in lowest]
        return {"metric": self.metric, "value": result["miou"],
                "pixel_accuracy": result["pixel_accuracy"], "classes": result["classes"],
                "flips": [], "changes": changes,
                "changes_title": "Samples with the lowest mIoU", "count": len(reference)}


class _DepthEstimation(_TaskScorer):
    """AbsRel of ``predicted_depth`` at the graph's output size (RMSE and delta1 beside it):
    0 is the same as the reference, lower is better."""

    metric = "depth_abs_rel"

    def reduce(self, feed, outputs):
        return self.output(outputs, "predicted_depth")[0]

    def score(self, reference, candidate, inputs):
        result = metrics.depth_errors(reference, candidate)
        each = [metrics.depth_errors([r], [c])["abs_rel"] for r, c in zip(reference, candidate)]
        highest = [i for i in np.argsort([-e for e in each], kind="stable")[:5] if each[i] > 0]
        changes = [{"sample": int(i), "input": _describe(inputs[i]), "abs_rel": each[i]}
                   for i in highest]
        return {"metric": self.metric, "value": result["abs_rel"], "rmse": result["rmse"],
                "delta1": result["delta1"], "pixels": result["pixels"],
                "valid_pixels": result["valid"], "flips": [], "changes": changes,
                "changes_title": "Samples with the highest AbsRel", "count": len(reference)}


class _NextAction(_TaskScorer):
    """A Decision Transformer's next action (``action_preds`` at the last step): the mean
    absolute difference from the reference's, over every action dimension and sample (the
    largest beside it). 0 is the same as the reference, lower is better."""

    metric = "action_abs_error"

    def reduce(self, feed, outputs):
        return self.output(outputs, "action_preds")[0, -1]

    def score(self, reference, candidate, inputs):
        errors = np.abs(np.stack(candidate) - np.stack(reference))
        each = errors.max(axis=1)
        highest = [i for i in np.argsort(-each, kind="stable")[:5] if each[i] > 0]
        return {"metric": self.metric, "value": float(errors.mean()),
                "max_abs_error": float(errors.max()), "flips": [],
                "changes": [{"sample": int(i), "input": None, "max_abs_error": float(each[i])}
                            for i in highest],
                "changes_title": "Samples with the largest action error",
                "count": len(reference)}


class _ZeroShotImageClassification(_Classification):
    """Top-1 agreement over the candidate labels of each image (``logits_per_image``)."""

    def reduce(self, feed, outputs):
        return self.output(outputs, "logits_per_image")[0]

    def label(self, index: int) -> str:
        labels = self.samples.labels if self.samples is not None else None
        return labels[index] if labels and index < len(labels) else f"text {index}"


class _VisualQuestionAnswering(_Classification):
    """Top-1 answer agreement: whether the variant's best answer (of config.json's id2label)
    is the reference's, for each (image, question) sample. The answer scores are sigmoids of
    the logits, so the best answer is the argmax of the logits."""

    def score(self, reference, candidate, inputs):
        result = super().score(reference, candidate, inputs)
        return {**result, "answers": len(reference[0]) if reference else 0}


class _SpeechRecognition(_TaskScorer):
    """Word error rate of a CTC model's greedy transcripts (character error rate beside it):
    0 is the same as the reference, lower is better."""

    metric = "wer"

    def __init__(self, bundle, tokenizer, samples=None):
        super().__init__(bundle, tokenizer, samples)
        self.ctc = CtcTokenizer.from_dir(bundle.path)

    def reduce(self, feed, outputs):
        return self.ctc.decode(self.output(outputs, "logits")[0].argmax(-1))

    def score(self, reference, candidate, inputs):
        result = metrics.error_rates(reference, candidate)
        each = result["per_sample"]
        changed = [i for i, (r, c) in enumerate(zip(reference, candidate)) if r != c]
        # the transcripts that changed, the highest WER first
        highest = sorted(changed, key=lambda i: -each[i])[:LISTED_CHANGES]
        changes = [{"sample": i, "input": _describe(inputs[i]), "wer": each[i],
                    "reference": _describe(reference[i]), "variant": _describe(candidate[i])}
                   for i in highest]
        return {"metric": self.metric, "value": result["wer"], "cer": result["cer"],
                "words": result["words"], "characters": result["characters"],
                "flips": changed, "changes": changes, "count": len(reference)}


SCORERS = {
    "text-classification": _Classification,
    "token-classification": _TokenClassification,
    "question-answering": _QuestionAnswering,
    "fill-mask": _FillMask,
    "feature-extraction": _FeatureExtraction,
    "image-classification": _Classification,
    "object-detection": _ObjectDetection,
    "image-segmentation": _Segmentation,
    "depth-estimation": _DepthEstimation,
    "zero-shot-image-classification": _ZeroShotImageClassification,
    "zero-shot-object-detection": _ZeroShotObjectDetection,
    "visual-question-answering": _VisualQuestionAnswering,
    "audio-classification": _Classification,
    "automatic-speech-recognition": _SpeechRecognition,
    "reinforcement-learning": _NextAction,
    "image-feature-extraction": _ImageFeatures,
}
