"""Per-MatMul calibration of static int8 (QDQ): for each weight MatMul's input, the SmoothQuant
strength and the clipping range that make its product closest to the float one.

TensorRT's int8 (and static-int8's QDQ) quantizes each activation with one fixed range. A
transformer's MatMul inputs hold outliers of two kinds: a few channels far above the rest (the
LayerNorm outputs feeding Q/K/V and the FFN), and a few tokens ([CLS], [SEP]) whose GELU outputs
reach 5-10x the others'. Range-only calibrators (min/max, entropy, percentile) look at the
activation alone; here each choice is scored by what it does to the product:

    error(alpha, clip) = sum over the MatMuls reading x of
        || Q(x / c, clip * max|x / c|) @ Q_channel(c * W) - x @ W ||^2 / || x @ W ||^2

with ``c = max|x_j|^alpha / max|W_j|^(1 - alpha)`` (SmoothQuant, one-sided: only the channels
above the median shrink; alpha None: no smoothing), ``Q`` symmetric int8 per tensor,
``Q_channel`` symmetric int8 per output channel (the weights' form), on rows sampled from the
calibration data. Each setting is scored by two-fold cross validation (set from one half of
the samples, measured on the other), so a setting that fits the calibration data's own peaks
too closely loses. Of the settings that err at most FLOOR (or the least, where none does),
the mildest is applied: smoothing shrinks a tensor's range to its calibration peaks, leaving
no headroom for inputs unlike the calibration data, so an input that plain min/max already
quantizes well stays as it is. Each input's (alpha, clip) is applied: its smoothing
(``outliers.smooth_matmuls``) and its range (ONNX Runtime's TensorQuantOverrides
``rmin``/``rmax``).

Measured on all-MiniLM-L6-v2 (32 calibration sentences, 58 held out), min cosine of the
embeddings to fp32: 0.890 with min/max ranges, 0.957 with alpha at most 0.5, 0.981 with
alpha up to 0.75 scored on all the data, 0.984 with cross validation, 0.986 one-sided and
0.988 with the floor (23 of its 24 inputs smoothed). The floor is what makes it the default:
without it, a tiny random BERT question-answering model calibrated on templated sentences
moved its logits 0.24 of their range on other texts (min/max: 0.034); with it, 0.037 (3 of
9 inputs smoothed). Floors of 5e-4 and 1e-3 cost MiniLM 0.977 and 0.941: small product
errors add up over 24 inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

ALPHAS: tuple[float | None, ...] = (None, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9)
CLIPS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
# The product error (relative, squared) below which an input is left as it is: int8's own
# noise on a well-spread tensor is about 1e-4 (a step of 1/127 of a range of 4 standard
# deviations), so an error under this floor leaves little to gain and headroom to lose.
FLOOR = 2e-4
MAX_ROWS = 1024  # rows of each input the search runs on (sampled evenly over the data)
_QMAX = 127.0


def sample_rows(session, names: Sequence[str], feeds: Iterable[Mapping], inputs: Iterable[str],
                max_rows: int = MAX_ROWS, seed: int = 0) -> dict[str, dict]:
    """Over ``feeds``, from ``session`` (a ``outliers.with_outputs`` graph's), for each tensor
    of ``names``: ``{"rows"``: up to ``max_rows`` rows (last axis: channels) sampled uniformly
    (reservoir), ``"folds"``: the fold (0 or 1: the parity of the sample) of each kept row,
    ``"peaks"``: the max |value| per channel of each fold, over every row``}``."""
    rng = np.random.default_rng(seed)
    inputs = list(inputs)
    found: dict[str, dict] = {}
    for number, feed in enumerate(feeds):
        values = session.run(list(names), {k: feed[k] for k in inputs})
        fold = number % 2
        for name, value in zip(names, values):
            value = np.asarray(value, np.float32).reshape(-1, value.shape[-1])
            entry = found.setdefault(name, {"rows": None, "folds": None, "seen": 0,
                                            "peaks": np.zeros((2, value.shape[1]), np.float32)})
            entry["peaks"][fold] = np.maximum(entry["peaks"][fold], np.abs(value).max(0))
            _reservoir(entry, value, fold, max_rows, rng)
    for entry in found.values():
        del entry["seen"]
    return found


def _reservoir(entry: dict, new: np.ndarray, fold: int, size: int, rng) -> None:
    """Algorithm R over the rows of ``new``: a uniform sample of ``size`` of all rows seen."""
    if entry["rows"] is None:
        entry["rows"] = np.empty((0, new.shape[1]), np.float32)
        entry["folds"] = np.empty(0, np.int8)
    room = max(0, size - len(entry["rows"]))
    if room:
        entry["rows"] = np.concatenate([entry["rows"], new[:room]])
        entry["folds"] = np.concatenate([entry["folds"], np.full(len(new[:room]), fold, np.int8)])
        entry["seen"] += len(new[:room])
    for row in new[room:]:
        entry["seen"] += 1
        slot = rng.integers(0, entry["seen"])
        if slot < size:
            entry["rows"][slot] = row
            entry["folds"][slot] = fold


def _quantize(x: np.ndarray, scale) -> np.ndarray:
    return np.clip(np.rint(x / scale), -_QMAX, _QMAX) * scale


def _weights_int8(weight: np.ndarray) -> np.ndarray:
    """``weight`` (in x out) quantized per output channel, symmetric, max-abs ranges."""
    scale = np.maximum(np.abs(weight).max(0, keepdims=True), 1e-12) / _QMAX
    return _quantize(weight, scale)


def factors(peak: np.ndarray, weights: Sequence[np.ndarray], alpha: float | None,
            one_sided: bool = True) -> np.ndarray:
    """SmoothQuant's per-channel divisors of the input, ``max|x_j|^alpha / max|W_j|^(1 -
    alpha)`` (ones for ``alpha`` None), the weights that share the input taken together.
    ``one_sided``: scaled so that the median channel's is 1 and none below 1, so only the
    channels that peak above the rest shrink (a channel quiet in the calibration data is not
    magnified, in case it is not quiet later); else normalized to a geometric mean of 1
    (SmoothQuant's, for a fused Attention's input: dynamic int8 sets its ranges at run time)."""
    if alpha is None:
        return np.ones_like(peak, dtype=np.float64)
    rows = np.maximum(np.max([np.abs(w).max(1) for w in weights], 0).astype(np.float64), 1e-8)
    factor = np.clip(np.maximum(peak.astype(np.float64), 1e-8) ** alpha
                     / rows ** (1 - alpha), 1e-4, 1e4)
    if one_sided:
        return np.maximum(factor / np.median(factor), 1.0)
    return factor / np.exp(np.log(factor).mean())


def best_setting(sample: Mapping, weights: Sequence[np.ndarray],
                 alphas: Sequence[float | None] = ALPHAS, clips: Sequence[float] = CLIPS,
                 floor: float = FLOOR) -> dict:
    """The mildest (alpha, clip) whose products err at most ``floor`` (or the least, when none
    does) on data it was not set from: each fold's rows are quantized with the smoothing and
    range of the other fold's peaks (two-fold cross validation: a setting that fits the
    calibration data's own peaks too closely, clipping anything above them, scores badly).
    Mildest: the first in ``alphas`` then ``clips`` order, so an input that int8 already
    represents well keeps its plain min/max range, and its full headroom for inputs unlike the
    calibration data. ``sample``: ``sample_rows``' entry. Returns ``{"alpha", "clip",
    "range", "error", "error_minmax"}``: ``range``, the clipped max |x / c| over all the data,
    to quantize with; ``error_minmax``, unsmoothed and unclipped."""
    rows, folds, peaks = sample["rows"].astype(np.float64), sample["folds"], sample["peaks"]
    peak = peaks.max(0)
    parts = [(rows[folds == 1 - k], peaks[k]) for k in (0, 1)
             if np.any(folds == 1 - k) and np.any(peaks[k])] or [(rows, peak)]
    references = [[part @ w.astype(np.float64) for w in weights] for part, _ in parts]
    norm = sum(float(np.sum(r * r)) for refs in references for r in refs) or 1.0
    errors = np.zeros((len(alphas), len(clips)))
    for row, alpha in enumerate(alphas):
        for (part, fold_peak), refs in zip(parts, references):
            factor = factors(fold_peak, weights, alpha)
            quantized = [_weights_int8((w * factor[:, None]).astype(np.float64))
                         for w in weights]
            scaled = part / factor
            top = float(np.max(fold_peak / factor))
            for column, clip in enumerate(clips):
                x = _quantize(scaled, max(clip * top, 1e-12) / _QMAX)
                errors[row, column] += sum(float(np.sum((x @ q - r) ** 2))
                                           for q, r in zip(quantized, refs))
    errors /= norm
    good = np.argwhere(errors <= max(float(errors.min()), floor))
    row, column = (int(i) for i in good[0])  # argwhere is in row-major order: the mildest
    alpha = alphas[row]
    top = float(np.max(peak / factors(peak, weights, alpha)))
    plain = ((list(alphas).index(None), list(clips).index(1.0))
             if None in alphas and 1.0 in clips else None)
    return {"alpha": alpha, "clip": clips[column], "range": clips[column] * top,
            "error": float(errors[row, column]),
            "error_minmax": float(errors[plain]) if plain else None}
