"""The feature-extraction task (work in progress)."""

from __future__ import annotations

from .base import Pipeline


class FeatureExtractionPipeline(Pipeline):
    task = "feature-extraction"
    parameters = {}

    def __call__(self, inputs, **kwargs):
        raise NotImplementedError
