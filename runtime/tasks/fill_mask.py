"""The fill-mask task (work in progress)."""

from __future__ import annotations

from .base import Pipeline


class FillMaskPipeline(Pipeline):
    task = "fill-mask"
    parameters = {}

    def __call__(self, inputs, **kwargs):
        raise NotImplementedError
