"""What every task pipeline shares: argument checks, input normalization, text feeds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from ..engine import Engine
from ..errors import InputError, did_you_mean
from ..tokenizer import TextTokenizer


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
        self.id2label = {int(k): v for k, v in self.config.get("id2label", {}).items()}

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
        return self.config.get("max_position_embeddings")

    def text_feed(self, encodings, *, pad_to: int | None = None) -> dict[str, np.ndarray]:
        """The feed for a batch of encodings, holding only the inputs the graph declares.
        Standard inputs the tokenizer does not make (position_ids) are filled in here, the one
        place that does so."""
        padded = self.tokenizer.pad(encodings, pad_to=pad_to)
        feed = {name: padded[name] for name in padded if name in self.input_names}
        if "position_ids" in self.input_names:
            mask = padded["attention_mask"]
            feed["position_ids"] = np.clip(np.cumsum(mask, axis=1) - 1, 0, None).astype(np.int64)
        return feed

    def run_text(self, encodings, **kwargs) -> dict[str, np.ndarray]:
        return self.engine.run(self.text_feed(encodings, **kwargs))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
