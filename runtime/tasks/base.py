"""What every task pipeline shares: argument checks, input normalization, text feeds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from ..backends.engine import Engine
from ..errors import BundleError, InputError, did_you_mean
from ..text.global_attention import global_attention_mask
from ..text.tokenizer import TextTokenizer


class Pipeline:
    """Base of the task pipelines: preprocessing -> engine -> postprocessing.

    A subclass sets ``task``, ``parameters`` (the call arguments it accepts, with their
    defaults) and ``preprocessors`` (what prepares its inputs), and implements ``__call__``.
    Arguments given to ``pipeline(...)`` become defaults for every call, as in transformers.
    """

    task: ClassVar[str] = ""
    generates: ClassVar[bool] = False  # runs a GenerationModel (pipeline_from_bundle makes it)
    parameters: ClassVar[Mapping[str, Any]] = {}
    preprocessors: ClassVar[tuple[str, ...]] = ("tokenizer",)
    _PREPROCESSOR_FILES = {"tokenizer": "tokenizer.json",
                           "image_processor": "preprocessor_config.json",
                           "feature_extractor": "preprocessor_config.json"}

    def __init__(
        self,
        *,
        config: Mapping[str, Any],
        engine: Engine,
        tokenizer: TextTokenizer | None = None,
        image_processor=None,
        feature_extractor=None,
        bundle=None,
        **defaults,
    ):
        given = {"tokenizer": tokenizer, "image_processor": image_processor,
                 "feature_extractor": feature_extractor}
        for name in self.preprocessors:
            if given[name] is None:
                raise InputError(
                    f"The {self.task} pipeline needs a {name.replace('_', ' ')}, and none was "
                    f"given. Note: load it from a bundle exported with its "
                    f"{self._PREPROCESSOR_FILES[name]}."
                )
        self.config = dict(config)
        self.engine = engine
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.feature_extractor = feature_extractor
        self.bundle = bundle
        self.defaults = self.arguments(defaults, base={})
        self.input_names = {spec.name for spec in engine.inputs}
        self.id2label = config_id2label(self.config)

    def arguments(self, given: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict:
        """Defaults, overridden by pipeline(...) arguments, overridden by call arguments. An
        unknown name is an error (transformers would ignore it silently)."""
        for name in given:
            if name not in self.parameters:
                raise InputError(
                    f"The {self.task} pipeline takes no argument {name!r}. "
                    + did_you_mean(name, self.parameters)
                )
        merged = dict(self.parameters)
        merged.update(self.defaults if base is None else base)
        merged.update(given)
        return merged

    # --- inputs -----------------------------------------------------------------------------
    @staticmethod
    def texts(inputs, note: str = "Note: pass a string or a list of strings."
              ) -> tuple[list[str], bool]:
        """(list of texts, whether a single text was given); a clear error for anything else."""
        if isinstance(inputs, str):
            return [inputs], True
        if isinstance(inputs, Iterable) and not isinstance(inputs, (bytes, Mapping)):
            items = list(inputs)
            for item in items:
                if not isinstance(item, str):
                    raise InputError(
                        f"Expected a string or a list of strings, got a list holding "
                        f"{type(item).__name__}: {item!r:.80}. {note}"
                    )
            return items, False
        raise InputError(
            f"Expected a string or a list of strings, got {type(inputs).__name__}: "
            f"{inputs!r:.80}. {note}"
        )

    # --- feeds ------------------------------------------------------------------------------
    @property
    def max_positions(self) -> int | None:
        """How many tokens the model takes: the tokenizer's model_max_length, else the config's
        position embeddings."""
        if self.tokenizer is not None and self.tokenizer.model_max_length:
            return self.tokenizer.model_max_length
        return config_count(self.config, "max_position_embeddings")

    def text_feed(self, encodings, *, pad_to: int | None = None) -> dict[str, np.ndarray]:
        """The feed for a batch of encodings, holding only the inputs the graph declares.
        Standard inputs the tokenizer does not make (position_ids) are filled in here, the one
        place that does so."""
        padded = self.tokenizer.pad(encodings, pad_to=pad_to)
        feed = {name: padded[name] for name in padded if name in self.input_names}
        if "position_ids" in self.input_names:
            mask = padded["attention_mask"]
            feed["position_ids"] = np.clip(np.cumsum(mask, axis=1) - 1, 0, None).astype(np.int64)
        if "global_attention_mask" in self.input_names:  # Longformer's, as its head makes it
            preprocessing = (self.bundle.manifest.get("preprocessing") if self.bundle else None)
            feed["global_attention_mask"] = global_attention_mask(
                (preprocessing or {}).get("global_attention"), padded["input_ids"],
                sep_token_id=self.config.get("sep_token_id"))
        return feed

    def run_text(self, encodings, **kwargs) -> dict[str, np.ndarray]:
        return self.engine.run(self.text_feed(encodings, **kwargs))


def config_count(config: Mapping[str, Any], key: str, *, where: str = "config.json"
                 ) -> int | None:
    """config.json's ``key``, a positive integer (a size, a number of positions); None when
    absent or null. The file comes with the bundle: anything else is a BundleError. ``where``
    names the part of the file that holds it ("config.json's text_config")."""
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BundleError(f"{where} has {key}={repr(value)[:80]}: it must be a positive "
                          "integer. Note: fix it in the bundle's config.json, or export the "
                          "checkpoint again.")
    return value


# The most classes config.json's num_labels may name when id2label is absent (LABEL_0, ...):
# ImageNet-22k has 21,841; a crafted 10**12 would build a dict until memory runs out.
MAX_LABELS = 2**20


def config_id2label(config: Mapping[str, Any]) -> dict[int, str]:
    """config.json's id2label by integer id (JSON keys are strings: "0"). Its names are
    strings: the pipelines return them, and token-classification reads their B-/I- prefixes."""
    value = config.get("id2label")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BundleError(f"config.json has an id2label that is not a JSON object: "
                          f"{repr(value)[:80]}. Note: it maps class ids to names, like "
                          '{"0": "NEGATIVE", "1": "POSITIVE"}; fix it in the bundle\'s '
                          "config.json.")
    if len(value) > MAX_LABELS:
        raise BundleError(f"config.json's id2label names {len(value)} classes, over the limit "
                          f"of {MAX_LABELS}. Note: fix it in the bundle's config.json.")
    labels = {}
    for key, label in value.items():
        try:
            labels[int(key)] = label
        except (TypeError, ValueError):
            raise BundleError(f"config.json's id2label has the key {repr(key)[:80]}, not a class "
                              "id. Note: its keys are integers, like \"0\"; fix it in the "
                              "bundle's config.json.") from None
        if not isinstance(label, str):
            raise BundleError(f"config.json's id2label has {repr(label)[:80]} for class "
                              f"{repr(key)[:20]}, not a name (a string). Note: its values are "
                              'class names, like {"0": "NEGATIVE"}; fix it in the bundle\'s '
                              "config.json.")
    return labels


def config_section(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """config.json's ``key``, a nested config (CLIP's text_config, vision_config); {} when
    absent or null."""
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BundleError(f"config.json has {key}={repr(value)[:80]}: it must be a JSON object "
                          "(the config of a part of the model). Note: fix it in the bundle's "
                          "config.json, or export the checkpoint again.")
    return value


def config_text(config: Mapping[str, Any], key: str, *, where: str = "config.json"
                ) -> str | None:
    """config.json's ``key``, a string (T5's task prefix); None when absent or null."""
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise BundleError(f"{where} has {key}={repr(value)[:80]}: it must be a string. Note: "
                          "fix it in the bundle's config.json, or export the checkpoint again.")
    return value


def default_labels(config: Mapping[str, Any]) -> dict[int, str]:
    """transformers' names for the classes of a config.json without id2label: LABEL_0 to
    LABEL_{num_labels - 1} (num_labels defaults to 2)."""
    count = config_count(config, "num_labels") or 2
    if count > MAX_LABELS:
        raise BundleError(f"config.json has num_labels={count}, over the limit of {MAX_LABELS}. "
                          "Note: fix it in the bundle's config.json.")
    return {i: f"LABEL_{i}" for i in range(count)}


def config_positions(config: Mapping[str, Any], keys: tuple[str, ...]
                     ) -> tuple[int | None, str | None]:
    """(the first of ``keys`` that config.json sets, as ``config_count`` reads it, and that
    key), or (None, None)."""
    for key in keys:
        value = config_count(config, key)
        if value is not None:
            return value, key
    return None, None


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
