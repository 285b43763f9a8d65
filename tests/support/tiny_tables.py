"""Which function builds each tiny checkpoint: (table of (model_type, task) keys, builder)
pairs. A key in none of them is built by ``checkpoints.build_tiny_checkpoint`` (TINY_CONFIGS).
tests/conftest.py builds from this list; tests/exporter/test_coverage.py checks that every
architecture row has a key in it. A new table of tiny checkpoints is one line here."""

from __future__ import annotations

from generation_checkpoints import TINY_GENERATION, build_tiny_generation_checkpoint
from speech_checkpoints import TINY_SPEECH, build_tiny_speech_checkpoint
from vision_checkpoints import TINY_VISION, build_tiny_vision_checkpoint

TINY_TABLES = [
    (TINY_VISION, build_tiny_vision_checkpoint),
    (TINY_GENERATION, build_tiny_generation_checkpoint),
    (TINY_SPEECH, build_tiny_speech_checkpoint),
]
