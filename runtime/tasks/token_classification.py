"""The token-classification task (work in progress)."""

from __future__ import annotations

from .base import Pipeline


class TokenClassificationPipeline(Pipeline):
    task = "token-classification"
    parameters = {}

    def __call__(self, inputs, **kwargs):
        raise NotImplementedError
