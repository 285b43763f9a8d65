"""Sentence-transformers pooling and normalization in numpy, configured from the checkpoint's
own ``modules.json``, ``1_Pooling/config.json`` and ``sentence_bert_config.json``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BundleError, InputError, did_you_mean
from ..files import inside, read_json_file

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
    >>> pool(np.ones((1, 3, 2), np.float32), np.array([[1, 1, 0]])).round(4)
    array([[0.7071, 0.7071]], dtype=float32)
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
        holds a plain transformers model (no modules.json). The files are checked as they are
        read: a module folder must stay inside ``directory``."""
        directory = Path(directory)
        if not (directory / "modules.json").exists():
            return None
        modules = read_json_file(directory / "modules.json", "modules.json", error=BundleError,
                                 expect=list)
        kinds, folders = [], []
        for index, module in enumerate(modules):
            kind, folder = _module(directory, index, module)
            kinds.append(kind)
            folders.append(folder)
        unknown = [k for k in kinds if k not in _KNOWN_MODULES]
        if unknown:
            raise BundleError(
                f"{directory / 'modules.json'} uses sentence-transformers modules {unknown} that "
                f"edgeport does not run yet. Note: supported modules are {_KNOWN_MODULES}."
            )
        pooling_dirs = [folder for kind, folder in zip(kinds, folders) if kind == "Pooling"]
        if not pooling_dirs:
            return None
        config = read_json_file(pooling_dirs[0] / "config.json", "The Pooling module's config.json",
                                error=BundleError, expect=dict)
        modes = tuple(m for m in POOLING_MODES if config.get(_CONFIG_KEYS[m]))
        st_config = directory / "sentence_bert_config.json"
        max_len = None
        if st_config.exists():
            max_len = read_json_file(st_config, "sentence_bert_config.json", error=BundleError,
                                     expect=dict).get("max_seq_length")
            if max_len is not None and (not isinstance(max_len, int) or isinstance(max_len, bool)
                                        or max_len < 1):
                raise BundleError(
                    f"sentence_bert_config.json has max_seq_length={repr(max_len)[:80]}: it must "
                    "be a positive number of tokens (or null). Note: fix it in "
                    "sentence_bert_config.json."
                )
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


def _module(directory: Path, index: int, module) -> tuple[str, Path]:
    """(the class name of entry ``index`` of modules.json, the folder it names, inside
    ``directory``: "" is the directory itself, as the Transformer module's)."""
    note = ("Note: each entry of modules.json is an object with a string \"type\" (like "
            "\"sentence_transformers.models.Pooling\") and a relative \"path\"; fix the file or "
            "export the checkpoint again.")
    if not isinstance(module, dict):
        raise BundleError(f"modules.json entry {index} is {repr(module)[:80]}, not an object. "
                          + note)
    kind, path = module.get("type"), module.get("path", "")
    if not isinstance(kind, str):
        raise BundleError(f"modules.json entry {index} has type={repr(kind)[:80]}, not a "
                          "string. " + note)
    if not isinstance(path, str):
        raise BundleError(f"modules.json entry {index} has path={repr(path)[:80]}, not a "
                          "string. " + note)
    folder = (directory.resolve() if path == "" else
              inside(directory, path, what=f"modules.json entry {index} path", directory=True))
    return kind.rsplit(".", 1)[-1], folder
