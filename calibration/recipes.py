"""Quantization recipes: each makes one new graph file from a source graph file.

A recipe is a function ``(source: Path, target: Path, *, feeds, **options) -> dict`` that writes
``target`` (never touching ``source``) and returns the options it used, which the manifest
records. ``feeds`` is a list of calibration feeds (only static recipes read it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import InputError


@dataclass(frozen=True)
class Recipe:
    name: str
    make: Callable[..., dict]
    needs_calibration: bool = False
    options: dict = field(default_factory=dict)  # option -> default, the accepted options
    summary: str = ""


def _not_yet(source: Path, target: Path, **options) -> dict:
    raise InputError("This recipe is not implemented yet.")


RECIPES: dict[str, Recipe] = {}
