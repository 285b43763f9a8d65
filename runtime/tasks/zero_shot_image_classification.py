"""The zero-shot-image-classification task: how well each candidate label describes an image,
as transformers' ZeroShotImageClassificationPipeline scores it (CLIP: one graph that encodes
the image and the label texts and gives their scaled similarities)."""

from __future__ import annotations

from typing import ClassVar

from ..errors import InputError
from .base import config_count, config_section, softmax
from .text import check_batch_size, encode_texts
from .vision import ImagePipeline


class ZeroShotImageClassificationPipeline(ImagePipeline):
    """Scores of ``candidate_labels`` for each image, best first; the scores of one image sum
    to 1. Each label is put into ``hypothesis_template`` before it is encoded.

    >>> classify = pipeline("zero-shot-image-classification", model="clip")   # doctest: +SKIP
    >>> classify("cat.jpg", candidate_labels=["cat", "dog"])                 # doctest: +SKIP
    [{'score': 0.98, 'label': 'cat'}, {'score': 0.02, 'label': 'dog'}]
    """

    task = "zero-shot-image-classification"
    parameters = {"candidate_labels": None, "hypothesis_template": "This is a photo of {}.",
                  "batch_size": 1, "timeout": None}
    preprocessors: ClassVar[tuple[str, ...]] = ("tokenizer", "image_processor")

    def __call__(self, inputs=None, candidate_labels=None, **kwargs):
        if "images" in kwargs:  # transformers' keyword for the inputs
            inputs = kwargs.pop("images")
        if candidate_labels is not None:
            kwargs["candidate_labels"] = candidate_labels
        args = self.arguments(kwargs)
        labels = self._labels(args["candidate_labels"])
        texts = [self._hypothesis(args["hypothesis_template"], label) for label in labels]
        encodings = encode_texts(self.tokenizer, texts)
        self.tokenizer.check_length(encodings, self._max_positions,
                                    fix="shorten the label or the hypothesis_template")
        text_feed = self.text_feed(encodings)
        images, single = self.images(inputs)
        batch_size = check_batch_size(args["batch_size"])
        results = []
        for start in range(0, len(images), batch_size):
            outputs = self.engine.run({**text_feed,
                                       **self.image_feed(images[start:start + batch_size])})
            for logits in outputs["logits_per_image"].astype("float32"):
                scores = softmax(logits)
                order = sorted(range(len(labels)), key=lambda i: -scores[i])
                results.append([{"score": scores[i].item(), "label": labels[i]} for i in order])
        return results[0] if single else results

    @property
    def _max_positions(self) -> int | None:
        text = config_section(self.config, "text_config")
        limits = [n for n in (config_count(text, "max_position_embeddings",
                                           where="config.json's text_config"),
                              self.tokenizer.model_max_length) if n]
        return min(limits, default=None)

    @staticmethod
    def _labels(labels) -> list[str]:
        if (not isinstance(labels, (list, tuple)) or not labels
                or not all(isinstance(label, str) for label in labels)):
            raise InputError(
                f"candidate_labels must be a non-empty list of strings, got {labels!r:.100}. "
                'Note: pass candidate_labels=["cat", "dog"].'
            )
        return list(labels)

    @staticmethod
    def _hypothesis(template, label: str) -> str:
        try:
            return template.format(label)
        except (AttributeError, IndexError, KeyError, ValueError) as exc:
            raise InputError(
                f"hypothesis_template {template!r:.100} cannot take a label: {exc}. Note: use "
                'a string with one "{}" where the label goes, e.g. "This is a photo of {}.".'
            ) from None
