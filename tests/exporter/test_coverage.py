"""Every architecture row and every task has a test case; a new row without one fails here."""

from __future__ import annotations

from pathlib import Path

from checkpoints import TINY_CONFIGS
from generation_checkpoints import TINY_GENERATION
from speech_checkpoints import TINY_SPEECH
from vision_checkpoints import TINY_VISION

from exporter.architectures import ARCHITECTURES
from runtime.tasks import TASK_MODEL_CLASSES, TASKS

TESTS = Path(__file__).resolve().parents[1]


def test_every_architecture_row_has_a_tiny_checkpoint():
    tables = [*TINY_VISION, *TINY_GENERATION, *TINY_SPEECH]
    tiny = {*TINY_CONFIGS, *(model_type for model_type, _ in tables)}
    missing = set(ARCHITECTURES) - tiny
    assert not missing, f"architecture rows without a tiny checkpoint in tests/support: {missing}"


def test_every_task_has_a_test_module_against_transformers():
    for task in TASKS:
        module = TESTS / "runtime" / f"test_{task.replace('-', '_')}.py"
        assert module.is_file(), f"task {task!r} has no test module {module}"
        text = module.read_text()
        assert "reference_pipeline" in text and (
            any(table in text for table in ("TINY_CONFIGS", "TINY_VISION", "TINY_GENERATION",
                                            "TINY_SPEECH"))), (
            f"{module.name} must compare with transformers on every architecture")


def test_every_task_can_be_exported_and_built():
    for row in ARCHITECTURES.values():
        assert set(row.tasks) <= set(TASKS)
    assert set(TASK_MODEL_CLASSES) == set(TASKS)
