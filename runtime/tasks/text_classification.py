"""The text-classification task (work in progress)."""

from __future__ import annotations

from .base import Pipeline


class TextClassificationPipeline(Pipeline):
    task = "text-classification"
    parameters = {}

    def __call__(self, inputs, **kwargs):
        raise NotImplementedError
