"""What the audio tasks share: signals in (files, bytes, arrays, {"raw", "sampling_rate"}
dicts), resampled to the model's rate, through the bundle's feature extractor."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..audio.loading import load_audios
from ..errors import BundleError
from .base import Pipeline

# The most input samples one output frame of a conv feature encoder may stand for: wav2vec2,
# HuBERT and WavLM take 320 (20 ms at 16 kHz); a frame of a minute would be 960,000.
MAX_INPUTS_TO_LOGITS_RATIO = 2**20


class AudioPipeline(Pipeline):
    """Base of the pipelines that read audio (``runtime.audio.loading.load_audios``)."""

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
        (320 for wav2vec2-base), as transformers' config property computes it; 1 without
        conv_stride (Whisper). Timestamps multiply by it and chunk lengths are aligned to it."""
        strides = self.config.get("conv_stride")
        if strides is None:
            return 1
        ratio = 1
        for stride in strides if isinstance(strides, list) else [None]:
            if (not isinstance(stride, int) or isinstance(stride, bool) or stride < 1
                    or ratio * stride > MAX_INPUTS_TO_LOGITS_RATIO):
                raise BundleError(
                    f"config.json has conv_stride={repr(strides)[:80]}: it must be a list of "
                    "positive integers, the strides of the feature encoder's convolutions, "
                    f"whose product is at most {MAX_INPUTS_TO_LOGITS_RATIO}. Note: fix it in the "
                    "bundle's config.json (wav2vec2's is [5, 2, 2, 2, 2, 2, 2]), or export the "
                    "checkpoint again.")
            ratio *= stride
        return ratio
