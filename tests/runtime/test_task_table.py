"""The task table: HF pipeline tags, transformers' aliases, clear errors."""

from __future__ import annotations

import pytest

from runtime.engine import FakeEngine, TensorSpec
from runtime.errors import InputError, TaskError
from runtime.tasks import TASKS, canonical_task


def test_tags_and_aliases():
    assert set(TASKS) == {"text-classification", "token-classification", "question-answering",
                          "fill-mask", "feature-extraction"}
    assert canonical_task("sentiment-analysis") == "text-classification"
    assert canonical_task("ner") == "token-classification"
    with pytest.raises(TaskError, match="Did you mean 'fill-mask'"):
        canonical_task("fillmask")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_a_text_task_without_a_tokenizer_is_refused(task):
    engine = FakeEngine([TensorSpec("input_ids", "int64", ("batch", "sequence"))],
                        [TensorSpec("logits", "float32", ("batch", 2))], lambda feed: {})
    with pytest.raises(InputError, match="needs a tokenizer"):
        TASKS[task](config={}, engine=engine, tokenizer=None)
