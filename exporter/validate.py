"""Validation of an exported graph against the PyTorch model it came from.

Runs both at two batch sizes and two sequence lengths (tracing can bake a traced shape into the
graph; a single-shape check does not see it) and fails, not warns, beyond tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.engine import OrtEngine
from runtime.errors import ValidationError

BATCH_SIZES = (1, 3)
SEQUENCE_LENGTHS = (9, 23)


def text_feeds(input_names, *, vocab_size: int, type_vocab_size: int, seed: int = 0):
    """Feeds of random token ids at every (batch, sequence) pair, with padding in the batch."""
    rng = np.random.default_rng(seed)
    for batch in BATCH_SIZES:
        for length in SEQUENCE_LENGTHS:
            ids = rng.integers(999, vocab_size, size=(batch, length), dtype=np.int64)
            mask = np.ones((batch, length), dtype=np.int64)
            for row in range(1, batch):  # rows after the first are padded at the end
                mask[row, length - 2 * row:] = 0
            types = np.zeros((batch, length), dtype=np.int64)
            if type_vocab_size > 1:
                types[:, length // 2:] = 1
            values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            yield {"batch": batch, "sequence": length}, {n: values[n] for n in input_names}


def validate_text_graph(model, onnx_path: Path, *, atol: float) -> dict:
    """Compare the graph with the model; a report dict, or ValidationError with a table."""
    import torch

    engine = OrtEngine(onnx_path)
    config = model.config
    cases, worst = [], {}
    for shape, feed in text_feeds([s.name for s in engine.inputs],
                                  vocab_size=config.vocab_size,
                                  type_vocab_size=getattr(config, "type_vocab_size", 0) or 0):
        got = engine.run(feed)
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        outputs = {}
        for name, value in got.items():
            reference = expected[name].numpy()
            if reference.shape != value.shape:
                raise ValidationError(
                    f"Output {name!r} has shape {value.shape} in ONNX but {reference.shape} in "
                    f"PyTorch at batch {shape['batch']}, sequence {shape['sequence']}. Note: the "
                    "trace baked a shape into the graph; report this architecture."
                )
            diff = float(np.max(np.abs(value.astype(np.float64) - reference)))
            outputs[name] = {"max_abs_diff": diff, "atol": atol, "passed": diff <= atol}
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


def failure_table(report: dict) -> str:
    header = f"  {'output':<24} {'batch':>5} {'sequence':>8} {'max abs diff':>13} {'tolerance':>10}"
    lines = ["The ONNX graph disagrees with PyTorch beyond tolerance:", header]
    for case in report["cases"]:
        for name, out in case["outputs"].items():
            mark = "" if out["passed"] else "  <- fails"
            lines.append(f"  {name:<24} {case['batch']:>5} {case['sequence']:>8} "
                         f"{out['max_abs_diff']:>13.3e} {out['atol']:>10.1e}{mark}")
    lines.append("Note: the bundle was not written. Raise the tolerance with --atol only if the "
                 "difference is expected (for example, a model with huge activations).")
    return "\n".join(lines)
