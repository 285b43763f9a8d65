"""Reading preprocessor_config.json values as transformers does, with clear errors: what the
image processors and the audio feature extractors share.

A preprocessor_config.json comes with a bundle or checkpoint, from someone else: every value
is checked where it is read, for its type and for bounds that keep the arithmetic defined (no
zero divisors, no NaN scales) and the memory it asks for sane (no 10^9-pixel resize).

>>> integer({"size_divisor": 0}, "size_divisor", 32, "GLPN", minimum=1)  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
runtime.errors.InputError: GLPN has size_divisor=0: it must be an integer of at least 1. Note: ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import BundleNotFoundError, InputError
from .files import finite, read_json_file

# The largest image side a config may resize, crop or pad to. Real configs stay far below
# (DETR's longest_edge is 1333); a side of 10^5 would ask Pillow for tens of GB.
MAX_IMAGE_SIDE = 8192
# A preprocessor_config.json or config.json is a few kB; Whisper's with its saved mel filters
# about 1 MB.
MAX_CONFIG_BYTES = 16 * 2**20
_FIX = "Note: fix it in preprocessor_config.json."


def read_directory(directory: str | Path, what: str) -> tuple[dict, str | None]:
    """(preprocessor_config.json of a bundle or checkpoint directory, the model_type of the
    config.json beside it, which picks the class when the preprocessor config names none).
    ``what`` names the preprocessor in the error: "image processor", "feature extractor"."""
    directory = Path(directory)
    path = directory / "preprocessor_config.json"
    try:
        config = read_config(path)
    except BundleNotFoundError:
        raise BundleNotFoundError(
            f"No preprocessor_config.json in {directory}. Note: the bundle carries its {what}'s "
            "config; export the checkpoint again with `edgeport export`."
        ) from None
    model_type = None
    if (directory / "config.json").exists():
        model_type = read_config(directory / "config.json").get("model_type")
        if model_type is not None and not isinstance(model_type, str):
            raise InputError(
                f"{directory / 'config.json'} has model_type={shown(model_type)}, not a string. "
                "Note: it names the architecture, like \"vit\"; fix it in config.json."
            )
    return config, model_type


def read_config(path: Path) -> dict:
    """A JSON object file (preprocessor_config.json, config.json), read within bounds (a
    regular file, at most MAX_CONFIG_BYTES, UTF-8, nested at most 64 deep); InputError
    otherwise, BundleNotFoundError when it does not exist."""
    try:
        return read_json_file(path, "the file", error=InputError, missing=BundleNotFoundError,
                              max_bytes=MAX_CONFIG_BYTES, expect=dict)
    except BundleNotFoundError:
        raise
    except InputError as error:
        problem = str(error).split(" Note: ")[0].rstrip(".")
        raise InputError(f"Cannot read {path.name}: {problem}. Note: it must be a JSON object, "
                         "as transformers' save_pretrained writes it; replace the file or "
                         "export the bundle again.") from None


def given(config: Mapping[str, Any], key: str, default):
    """config[key] unless absent or null, as transformers' ``x if x is not None else d``."""
    value = config.get(key)
    return default if value is None else value


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a crafted value may be megabytes long."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def number(config: Mapping[str, Any], key: str, default, owner: str, *,
           minimum: float | None = None, maximum: float | None = None,
           above: float | None = None, nonzero: bool = False) -> float:
    """A finite real number (never NaN or infinite, never a bool) within the bounds given:
    ``minimum`` <= value <= ``maximum``, value > ``above``, value != 0 with ``nonzero``.
    ``owner`` names whose setting it is in the error ("ViTImageProcessor")."""
    value = given(config, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{owner}'s {key} must be a number, got {shown(value)}. {_FIX}")
    wanted = _wanted("a finite number", minimum, maximum, above, nonzero)
    if not (finite(value) and (minimum is None or value >= minimum)
            and (maximum is None or value <= maximum) and (above is None or value > above)
            and not (nonzero and value == 0)):
        raise InputError(f"{owner} has {key}={shown(value)}: it must be {wanted}. {_FIX}")
    return float(value)


def integer(config: Mapping[str, Any], key: str, default, owner: str, *,
            minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (a float with an integral value is accepted, as json writers give 16000.0)
    with ``minimum`` <= value <= ``maximum``."""
    value = given(config, key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{owner}'s {key} must be an integer, got {shown(value)}. {_FIX}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise InputError(f"{owner} has {key}={shown(value)}: it must be "
                         f"{_wanted('an integer', minimum, maximum)}. {_FIX}")
    return value


def _wanted(text: str, minimum=None, maximum=None, above=None, nonzero=False) -> str:
    """'an integer from 1 to 8192', 'a finite number above 0', ... for the errors."""
    if minimum is not None and maximum is not None:
        return f"{text} from {_num(minimum)} to {_num(maximum)}"
    if above is not None:
        text += f" above {_num(above)}"
        return text + (f" and at most {_num(maximum)}" if maximum is not None else "")
    if minimum is not None:
        text += f" of at least {_num(minimum)}"
    if maximum is not None:
        text += f" of at most {_num(maximum)}"
    return text + (" other than 0" if nonzero else "")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and math.isfinite(value) else f"{value:g}"
