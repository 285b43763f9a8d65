"""A variant that differs from fp32 by a known amount: for the comparison tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from calibration.variants import staging_for, write_variant
from runtime import Bundle


def noisy_variant(bundle: Bundle, scale: float = 1.0, *, ops=("MatMul",),
                  last: bool = False) -> Bundle:
    """``bundle`` with a variant "noisy": the fp32 graph with seeded noise (``scale`` x its
    std) on the weight of the first node of ``ops`` that reads one (``last``: the last, e.g.
    a classifier's). A float graph every backend runs."""
    model = onnx.load(str(bundle.graph_path("model", "fp32")))
    weights = {t.name: t for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in ops
             and any(i in weights for i in n.input)]
    node = nodes[-1 if last else 0]
    name = next(i for i in node.input if i in weights)
    array = numpy_helper.to_array(weights[name])
    noise = np.random.default_rng(0).standard_normal(array.shape).astype(array.dtype)
    weights[name].CopyFrom(numpy_helper.from_array(array + scale * array.std() * noise, name))
    with staging_for(bundle) as staging:
        onnx.save(model, str(staging / "model.onnx"))
        return write_variant(bundle, "noisy", {"model": staging / "model.onnx"},
                             {"name": "noise"})
