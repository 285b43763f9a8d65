"""``compare_variants``: run a bundle's variants and a reference on data, and measure how far
apart they are: numeric metrics per output, the task metric a user would notice, latency, size,
and the layers where the error enters.

>>> report = compare_variants(Bundle.load("bundle"), "sentences.txt")     # doctest: +SKIP
>>> report["variants"]["int8"]["task"]["value"]                            # doctest: +SKIP
0.98

Task metrics, each against the reference's own result as the truth: top-1 agreement
(text and image classification, fill-mask, zero-shot image classification over its candidate
labels), entity F1, answer-span F1, the minimum embedding cosine, mAP@0.5 of boxes
(object detection), mIoU of label maps (image segmentation), AbsRel of depth maps (depth
estimation, with RMSE and delta1 beside it), and the word error rate of transcripts (speech
recognition, CER beside it; lower is better for these three), top-1 agreement again for audio
classification.

Text bundles have built-in samples; image and audio bundles need ``data`` (a folder of image
or audio files): none are built in, and random noise is not what a model sees.

The reference is the fp32 graph (``reference="fp32"``) or the PyTorch checkpoint the bundle was
exported from (``reference="pytorch"``, needs the export extra). Every engine sees the same
batch-1 feeds, made by the bundle's own runtime preprocessing (``calibration.data``); on each
sample the reference and the variants run in turn, so that only one sample's outputs are held at
a time and every engine is timed under the same conditions.
"""

from __future__ import annotations

import datetime
import inspect
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral
from pathlib import Path

import numpy as np

from runtime.bundle import Bundle
from runtime.ctc import CtcTokenizer
from runtime.engine import Engine, OrtEngine
from runtime.errors import (
    EngineError,
    InputError,
    MissingDependencyError,
    TaskError,
    did_you_mean,
)
from runtime.pooling import SentencePooling
from runtime.tasks import TASK_MODEL_CLASSES
from runtime.tokenizer import TextTokenizer
from runtime.vision_postprocess import mask2former_semantic_segmentation, semantic_segmentation

from . import metrics
from .branches import branch_feeds, is_merged, merged_branches
from .compare_generation import NEW_TOKENS, compare_generation
from .data import Samples, is_generative, load_samples
from .variants import record_accuracy

REPORT_SCHEMA = 1
REFERENCES = ("fp32", "pytorch")
GENERATION_TASKS = ("text-generation", "text2text-generation", "summarization", "translation")
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
    "audio-classification": "top1_agreement",
    "automatic-speech-recognition": "wer",
}
# The reference's detections scoring above this are the truth mAP is measured against: the
# object-detection pipeline's default threshold, so the truth is what a user of it sees.
DETECTION_THRESHOLD = 0.5
DETECTION_IOU = 0.5
# Answer spans longer than this are not answers (transformers' max_answer_len default).
MAX_ANSWER_TOKENS = 15
# Per-layer error is measured on this many samples: every intermediate tensor of both graphs is
# held for them, so they are few.
LAYER_SAMPLES = 4
TOP_LAYERS = 20
# How many flipped samples a report lists with their inputs (all indices are kept).
LISTED_CHANGES = 20
_FLOAT_TYPES = {1: np.float32, 10: np.float16, 11: np.float64}  # ONNX elem types

# --- built-in data ------------------------------------------------------------------------------
# Varied on purpose: short and long, questions, numbers, names and places (for entities),
# punctuation, other scripts, emoji, negations. Used when no data file is given.
BUILTIN_TEXTS = (
    "I love this phone, the battery lasts for days.",
    "This was the worst meal I have had in years.",
    "The film was fine, nothing special.",
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday.",
    "Apple opened a new office in Munich, Germany.",
    "The package arrived two days late and the box was crushed.",
    "Can you tell me how to reset my password?",
    "Stocks fell 3.2% after the central bank raised rates to 5.25%.",
    "Barack Obama was born in Honolulu, Hawaii, in 1961.",
    "I'm not sure whether I like it or not.",
    "Absolutely fantastic service!!! Will come back :)",
    "The Amazon river flows through Brazil, Peru and Colombia.",
    "Meh.",
    "Microsoft and OpenAI announced a partnership in San Francisco.",
    "The quick brown fox jumps over the lazy dog.",
    "Please don't call me after 9 pm, I'm usually asleep by then.",
    "Le service était lent mais la nourriture était excellente.",
    "Das Hotel war sauber und das Personal sehr freundlich.",
    "東京は日本の首都です。",
    "Emoji are tokens too 🤖🚀",
    "Dr. Jane Smith works at the Mayo Clinic in Rochester, Minnesota.",
    "The meeting is on 2026-11-21 at 14:30 in room B-204.",
    "Not bad at all, though the sequel was better.",
    "She said the update broke her laptop's Wi-Fi driver again.",
    "The United Nations held its summit in Geneva last week.",
    "Tokenization splits unbelievably long words into pieces.",
    "Why does my code crash when the list is empty?",
    "The concert in Madrid was cancelled because of the storm.",
    "I would not recommend this product to anyone.",
    "Manchester United beat Liverpool 2-1 at Old Trafford.",
    "The recipe calls for 200 g of flour, 2 eggs and a pinch of salt.",
    "Great value for the money, but shipping took forever.",
    "NASA's rover landed near the Jezero crater on Mars.",
    "The instructions were confusing and the app kept freezing.",
    "Thank you so much for your help yesterday!",
    "In 1492, Columbus sailed across the Atlantic from Spain.",
    "The battery died after an hour. Terrible.",
    "Our team in Toronto ships the new release next Monday.",
    "It's okay, I guess, if you like that sort of thing.",
    "A long sentence that goes on and on about nothing in particular, adding clause after "
    "clause, comma after comma, until the reader wonders whether it will ever end at all.",
)
BUILTIN_QUESTIONS = (
    ("Where was Barack Obama born?", "Barack Obama was born in Honolulu, Hawaii, in 1961. He "
     "later studied at Columbia University and Harvard Law School."),
    ("When did Columbus cross the Atlantic?", "In 1492, Columbus sailed across the Atlantic "
     "from Spain with three ships."),
    ("Who met Emmanuel Macron?", "Angela Merkel met Emmanuel Macron in Berlin on Tuesday to "
     "discuss trade."),
    ("What did the central bank do?", "Stocks fell 3.2% after the central bank raised rates to "
     "5.25%, the highest level in two decades."),
    ("Where is the Jezero crater?", "NASA's rover landed near the Jezero crater on Mars in "
     "February 2021 after a seven-month journey."),
    ("How much flour does the recipe need?", "The recipe calls for 200 g of flour, 2 eggs and "
     "a pinch of salt. Bake it for 25 minutes."),
    ("Which river flows through Peru?", "The Amazon river flows through Brazil, Peru and "
     "Colombia before it reaches the Atlantic Ocean."),
    ("Who won the match?", "Manchester United beat Liverpool 2-1 at Old Trafford on Sunday "
     "afternoon."),
    ("Where does Jane Smith work?", "Dr. Jane Smith works at the Mayo Clinic in Rochester, "
     "Minnesota, where she leads the cardiology group."),
    ("Why was the concert cancelled?", "The concert in Madrid was cancelled because of the "
     "storm, and tickets will be refunded."),
    ("When is the meeting?", "The meeting is on 2026-11-21 at 14:30 in room B-204; bring your "
     "laptop."),
    ("What is the capital of Japan?", "Tokyo is the capital of Japan and its largest city, "
     "with about 14 million people."),
    ("Who announced a partnership?", "Microsoft and OpenAI announced a partnership in San "
     "Francisco that will run for ten years."),
    ("Where did the summit take place?", "The United Nations held its summit in Geneva last "
     "week; more than 100 countries attended."),
    ("When does the team ship the release?", "Our team in Toronto ships the new release next "
     "Monday, after the final tests pass."),
    ("What broke her Wi-Fi?", "She said the update broke her laptop's Wi-Fi driver again, so "
     "she rolled it back."),
)
# Fill-mask sentences: "{mask}" becomes the tokenizer's mask token.
BUILTIN_MASKED = (
    "The capital of France is {mask}.",
    "I {mask} this phone, the battery lasts for days.",
    "The quick brown {mask} jumps over the lazy dog.",
    "She drinks a cup of {mask} every morning.",
    "The meeting was moved to {mask} afternoon.",
    "He plays the {mask} in a jazz band.",
    "Water boils at 100 degrees {mask}.",
    "The {mask} was delicious and the service was friendly.",
    "My favourite colour is {mask}.",
    "They travelled to Italy by {mask}.",
    "The doctor told him to get more {mask}.",
    "Paris is a city in {mask}.",
    "I forgot my {mask} at home again.",
    "The children played in the {mask} all day.",
    "This is the best {mask} I have ever read.",
    "The weather today is {mask} and windy.",
)


def builtin_rows(bundle: Bundle) -> list:
    """The built-in samples for the bundle's task: texts, question/context dicts, or masked
    texts (with the bundle's own mask token) for fill-mask.

    Image bundles have none: an InputError says to pass a folder of images.

    >>> rows = builtin_rows(Bundle.load("qa-bundle"))            # doctest: +SKIP
    >>> sorted(rows[0])                                           # doctest: +SKIP
    ['context', 'question']
    """
    modality = bundle.manifest.get("modality", "text")
    if modality != "text":
        kind = "audio" if modality == "audio" else "image"
        examples = ("recordings" if kind == "audio" else "photos")
        raise InputError(
            f"compare has no built-in samples for {bundle.task} bundles (they read "
            f"{modality.replace('text-image', 'images')}). Note: pass --data "
            f"FOLDER_OF_{kind.upper()}_FILES (data= in Python): a folder of {kind} files like "
            f"those the model will see, e.g. 50 to 100 {examples}; an .npz of input arrays "
            "works too."
        )
    if bundle.task == "question-answering":
        return [{"question": q, "context": c} for q, c in BUILTIN_QUESTIONS]
    if bundle.task == "fill-mask":
        mask = TextTokenizer.from_dir(bundle.path).mask_token
        if mask is None:
            raise InputError(
                f"The fill-mask bundle {bundle.path} has no mask token in its tokenizer, so the "
                "built-in masked sentences cannot be made. Note: pass --data with your own texts."
            )
        return [{"text": text.format(mask=mask)} for text in BUILTIN_MASKED]
    return [{"text": text} for text in BUILTIN_TEXTS]


def _load_data(bundle: Bundle, data, samples: int, seed: int, progress: bool
               ) -> tuple[Samples, str]:
    if data is not None:
        return load_samples(bundle, data, samples=samples, seed=seed, progress=progress), str(data)
    # The built-in rows go through load_samples too, so they are preprocessed exactly as a
    # user's file would be.
    with tempfile.TemporaryDirectory(prefix="edgeport-compare-") as directory:
        path = Path(directory) / "builtin.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in builtin_rows(bundle)),
                        encoding="utf-8")
        return load_samples(bundle, path, samples=samples, seed=seed, progress=progress), \
            "built-in"


# --- the PyTorch reference ----------------------------------------------------------------------
class TorchEngine:
    """The checkpoint a bundle was exported from, run by transformers behind the Engine protocol.

    >>> engine = TorchEngine(Bundle.load("bundle"))               # doctest: +SKIP
    >>> sorted(engine.run(feed))                                   # doctest: +SKIP
    ['logits']
    """

    def __init__(self, bundle: Bundle):
        self._torch, self.model = torch_model(bundle)
        self.inputs, self.outputs = bundle.graph_specs("model")
        self._accepted = set(inspect.signature(self.model.forward).parameters)

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        tensors = {name: torch.from_numpy(np.ascontiguousarray(feed[spec.name]))
                   for spec in self.inputs for name in [spec.name] if name in self._accepted}
        with torch.inference_mode():
            result = self.model(**tensors)
        outputs = {}
        for spec in self.outputs:
            value = result.get(spec.name) if hasattr(result, "get") else None
            if value is None:
                raise EngineError(
                    f"The PyTorch model gives no output {spec.name!r} (it gives "
                    f"{sorted(result.keys())}). Note: use --reference fp32."
                )
            outputs[spec.name] = value.float().numpy()
        return outputs


def torch_model(bundle: Bundle):
    """(torch, the transformers model of the checkpoint the bundle was exported from, in eval
    mode); a clear error when torch or the checkpoint is missing."""
    checkpoint = (bundle.manifest.get("source") or {}).get("checkpoint")
    if not checkpoint:
        raise InputError(
            f"The manifest of {bundle.path} records no source checkpoint, so there is no "
            "PyTorch reference to load. Note: use --reference fp32."
        )
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            f"--reference pytorch needs torch and transformers ({exc}). Note: install them "
            "with `pip install 'edgeport[export]'`, or use --reference fp32."
        ) from None
    path = Path(checkpoint)
    if not path.is_dir():
        raise InputError(
            f"The checkpoint the bundle was exported from, {checkpoint}, does not exist on "
            "this machine any more. Note: restore it at that path, or use --reference fp32 "
            "(the bundle's validation report records how close fp32 was to PyTorch)."
        )
    try:
        config = transformers.AutoConfig.from_pretrained(str(path))
        model_class = reference_model_class(transformers, bundle, config)
        model = model_class.from_pretrained(str(path), config=config).eval()
    except InputError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
        raise InputError(
            f"transformers could not load {path} for {bundle.task}: {first}. Note: "
            "use --reference fp32."
        ) from None
    return torch, model


def reference_model_class(transformers, bundle: Bundle, config):
    """The transformers class that computes the bundle's task for its checkpoint: the task's
    auto class when it knows the model (as the exporter loads it for most architectures), else
    the class the checkpoint's config.json names in ``architectures``, which the manifest keeps
    under ``source``. That is the case where the exporter's architecture row names another
    auto class: SegFormer's semantic and Mask2Former's universal segmentation heads are outside
    AutoModelForImageSegmentation. (calibration does not import the exporter's rows.)

    >>> reference_model_class(transformers, segformer_bundle, config).__name__   # doctest: +SKIP
    'SegformerForSemanticSegmentation'
    """
    auto_class = getattr(transformers, TASK_MODEL_CLASSES[bundle.task])
    # The auto class's config -> model table, which from_pretrained looks the config up in
    # (private, but stable since transformers 4.0; without it, the auto class is tried as is).
    mapping = getattr(auto_class, "_model_mapping", None)
    if mapping is None or type(config) in mapping:
        return auto_class
    names = (bundle.manifest.get("source") or {}).get("architectures") or []
    for name in names:  # a class of transformers' models, nothing else the manifest names
        model_class = getattr(transformers, name, None)
        if isinstance(model_class, type) and issubclass(model_class, transformers.PreTrainedModel):
            return model_class
    raise InputError(
        f"transformers' {auto_class.__name__} does not load model_type "
        f"{getattr(config, 'model_type', '?')!r}, and the manifest of {bundle.path} names no "
        f"transformers class under source.architectures (it has {names}). Note: use "
        "--reference fp32 (the bundle's validation report records how close fp32 was to "
        "PyTorch)."
    )


# --- task metrics -------------------------------------------------------------------------------
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


def _spatial_size(feed) -> tuple[int, int]:
    """(height, width) of the image the model saw: what its maps are compared at."""
    return tuple(int(n) for n in np.shape(feed["pixel_values"])[-2:])


class _ObjectDetection(_TaskScorer):
    """mAP@0.5 of the variant's detections (every query's best class, ranked by score) against
    the reference's detections above DETECTION_THRESHOLD; boxes relative to the image, as the
    graph gives them (IoU does not depend on the unit)."""

    metric = "map50"

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
                 if s > DETECTION_THRESHOLD]
        text = ", ".join(found) or "(none)"
        return text if len(text) <= 200 else text[:197] + "..."

    def score(self, reference, candidate, inputs):
        def above(boxes, labels, scores):
            keep = scores > DETECTION_THRESHOLD
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
                "threshold": DETECTION_THRESHOLD, "iou": DETECTION_IOU,
                "truth_boxes": kept, "detections": found,
                "precision": sum(matched) / found if found else (1.0 if not kept else 0.0),
                "recall": sum(matched) / kept if kept else (1.0 if not found else 0.0),
                "per_class": {self.label(c): ap for c, ap in result["per_class"].items()},
                "flips": changed, "changes": changes, "count": len(reference)}


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
                self.output(outputs, "masks_queries_logits")[:1], size)[0]
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


class _ZeroShotImageClassification(_Classification):
    """Top-1 agreement over the candidate labels of each image (``logits_per_image``)."""

    def reduce(self, feed, outputs):
        return self.output(outputs, "logits_per_image")[0]

    def label(self, index: int) -> str:
        labels = self.samples.labels if self.samples is not None else None
        return labels[index] if labels and index < len(labels) else f"text {index}"


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


_SCORERS = {
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
    "audio-classification": _Classification,
    "automatic-speech-recognition": _SpeechRecognition,
}


# --- numeric metrics, accumulated over samples --------------------------------------------------
class _OutputStats:
    """Numeric error of one output over all samples, accumulated one sample at a time."""

    def __init__(self):
        self.signal = self.noise = self.abs_sum = 0.0
        self.count = 0
        self.max_abs = 0.0
        self.nonfinite = 0
        self.cosines: list[float] = []
        self.histogram = np.zeros(len(metrics.histogram_edges()) - 1, np.int64)
        self.zeros = 0

    def add(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        ref = np.asarray(reference, np.float64)
        out = np.asarray(candidate, np.float64)
        if ref.shape != out.shape:
            raise EngineError(
                f"A variant's output has shape {out.shape}, the reference's {ref.shape}. Note: "
                "the variant's graph does not compute the same thing; make it again."
            )
        diff = np.abs(ref - out)
        self.signal += float(np.sum(ref * ref))
        self.noise += float(np.sum(diff * diff))
        self.abs_sum += float(diff.sum())
        self.count += diff.size
        # NaN must win (a plain max() keeps whichever comes first): an output with NaN in it
        # has no finite worst error.
        self.nonfinite += int(np.count_nonzero(~np.isfinite(out)))
        worst = float(diff.max()) if diff.size else 0.0
        if not math.isnan(self.max_abs) and (math.isnan(worst) or worst > self.max_abs):
            self.max_abs = worst
        self.cosines.append(metrics.cosine_similarity(ref, out))
        counts, zeros = metrics.abs_error_histogram(ref, out)
        self.histogram += counts
        self.zeros += zeros

    def summary(self) -> dict:
        sqnr = metrics.sqnr_from_sums(self.signal, self.noise)
        return {
            "max_abs": self.max_abs,
            "mean_abs": self.abs_sum / self.count if self.count else 0.0,
            "cosine_mean": float(np.mean(self.cosines)) if self.cosines else 1.0,
            "cosine_min": float(np.min(self.cosines)) if self.cosines else 1.0,
            # JSON has no infinity: None with identical=True means no error at all.
            "sqnr_db": sqnr if math.isfinite(sqnr) else None,
            "identical": self.noise == 0.0,
            # NaN or infinite values in the variant's output (an fp16 overflow, say): the
            # metrics above are then None.
            "nonfinite": self.nonfinite,
            "histogram": {"log10_edges": metrics.histogram_edges().tolist(),
                          "counts": self.histogram.tolist(), "zeros": self.zeros},
        }


def _real_part(array: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The output at real tokens only (``mask`` given for outputs whose leading dims are the
    attention mask's): padding positions hold values nobody reads."""
    array = np.asarray(array)
    if mask is not None and array.ndim >= 2 and array.shape[:2] == mask.shape:
        return array[mask > 0]
    return array


def _token_outputs(bundle: Bundle) -> set[str]:
    """The outputs whose two leading dims are named as the attention mask's ([batch,
    sequence]): per-token outputs, where padding is left out. By name, not by shape: a CLIP
    text_embeds [text_batch, 16] must not be masked when its texts are 16 tokens long."""
    inputs, outputs = bundle.graph_specs("model")
    mask = next((spec for spec in inputs if spec.name == "attention_mask"), None)
    if mask is None or len(mask.dims) < 2 or not all(isinstance(d, str) for d in mask.dims[:2]):
        return set()
    return {spec.name for spec in outputs if list(spec.dims[:2]) == list(mask.dims[:2])}


# --- per-layer error ----------------------------------------------------------------------------
def _instrumented(path: Path, keep: set[str] | None) -> tuple[OrtEngine, dict]:
    """An engine for a copy of the graph at ``path`` that also outputs its intermediate float
    tensors (those in ``keep`` when given), and the graph's facts (nodes in topological order,
    inputs, tensor kinds)."""
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError(
            "Per-layer error needs the onnx package. Note: install it with "
            "`pip install 'edgeport[quantize]'`, or pass --no-layers (layers=False)."
        ) from None
    # Weights are not loaded: the copy refers to the graph's external data files, if any.
    model = onnx.load(str(path), load_external_data=False)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx raises InferenceError or a plain Exception on odd graphs
        raise EngineError(
            f"onnx shape inference failed on {path.name}: {str(exc).splitlines()[0][:200]}. "
            "Note: pass --no-layers (layers=False) to compare without per-layer error."
        ) from None
    types = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    initializers = {t.name for t in model.graph.initializer}
    sources = [i.name for i in model.graph.input if i.name not in initializers]
    existing = {o.name for o in model.graph.output}
    nodes = [{"name": n.name or f"{n.op_type}_{i}", "op_type": n.op_type,
              "inputs": list(n.input), "outputs": [o for o in n.output if o]}
             for i, n in enumerate(model.graph.node)]
    produced = [o for node in nodes for o in node["outputs"]]
    floats = [o for o in produced if types.get(o) in _FLOAT_TYPES and o not in initializers]
    exact = [o for o in produced if o in types and types[o] not in _FLOAT_TYPES]
    wanted = [o for o in floats if keep is None or o in keep]
    for name in wanted:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
    # Loaded from memory, with its external weights read from beside the graph file: nothing
    # is written into the bundle, which may be read-only.
    engine = _layer_engine(path, model.SerializeToString())
    return engine, {"nodes": nodes, "sources": sources, "exact": exact, "floats": set(wanted)}


def _layer_engine(path: Path, model: bytes) -> OrtEngine:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Unoptimized: every node runs as written, so each tensor is the graph's own.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return OrtEngine(path, session_options=options, providers=["CPUExecutionProvider"],
                     model=model)


class _LayerReference:
    """The instrumented fp32 graph (the file at ``path``) and the few samples per-layer error
    is measured on."""

    def __init__(self, path: Path, feeds: Sequence[Mapping]):
        self.engine, self.facts = _instrumented(path, None)
        self.feeds = list(feeds)

    def tensors(self, feed: Mapping) -> dict[str, np.ndarray]:
        # Run again for each variant rather than kept: every intermediate tensor of a large
        # model on long inputs is a lot of memory, and fp32 runs on a few samples are cheap.
        return {k: v for k, v in self.engine.run(feed).items() if k in self.facts["floats"]}


def layer_errors(reference: _LayerReference, path: Path, top: int) -> dict:
    """Relative error of every tensor the variant graph at ``path`` shares with fp32 (by name,
    same shape, float), and the nodes that add the most error."""
    engine, _ = _instrumented(path, reference.facts["floats"])
    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    skipped = set()
    for feed in reference.feeds:
        expected = reference.tensors(feed)
        got = engine.run(feed)
        for name, ref in expected.items():
            if name not in got or name in skipped:
                continue
            out = got[name]
            if out.shape != ref.shape:  # the variant computes it in another layout
                skipped.add(name)
                continue
            ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
            # Equal values are no error, infinities included: attention scores plus a causal
            # mask (CLIP's text tower) hold -inf in fp32 and in the variant alike. An infinity
            # or NaN on one side only is an infinite error.
            with np.errstate(invalid="ignore"):
                diff = ref64 - out64
            odd = ~np.isfinite(diff)
            if odd.any():  # rare: checked only where a difference is not finite
                diff[odd & (ref64 == out64)] = 0.0
                ref64 = np.where(np.isfinite(ref64), ref64, 0.0)
            signal[name] = signal.get(name, 0.0) + float(np.sum(ref64 * ref64))
            noise[name] = noise.get(name, 0.0) + float(np.sum(diff * diff))
        del expected, got
    # A tensor that is all zeros in fp32 has no scale to be relative to; it is left out rather
    # than given an infinite error.
    errors = {name: metrics.relative_from_sums(signal[name], noise[name])
              for name in signal if name not in skipped and signal[name] > 0.0}
    # NaN or inf in a variant's tensor is the largest error there is: it ranks first where it
    # appears (and becomes None in the JSON report).
    errors = {name: error if math.isfinite(error) else math.inf
              for name, error in errors.items()}
    rows = metrics.error_growth(reference.facts["nodes"], errors,
                                sources=reference.facts["sources"],
                                exact=reference.facts["exact"])
    ranked = sorted((r for r in rows if r["growth"] > 0.0), key=lambda r: -r["growth"])
    return {
        "samples": len(reference.feeds),
        "tensors_compared": len(errors),
        "nodes": len(reference.facts["nodes"]),
        "top": [_rounded(r) for r in ranked[:top]],
        "profile": [[r["index"], _sig(r["error"])] for r in rows],
    }


def _sig(value: float) -> float:
    return float(f"{value:.4g}")


def _rounded(row: dict) -> dict:
    return {k: _sig(v) if isinstance(v, float) else v for k, v in row.items()}


# --- the comparison -----------------------------------------------------------------------------
def _positive_int(value, name: str, note: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}. Note: {note}")
    return int(value)


def _choose_variants(bundle: Bundle, variants, reference: str) -> list[str]:
    if variants is None:
        chosen = [name for name in bundle.variants if not (reference == "fp32" and name == "fp32")]
    else:
        if isinstance(variants, str):
            variants = [variants]
        if not variants:
            raise InputError(
                "The list of variants to compare is empty. Note: name at least one, or leave "
                f"it out to compare all of {', '.join(bundle.variants)}."
            )
        chosen = []
        for name in variants:
            if name not in bundle.variants:
                raise InputError(f"The bundle {bundle.path} has no variant {name!r}. "
                                 + did_you_mean(name, bundle.variants))
            if name == "fp32" and reference == "fp32":
                raise InputError(
                    "fp32 is the reference; comparing it with itself measures nothing. Note: "
                    "leave fp32 out of the variants, or use --reference pytorch."
                )
            if name not in chosen:
                chosen.append(name)
    if not chosen:
        raise InputError(
            f"The bundle {bundle.path} has no variants to compare: it holds only "
            f"{', '.join(bundle.variants)}. Note: make one with `edgeport quantize BUNDLE "
            "--recipe RECIPE`, or compare fp32 with PyTorch (--reference pytorch)."
        )
    return chosen


def report_header(bundle: Bundle, reference: str, latency: dict) -> dict:
    """What every accuracy report starts with: schema, bundle, task, time, the reference."""
    return {
        "schema_version": REPORT_SCHEMA,
        "bundle": str(bundle.path),
        "task": bundle.task,
        "model_type": bundle.model_type,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "reference": {
            "name": reference,
            "latency_ms": latency,
            "bytes": variant_bytes(bundle, "fp32") if reference == "fp32" else None,
            "checkpoint": (bundle.manifest.get("source") or {}).get("checkpoint")
            if reference == "pytorch" else None,
        },
    }


def variant_header(bundle: Bundle, name: str, latency: dict, reference_latency: dict) -> dict:
    """What every report says of a variant first: its recipe, files, size, latency, speed-up."""
    return {
        "recipe": bundle.variants[name].get("recipe"),
        "files": dict(bundle.variants[name]["files"]),
        "bytes": variant_bytes(bundle, name),
        "latency_ms": latency,
        "speedup": reference_latency["median_ms"] / latency["median_ms"]
        if latency["median_ms"] > 0 else None,
    }


def variant_bytes(bundle: Bundle, name: str) -> int:
    """The size on disk of a variant's graph files (with their external weights)."""
    info = bundle.variants[name]
    files = list(info["files"].values())
    for extra in info.get("data_files", {}).values():
        files += extra
    return sum((bundle.path / f).stat().st_size for f in files)


def _progress(items: Iterable, total: int, description: str, enabled: bool,
              unit: str = "sample"):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=description, unit=unit, leave=False, file=sys.stderr)


def _versions() -> dict:
    import onnxruntime

    from runtime import __version__

    return {"edgeport": __version__, "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__}


def compare_variants(
    bundle: Bundle | str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    variants: Sequence[str] | None = None,
    reference: str = "fp32",
    samples: int = 100,
    seed: int = 0,
    progress: bool = False,
    layers: bool = True,
    runs: int = 1,
    layer_samples: int = LAYER_SAMPLES,
    top: int = TOP_LAYERS,
    new_tokens: int | None = None,
) -> dict:
    """Run the reference and each variant on the data; return the report (JSON-ready).

    ``data`` is a file or folder for ``calibration.data.load_samples`` (None: the built-in
    samples of text bundles; image bundles need a folder of images); ``samples`` and ``seed``
    pick a seeded subset. ``variants`` defaults to every variant but the reference. Each sample
    is timed ``runs`` times per engine (its fastest run counts), after one warm-up run per
    engine. ``layers`` measures, for each variant, where its error enters (``top`` nodes), on
    the ``layer_samples`` samples where the variants' outputs err most. Nothing is written:
    see ``calibration.report.write_reports`` and ``record_summaries``.

    Generative bundles (text-generation, text2text-generation, summarization, translation)
    generate greedily from each text, at most ``new_tokens`` new tokens (default 20), and are
    measured by token agreement, BLEU and the first divergence (``compare_generation``).

    >>> report = compare_variants("bundle", variants=["int8"])     # doctest: +SKIP
    >>> report["variants"]["int8"]["latency_ms"]["median_ms"]       # doctest: +SKIP
    1.9
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    generative = is_generative(bundle)
    if generative:
        new_tokens = _positive_int(NEW_TOKENS if new_tokens is None else new_tokens,
                                   "new_tokens", "each text generates at most this many tokens "
                                   f"(default {NEW_TOKENS}).")
    elif new_tokens is not None:
        raise InputError(
            f"new_tokens (--max-new-tokens) is for generative bundles; {bundle.task} bundles "
            "generate nothing. Note: leave it out."
        )
    if bundle.task not in _SCORERS and not generative:
        raise TaskError(
            f"compare does not support {bundle.task!r} bundles yet. Note: it supports "
            f"{', '.join([*_SCORERS, *GENERATION_TASKS])}."
        )
    if set(bundle.graphs) != {"model"} and not generative:
        raise InputError(
            f"compare runs single-graph bundles; {bundle.path} has the graphs "
            f"{sorted(bundle.graphs)}. Note: multi-graph (encoder-decoder) bundles come later."
        )
    if reference not in REFERENCES:
        raise InputError(f"Unknown reference {reference!r}. " + did_you_mean(reference, REFERENCES))
    samples = _positive_int(samples, "samples", "compare needs at least one sample (e.g. 100).")
    runs = _positive_int(runs, "runs", "each sample is timed this many times (default 1).")
    layer_samples = _positive_int(layer_samples, "layer_samples", "e.g. 4.")
    top = _positive_int(top, "top", "how many nodes the per-layer list shows (e.g. 20).")
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise InputError(f"seed must be an int, got {seed!r}. Note: the same seed picks the "
                         "same samples.")
    chosen = _choose_variants(bundle, variants, reference)

    loaded, source = _load_data(bundle, data, samples, seed, progress)
    if generative:
        return compare_generation(bundle, loaded, source, chosen=chosen, reference=reference,
                                  seed=seed, progress=progress, layers=layers, runs=runs,
                                  layer_samples=layer_samples, top=top, new_tokens=new_tokens)
    feeds, inputs = loaded.feeds, loaded.inputs
    tokenizer = (TextTokenizer.from_dir(bundle.path)
                 if bundle.manifest.get("modality", "text") in ("text", "text-image") else None)
    scorer = _SCORERS[bundle.task](bundle, tokenizer, loaded)

    reference_engine: Engine = (TorchEngine(bundle) if reference == "pytorch"
                                else bundle.engine("model", "fp32"))
    engines = {name: bundle.engine("model", name) for name in chosen}
    output_names = [spec.name for spec in bundle.graph_specs("model")[1]]
    per_token = _token_outputs(bundle)

    for engine in [reference_engine, *engines.values()]:
        engine.run(feeds[0])  # warm-up: first runs allocate and pick kernels
    times: dict[str | None, list[float]] = {None: [], **{name: [] for name in chosen}}
    reduced: dict[str | None, list] = {None: [], **{name: [] for name in chosen}}
    stats = {name: {out: _OutputStats() for out in output_names} for name in chosen}
    # Per sample, the largest relative output error of any variant: the per-layer analysis
    # runs on the samples where the variants err most, which is where the error is visible.
    sample_error = np.zeros(len(feeds))

    def timed(engine, feed):
        best, result = math.inf, None
        for _ in range(runs):
            start = time.perf_counter()
            result = engine.run(feed)
            best = min(best, time.perf_counter() - start)
        return result, best

    for index, feed in enumerate(_progress(feeds, len(feeds), f"comparing {len(chosen)} "
                                                              "variant(s)", progress)):
        expected, seconds = timed(reference_engine, feed)
        times[None].append(seconds)
        reduced[None].append(scorer.reduce(feed, expected))
        mask = feed.get("attention_mask")
        mask = None if mask is None else np.asarray(mask)
        for name, engine in engines.items():
            got, seconds = timed(engine, feed)
            times[name].append(seconds)
            reduced[name].append(scorer.reduce(feed, got))
            for out in output_names:
                where = mask if out in per_token else None
                ref, var = _real_part(expected[out], where), _real_part(got[out], where)
                stats[name][out].add(ref, var)
                error = metrics.relative_error(ref, var)
                # NaN is the worst error there is; max() and argsort would pass over it
                error = error if math.isfinite(error) else math.inf
                sample_error[index] = max(sample_error[index], error)

    reference_latency = metrics.latency_summary(times[None])
    report = {
        **report_header(bundle, reference, reference_latency),
        "data": {"source": source, "samples": len(feeds), "seed": seed},
        "task_metric": scorer.metric,
        "timing": {"runs_per_sample": runs, "warmup_runs": 1, "batch": 1},
        "variants": {},
        "versions": _versions(),
    }
    for name in chosen:
        outputs = {out: stats[name][out].summary() for out in output_names}
        latency = metrics.latency_summary(times[name])
        sqnrs = [o["sqnr_db"] for o in outputs.values() if o["sqnr_db"] is not None]
        report["variants"][name] = {
            **variant_header(bundle, name, latency, reference_latency),
            "task": scorer.score(reduced[None], reduced[name], inputs),
            # The worst output's mean cosine; NaN (None in JSON) when any output has NaN,
            # which a plain min() could skip over.
            "cosine": float(np.min([o["cosine_mean"] for o in outputs.values()])),
            # The worst output's SQNR; None when every output is identical to the reference.
            "sqnr_db": min(sqnrs) if sqnrs else None,
            "outputs": outputs,
            "layers": None,
        }

    if layers:
        worst = sorted(np.argsort(-sample_error, kind="stable")[:layer_samples].tolist())
        _add_layers(bundle, report, chosen, {"model": [feeds[i] for i in worst]}, top,
                    progress)
        for name in chosen:
            if report["variants"][name]["layers"]:
                report["variants"][name]["layers"]["sample_indices"] = worst
    return json_ready(report)


def json_ready(value):
    """The report with NaN and infinities as None (JSON has neither): a variant whose graph
    overflows gives NaN outputs, and the report must still be written.

    >>> json_ready({"a": [1.0, float("nan")], "b": float("inf")})
    {'a': [1.0, None], 'b': None}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def _add_layers(bundle, report, chosen, feeds: Mapping[str, Sequence[Mapping]], top,
                progress) -> None:
    """Each variant's per-layer error (``layers``) on ``feeds`` (graph name -> the few feeds
    to measure on). A one-graph bundle's is that graph's; a bundle of several graphs has one
    part per graph (and per branch of a merged decoder, each cut out as a graph of its own,
    fed the feeds that take it) under ``parts``, and their nodes ranked together under
    ``top``, each row naming its graph and branch. A graph the variant shares with fp32 has
    no error to locate and is left out."""
    # fp32 against itself has no error to locate.
    measured = [name for name in chosen if name != "fp32"]
    if not measured:
        return
    with tempfile.TemporaryDirectory(prefix="edgeport-layers-") as directory:
        parts = []  # (graph, branch, instrumented fp32)
        for graph, fed in feeds.items():
            for branch, path, branch_feeds in _graph_parts(bundle, graph, "fp32", fed,
                                                           Path(directory)):
                parts.append((graph, branch, _LayerReference(path, branch_feeds)))
        for name in _progress(measured, len(measured), "per-layer error", progress, "variant"):
            results, files = [], {}
            for graph, branch, fp32 in parts:
                if bundle.graph_path(graph, name) == bundle.graph_path(graph, "fp32"):
                    continue
                if graph not in files:  # a merged decoder is cut into its branches once
                    files[graph] = {part: path for part, path, _ in _graph_parts(
                        bundle, graph, name, None, Path(directory))}
                results.append({"graph": graph, "branch": branch,
                                **layer_errors(fp32, files[graph][branch], top)})
            report["variants"][name]["layers"] = _joined_layers(results, top)


def _graph_parts(bundle: Bundle, graph: str, variant: str, feeds, directory: Path) -> list:
    """[(branch, graph file, feeds)] of a variant's graph: the graph itself (branch None), or
    for a merged decoder each branch saved as a graph of its own under ``directory``, with
    the feeds that take it (``feeds`` None: none wanted)."""
    path = bundle.graph_path(graph, variant)
    if not is_merged(path):
        return [(None, path, feeds)]
    import onnx

    from .recipes import _large, _save

    branches = merged_branches(onnx.load(str(path)))
    fed = branch_feeds(branches, feeds)
    parts = []
    for branch, model in branches.models.items():
        target = directory / f"{graph}.{branch}.{variant}.onnx"
        _save(model, target, external=_large(model))
        parts.append((branch, target, fed[branch]))
    return parts


def _joined_layers(results: list[dict], top: int) -> dict | None:
    """One part's layers as they are (a one-graph bundle's); several parts under ``parts``,
    with their nodes ranked together under ``top``."""
    if not results:
        return None
    if len(results) == 1 and results[0]["graph"] == "model" and results[0]["branch"] is None:
        return {k: v for k, v in results[0].items() if k not in ("graph", "branch")}
    ranked = sorted(({**row, "graph": part["graph"], "branch": part["branch"]}
                     for part in results for row in part["top"]),
                    key=lambda row: -row["growth"])
    return {"samples": max(part["samples"] for part in results),
            "tensors_compared": sum(part["tensors_compared"] for part in results),
            "nodes": sum(part["nodes"] for part in results),
            "top": ranked[:top], "parts": results}


def summary_of(report: Mapping, name: str) -> dict:
    """The short accuracy record of one variant that the manifest keeps.

    >>> summary_of(report, "int8")["metric"]                         # doctest: +SKIP
    'top1_agreement'
    """
    variant = report["variants"][name]
    return {
        "reference": report["reference"]["name"],
        "metric": variant["task"]["metric"],
        "value": variant["task"]["value"],
        "cosine": variant["cosine"],
        "latency_ms": variant["latency_ms"]["median_ms"],
        "speedup": variant["speedup"],
        "samples": report["data"]["samples"],
        "data": report["data"]["source"],
        "report": "reports/accuracy.json",
        "created": report["created"],
    }


def record_summaries(bundle: Bundle, report: Mapping) -> Bundle:
    """Store each compared variant's accuracy summary in the manifest; the reloaded bundle.

    >>> bundle = record_summaries(bundle, report)                   # doctest: +SKIP
    """
    for name in report["variants"]:
        if name not in bundle.variants:
            raise InputError(
                f"The report compares a variant {name!r} that the bundle {bundle.path} no "
                "longer has. Note: run the comparison again."
            )
        bundle = record_accuracy(bundle, name, summary_of(report, name))
    return bundle
