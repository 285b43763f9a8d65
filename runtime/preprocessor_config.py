"""Reading preprocessor_config.json values as transformers does, with clear errors: what the
image processors and the audio feature extractors share."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import BundleNotFoundError, InputError


def read_directory(directory: str | Path, what: str) -> tuple[dict, str | None]:
    """(preprocessor_config.json of a bundle or checkpoint directory, the model_type of the
    config.json beside it, which picks the class when the preprocessor config names none).
    ``what`` names the preprocessor in the error: "image processor", "feature extractor"."""
    directory = Path(directory)
    path = directory / "preprocessor_config.json"
    if not path.is_file():
        raise BundleNotFoundError(
            f"No preprocessor_config.json in {directory}. Note: the bundle carries its {what}'s "
            "config; export the checkpoint again with `edgeport export`."
        )
    model_type = None
    if (directory / "config.json").is_file():
        model_type = read_config(directory / "config.json").get("model_type")
    return read_config(path), model_type


def read_config(path: Path) -> dict:
    """A JSON object file (preprocessor_config.json, config.json); InputError otherwise."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"Cannot read {path}: {error}. Note: it must be a JSON object, as "
                         "transformers' save_pretrained writes it.") from error
    if not isinstance(value, dict):
        raise InputError(f"{path} holds a {type(value).__name__}, not a JSON object. Note: it "
                         "must be a JSON object, as transformers' save_pretrained writes it.")
    return value


def given(config: Mapping[str, Any], key: str, default):
    """config[key] unless absent or null, as transformers' ``x if x is not None else d``."""
    value = config.get(key)
    return default if value is None else value


def number(config: Mapping[str, Any], key: str, default, owner: str) -> float:
    """A real number; ``owner`` names whose setting it is in the error ("ViTImageProcessor")."""
    value = given(config, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{owner}'s {key} must be a number, got {value!r}. Note: fix it in "
                         "preprocessor_config.json.")
    return float(value)


def integer(config: Mapping[str, Any], key: str, default, owner: str) -> int:
    """An integer (a float with an integral value is accepted, as json writers give 16000.0)."""
    value = given(config, key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{owner}'s {key} must be an integer, got {value!r}. Note: fix it in "
                         "preprocessor_config.json.")
    return value
