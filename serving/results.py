"""Pipeline results as the JSON the Triton contract answers (``result``, one per item)."""

from __future__ import annotations

import base64
import io
import json


def jsonable(value):
    """``json.dumps`` default: arrays and numpy scalars as lists and numbers, images (masks,
    depth maps) as ``{"image/png;base64": ..., "mode": ..., "size": [w, h]}``."""
    if hasattr(value, "save") and hasattr(value, "mode") and hasattr(value, "size"):  # PIL
        stream = io.BytesIO()
        value.save(stream, format="PNG")
        return {"image/png;base64": base64.b64encode(stream.getvalue()).decode("ascii"),
                "mode": value.mode, "size": list(value.size)}
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def result_json(result) -> bytes:
    return json.dumps(result, default=jsonable).encode("utf-8")
