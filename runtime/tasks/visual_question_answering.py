"""The visual-question-answering task: answers to questions about images, as transformers'
VisualQuestionAnsweringPipeline gives them for a classifier over answers (ViLT: one graph reads
the question and the image; each answer of config.json's id2label gets a sigmoid score)."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral
from typing import ClassVar

import numpy as np

from ..errors import EngineError, InputError
from ..vision.images import load_image
from .base import config_count, sigmoid
from .text import check_batch_size, encode_texts, logits_of, tokenizer_options
from .vision import ImagePipeline

_FORMS = ('Note: pass image=..., question="..." (either may be a list: every question is asked '
          'of every image), {"image": ..., "question": "..."}, or a list of such dicts.')


class VisualQuestionAnsweringPipeline(ImagePipeline):
    """The ``top_k`` most likely answers to each (image, question) pair, best first.

    One image and one question give one list of answers; a list of images, a list of questions
    (every question asked of every image, questions outermost, as transformers orders them) or
    a list of ``{"image", "question"}`` dicts give a list of them.

    >>> answer = pipeline("visual-question-answering", model="vilt-bundle")  # doctest: +SKIP
    >>> answer(image="cat.jpg", question="What animal is this?", top_k=2)   # doctest: +SKIP
    [{'score': 0.93, 'answer': 'cat'}, {'score': 0.04, 'answer': 'kitten'}]
    """

    task = "visual-question-answering"
    parameters = {"top_k": 5, "padding": None, "truncation": None, "batch_size": 1,
                  "timeout": None}
    preprocessors: ClassVar[tuple[str, ...]] = ("tokenizer", "image_processor")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.id2label:
            raise EngineError(
                "config.json of this bundle has no id2label, so the answers have no names. "
                "Note: a visual-question-answering checkpoint names every answer in id2label; "
                "export one fine-tuned for it (like dandelin/vilt-b32-finetuned-vqa).")
        self._top_k(self.defaults)

    def __call__(self, image=None, question=None, **kwargs):
        args = self.arguments(kwargs)
        top_k = min(self._top_k(args), len(self.id2label))
        pairs, single = self._pairs(image, question)
        options = tokenizer_options({"truncation": args["truncation"],
                                     "padding": args["padding"]}, self._max_positions)
        batch_size = check_batch_size(args["batch_size"])
        results = []
        for start in range(0, len(pairs), batch_size):
            logits = logits_of(self.engine.run(self.pair_feed(pairs[start:start + batch_size],
                                                              options)))
            if logits.shape[-1] > len(self.id2label):
                raise EngineError(
                    f"The model gives {logits.shape[-1]} answer scores, but config.json's "
                    f"id2label names {len(self.id2label)}. Note: the bundle's id2label must "
                    "name every answer.")
            for row in sigmoid(logits):
                order = np.argsort(-row, kind="stable")[:top_k]
                results.append([{"score": row[i].item(), "answer": self.id2label[int(i)]}
                                for i in order])
        return results[0] if single else results

    # --- inputs -----------------------------------------------------------------------------
    @staticmethod
    def _pairs(image, question) -> tuple[list[tuple[object, str]], bool]:
        """[(image, question)] in transformers' order, and whether one pair was given."""
        if question is None:
            if isinstance(image, Mapping):
                return [_pair(image, 0)], True
            if isinstance(image, (list, tuple)) and image and all(
                    isinstance(item, Mapping) for item in image):
                return [_pair(item, index) for index, item in enumerate(image)], False
            raise InputError(f"visual-question-answering needs a question, and none was given. "
                             f"{_FORMS}")
        if isinstance(image, Mapping):
            raise InputError("Pass the question inside the dict or as question=, not both. "
                             + _FORMS)
        questions = [question] if isinstance(question, str) else question
        if (not isinstance(questions, (list, tuple)) or not questions
                or not all(isinstance(q, str) for q in questions)):
            raise InputError(f"question must be a string or a non-empty list of strings, got "
                             f"{question!r:.100}. {_FORMS}")
        if image is None:
            raise InputError(f"visual-question-answering needs an image, and none was given. "
                             f"{_FORMS}")
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        if not images:
            raise InputError(f"image is an empty list. {_FORMS}")
        single = isinstance(question, str) and not isinstance(image, (list, tuple))
        return [(item, q) for q in questions for item in images], single

    def pair_feed(self, pairs, options=None) -> dict[str, np.ndarray]:
        """The graph's feed for [(image, question)], as a call makes it (``options``: the
        tokenizer options of ``tokenizer_options``; none by default): calibration uses it."""
        encode, pad_to = options or tokenizer_options({}, self._max_positions)
        encodings = encode_texts(self.tokenizer, [q for _, q in pairs], **encode)
        if not encode["truncation"]:
            self.tokenizer.check_length(encodings, self._max_positions,
                                        fix="pass truncation=True to cut the question")
        images = []
        for index, (item, _) in enumerate(pairs):
            try:
                images.append(load_image(item))
            except InputError as error:
                raise type(error)(f"Image {index} of {len(pairs)}: {error}") from error
        feed = {**self.text_feed(encodings, pad_to=pad_to), **self.image_feed(images)}
        if "pixel_mask" in self.input_names and "pixel_mask" not in feed:
            # a processor without padding (do_pad false) gives none; transformers' model then
            # takes every pixel as real
            pixels = feed["pixel_values"]
            feed["pixel_mask"] = np.ones((pixels.shape[0], *pixels.shape[2:]), dtype=np.int64)
        return feed

    @property
    def _max_positions(self) -> int | None:
        """The fewest of the tokenizer's model_max_length and the text position embeddings."""
        limits = [n for n in (config_count(self.config, "max_position_embeddings"),
                              self.tokenizer.model_max_length) if n]
        return min(limits, default=None)

    @staticmethod
    def _top_k(args) -> int:
        top_k = args["top_k"]
        if not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k < 1:
            raise InputError(
                f"top_k must be a positive int, got {top_k!r}. Note: top_k larger than the "
                "number of answers gives every answer.")
        return int(top_k)


def _pair(item: Mapping, index: int) -> tuple[object, str]:
    missing = [key for key in ("image", "question") if key not in item]
    if missing:
        raise InputError(f"Input {index} has no {' or '.join(repr(k) for k in missing)} "
                         f"(keys: {sorted(map(str, item))[:8]}). {_FORMS}")
    if not isinstance(item["question"], str):
        raise InputError(f"Input {index} has a question that is not a string: "
                         f"{item['question']!r:.80}. {_FORMS}")
    return item["image"], item["question"]
