"""The summarization task: text2text-generation that names its results ``summary_text``
(BART, Pegasus; T5 with its "summarize: " prefix from task_specific_params)."""

from __future__ import annotations

from typing import ClassVar

from .text2text_generation import Text2TextGenerationPipeline


class SummarizationPipeline(Text2TextGenerationPipeline):
    """``[{"summary_text": ...}]`` per document.

    >>> summarize = pipeline("summarization", model="bart-bundle")          # doctest: +SKIP
    >>> summarize(article, max_new_tokens=60)                                # doctest: +SKIP
    [{'summary_text': '...'}]
    """

    task = "summarization"
    return_name: ClassVar[str] = "summary"
