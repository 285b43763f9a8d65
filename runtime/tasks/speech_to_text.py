"""automatic-speech-recognition for Speech2Text (``speech_to_text`` "encoder-decoder" bundles):
what transformers' AutomaticSpeechRecognitionPipeline gives for a model of its "seq2seq" type.

The bundle's feature extractor makes Kaldi filterbanks of the whole signal, of any length,
with their mask (``runtime.audio.features.Speech2TextFeatureExtractor``); the shared
generation loop runs the encoder on both and decodes from ``decoder_start_token_id`` with the
pipeline's settings (transformers' ASR pipeline defaults: 5 beams, 256 new tokens, under the
model's own); the tokens are decoded without special tokens, upper-cased when the tokenizer's
``do_upper_case`` says so (Speech2TextTokenizer's LibriSpeech models), as its ``decode`` does.

``chunk_length_s`` cuts the audio as transformers does (``stride_length_s`` too), transcribes
every chunk alone, and joins the chunks' tokens before decoding: transformers keeps no strides
for this type, so overlapping words appear twice, as there. ``return_timestamps`` is refused,
as transformers refuses it ("only CTC models and Whisper").

>>> transcribe = pipeline("automatic-speech-recognition", model="s2t")   # doctest: +SKIP
>>> transcribe("jfk.flac")                                             # doctest: +SKIP
{'text': 'AND SO MY FELLOW AMERICANS ASK NOT WHAT YOUR COUNTRY CAN DO FOR YOU ...'}
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..audio import kaldi
from ..errors import BundleError, InputError
from ..generation import run
from ..generation.onnx_model import FAMILY_GRAPHS
from .audio import AudioPipeline
from .automatic_speech_recognition import _check_chunk_length, _chunks
from .base import config_count
from .generation import GenerationPipeline

# The most stride-2 convolutions before the encoder a config may name (s2t has 2).
MAX_CONV_LAYERS = 16


class Speech2TextSpeechRecognitionPipeline(GenerationPipeline, AudioPipeline):
    """``{"text": ...}`` per signal, as transformers' pipeline gives it for Speech2Text.

    Generation settings as keyword arguments (``num_beams``, ``max_new_tokens``, ...) or in
    ``generate_kwargs``, as in transformers. Audio longer than the exported encoder's positions
    (``max_source_positions``: 4 feature frames of 10 ms each, 240 s for the LibriSpeech
    models) is refused with a clear error: transcribe it in chunks (``chunk_length_s``).
    """

    task = "automatic-speech-recognition"
    preprocessors = ("feature_extractor", "tokenizer")
    pipeline_generation_defaults = {"max_new_tokens": 256, "num_beams": 5}
    parameters = {"chunk_length_s": 0, "stride_length_s": None, "return_timestamps": None,
                  "ignore_warning": None}

    def __init__(self, **kwargs):
        super().__init__(**_spread_generate_kwargs(kwargs, self.parameters))
        self.upper_case = bool(self.tokenizer.config.get("do_upper_case", False))
        self.source_positions = config_count(self.config, "max_source_positions")
        self.conv_layers = config_count(self.config, "num_conv_layers")
        if (self.source_positions is None or self.conv_layers is None
                or self.conv_layers > MAX_CONV_LAYERS):
            raise BundleError(
                f"config.json has max_source_positions={self.source_positions} and "
                f"num_conv_layers={self.conv_layers}: a Speech2Text model has a number of "
                "each. Note: fix them in the bundle's config.json (s2t-small's are 6000 and 2), "
                "or export the checkpoint again.")
        self._check(self.defaults)

    def __call__(self, inputs, **kwargs):
        own, generation = self._split(_spread_generate_kwargs(kwargs, self.parameters))
        args = self._check(self.arguments(own))
        config = self.call_config({**self._init_generation, **generation})
        if config.num_return_sequences != 1:
            raise InputError(f"num_return_sequences={config.num_return_sequences}: the pipeline "
                             "gives one transcript per input. Note: leave it out.")
        signals, single = self.signals(inputs)
        results = [self._transcribe(signal, args, config) for signal in signals]
        return results[0] if single else results

    def _check(self, args):
        if args["return_timestamps"]:
            raise InputError(
                f"return_timestamps={args['return_timestamps']!r} is not possible for "
                "Speech2Text: transformers gives timestamps for CTC models and Whisper only "
                "(\"We cannot return_timestamps yet on non-CTC models apart from Whisper!\"). "
                "Note: leave return_timestamps out."
            )
        return _check_chunk_length(args)

    def _transcribe(self, signal: np.ndarray, args, config) -> dict:
        """transformers' preprocess, _forward and postprocess for one signal (and its chunks)."""
        rate = self.feature_extractor.sampling_rate
        tokens = []
        for chunk, _ in _chunks(signal, args, rate, 1):  # seq2seq: the strides are not used
            feed = self.features([chunk])
            self._check_length(feed["input_features"].shape[1], rate)
            _check_finite(feed["input_features"])
            output = run(self.model, feed, None, config, tokenizer=self.tokenizer,
                         max_positions=self.max_positions,
                         max_positions_key=self.max_positions_key)
            tokens.extend(int(token) for token in output.sequences[0])
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return {"text": text.upper() if self.upper_case else text}

    def generate_tokens(self, input_features: np.ndarray, attention_mask=None,
                        **kwargs) -> list[int]:
        """The token ids generated for one input's features (1 x frames x bins; its mask, all
        ones when not given: one input has no padding) after the decoder start token, with the
        pipeline's settings and the call's (``num_beams``, ``max_new_tokens``, ...): what
        transformers' ``model.generate(input_features, attention_mask=...)[0][1:]`` gives.

        >>> features = transcribe.features([signal])["input_features"]   # doctest: +SKIP
        >>> transcribe.generate_tokens(features, num_beams=1)           # doctest: +SKIP
        [52, 17, 2]
        """
        features = np.asarray(input_features, dtype=np.float32)
        if features.ndim != 3 or len(features) != 1:
            raise InputError(f"input_features must be one input's filterbank features, (1, "
                             f"frames, bins), got shape {features.shape}.")
        mask = (np.ones(features.shape[:2], dtype=np.int64) if attention_mask is None
                else np.asarray(attention_mask, dtype=np.int64))
        if mask.shape != features.shape[:2]:
            raise InputError(f"attention_mask has shape {mask.shape}; the features need "
                             f"{features.shape[:2]}.")
        own, generation = self._split(_spread_generate_kwargs(kwargs, self.parameters))
        self._check(self.arguments(own))
        config = self.call_config({**self._init_generation, **generation})
        _check_finite(features)
        feed = self.features_feed({"input_features": features, "attention_mask": mask})
        output = run(self.model, feed, None, config, tokenizer=self.tokenizer,
                     max_positions=self.max_positions, max_positions_key=self.max_positions_key)
        return [int(token) for token in output.sequences[0][1:]]

    def features(self, signals, **options) -> dict[str, np.ndarray]:
        """The feature extractor's arrays that the encoder graph reads (input_features and
        attention_mask)."""
        return self.features_feed(self.feature_extractor(signals, **options))

    def features_feed(self, arrays) -> dict[str, np.ndarray]:
        """The arrays the encoder graph declares as inputs: by the bundle's declaration when
        there is one, so that any GenerationModel may run the graphs (compare's PyTorch
        reference)."""
        specs = (self.bundle.graph_specs(FAMILY_GRAPHS["encoder-decoder"][0])[0]
                 if self.bundle is not None else self.model.encoder.inputs)
        names = {spec.name for spec in specs}
        return {name: arrays[name] for name in arrays if name in names}

    def _check_length(self, frames: int, rate: int) -> None:
        """A clear error for features longer than the encoder's positions: the exported graph
        holds max_source_positions of them (PyTorch would make more)."""
        positions = frames
        for _ in range(self.conv_layers):
            positions = (positions - 1) // 2 + 1
        if positions > self.source_positions:
            seconds = self.source_positions * 2**self.conv_layers * kaldi.HOP_LENGTH / rate
            raise InputError(
                f"The audio makes {positions} encoder positions, over the model's "
                f"{self.source_positions} (config.json's max_source_positions): it takes about "
                f"{seconds:.0f} s at most. Note: pass chunk_length_s (e.g. 30) to transcribe "
                "it in chunks."
            )


def _check_finite(features: np.ndarray) -> None:
    if not np.isfinite(features).all():
        raise InputError(
            "The audio (or a chunk of it) is digital silence: its filterbank features have no "
            "variance, and the utterance normalization divides by zero (in transformers too, "
            "whose model then reads NaN features). Note: trim the silence, or set a dither in "
            "the bundle's preprocessor_config.json (e.g. \"dither\": 4.0).")


def _spread_generate_kwargs(kwargs: Mapping, parameters: Mapping) -> dict:
    """The keyword arguments with ``generate_kwargs`` spread among them (transformers passes
    both to generate(); the direct ones win)."""
    kwargs = dict(kwargs)
    extra = kwargs.pop("generate_kwargs", None) or {}
    if not isinstance(extra, Mapping):
        raise InputError(f"generate_kwargs must be a dict of generation settings, got "
                         f"{type(extra).__name__}. Note: e.g. generate_kwargs={{'num_beams': 1}}.")
    misplaced = sorted(k for k in extra if k in parameters)
    if misplaced:
        raise InputError(f"{misplaced} are arguments of the pipeline, not of generate(). Note: "
                         "pass them to the call itself, not in generate_kwargs.")
    return {**extra, **kwargs}
