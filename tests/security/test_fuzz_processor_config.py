"""Fuzzing preprocessor_config.json: whatever a config holds, building its image processor or
feature extractor and running it on a small input either works or raises an EdgeportError,
never another exception (a ZeroDivisionError, a TypeError, NaN pixel values, a MemoryError).

Each example starts from a valid config of one processor and replaces, adds or drops keys with
values of the wrong type, zeros, negatives, NaN and infinities, huge numbers and nested junk.
The limits on image sides and feature windows are lowered while fuzzing, so that a config at
the limit stays cheap to run; the logic that enforces them is the same.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from runtime.audio import features as audio_features
from runtime.audio.features import FeatureExtractor
from runtime.errors import EdgeportError
from runtime.vision import processors as image_processing
from runtime.vision.processors import PROCESSORS, ImageProcessor

IMAGE_KEYS = ("size", "crop_size", "crop_pct", "do_resize", "do_rescale", "do_normalize",
              "do_center_crop", "rescale_factor", "image_mean", "image_std", "resample",
              "size_divisor", "ensure_multiple_of", "keep_aspect_ratio", "do_pad", "pad_size",
              "max_size", "use_square_size", "pad_and_return_pixel_mask",
              "image_processor_type", "feature_extractor_type")
AUDIO_KEYS = ("sampling_rate", "feature_size", "hop_length", "n_fft", "chunk_length",
              "padding_value", "padding_side", "return_attention_mask", "do_normalize",
              "dither", "feature_extractor_type", "image_processor_type")
SIDE_KEYS = ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width")

SMALL_SIDE = 96  # the lowered MAX_IMAGE_SIDE
IMAGES = (Image.new("RGB", (20, 14), (200, 30, 90)), Image.new("L", (9, 31), 77))
SIGNAL = np.sin(np.linspace(0, 300, 1600)).astype(np.float32)

numbers = st.one_of(
    st.integers(-3, 3), st.integers(-2**70, 2**70), st.integers(1, 300),
    st.sampled_from([0, 0.0, -0.0, 1e-320, 1e308, math.nan, math.inf, -math.inf, 0.5, 2.5,
                     1 / 255, 10**9, 10**5, 16000.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=8),
                    st.sampled_from(["ViTImageProcessor", "bicubic", "left", "right",
                                     "WhisperFeatureExtractor", "1/255"]))
sizes = st.one_of(
    numbers,
    st.lists(numbers, min_size=0, max_size=3),
    st.dictionaries(st.sampled_from(SIDE_KEYS), st.one_of(numbers, scalars), max_size=3),
)
junk = st.recursive(st.one_of(scalars, sizes),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.text(max_size=4), inner,
                                                            max_size=3)),
                    max_leaves=6)


def _mutations(keys):
    return st.dictionaries(st.sampled_from(keys + ("unknown", "")),
                           st.one_of(junk, sizes, st.just(None)), max_size=4)


def _image_base(name: str) -> dict:
    config = {"image_processor_type": name, "size": {"height": 32, "width": 32},
              "crop_size": {"height": 24, "width": 24}}
    if name in ("CLIPImageProcessor", "ConvNextImageProcessor"):
        config["size"] = {"shortest_edge": 32}
    if name in ("DetrImageProcessor", "YolosImageProcessor", "Mask2FormerImageProcessor",
                "MaskFormerImageProcessor"):
        config["size"] = {"shortest_edge": 32, "longest_edge": 64}
    return config


def _lowered_limits() -> ExitStack:
    stack = ExitStack()
    stack.enter_context(mock.patch.object(image_processing, "MAX_IMAGE_SIDE", SMALL_SIDE))
    stack.enter_context(mock.patch.object(image_processing, "MAX_RESIZED_PIXELS",
                                          SMALL_SIDE ** 2))
    stack.enter_context(mock.patch.object(audio_features, "MAX_WINDOW_VALUES", 2**19))
    stack.enter_context(mock.patch.object(audio_features, "MAX_FILTER_VALUES", 2**15))
    return stack


def _check_outputs(outputs: dict) -> None:
    for name, array in outputs.items():
        assert isinstance(array, np.ndarray), name
        if array.dtype.kind == "f":
            assert np.isfinite(array).all(), f"{name} holds NaN or infinite values"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(PROCESSORS)), changes=_mutations(IMAGE_KEYS),
       drop=st.lists(st.sampled_from(IMAGE_KEYS), max_size=2))
def test_image_processor_configs_work_or_raise_edgeport_errors(name, changes, drop):
    config = _image_base(name)
    for key in drop:
        config.pop(key, None)
    config.update(changes)
    with _lowered_limits():
        try:
            processor = ImageProcessor.from_config(config, model_type="vit")
            for image in IMAGES:
                _check_outputs(processor([image]))
        except EdgeportError:
            pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["Wav2Vec2FeatureExtractor", "WhisperFeatureExtractor"]),
       changes=_mutations(AUDIO_KEYS), padding=st.sampled_from(["max_length", "longest"]))
def test_feature_extractor_configs_work_or_raise_edgeport_errors(name, changes, padding):
    config = {"feature_extractor_type": name, "sampling_rate": 16000}
    if name == "WhisperFeatureExtractor":
        config.update(chunk_length=1, feature_size=16, n_fft=64, hop_length=32)
    config.update(changes)
    with _lowered_limits():
        try:
            extractor = FeatureExtractor.from_config(config, model_type="whisper")
            if isinstance(extractor, audio_features.WhisperFeatureExtractor):
                outputs = extractor([SIGNAL], padding=padding, truncation=padding != "longest",
                                    return_attention_mask=True)
            else:
                outputs = extractor([SIGNAL, SIGNAL[:700]], return_attention_mask=True)
            _check_outputs(outputs)
        except EdgeportError:
            pass


@settings(max_examples=100, deadline=None)
@given(config=junk)
def test_anything_in_place_of_the_config_is_refused_clearly(config):
    for make in (ImageProcessor.from_config, FeatureExtractor.from_config):
        try:
            make(config)
        except EdgeportError:
            pass
