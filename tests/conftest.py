"""Shared fixtures: tiny checkpoints, their transformers reference pipelines, and runtime
pipelines for them."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))
# The runtime remembers verified checksums in a per-user cache: the tests keep theirs apart
# (subprocesses inherit it).
os.environ["EDGEPORT_CACHE"] = tempfile.mkdtemp(prefix="edgeport-test-cache-")

from checkpoints import build_tiny_checkpoint  # noqa: E402
from tiny_tables import TINY_TABLES  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """tiny_checkpoint(model_type, task) -> directory of a tiny saved checkpoint (cached)."""
    cache = {}

    def make(model_type: str, task: str) -> Path:
        key = (model_type, task)
        if key not in cache:
            directory = tmp_path_factory.mktemp(f"ckpt-{model_type}-{task}")
            build = next((builder for table, builder in TINY_TABLES if key in table),
                         build_tiny_checkpoint)
            cache[key] = build(model_type, task, directory)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def reference_pipeline(tiny_checkpoint):
    """reference_pipeline(model_type, task, task_name=None) -> transformers.pipeline on the
    tiny checkpoint (``task_name``: the pipeline's name for it, e.g. translation_en_to_de)."""
    cache = {}

    def make(model_type: str, task: str, task_name: str | None = None):
        key = (model_type, task, task_name)
        if key not in cache:
            import transformers

            cache[key] = transformers.pipeline(
                task_name or task, model=str(tiny_checkpoint(model_type, task)), device="cpu"
            )
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint, tmp_path_factory):
    """tiny_bundle(model_type, task) -> a bundle exported from the tiny checkpoint (cached)."""
    cache = {}

    def make(model_type: str, task: str) -> Path:
        if (model_type, task) not in cache:
            from exporter import bundle_from_checkpoint

            target = tmp_path_factory.mktemp(f"bundle-{model_type}-{task}") / "bundle"
            cache[model_type, task] = bundle_from_checkpoint(
                tiny_checkpoint(model_type, task), target, task=task
            )
        return cache[model_type, task]

    return make


@pytest.fixture(scope="session")
def runtime_pipeline(tiny_bundle):
    """runtime_pipeline(model_type, task, **defaults) -> runtime.pipeline on the exported
    bundle of the same tiny checkpoint the reference pipeline uses."""

    def make(model_type: str, task: str, task_name: str | None = None, **defaults):
        from runtime import pipeline

        return pipeline(task_name or task, model=tiny_bundle(model_type, task), **defaults)

    return make


SHORT_TEXTS = ["a fine day", "not good at all", "the cat sat on the mat", "what a lovely film",
               "terrible service and cold food", "the train was late again", "I love it",
               "meh, it was fine I guess"]


@pytest.fixture(scope="session")
def quantized_tiny_bert(tiny_bundle, tmp_path_factory):
    """The tiny BERT classifier with a static-int8 ("qdq") and a dynamic-int8 ("int8")
    variant made by edgeport's recipes; its calibration texts beside it (calibration.txt).
    Shared: copy it before changing it."""
    from calibration import variant_from_bundle

    folder = tmp_path_factory.mktemp("quantized-bert")
    path = shutil.copytree(tiny_bundle("bert", "text-classification"), folder / "bundle")
    (folder / "calibration.txt").write_text("\n".join(SHORT_TEXTS * 2))
    variant_from_bundle(path, "static-int8", calibration=folder / "calibration.txt", samples=16)
    variant_from_bundle(path, "dynamic-int8")
    return path


@pytest.fixture(scope="session")
def minilm_bundle(tmp_path_factory):
    """The real all-MiniLM-L6-v2 exported to a bundle (once per session)."""
    from checkpoints import minilm_dir

    from exporter import bundle_from_checkpoint

    return bundle_from_checkpoint(minilm_dir(), tmp_path_factory.mktemp("minilm") / "bundle")
