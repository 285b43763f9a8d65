"""Architectures are rows: every fact edgeport needs about one architecture lives in its row.

A row names the HF ``model_type``, its family (which decides the graphs and the preprocessing),
the tasks edgeport exports it for, and the validation tolerance. optimum-onnx does the tracing;
a row only says what to ask of it. Every row has a test case (tests/exporter/test_coverage.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.errors import ExportError, did_you_mean

TEXT_ENCODER_TASKS = (
    "text-classification",
    "token-classification",
    "question-answering",
    "fill-mask",
    "feature-extraction",
)


@dataclass(frozen=True)
class Architecture:
    model_type: str
    family: str
    tasks: tuple[str, ...]
    modality: str = "text"
    atol: float = 1e-4  # max abs difference ONNX vs PyTorch that validation accepts


ARCHITECTURES: dict[str, Architecture] = {
    row.model_type: row
    for row in (
        Architecture("bert", "text-encoder", TEXT_ENCODER_TASKS),
        Architecture("distilbert", "text-encoder", TEXT_ENCODER_TASKS),
        Architecture("roberta", "text-encoder", TEXT_ENCODER_TASKS),
        Architecture("xlm-roberta", "text-encoder", TEXT_ENCODER_TASKS),
        Architecture("albert", "text-encoder", TEXT_ENCODER_TASKS),
        Architecture("deberta-v2", "text-encoder", TEXT_ENCODER_TASKS),
        Architecture("mpnet", "text-encoder", TEXT_ENCODER_TASKS),
    )
}


# Suffix of the class named in config.json's "architectures" -> the task it was trained for.
_HEAD_TASKS = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForPreTraining", "fill-mask"),
    ("Model", "feature-extraction"),
)


def architecture_for(model_type: str) -> Architecture:
    """The row of a model_type; an ExportError naming the supported ones otherwise."""
    if model_type not in ARCHITECTURES:
        raise ExportError(
            f"edgeport cannot export model_type {model_type!r} yet. "
            + did_you_mean(model_type, ARCHITECTURES)
        )
    return ARCHITECTURES[model_type]


def infer_task(config: dict, *, sentence_transformers: bool = False) -> str:
    """The task a checkpoint was made for, from its config's ``architectures``.

    >>> infer_task({"architectures": ["BertForTokenClassification"]})
    'token-classification'
    """
    if sentence_transformers:
        return "feature-extraction"
    for name in config.get("architectures") or []:
        for suffix, task in _HEAD_TASKS:
            if name.endswith(suffix):
                return task
    raise ExportError(
        f"Cannot tell the task from config.json (architectures: {config.get('architectures')}). "
        f"Note: pass --task, one of: {', '.join(TEXT_ENCODER_TASKS)}."
    )
