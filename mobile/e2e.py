"""End-to-end graphs: a bundle's graph with its preprocessing and postprocessing inside, so that
an app passes raw input (a string tensor ``text`` [N], or an encoded image file as a uint8
tensor ``image`` [bytes]) and gets results. One builder per task, in the BUILDERS tables of
``mobile.e2e_text`` and ``mobile.e2e_image``.

A builder is ``build(bundle, variant, target) -> dict``: it writes the end-to-end ONNX graph at
``target`` (the graph's metadata says what its inputs and outputs mean) and returns the report's
record of it: ``inputs`` and ``outputs`` (name -> description), ``exact`` (whether it gives the
runtime pipeline's results within the acceptance tolerances) and ``notes`` (what the
extensions cannot express, and the app-side step that replaces it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from runtime.bundle import Bundle
from runtime.errors import InputError

Builder = Callable[[Bundle, str, Path], dict]


def e2e_builders() -> dict[str, Builder]:
    """task -> its builder (``mobile.e2e_text``'s and ``mobile.e2e_image``'s BUILDERS)."""
    from . import e2e_image, e2e_text

    return {**e2e_text.BUILDERS, **e2e_image.BUILDERS}


def build_e2e(bundle: Bundle, variant: str, target: Path) -> dict:
    """The end-to-end graph of ``bundle``'s ``variant`` at ``target``; an InputError naming the
    supported tasks for any other."""
    builders = e2e_builders()
    builder = builders.get(bundle.task)
    if builder is None:
        raise InputError(
            f"edgeport mobile makes end-to-end graphs for {', '.join(sorted(builders))}; "
            f"this bundle runs {bundle.task}. Note: use model.ort with your own pre- and "
            "postprocessing, or export a bundle for a supported task.")
    return builder(bundle, variant, target)
