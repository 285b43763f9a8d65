"""The task table: HF pipeline tags, transformers' aliases, clear errors."""

from __future__ import annotations

import pytest

from runtime.backends.engine import FakeEngine, TensorSpec
from runtime.errors import InputError, TaskError
from runtime.task_names import TASK_NAMES
from runtime.tasks import FAMILY_PIPELINES, MODEL_TYPE_PIPELINES, TASKS, canonical_task


def test_tags_and_aliases():
    assert set(TASKS) == {"text-classification", "token-classification", "question-answering",
                          "fill-mask", "feature-extraction", "image-classification",
                          "object-detection", "image-segmentation", "depth-estimation",
                          "zero-shot-image-classification", "zero-shot-object-detection",
                          "text-generation",
                          "text2text-generation", "summarization", "translation",
                          "automatic-speech-recognition", "audio-classification",
                          "image-feature-extraction",
                          "image-to-text", "document-question-answering",
                          "visual-question-answering", "reinforcement-learning"}
    assert canonical_task("translation_en_to_de") == "translation"
    assert canonical_task("sentiment-analysis") == "text-classification"
    assert canonical_task("ner") == "token-classification"
    assert canonical_task("vqa") == "visual-question-answering"
    with pytest.raises(TaskError, match="Did you mean 'fill-mask'"):
        canonical_task("fillmask")


def test_the_task_names_below_the_bundle_are_the_tables_keys():
    assert tuple(TASKS) == TASK_NAMES


CLASSES = {**TASKS,
           **{f"{task} ({family})": cls for (task, family), cls in FAMILY_PIPELINES.items()},
           **{f"{task} ({model_type})": cls
              for (task, model_type), cls in MODEL_TYPE_PIPELINES.items()}}


# a Decision Transformer reads arrays: it has no preprocessor to be without
PREPROCESSED = {name: cls for name, cls in CLASSES.items() if cls.preprocessors}


@pytest.mark.parametrize("task_class", PREPROCESSED.values(), ids=PREPROCESSED)
def test_a_task_without_its_preprocessor_is_refused(task_class):
    engine = FakeEngine([TensorSpec("input_ids", "int64", ("batch", "sequence"))],
                        [TensorSpec("logits", "float32", ("batch", 2))], lambda feed: {})
    needed = task_class.preprocessors[0].replace("_", " ")
    extra = {"generation_model": None} if task_class.generates else {}
    with pytest.raises(InputError, match=f"needs a {needed}, and none was given"):
        task_class(config={}, engine=engine, **extra)


def test_family_pipelines_serve_their_task():
    assert all(cls.task == task and task in TASKS for (task, _), cls in FAMILY_PIPELINES.items())
    assert all(cls.task == task and task in TASKS
               for (task, _), cls in MODEL_TYPE_PIPELINES.items())
