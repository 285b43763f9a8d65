"""translation: the runtime on exported encoder-decoder bundles gives what transformers.pipeline
gives on the same tiny checkpoints (tests/support/text_to_text.py does the comparison)."""

from __future__ import annotations

import pytest
from generation_checkpoints import TINY_GENERATION
from text_to_text import compare_with_transformers

TASK = "translation"


@pytest.mark.parametrize("model_type", sorted(m for m, t in TINY_GENERATION if t == TASK))
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    compare_with_transformers(model_type, TASK, runtime_pipeline, reference_pipeline)
