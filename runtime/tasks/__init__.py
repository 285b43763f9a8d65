"""The task table: Hugging Face pipeline tag -> the pipeline class that serves it.

One module per task; this table is the only registry. Task names are HF pipeline tags verbatim.
"""

from __future__ import annotations

from ..errors import TaskError, did_you_mean
from .base import Pipeline
from .feature_extraction import FeatureExtractionPipeline
from .fill_mask import FillMaskPipeline
from .question_answering import QuestionAnsweringPipeline
from .text_classification import TextClassificationPipeline
from .token_classification import TokenClassificationPipeline

TASKS: dict[str, type[Pipeline]] = {
    "text-classification": TextClassificationPipeline,
    "token-classification": TokenClassificationPipeline,
    "question-answering": QuestionAnsweringPipeline,
    "fill-mask": FillMaskPipeline,
    "feature-extraction": FeatureExtractionPipeline,
}

# The transformers auto class that loads a checkpoint for each task: names only, used by the
# exporter and by compare's optional PyTorch reference (the runtime itself never loads them).
TASK_MODEL_CLASSES = {
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "fill-mask": "AutoModelForMaskedLM",
    "feature-extraction": "AutoModel",
}

# transformers' aliases for the same tasks.
TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}


def canonical_task(task: str) -> str:
    """The pipeline tag for a task name or alias; a TaskError for an unknown one.

    >>> canonical_task("ner")
    'token-classification'
    """
    task = TASK_ALIASES.get(task, task)
    if task not in TASKS:
        raise TaskError(f"Unknown task {task!r}. " + did_you_mean(task, [*TASKS, *TASK_ALIASES]))
    return task
