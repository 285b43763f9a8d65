"""The question-answering task (work in progress)."""

from __future__ import annotations

from .base import Pipeline


class QuestionAnsweringPipeline(Pipeline):
    task = "question-answering"
    parameters = {}

    def __call__(self, inputs, **kwargs):
        raise NotImplementedError
