"""Which function builds each tiny checkpoint: (table of (model_type, task) keys, builder)
pairs. A key in none of them is built by ``checkpoints.build_tiny_checkpoint`` (TINY_CONFIGS).
tests/conftest.py builds from this list; tests/exporter/test_coverage.py checks that every
architecture row has a key in it. A new table of tiny checkpoints is one line here."""

from __future__ import annotations

from document_checkpoints import TINY_DOCUMENT, build_tiny_document_checkpoint
from generation_checkpoints import TINY_GENERATION, build_tiny_generation_checkpoint
from long_text_checkpoints import TINY_LONG_TEXT, build_tiny_long_text_checkpoint
from multimodal_checkpoints import TINY_MULTIMODAL, build_tiny_multimodal_checkpoint
from owl_checkpoints import TINY_OWL, build_tiny_owl_checkpoint
from speech_checkpoints import TINY_SPEECH, build_tiny_speech_checkpoint
from speech_to_text_checkpoints import TINY_SPEECH_TO_TEXT, build_tiny_speech_to_text_checkpoint
from trajectory_checkpoints import TINY_TRAJECTORY, build_tiny_trajectory_checkpoint
from translation_checkpoints import TINY_TRANSLATION, build_tiny_translation_checkpoint
from vision_checkpoints import TINY_VISION, build_tiny_vision_checkpoint
from vision_more_checkpoints import TINY_VISION_MORE, build_tiny_vision_more_checkpoint

TINY_TABLES = [
    (TINY_VISION, build_tiny_vision_checkpoint),
    (TINY_DOCUMENT, build_tiny_document_checkpoint),
    (TINY_GENERATION, build_tiny_generation_checkpoint),
    (TINY_LONG_TEXT, build_tiny_long_text_checkpoint),
    (TINY_SPEECH, build_tiny_speech_checkpoint),
    (TINY_SPEECH_TO_TEXT, build_tiny_speech_to_text_checkpoint),
    (TINY_MULTIMODAL, build_tiny_multimodal_checkpoint),
    (TINY_OWL, build_tiny_owl_checkpoint),
    (TINY_TRAJECTORY, build_tiny_trajectory_checkpoint),
    (TINY_TRANSLATION, build_tiny_translation_checkpoint),
    (TINY_VISION_MORE, build_tiny_vision_more_checkpoint),
]
