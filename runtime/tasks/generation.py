"""What the generative tasks share: generation settings resolved as transformers' pipelines
resolve them, call arguments split between the pipeline and ``generate``, streaming."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

from ..errors import BundleError, InputError
from ..generation import (
    GenerateOutput,
    OnnxGenerationModel,
    TextStreamer,
    iterate,
    model_generation_config,
    resolve_generation_config,
    run,
)
from ..generation.config import TRANSFORMERS_DEFAULTS
from .base import Pipeline, config_positions, config_text


class GenerationPipeline(Pipeline):
    """Base of text-generation, text2text-generation, summarization, translation and Whisper's
    automatic-speech-recognition.

    ``parameters`` holds the pipeline's own arguments; every other keyword is a generation
    setting (``max_new_tokens``, ``num_beams``, ``do_sample``, ...), checked against
    transformers' names. ``pipeline_generation_defaults`` is transformers'
    ``_default_generation_config`` of the pipeline: the model's own settings override it, and
    the call's override both.
    """

    generates: ClassVar[bool] = True
    pipeline_generation_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, *, generation_model: OnnxGenerationModel, config, engine, bundle=None,
                 tokenizer=None, image_processor=None, feature_extractor=None,
                 task_name: str | None = None, **defaults):
        self.model = generation_model
        self.task_name = task_name or self.task
        own, generation = self._split(defaults)
        super().__init__(config=config, engine=engine, tokenizer=tokenizer,
                         image_processor=image_processor, feature_extractor=feature_extractor,
                         bundle=bundle, **own)
        file = bundle.read_json("generation_config.json", required=False) if bundle else None
        self.model_defaults = model_generation_config(file, self.config)
        self.prefix = config_text(self.config, "prefix")
        self.generation_config = self._pipeline_generation_config(generation)
        self._init_generation = generation

    # --- settings ---------------------------------------------------------------------------
    def _split(self, given: Mapping[str, Any]) -> tuple[dict, dict]:
        """(the pipeline's own arguments, generation settings); an unknown name fails when
        the settings are resolved, with a close-match suggestion."""
        own = {k: v for k, v in given.items() if k in self.parameters}
        return own, {k: v for k, v in given.items() if k not in self.parameters}

    def _pipeline_generation_config(self, generation: Mapping[str, Any]):
        """transformers' Pipeline.__init__ for generating pipelines: pipeline defaults <- the
        model's settings <- pipeline(...) arguments; then the task's task_specific_params and
        the tokenizer's pad token."""
        defaults = dict(self.pipeline_generation_defaults) or None
        config = resolve_generation_config(self.model_defaults, defaults,
                                           use_model_defaults=True, **generation)
        default_new = self.pipeline_generation_defaults.get("max_new_tokens")
        if (default_new is not None and config.max_new_tokens == default_new
                and config.max_length is not None
                and config.max_length != TRANSFORMERS_DEFAULTS["max_length"]):
            config = config.replace(max_new_tokens=None)  # the model's max_length wins
        task_params = task_specific_params(self.config).get(self.task_name)
        if task_params:
            task_params = dict(task_params)
            if "prefix" in task_params:
                self.prefix = config_text(
                    task_params, "prefix",
                    where=f"config.json's task_specific_params[{self.task_name!r}]")
                del task_params["prefix"]
            config = config.replace(**task_params)
        if config.pad_token_id is None and self.tokenizer.pad_token_id is not None:
            config = config.replace(pad_token_id=self.tokenizer.pad_token_id)
        return config

    def call_config(self, generation: Mapping[str, Any]):
        """The settings of one call: the pipeline's (or the call's ``generation_config``, which
        replaces them, as in transformers), overridden by the call's arguments."""
        given = dict(generation)
        base = given.pop("generation_config", None) or self.generation_config
        return resolve_generation_config(self.model_defaults, base, **given)

    # config.json keys of the decoder's position limit, in the order they are looked for
    POSITION_KEYS: ClassVar[tuple[str, ...]] = ("n_positions", "max_position_embeddings",
                                                "max_target_positions")

    @property
    def max_positions(self) -> int | None:
        """How many positions the decoder has (GPT-2's n_positions, BART's
        max_position_embeddings, Whisper's max_target_positions; None for T5's relative
        positions)."""
        return config_positions(self.config, self.POSITION_KEYS)[0]

    @property
    def max_positions_key(self) -> str | None:
        """The config.json key ``max_positions`` comes from."""
        return config_positions(self.config, self.POSITION_KEYS)[1]

    # --- running ----------------------------------------------------------------------------
    def generate_ids(self, input_ids: np.ndarray, attention_mask: np.ndarray, config, *,
                     streamer: Callable[[str], None] | None = None,
                     skip_special_tokens: bool = True) -> GenerateOutput:
        """Token ids for a batch of prompts; ``streamer`` gets the new text as it comes."""
        text = None
        if streamer is not None:
            if not callable(streamer):
                raise InputError(
                    f"streamer must be a callable taking a text piece, got "
                    f"{type(streamer).__name__}. Note: pass print, or use pipe.stream(...)."
                )
            text = TextStreamer(self.tokenizer, streamer,
                                skip_special_tokens=skip_special_tokens)
        output = run(self.model, input_ids, attention_mask, config, tokenizer=self.tokenizer,
                     max_positions=self.max_positions, max_positions_key=self.max_positions_key,
                     on_tokens=text.put if text else None)
        if text is not None:
            text.end()
        return output

    def stream(self, inputs, **kwargs) -> Iterator[str]:
        """The generated text of one prompt, piece by piece, as it is generated (greedy or
        sampling: beam search decides only at the end)."""
        if not isinstance(inputs, str):
            raise InputError(
                f"stream() takes one prompt (a string), got {type(inputs).__name__}. Note: "
                "stream several prompts one after the other."
            )
        if "streamer" in kwargs:
            raise InputError("stream() makes its own streamer. Note: drop streamer=.")
        return iterate(lambda on_text: self(inputs, streamer=on_text, **kwargs))

    # --- inputs -----------------------------------------------------------------------------
    @staticmethod
    def prompts(inputs) -> tuple[list[str], bool]:
        if isinstance(inputs, str):
            return [inputs], True
        if isinstance(inputs, Iterable) and not isinstance(inputs, (bytes, Mapping)):
            items = list(inputs)
            if items and all(isinstance(item, str) for item in items):
                return items, False
            if not items:
                raise InputError("Got an empty list of prompts. Note: pass at least one text.")
            bad = next(item for item in items if not isinstance(item, str))
            raise InputError(
                f"Expected texts, got a list holding {type(bad).__name__}: {bad!r:.80}. "
                "Note: pass a string or a list of strings (chat messages are not supported)."
            )
        raise InputError(
            f"Expected a text, got {type(inputs).__name__}: {inputs!r:.80}. Note: pass a string "
            "or a list of strings."
        )

    def stop_sequence_ids(self, stop_sequence) -> list[int]:
        if not isinstance(stop_sequence, str) or not stop_sequence:
            raise InputError(f"stop_sequence must be a non-empty string, got {stop_sequence!r}.")
        ids = self.tokenizer.encode_batch([stop_sequence], add_special_tokens=False)[0].ids
        if not ids:
            raise InputError(f"stop_sequence {stop_sequence!r} makes no tokens.")
        return list(ids)


def task_specific_params(config: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """config.json's task_specific_params: task name -> generation settings for that task
    (T5's {"summarization": {"prefix": "summarize: ", "num_beams": 4, ...}}); {} when absent.
    The settings themselves are checked where they are resolved, as generation arguments."""
    params = config.get("task_specific_params")
    if params is None:
        return {}
    if not isinstance(params, Mapping) or not all(
            isinstance(settings, Mapping) or settings is None for settings in params.values()):
        raise BundleError(
            f"config.json has task_specific_params={repr(params)[:80]}: it must map task names "
            'to objects of generation settings, like {"summarization": {"num_beams": 4}}. '
            "Note: fix it in the bundle's config.json, or export the checkpoint again.")
    return params
