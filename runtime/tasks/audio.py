"""What the audio tasks share: signals in (files, bytes, arrays, {"raw", "sampling_rate"}
dicts), resampled to the model's rate, through the bundle's feature extractor."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..audio import load_audios
from .base import Pipeline


class AudioPipeline(Pipeline):
    """Base of the pipelines that read audio (``runtime.audio.load_audios``)."""

    preprocessors: ClassVar[tuple[str, ...]] = ("feature_extractor",)

    def signals(self, inputs) -> tuple[list[np.ndarray], bool]:
        """(mono float32 signals at the feature extractor's rate, whether one was given)."""
        return load_audios(inputs, self.feature_extractor.sampling_rate)

    def features(self, signals, **options) -> dict[str, np.ndarray]:
        """The feature extractor's arrays, holding only the graph's inputs."""
        arrays = self.feature_extractor(signals, **options)
        return {name: arrays[name] for name in arrays if name in self.input_names}

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Input samples per output frame: the product of the conv feature encoder's strides
        (320 for wav2vec2-base), as transformers' config property computes it."""
        return int(np.prod(self.config.get("conv_stride") or [1]))
