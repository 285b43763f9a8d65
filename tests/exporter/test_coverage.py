"""Every architecture row and every task has a test case; a new row without one fails here."""

from __future__ import annotations

from pathlib import Path

from checkpoints import TINY_CONFIGS
from tiny_tables import TINY_TABLES

from exporter.architectures import ARCHITECTURES
from runtime.tasks import TASK_MODEL_CLASSES, TASKS

TESTS = Path(__file__).resolve().parents[1]


def test_every_architecture_row_has_a_tiny_checkpoint():
    tiny = {*TINY_CONFIGS, *(model_type for table, _ in TINY_TABLES for model_type, _ in table)}
    missing = set(ARCHITECTURES) - tiny
    assert not missing, f"architecture rows without a tiny checkpoint in tests/support: {missing}"


# Tasks transformers has no pipeline for, and what their test modules compare with instead.
NO_TRANSFORMERS_PIPELINE = {"reinforcement-learning": "def get_action"}


def test_every_task_has_a_test_module_against_transformers():
    for task in TASKS:
        module = TESTS / "runtime" / f"test_{task.replace('-', '_')}.py"
        assert module.is_file(), f"task {task!r} has no test module {module}"
        text = module.read_text()
        reference = NO_TRANSFORMERS_PIPELINE.get(task, "reference_pipeline")
        assert reference in text and "TINY_" in text, (
            f"{module.name} must compare with transformers on every architecture")


def test_every_task_can_be_exported_and_built():
    for row in ARCHITECTURES.values():
        assert set(row.tasks) <= set(TASKS)
    assert set(TASK_MODEL_CLASSES) == set(TASKS)
