"""Task names: the Hugging Face pipeline tags the runtime serves, transformers' aliases for them,
and ``canonical_task``. Below the bundle, which checks a manifest's task with it, and below the
task table (``runtime.tasks``), whose keys are exactly these names (a test holds them equal).

>>> canonical_task("sentiment-analysis")
'text-classification'
"""

from __future__ import annotations

import re

from .errors import TaskError, did_you_mean

TASK_NAMES = (
    "text-classification",
    "token-classification",
    "question-answering",
    "fill-mask",
    "feature-extraction",
    "image-classification",
    "object-detection",
    "image-segmentation",
    "depth-estimation",
    "zero-shot-image-classification",
    "zero-shot-object-detection",
    "text-generation",
    "text2text-generation",
    "summarization",
    "translation",
    "automatic-speech-recognition",
    "audio-classification",
    "image-feature-extraction",
    "image-to-text",
    "document-question-answering",
    "visual-question-answering",
    "reinforcement-learning",
)

# transformers' aliases for the same tasks.
TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification",
                "vqa": "visual-question-answering"}
# transformers' translation_xx_to_yy: translation, the languages picking the model's settings.
LANGUAGE_PAIR = re.compile(r"^translation_([A-Za-z-]+)_to_([A-Za-z-]+)$")


def canonical_task(task: str) -> str:
    """The pipeline tag for a task name or alias; a TaskError for an unknown one.
    ``translation_xx_to_yy`` is translation (the languages pick the model's task settings).

    >>> canonical_task("ner")
    'token-classification'
    >>> canonical_task("translation_en_to_de")
    'translation'
    """
    if isinstance(task, str) and LANGUAGE_PAIR.match(task):
        return "translation"
    task = TASK_ALIASES.get(task, task)
    if task not in TASK_NAMES:
        raise TaskError(f"Unknown task {task!r}. "
                        + did_you_mean(task, [*TASK_NAMES, *TASK_ALIASES]))
    return task
