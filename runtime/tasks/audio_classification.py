"""The audio-classification task: labels with scores for audio, as transformers'
AudioClassificationPipeline gives them (Wav2Vec2, HuBERT)."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from ..errors import EngineError, InputError, did_you_mean
from .audio import AudioPipeline
from .base import default_labels, sigmoid, softmax
from .text import logits_of

_FUNCTIONS = {"softmax": softmax, "sigmoid": sigmoid, "none": lambda x: x}


class AudioClassificationPipeline(AudioPipeline):
    """``[{"score", "label"}]`` per signal, best first: every label by default (as
    transformers, whose top_k defaults to the number of labels), ``top_k`` of them when given.

    >>> classify = pipeline("audio-classification", model="hubert-ks")      # doctest: +SKIP
    >>> classify("yes.wav", top_k=1)                                         # doctest: +SKIP
    [{'score': 0.97, 'label': 'yes'}]
    """

    task = "audio-classification"
    parameters = {"top_k": None, "function_to_apply": "softmax"}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.labels = self.id2label or default_labels(self.config)
        self._check(self.defaults)

    def __call__(self, inputs, **kwargs):
        top_k, function = self._check(self.arguments(kwargs))
        signals, single = self.signals(inputs)
        results = []
        for signal in signals:  # one at a time, as transformers does (no padding)
            logits = logits_of(self.engine.run(self.features([signal])))[0]
            missing = [i for i in range(logits.shape[-1]) if i not in self.labels]
            if missing:
                raise EngineError(
                    f"The model gives {logits.shape[-1]} scores, but config.json has no label "
                    f"for {missing[:10]}. Note: the bundle's id2label must name every class."
                )
            scores = _FUNCTIONS[function](logits)
            order = np.argsort(-scores, kind="stable")[:top_k]
            results.append([{"score": scores[i].item(), "label": self.labels[int(i)]}
                            for i in order])
        return results[0] if single else results

    def _check(self, args) -> tuple[int, str]:
        top_k = args["top_k"]
        if top_k is None:
            top_k = len(self.labels)
        if not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k < 1:
            raise InputError(f"top_k must be a positive int or None, got {top_k!r}. Note: None "
                             "gives every label.")
        function = args["function_to_apply"]
        if function not in _FUNCTIONS:
            raise InputError(f"Unknown function_to_apply {function!r}. "
                             + did_you_mean(str(function), _FUNCTIONS))
        return min(int(top_k), len(self.labels)), function
