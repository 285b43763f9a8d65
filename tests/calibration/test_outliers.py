"""The rewrites behind dynamic-int8's row_scaling (calibration.outliers) are exact in fp32; the
recipe itself is tested with the others (test_recipes.py)."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from sentences import SENTENCES

from calibration import outliers
from calibration.quantize import variant_from_bundle
from calibration.recipes import _graph_inputs
from runtime import pipeline


def _run(model, feed) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _two_matmuls(opset: int):
    """x [rows, 8] -> x @ W1 and x @ W2 (one shared input), then x @ W1 @ W3."""
    rng = np.random.default_rng(opset)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
               for name, shape in (("w1", (8, 6)), ("w2", (8, 5)), ("w3", (6, 4)))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
             helper.make_node("MatMul", ["x", "w2"], ["y2"], name="second"),
             helper.make_node("MatMul", ["h", "w3"], ["y3"], name="third")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", 8])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["rows", k])
         for n, k in (("h", 6), ("y2", 5), ("y3", 4))],
        weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


@pytest.mark.parametrize("opset", [13, 18])  # ReduceMax's axes: attribute, then input
def test_row_scaling_is_exact_in_fp32(opset):
    model = _two_matmuls(opset)
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    x[1] *= 40  # an outlier row
    x[3] = 0  # an all-zero row stays zero, not 0 / 0
    expected = _run(model, {"x": x})
    assert outliers.scale_rows(model) == 2  # x (shared by two MatMuls) and h
    onnx.checker.check_model(model)
    got = _run(model, {"x": x})
    for a, b in zip(expected, got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    assert not got[0][3].any()
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("ReduceMax") == 2 and ops.count("Mul") == 3
    # the MatMuls keep their names and their products their tensor names
    assert {"first", "second", "third"} <= {n.name for n in model.graph.node}


def _scaled(model) -> set[str]:
    return {n.name for n in model.graph.node if n.op_type == "MatMul"
            and n.input[0].endswith("_row_scale_x")}


def test_row_scaling_leaves_excluded_matmuls_alone():
    model = _two_matmuls(18)
    assert outliers.scale_rows(model, exclude=["first", "second"]) == 1
    assert _scaled(model) == {"third"}


def test_the_row_spread_picks_the_inputs_to_scale():
    """profile measures each tensor's largest row peak against its median row's; only inputs
    whose rows spread past ROW_SPREAD are scaled."""
    model = _two_matmuls(18)
    assert set(outliers.matmul_inputs(model)) == {"x", "h"}
    x = np.random.default_rng(1).uniform(0.5, 1, size=(6, 8)).astype(np.float32)
    x[2, 5] = 30  # one outlier row, as a [CLS] token's
    session = ort.InferenceSession(outliers.with_outputs(model, ["x"]).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    peaks, spread = outliers.profile(session, ["x"], [{"x": x}, {"x": x[3:]}], ["x"])
    np.testing.assert_allclose(peaks["x"], np.abs(x).max(0))
    rows = np.abs(x).max(1)
    assert spread["x"] == pytest.approx(rows.max() / np.median(rows)) and spread["x"] > 20
    chosen = [name for name, value in spread.items() if value >= outliers.ROW_SPREAD]
    assert outliers.scale_rows(model, only=chosen) == 1
    assert _scaled(model) == {"first", "second"}


def test_smoothing_a_fused_attention_is_exact_in_fp32(tiny_bundle, tmp_path):
    path = shutil.copytree(tiny_bundle("bert", "feature-extraction"), tmp_path / "bundle")
    variant_from_bundle(path, "optimize")
    model = onnx.load(str(path / "onnx/model_opt.onnx"))
    pipe = pipeline(model=path)
    feeds = [pipe.text_feed(pipe.tokenizer.encode_batch(SENTENCES[:6], truncation=True))]
    expected = [_run(model, feed) for feed in feeds]
    names = outliers.attention_inputs(model)
    assert len(names) == 2  # two layers
    probe = outliers.with_outputs(model, names)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    peaks, _ = outliers.profile(session, names, feeds, _graph_inputs(model))
    assert all(p.shape == (32,) and (p > 0).all() for p in peaks.values())
    weights_before = len(model.graph.initializer)
    assert outliers.smooth_channels(model, peaks) == 2
    assert len(model.graph.initializer) == weights_before + 2  # scaled weights replace theirs
    for feed, want in zip(feeds, expected):
        for a, b in zip(want, _run(model, feed)):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())
