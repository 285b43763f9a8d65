"""The image-to-text task: a vision-encoder-decoder model (TrOCR, Donut) writes the text of an
image, as transformers' ImageToTextPipeline does: the image processor's ``pixel_values`` feed
the encoder, and the decoder generates through the shared loop (greedy unless the settings
say otherwise), from the decoder's start token, or from a decoder prompt (Donut's task start,
like ``<s_cord-v2>``) given as ``generate_kwargs={"decoder_input_ids": ...}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError
from ..generation import GenerateOutput, GenerationConfig, run
from ..generation.onnx_model import FAMILY_GRAPHS
from .base import config_positions, config_section
from .generation import GenerationPipeline
from .vision import ImagePipeline


class ImageToTextPipeline(GenerationPipeline, ImagePipeline):
    """``[{"generated_text": ...}]`` per image (a list of such lists for a list of images).

    Takes transformers' ``max_new_tokens`` and ``generate_kwargs`` (and generation settings
    directly, as keywords); ``prompt`` is refused for vision-encoder-decoder models, as
    transformers refuses it: Donut's task prompt goes in ``generate_kwargs`` as
    ``decoder_input_ids`` (token ids, one row), and the decoder starts with it as it is.

    >>> read = pipeline("image-to-text", model="trocr-bundle")              # doctest: +SKIP
    >>> read("handwritten-line.png")                                          # doctest: +SKIP
    [{'generated_text': 'industry, " Mr. Brown commented icily.'}]
    """

    task = "image-to-text"
    preprocessors = ("image_processor", "tokenizer")
    pipeline_generation_defaults: ClassVar = {"max_new_tokens": 256}
    parameters = {"prompt": None, "timeout": None}

    def __init__(self, **kwargs):
        kwargs = self._generation_arguments(kwargs)
        prompt = kwargs.pop("decoder_input_ids", None)
        super().__init__(**kwargs)
        self.decoder_prompt = None if prompt is None else self._decoder_prompt(prompt)
        decoder = config_section(self.config, "decoder")
        # Donut's decoder starts from its task prompt as it is: transformers puts no start
        # token in front of it (for any other model it does, when the prompt lacks one)
        encoder = config_section(self.config, "encoder")
        self.prompt_is_whole = "donut" in str(encoder.get("model_type", "")).lower()
        self._decoder_config = decoder
        self._check_prompt(self.defaults)

    # --- arguments --------------------------------------------------------------------------
    def _generation_arguments(self, kwargs: Mapping[str, Any]) -> dict:
        """The keyword arguments with ``generate_kwargs`` spread among them (transformers
        passes both to generate()); max_new_tokens given in both is an error, as there."""
        kwargs = dict(kwargs)
        extra = kwargs.pop("generate_kwargs", None) or {}
        if not isinstance(extra, Mapping):
            raise InputError(f"generate_kwargs must be a dict of generation settings, got "
                             f"{type(extra).__name__}. Note: e.g. generate_kwargs="
                             "{'num_beams': 4}.")
        if "max_new_tokens" in extra and kwargs.get("max_new_tokens") is not None:
            raise InputError("max_new_tokens is given both as an argument and in generate_kwargs "
                             "(transformers refuses it too). Note: give it once.")
        misplaced = sorted(k for k in extra if k in self.parameters)
        if misplaced:
            raise InputError(f"{misplaced} are arguments of the pipeline, not of generate(). "
                             "Note: pass them to the call itself, not in generate_kwargs.")
        return {**extra, **kwargs}

    def _check_prompt(self, args) -> None:
        if args["prompt"] is not None:
            raise InputError(
                f"A prompt is not possible for a {self.config.get('model_type')!r} model: "
                "transformers' image-to-text pipeline refuses it for vision-encoder-decoder "
                "models too. Note: give a decoder prompt (Donut's task start, like "
                "<s_cord-v2>) as generate_kwargs={'decoder_input_ids': [[ids...]]}.")

    def _decoder_prompt(self, value) -> np.ndarray:
        """decoder_input_ids: token ids of one prompt, (1, length) or (length,)."""
        try:
            ids = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        except (TypeError, ValueError):
            ids = np.asarray([], dtype=object)
        if ids.ndim == 1:
            ids = ids[None, :]
        if (ids.ndim != 2 or len(ids) != 1 or ids.shape[1] == 0
                or not np.issubdtype(ids.dtype, np.integer)):
            raise InputError(
                f"decoder_input_ids must be the token ids of one decoder prompt, a list of "
                f"integers (or one row of them), got {repr(value)[:80]}. Note: e.g. "
                "generate_kwargs={'decoder_input_ids': [[57522]]} for Donut's <s_cord-v2>.")
        return ids.astype(np.int64)

    @property
    def max_positions(self) -> int | None:
        """The decoder's positions: its own config's (a vision-encoder-decoder's config.json
        keeps them in "decoder")."""
        return config_positions(self._decoder_config, self.POSITION_KEYS)[0]

    @property
    def max_positions_key(self) -> str | None:
        key = config_positions(self._decoder_config, self.POSITION_KEYS)[1]
        return None if key is None else f"decoder.{key}"

    # --- running ----------------------------------------------------------------------------
    def __call__(self, inputs=None, **kwargs):
        if "images" in kwargs:  # transformers' keyword for the inputs
            inputs = kwargs.pop("images")
        if inputs is None:
            raise InputError("The image-to-text pipeline needs images. Note: pass an image, a "
                             "path, or a list of them.")
        own, generation, prompt = self._call_arguments(kwargs)
        config = self.call_config(generation)
        images, single = self.images(inputs)
        results = [self._records(self.generate_image(image, config, prompt))
                   for image in images]
        return results[0] if single else results

    def _call_arguments(self, kwargs) -> tuple[dict, dict, np.ndarray | None]:
        """(the pipeline's arguments, the generation settings, the decoder prompt)."""
        kwargs = self._generation_arguments(kwargs)
        prompt = kwargs.pop("decoder_input_ids", None)
        own, generation = self._split(kwargs)
        self._check_prompt(self.arguments(own))
        prompt = self.decoder_prompt if prompt is None else self._decoder_prompt(prompt)
        return own, {**self._init_generation, **generation}, prompt

    def generate_image(self, image, config: GenerationConfig,
                       prompt: np.ndarray | None = None) -> GenerateOutput:
        """The generated token ids of one image, as the model's ``generate(pixel_values)``
        gives them (the decoder's start token or prompt first)."""
        feed = self.encoder_feed([image])
        prompt, config = self._started(prompt, config)
        return run(self.model, feed, None, config, tokenizer=self.tokenizer,
                   max_positions=self.max_positions, max_positions_key=self.max_positions_key,
                   decoder_input_ids=prompt)

    def generate_tokens(self, image, **settings) -> list[int]:
        """The new token ids of one image (after the decoder's start token or prompt), with
        the pipeline's generation settings and ``settings``: what ``compare`` and calibration
        generate with (the image loaded as the pipeline loads it)."""
        _, generation, prompt = self._call_arguments(settings)
        config = self.call_config(generation)
        images, _ = self.images(image)
        output = self.generate_image(images[0], config, prompt)
        started, _ = self._started(prompt, config)
        return output.sequences[0][1 if started is None else started.shape[1]:].tolist()

    def _started(self, prompt: np.ndarray | None, config: GenerationConfig
                 ) -> tuple[np.ndarray | None, GenerationConfig]:
        """The decoder prompt as generate() starts from it, and the settings to run it with:
        Donut's as it is (its first token taken as the start); any other with the start token
        put in front where it lacks it, as transformers does before it counts the prompt's
        length for max_new_tokens (the loop would count the prompt without it)."""
        if prompt is None:
            return None, config
        if self.prompt_is_whole:
            return prompt, config.replace(decoder_start_token_id=int(prompt[0, 0]))
        start = (config.decoder_start_token_id if config.decoder_start_token_id is not None
                 else config.bos_token_id)
        if isinstance(start, int) and prompt[0, 0] != start:
            prompt = np.concatenate([np.array([[start]], dtype=np.int64), prompt], axis=1)
        return prompt, config

    def encoder_feed(self, images) -> dict[str, np.ndarray]:
        """The image processor's arrays, holding only the encoder graph's inputs."""
        arrays = self.image_processor(images)
        specs = (self.bundle.graph_specs(FAMILY_GRAPHS["encoder-decoder"][0])[0]
                 if self.bundle is not None else self.model.encoder.inputs)
        names = {spec.name for spec in specs}
        return {name: arrays[name] for name in arrays if name in names}

    def _records(self, output: GenerateOutput) -> list[dict]:
        return [{"generated_text": self.tokenizer.decode(seq.tolist(), skip_special_tokens=True)}
                for seq in output.sequences]
