"""Numeric metrics of ``compare``, accumulated over samples one at a time: each output's error
against the reference (max and mean absolute error, cosine, SQNR, a histogram of errors).
"""

from __future__ import annotations

import math

import numpy as np

from runtime.bundle import Bundle
from runtime.errors import (
    EngineError,
)

from . import metrics


class OutputStats:
    """Numeric error of one output over all samples, accumulated one sample at a time."""

    def __init__(self):
        self.signal = self.noise = self.abs_sum = 0.0
        self.count = 0
        self.max_abs = 0.0
        self.nonfinite = 0
        self.cosines: list[float] = []
        self.histogram = np.zeros(len(metrics.histogram_edges()) - 1, np.int64)
        self.zeros = 0

    def add(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        ref = np.asarray(reference, np.float64)
        out = np.asarray(candidate, np.float64)
        if ref.shape != out.shape:
            raise EngineError(
                f"A variant's output has shape {out.shape}, the reference's {ref.shape}. Note: "
                "the variant's graph does not compute the same thing; make it again."
            )
        diff = np.abs(ref - out)
        self.signal += float(np.sum(ref * ref))
        self.noise += float(np.sum(diff * diff))
        self.abs_sum += float(diff.sum())
        self.count += diff.size
        # NaN must win (a plain max() keeps whichever comes first): an output with NaN in it
        # has no finite worst error.
        self.nonfinite += int(np.count_nonzero(~np.isfinite(out)))
        worst = float(diff.max()) if diff.size else 0.0
        if not math.isnan(self.max_abs) and (math.isnan(worst) or worst > self.max_abs):
            self.max_abs = worst
        self.cosines.append(metrics.cosine_similarity(ref, out))
        counts, zeros = metrics.abs_error_histogram(ref, out)
        self.histogram += counts
        self.zeros += zeros

    def summary(self) -> dict:
        sqnr = metrics.sqnr_from_sums(self.signal, self.noise)
        return {
            "max_abs": self.max_abs,
            "mean_abs": self.abs_sum / self.count if self.count else 0.0,
            "cosine_mean": float(np.mean(self.cosines)) if self.cosines else 1.0,
            "cosine_min": float(np.min(self.cosines)) if self.cosines else 1.0,
            # JSON has no infinity: None with identical=True means no error at all.
            "sqnr_db": sqnr if math.isfinite(sqnr) else None,
            "identical": self.noise == 0.0,
            # NaN or infinite values in the variant's output (an fp16 overflow, say): the
            # metrics above are then None.
            "nonfinite": self.nonfinite,
            "histogram": {"log10_edges": metrics.histogram_edges().tolist(),
                          "counts": self.histogram.tolist(), "zeros": self.zeros},
        }


def real_part(array: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The output at real tokens only (``mask`` given for outputs whose leading dims are the
    attention mask's): padding positions hold values nobody reads."""
    array = np.asarray(array)
    if mask is not None and array.ndim >= 2 and array.shape[:2] == mask.shape:
        return array[mask > 0]
    return array


def token_outputs(bundle: Bundle) -> set[str]:
    """The outputs whose two leading dims are named as the attention mask's ([batch,
    sequence]): per-token outputs, where padding is left out. By name, not by shape: a CLIP
    text_embeds [text_batch, 16] must not be masked when its texts are 16 tokens long."""
    inputs, outputs = bundle.graph_specs("model")
    mask = next((spec for spec in inputs if spec.name == "attention_mask"), None)
    if mask is None or len(mask.dims) < 2 or not all(isinstance(d, str) for d in mask.dims[:2]):
        return set()
    return {spec.name for spec in outputs if list(spec.dims[:2]) == list(mask.dims[:2])}
