"""Shared fixtures: tiny checkpoints, their transformers reference pipelines, and runtime
pipelines for them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))

from checkpoints import build_tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """tiny_checkpoint(model_type, task) -> directory of a tiny saved checkpoint (cached)."""
    cache = {}

    def make(model_type: str, task: str) -> Path:
        key = (model_type, task)
        if key not in cache:
            directory = tmp_path_factory.mktemp(f"ckpt-{model_type}-{task}")
            cache[key] = build_tiny_checkpoint(model_type, task, directory)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def reference_pipeline(tiny_checkpoint):
    """reference_pipeline(model_type, task) -> transformers.pipeline on the tiny checkpoint."""
    cache = {}

    def make(model_type: str, task: str):
        if (model_type, task) not in cache:
            import transformers

            cache[model_type, task] = transformers.pipeline(
                task, model=str(tiny_checkpoint(model_type, task)), device="cpu"
            )
        return cache[model_type, task]

    return make


@pytest.fixture(scope="session")
def runtime_pipeline(tiny_checkpoint, reference_pipeline):
    """runtime_pipeline(model_type, task, **defaults) -> the runtime's pipeline for the same
    checkpoint. (Backed by the PyTorch model until the exporter lands; then by a bundle.)"""

    def make(model_type: str, task: str, **defaults):
        from runtime.tasks import TASKS
        from runtime.tokenizer import TextTokenizer
        from torch_engine import TorchEngine

        reference = reference_pipeline(model_type, task)
        return TASKS[task](
            config=reference.model.config.to_dict(),
            engine=TorchEngine(reference.model),
            tokenizer=TextTokenizer.from_dir(tiny_checkpoint(model_type, task)),
            **defaults,
        )

    return make
