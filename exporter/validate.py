"""Validation of an exported graph against the PyTorch model it came from.

Runs both at two batch sizes and two values of every other dynamic axis (two sequence lengths,
two image sizes): tracing can bake a traced shape into the graph, and a single-shape check does
not see it. Fails, not warns, beyond tolerance.

The tolerance of an output is ``atol * max(1, max |reference|)``: float32 rounding grows with
the magnitude of the values, and a depth map in the hundreds differs by more than logits near 1
for the same (correct) graph.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from runtime.engine import OrtEngine
from runtime.errors import EngineError, ValidationError

BATCH_SIZES = (1, 3)
SEQUENCE_LENGTHS = (9, 23)
# Two image sizes, different in both directions and in aspect: (height, width). Multiples of 32,
# which every vision family accepts; not multiples of Swin's 7x4-pixel windows, so its padding
# code runs.
IMAGE_SIZES = ((64, 96), (128, 64))

Shape = dict  # the axis values of one validation case, e.g. {"batch": 3, "sequence": 23}


def _text_feed(rng, input_names, batch: int, length: int, config) -> dict[str, np.ndarray]:
    """Random token ids with padding at the end of every row after the first."""
    vocab_size = config.vocab_size
    ids = rng.integers(min(999, vocab_size // 2), vocab_size, size=(batch, length),
                       dtype=np.int64)
    mask = np.ones((batch, length), dtype=np.int64)
    for row in range(1, batch):
        mask[row, length - 2 * row:] = 0
    types = np.zeros((batch, length), dtype=np.int64)
    if (getattr(config, "type_vocab_size", 0) or 0) > 1:
        types[:, length // 2:] = 1
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return {n: values[n] for n in input_names if n in values}


def _image_feed(rng, input_names, batch: int, size: tuple[int, int], channels: int):
    pixels = rng.standard_normal((batch, channels, *size)).astype(np.float32)
    values = {"pixel_values": pixels, "pixel_mask": np.ones((batch, *size), dtype=np.int64)}
    return {n: values[n] for n in input_names if n in values}


def validation_feeds(modality: str, input_names: Sequence[str], config, *,
                     image_size: tuple[int, int] | None = None, seed: int = 0
                     ) -> Iterator[tuple[Shape, dict[str, np.ndarray]]]:
    """(shape, feed) for every validation case of a graph reading ``modality``.

    ``image_size`` is the one size a fixed-size vision model takes; None means the graph takes
    any size, and it is checked at two.
    """
    rng = np.random.default_rng(seed)
    if modality == "text":
        for batch in BATCH_SIZES:
            for length in SEQUENCE_LENGTHS:
                yield ({"batch": batch, "sequence": length},
                       _text_feed(rng, input_names, batch, length, config))
        return
    vision = getattr(config, "vision_config", config)
    channels = getattr(vision, "num_channels", 3)
    sizes = [image_size] if image_size else IMAGE_SIZES
    for batch in BATCH_SIZES:
        for size in sizes:
            shape = {"batch": batch, "height": size[0], "width": size[1]}
            feed = _image_feed(rng, input_names, batch, size, channels)
            if modality == "text-image":  # a batch of texts beside each batch of images
                length = SEQUENCE_LENGTHS[BATCH_SIZES.index(batch)]
                texts = batch + 1
                feed.update(_text_feed(rng, input_names, texts, length, config.text_config))
                shape.update(text_batch=texts, sequence=length)
            yield shape, feed


def validate_graph(model, onnx_path: Path, feeds, *, atol: float) -> dict:
    """Compare the graph with the model on every (shape, feed) of ``feeds``; a report dict, or
    ValidationError with a table of the outputs that disagree."""
    import torch

    engine = OrtEngine(onnx_path)
    cases, worst = [], {}
    for shape, feed in feeds:
        try:
            got = engine.run(feed)
        except EngineError as exc:
            raise ValidationError(
                f"The ONNX graph fails at {_describe(shape)}, where PyTorch runs: {exc} Note: "
                "the trace baked a shape into the graph; the bundle was not written."
            ) from None
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        outputs = {}
        for name, value in got.items():
            reference = expected[name].numpy()
            if reference.shape != value.shape:
                raise ValidationError(
                    f"Output {name!r} has shape {value.shape} in ONNX but {reference.shape} in "
                    f"PyTorch at {_describe(shape)}. Note: the trace baked a shape into the "
                    "graph; report this architecture."
                )
            diff = float(np.max(np.abs(value.astype(np.float64) - reference), initial=0.0))
            tolerance = atol * max(1.0, float(np.max(np.abs(reference), initial=0.0)))
            outputs[name] = {"max_abs_diff": diff, "tolerance": tolerance,
                             "passed": diff <= tolerance}
            worst[name] = max(worst.get(name, 0.0), diff)
        cases.append({**shape, "outputs": outputs})
    passed = all(o["passed"] for case in cases for o in case["outputs"].values())
    report = {
        "passed": passed,
        "reference": "pytorch",
        "atol": atol,
        "max_abs_diff": worst,
        "cases": cases,
    }
    if not passed:
        raise ValidationError(failure_table(report))
    return report


def _describe(shape: Shape) -> str:
    return ", ".join(f"{axis} {value}" for axis, value in shape.items())


def failure_table(report: dict) -> str:
    lines = ["The ONNX graph disagrees with PyTorch beyond tolerance:",
             f"  {'output':<24} {'shape':<40} {'max abs diff':>13} {'tolerance':>10}"]
    for case in report["cases"]:
        shape = _describe({k: v for k, v in case.items() if k != "outputs"})
        for name, out in case["outputs"].items():
            mark = "" if out["passed"] else "  <- fails"
            lines.append(f"  {name:<24} {shape:<40} {out['max_abs_diff']:>13.3e} "
                         f"{out['tolerance']:>10.1e}{mark}")
    lines.append("Note: the bundle was not written. Raise the tolerance with --atol only if the "
                 "difference is expected (for example, a model with huge activations).")
    return "\n".join(lines)
