"""Sentence-transformers pooling and normalization in numpy, configured from the checkpoint's
own ``modules.json``, ``1_Pooling/config.json`` and ``sentence_bert_config.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BundleError, InputError, did_you_mean

# sentence-transformers concatenates the enabled modes in this order.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")
_CONFIG_KEYS = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}
_KNOWN_MODULES = ("Transformer", "Pooling", "Normalize")


@dataclass(frozen=True)
class SentencePooling:
    """How token embeddings become one sentence embedding.

    >>> pool = SentencePooling(modes=("mean",), normalize=True)
    >>> pool(np.ones((1, 3, 2), np.float32), np.array([[1, 1, 0]])).round(4).tolist()
    [[0.7071, 0.7071]]
    """

    modes: tuple[str, ...]
    normalize: bool = False
    max_seq_length: int | None = None

    def __post_init__(self):
        for mode in self.modes:
            if mode not in POOLING_MODES:
                raise InputError(
                    f"Unknown pooling mode {mode!r}. " + did_you_mean(mode, POOLING_MODES)
                )
        if not self.modes:
            raise InputError(f"No pooling mode given. Note: known modes are {POOLING_MODES}.")

    @classmethod
    def from_dir(cls, directory: str | Path) -> SentencePooling | None:
        """The pooling of a sentence-transformers checkpoint or bundle; None when the directory
        holds a plain transformers model (no modules.json)."""
        directory = Path(directory)
        if not (directory / "modules.json").is_file():
            return None
        modules = json.loads((directory / "modules.json").read_text(encoding="utf-8"))
        kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        unknown = [k for k in kinds if k not in _KNOWN_MODULES]
        if unknown:
            raise BundleError(
                f"{directory / 'modules.json'} uses sentence-transformers modules {unknown} that "
                f"edgeport does not run yet. Note: supported modules are {_KNOWN_MODULES}."
            )
        pooling_dirs = [m.get("path", "") for m in modules if m["type"].endswith("Pooling")]
        if not pooling_dirs:
            return None
        config = json.loads((directory / pooling_dirs[0] / "config.json").read_text("utf-8"))
        modes = tuple(m for m in POOLING_MODES if config.get(_CONFIG_KEYS[m]))
        st_config = directory / "sentence_bert_config.json"
        max_len = None
        if st_config.is_file():
            max_len = json.loads(st_config.read_text("utf-8")).get("max_seq_length")
        return cls(modes=modes, normalize="Normalize" in kinds, max_seq_length=max_len)

    def __call__(self, hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """[batch, sequence, hidden] token embeddings -> [batch, features] sentence embeddings."""
        hidden = hidden.astype(np.float32, copy=False)
        mask = attention_mask.astype(np.float32)[..., None]
        counts = np.clip(mask.sum(axis=1), 1e-9, None)
        parts = []
        for mode in self.modes:
            if mode == "cls":
                parts.append(hidden[:, 0])
            elif mode == "max":
                parts.append(np.where(mask > 0, hidden, -1e9).max(axis=1))
            elif mode == "mean":
                parts.append((hidden * mask).sum(axis=1) / counts)
            elif mode == "mean_sqrt_len":
                parts.append((hidden * mask).sum(axis=1) / np.sqrt(counts))
            elif mode == "weightedmean":
                positions = np.arange(1, hidden.shape[1] + 1, dtype=np.float32)
                weights = positions[None, :, None] * mask
                total = np.clip(weights.sum(axis=1), 1e-9, None)
                parts.append((hidden * weights).sum(axis=1) / total)
            else:  # lasttoken: the last position the mask keeps, on either padding side
                last = hidden.shape[1] - 1 - np.argmax(attention_mask[:, ::-1], axis=1)
                parts.append(hidden[np.arange(hidden.shape[0]), last])
        pooled = np.concatenate(parts, axis=-1)
        if self.normalize:
            norms = np.linalg.norm(pooled, axis=-1, keepdims=True)
            pooled = pooled / np.maximum(norms, 1e-12)
        return pooled
