"""Hostile preprocessor_config.json and config.json files: each bad value is refused where it
is read, with an EdgeportError that names the key, the value and the file, instead of a
ZeroDivisionError, NaN scores or a resize that exhausts memory."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from runtime import preprocessor_config
from runtime.audio.features import FeatureExtractor
from runtime.errors import BundleNotFoundError, EdgeportError, InputError
from runtime.vision.processors import ImageProcessor

VIT = "ViTImageProcessor"
WHISPER = "WhisperFeatureExtractor"
IMAGE = Image.new("RGB", (40, 30), (10, 200, 60))


def _write(directory, config, model_config=None):
    (directory / "preprocessor_config.json").write_text(
        config if isinstance(config, str) else json.dumps(config))
    if model_config is not None:
        (directory / "config.json").write_text(
            model_config if isinstance(model_config, str) else json.dumps(model_config))
    return directory


@pytest.mark.parametrize(("config", "words"), [
    ({"image_processor_type": VIT, "size": 10**5}, ["size", "100000", "8192"]),
    ({"image_processor_type": VIT, "size": {"height": 10**9, "width": 4}},
     ["size['height']", "1000000000", "8192"]),
    ({"image_processor_type": VIT, "size": [224, 0]}, ["size['width']", "0 pixels"]),
    ({"image_processor_type": VIT, "size": {"height": "224", "width": 224}},
     ["size['height']", "'224'"]),
    ({"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": -3}},
     ["shortest_edge", "-3"]),
    ({"image_processor_type": "DetrImageProcessor", "size": 800, "max_size": 10**7},
     ["max_size", "10000000"]),
    ({"image_processor_type": "DetrImageProcessor", "size": 800, "max_size": "1333"},
     ["max_size", "'1333'"]),
    ({"image_processor_type": "BeitImageProcessor", "crop_size": {"height": 9000, "width": 9}},
     ["crop_size['height']", "9000"]),
    ({"image_processor_type": "DetrImageProcessor", "pad_size": {"height": 0, "width": 64}},
     ["pad_size['height']", "0 pixels"]),
    ({"image_processor_type": "ConvNextImageProcessor", "crop_pct": 0}, ["crop_pct=0"]),
    ({"image_processor_type": "ConvNextImageProcessor", "crop_pct": -0.5}, ["crop_pct=-0.5"]),
    ({"image_processor_type": "ConvNextImageProcessor", "crop_pct": 1e-9, "size": 224},
     ["crop_pct=1e-09", "over the limit of 8192"]),
    ({"image_processor_type": "GLPNImageProcessor", "size_divisor": 0}, ["size_divisor=0"]),
    ({"image_processor_type": "Mask2FormerImageProcessor", "size_divisor": -32},
     ["size_divisor=-32"]),
    ({"image_processor_type": "DPTImageProcessor", "ensure_multiple_of": 0},
     ["ensure_multiple_of=0"]),
    ({"image_processor_type": VIT, "image_std": 0}, ["image_std=0", "above 0"]),
    ({"image_processor_type": VIT, "image_std": [0.5, 0.0, 0.5]}, ["image_std", "above 0"]),
    ({"image_processor_type": VIT, "image_std": [0.5, -1, 0.5]}, ["image_std", "above 0"]),
    ({"image_processor_type": VIT, "image_std": [0.5, 0.5]}, ["image_std", "3 numbers"]),
    ({"image_processor_type": VIT, "image_std": 1e-300}, ["float32"]),
    ({"image_processor_type": VIT, "image_mean": [math.nan, 0, 0]}, ["image_mean", "finite"]),
    ({"image_processor_type": VIT, "image_mean": [True, 0, 0]}, ["image_mean", "3 numbers"]),
    ({"image_processor_type": VIT, "rescale_factor": math.nan}, ["rescale_factor=nan"]),
    ({"image_processor_type": VIT, "rescale_factor": math.inf}, ["rescale_factor=inf"]),
    ({"image_processor_type": VIT, "rescale_factor": 0}, ["rescale_factor=0", "other than 0"]),
    ({"image_processor_type": VIT, "rescale_factor": 1e300, "do_normalize": False},
     ["rescale_factor", "float32"]),
    ({"image_processor_type": VIT, "rescale_factor": "1/255"}, ["rescale_factor", "'1/255'"]),
    ({"image_processor_type": ["ViT"]}, ["no image processor", "['ViT']"]),
])
def test_bad_image_processor_values_are_refused(config, words):
    with pytest.raises(InputError) as caught:
        ImageProcessor.from_config(config)
    message = str(caught.value)
    for word in words:
        assert word in message
    assert "Note:" in message


@pytest.mark.parametrize(("config", "words"), [
    ({"feature_extractor_type": WHISPER, "sampling_rate": 0}, ["sampling_rate=0"]),
    ({"feature_extractor_type": WHISPER, "sampling_rate": 10**12}, ["sampling_rate=", "384000"]),
    ({"feature_extractor_type": WHISPER, "sampling_rate": math.nan},
     ["sampling_rate", "integer"]),
    ({"feature_extractor_type": WHISPER, "n_fft": 0}, ["n_fft=0"]),
    ({"feature_extractor_type": WHISPER, "n_fft": 10**9}, ["n_fft=1000000000"]),
    ({"feature_extractor_type": WHISPER, "hop_length": -160}, ["hop_length=-160"]),
    ({"feature_extractor_type": WHISPER, "feature_size": 10**6}, ["feature_size=1000000"]),
    ({"feature_extractor_type": WHISPER, "chunk_length": 0}, ["chunk_length=0"]),
    ({"feature_extractor_type": WHISPER, "chunk_length": 3600, "hop_length": 1},
     ["chunk_length=3600", "over the limit"]),
    ({"feature_extractor_type": WHISPER, "n_fft": 32768, "feature_size": 1024},
     ["n_fft=32768", "mel filters"]),
    ({"feature_extractor_type": WHISPER, "dither": math.nan}, ["dither=nan"]),
    ({"feature_extractor_type": WHISPER, "padding_value": 1e300}, ["padding_value=1e+300"]),
    ({"feature_extractor_type": "Wav2Vec2FeatureExtractor", "padding_value": math.inf},
     ["padding_value=inf"]),
    ({"feature_extractor_type": ["Whisper"]}, ["no feature extractor", "['Whisper']"]),
])
def test_bad_feature_extractor_values_are_refused(config, words):
    with pytest.raises(InputError) as caught:
        FeatureExtractor.from_config(config)
    for word in words:
        assert word in str(caught.value)


def test_valid_hub_values_still_work():
    vit = ImageProcessor.from_config({"image_processor_type": VIT, "size": 8192 // 64,
                                      "rescale_factor": 1 / 127.5, "image_std": 0.5})
    assert np.isfinite(vit(IMAGE)["pixel_values"]).all()
    whisper = FeatureExtractor.from_config({"feature_extractor_type": WHISPER,
                                            "sampling_rate": 16000.0, "feature_size": 128})
    assert whisper([np.zeros(1600, np.float32)])["input_features"].shape == (1, 128, 3000)


def test_a_thin_image_cannot_be_resized_past_the_pixel_limit():
    clip = ImageProcessor.from_config({"image_processor_type": "CLIPImageProcessor",
                                       "size": {"shortest_edge": 4096}})
    with pytest.raises(InputError, match="resize image 0 of 3000x1 pixels to .*over the limit"):
        clip([Image.new("RGB", (3000, 1))])


def test_config_files_are_read_within_bounds(tmp_path, monkeypatch):
    _write(tmp_path, {"image_processor_type": VIT}, model_config=[1, 2])
    with pytest.raises(InputError, match="Cannot read config.json: .*JSON array, not a JSON "
                                         "object.*Note:"):
        ImageProcessor.from_dir(tmp_path)
    with pytest.raises(InputError, match="config.json"):
        FeatureExtractor.from_dir(_write(tmp_path, {"feature_size": 80}, model_config="[]"))

    _write(tmp_path, {"size": 32}, model_config={"model_type": {"vit": 1}})
    with pytest.raises(InputError, match="model_type=\\{'vit': 1\\}, not a string"):
        ImageProcessor.from_dir(tmp_path)

    _write(tmp_path, '{"image_processor_type": "ViTImageProcessor", "rescale_factor": NaN}',
           model_config={})
    with pytest.raises(InputError, match="preprocessor_config.json: .*not valid JSON"):
        ImageProcessor.from_dir(tmp_path)

    (tmp_path / "preprocessor_config.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(InputError, match="not UTF-8"):
        ImageProcessor.from_dir(tmp_path)

    _write(tmp_path, "[" * 100 + "]" * 100)
    with pytest.raises(InputError, match="nested"):
        ImageProcessor.from_dir(tmp_path)

    monkeypatch.setattr(preprocessor_config, "MAX_CONFIG_BYTES", 64)
    _write(tmp_path, {"image_processor_type": VIT, "padding": " " * 100})
    with pytest.raises(InputError, match="over the limit of 64"):
        ImageProcessor.from_dir(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "preprocessor_config.json")
    with pytest.raises(InputError, match="not a regular file"):
        ImageProcessor.from_dir(tmp_path)
    (tmp_path / "preprocessor_config.json").unlink()
    with pytest.raises(BundleNotFoundError, match="No preprocessor_config.json"):
        FeatureExtractor.from_dir(tmp_path)
    (tmp_path / "preprocessor_config.json").mkdir()
    with pytest.raises(EdgeportError, match="folder|directory"):
        FeatureExtractor.from_dir(tmp_path)
