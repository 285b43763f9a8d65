"""static-int8 for TensorRT: Q/DQ only where TensorRT fuses them, and the accuracy that placement
and the per-MatMul search buy on the real all-MiniLM-L6-v2.

TensorRT's rules for a QDQ graph it builds int8 from (strongly typed: the precision comes from
the graph): a QuantizeLinear -> DequantizeLinear pair on each input of a MatMul, Gemm or Conv;
weights as a constant int8 initializer with its own DequantizeLinear (symmetric, zero point 0,
per output channel); nothing quantized that TensorRT would have to run as a standalone int8
layer (products, LayerNorm, Softmax, GELU, residual adds) and nothing on shape arithmetic.
"""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from sentences import CALIBRATION_SENTENCES, SENTENCES

from calibration import qdq_search
from calibration.compare import compare_variants
from calibration.quantize import variant_from_bundle
from calibration.report import markdown_report
from runtime import Bundle, InputError, pipeline

FUSED = ("MatMul", "Gemm", "Conv")


def _calibration(tmp_path, texts=CALIBRATION_SENTENCES):
    path = tmp_path / "calibration.txt"
    path.write_text("\n".join(texts) + "\n")
    return path


def check_tensorrt_placement(path, *, attention_matmuls: bool = False,
                             float_type: int = onnx.TensorProto.FLOAT) -> dict:
    """Assert TensorRT's QDQ rules on the graph at ``path``, whose float activations and scales
    are ``float_type``; return counts."""
    model = onnx.load(str(path))
    scale = onnx.helper.tensor_dtype_to_np_dtype(float_type)
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    quantized_inputs = 0
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            assert [c.op_type for c in consumers[node.output[0]]] == ["DequantizeLinear"], node.name
            source = producer.get(node.input[0])
            # a float activation: not a weight (those are stored int8), not shape arithmetic
            assert node.input[0] not in initializers, node.name
            assert types.get(node.input[0]) == float_type, node.name
            assert source is None or source.op_type not in FUSED, (
                f"{node.name} quantizes the product of {source.name}")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero = initializers[node.input[2]]
            assert zero.dtype == np.int8 and not zero.any(), node.name  # symmetric int8
            assert initializers[node.input[1]].dtype == scale, node.name
        if node.op_type == "DequantizeLinear":
            users = consumers.get(node.output[0], [])
            assert users and all(u.op_type in FUSED for u in users), (
                node.name, [u.op_type for u in users])
            if node.input[0] in initializers:  # a weight: constant int8, per output channel
                assert initializers[node.input[0]].dtype == np.int8
                assert initializers[node.input[1]].ndim == 1
            else:
                assert producer[node.input[0]].op_type == "QuantizeLinear"
                assert initializers[node.input[1]].ndim == 0  # activations per tensor
                quantized_inputs += 1
    weight_matmuls = [n for n in model.graph.node if n.op_type == "MatMul"
                      and n.input[1] in producer and producer[n.input[1]].op_type
                      == "DequantizeLinear" and producer[n.input[1]].input[0] in initializers]
    float_weights = [n.name for n in model.graph.node if n.op_type == "MatMul"
                     and n.input[1] in initializers]
    two_activations = [n for n in model.graph.node if n.op_type == "MatMul"
                       and all(i in producer and producer[i].op_type == "DequantizeLinear"
                               and producer[i].input[0] not in initializers for i in n.input)]
    if not attention_matmuls:
        assert not two_activations, [n.name for n in two_activations]
    return {"int8_weight_matmuls": len(weight_matmuls), "float_weight_matmuls": float_weights,
            "quantized_inputs": quantized_inputs, "two_activation_matmuls": len(two_activations)}


@pytest.mark.parametrize("method", ["minmax", "search"])
def test_tensorrt_placement_text(method, tiny_bundle, tmp_path):
    path = shutil.copytree(tiny_bundle("bert", "text-classification"), tmp_path / "bundle")
    name = variant_from_bundle(path, "static-int8", calibration=_calibration(tmp_path),
                               method=method, name=method)
    counts = check_tensorrt_placement(path / f"onnx/model_{name}.onnx")
    assert counts["int8_weight_matmuls"] >= 12 and not counts["float_weight_matmuls"], counts
    record = Bundle.load(path).variants[name]["recipe"]["options"]
    assert record["attention_matmuls"] is False and record["format"] == "QDQ"
    # what runs int8 is recorded: every weight MatMul (12 in the layers, the pooler's Gemm...)
    assert sum(record["quantized"]["int8"].values()) == counts["int8_weight_matmuls"] + sum(
        1 for n in onnx.load(str(path / f"onnx/model_{name}.onnx")).graph.node
        if n.op_type == "Gemm")
    assert record["quantized"]["float"] == []
    if method == "search":
        assert record["searched"] and all({"alpha", "clip", "range", "error"} <= set(s)
                                          for s in record["searched"].values())


def test_tensorrt_placement_vision(tiny_bundle, tmp_path):
    from images import photos

    path = shutil.copytree(tiny_bundle("vit", "image-classification"), tmp_path / "bundle")
    folder = tmp_path / "images"
    folder.mkdir()
    for index, image in enumerate(photos()[:4]):
        image.save(folder / f"{index}.png")
    name = variant_from_bundle(path, "static-int8", calibration=folder)
    counts = check_tensorrt_placement(path / f"onnx/model_{name}.onnx")
    assert counts["int8_weight_matmuls"] >= 12, counts


def test_attention_matmuls_on_request(tiny_bundle, tmp_path):
    path = shutil.copytree(tiny_bundle("bert", "feature-extraction"), tmp_path / "bundle")
    name = variant_from_bundle(path, "static-int8", calibration=_calibration(tmp_path),
                               attention_matmuls=True)
    counts = check_tensorrt_placement(path / f"onnx/model_{name}.onnx", attention_matmuls=True)
    assert counts["two_activation_matmuls"] == 4  # Q @ K^T and P @ V in both layers


def test_fp16_float_parts(tiny_bundle, tmp_path):
    """float_type=fp16, TensorRT's int8 + fp16 variant: the same Q/DQ with fp16 scales (opset
    19), every MatMul reading fp16, LayerNorm and Softmax still fp32; close to the fp32 one."""
    path = shutil.copytree(tiny_bundle("bert", "text-classification"), tmp_path / "bundle")
    calibration = _calibration(tmp_path)
    plain = variant_from_bundle(path, "static-int8", calibration=calibration, name="qdq32")
    left_out = [n.name for n in onnx.load(str(path / "onnx/model.onnx")).graph.node
                if n.op_type == "MatMul" and "intermediate" in n.name][0]
    half = variant_from_bundle(path, "static-int8", calibration=calibration, name="qdq16",
                               float_type="fp16", nodes_to_exclude=[left_out])
    graph = path / f"onnx/model_{half}.onnx"
    counts = check_tensorrt_placement(graph, float_type=onnx.TensorProto.FLOAT16)
    assert counts["int8_weight_matmuls"] >= 11 and counts["float_weight_matmuls"] == [left_out]
    model = onnx.load(str(graph))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19
    types = {v.name: v.type.tensor_type.elem_type for v in [
        *onnx.shape_inference.infer_shapes(model).graph.value_info, *model.graph.input]}
    types.update((t.name, t.data_type) for t in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "MatMul":
            assert {types.get(i) for i in node.input} == {onnx.TensorProto.FLOAT16}, node.name
        if node.op_type in ("LayerNormalization", "Softmax"):
            assert types.get(node.input[0]) == onnx.TensorProto.FLOAT, node.name
    record = Bundle.load(path).variants[half]["recipe"]["options"]
    assert record["float_type"] == "fp16" and record["quantized"]["int8"]["MatMul"] >= 11
    # a MatMul left out of int8 (as --max-drop leaves them) runs fp16, its weight fp16
    assert record["quantized"]["float"] == [left_out]
    node = next(n for n in model.graph.node if n.name == left_out)
    weights = {t.name: t for t in model.graph.initializer}
    assert weights[node.input[1]].data_type == onnx.TensorProto.FLOAT16
    texts = SENTENCES[:12]
    scores = [[{d["label"]: d["score"] for d in row} for row in pipeline(
        "text-classification", model=path, variant=v, top_k=None)(texts)] for v in (plain, half)]
    for a, b in zip(*scores):
        assert max(abs(a[k] - b[k]) for k in a) < 0.02, (a, b)
    # the accuracy report says what runs in int8 and what was left float
    report = compare_variants(path, variants=[half], samples=4, layers=False)
    text = markdown_report(report)
    assert f"int8: {record['quantized']['int8']['MatMul']} MatMul" in text
    assert f"left float: {left_out}" in text
    with pytest.raises(InputError, match="Unknown float_type 'bf16'"):
        variant_from_bundle(path, "static-int8", calibration=calibration, float_type="bf16")


def test_option_errors(tiny_bundle, tmp_path):
    path = shutil.copytree(tiny_bundle("bert", "feature-extraction"), tmp_path / "bundle")
    calibration = _calibration(tmp_path)
    with pytest.raises(InputError, match="picks the SmoothQuant strength"):
        variant_from_bundle(path, "static-int8", calibration=calibration, method="search",
                            smooth_alpha=0.5)
    with pytest.raises(InputError, match=r"smooth_alpha option is a number in \(0, 1\]"):
        variant_from_bundle(path, "static-int8", calibration=calibration, smooth_alpha=2)
    with pytest.raises(InputError, match="attention_matmuls option takes true or false"):
        variant_from_bundle(path, "static-int8", calibration=calibration,
                            attention_matmuls="no")


def test_search_moves_a_planted_outlier_channel_into_the_weights():
    """Rows of 64 channels, one of them 60x the others (a LayerNorm output's outlier channel):
    per-tensor int8 leaves the others a few steps; the search smooths it and errs far less."""
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((512, 64)).astype(np.float32)
    rows[:, 5] *= 60
    weight = rng.standard_normal((64, 32)).astype(np.float32) * 0.05
    sample = {"rows": rows, "folds": np.arange(512) % 2,
              "peaks": np.stack([np.abs(rows[0::2]).max(0), np.abs(rows[1::2]).max(0)])}
    best = qdq_search.best_setting(sample, [weight])
    assert best["alpha"] is not None
    assert best["error"] < best["error_minmax"] / 5, best
    plain = {"rows": rng.standard_normal((512, 64)).astype(np.float32),
             "folds": np.arange(512) % 2}
    plain["peaks"] = np.stack([np.abs(plain["rows"][0::2]).max(0),
                               np.abs(plain["rows"][1::2]).max(0)])
    even = qdq_search.best_setting(plain, [weight])
    assert even["error"] <= even["error_minmax"]  # never worse than plain min/max
    # well spread, int8 does well: min/max's ranges kept (below the floor), headroom and all
    assert even["error_minmax"] < qdq_search.FLOOR and (even["alpha"], even["clip"]) == (None, 1)
    assert qdq_search.best_setting(plain, [weight], floor=0)["alpha"] is not None


def test_factors_only_shrink_outlier_channels():
    peak = np.array([1.0, 1.2, 0.8, 40.0])
    factor = qdq_search.factors(peak, [np.ones((4, 3))], 0.5)
    assert factor.min() == 1.0 and factor[3] > 5
    np.testing.assert_array_equal(qdq_search.factors(peak, [np.ones((4, 3))], None), 1.0)


# --- the real all-MiniLM-L6-v2 --------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_static(minilm_bundle, tmp_path_factory):
    """Min cosine to fp32, over the 58 held-out sentences, of static-int8 variants calibrated
    on the 32 calibration sentences."""
    folder = tmp_path_factory.mktemp("minilm-static")
    path = shutil.copytree(minilm_bundle, folder / "bundle")
    calibration = _calibration(folder)
    reference = np.array(pipeline("feature-extraction", model=path)(SENTENCES))
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    cosines, counts = {}, {}
    for name, options in {"minmax": {"method": "minmax"}, "search": {},
                          "search16": {"float_type": "fp16"}}.items():
        variant = variant_from_bundle(path, "static-int8", calibration=calibration, name=name,
                                      **options)
        got = np.array(pipeline("feature-extraction", model=path, variant=variant)(SENTENCES))
        cosines[name] = (got * reference).sum(1) / np.linalg.norm(got, axis=1)
        counts[name] = check_tensorrt_placement(
            path / f"onnx/model_{variant}.onnx", float_type=onnx.TensorProto.FLOAT16
            if name == "search16" else onnx.TensorProto.FLOAT)
    assert not set(SENTENCES) & set(CALIBRATION_SENTENCES)
    return cosines, counts


def test_minilm_static_int8_accuracy(minilm_static):
    """Measured with onnxruntime 1.31 (min / mean): search (the default) 0.988 / 0.997, with
    fp16 float parts 0.984 / 0.997; minmax 0.890 / 0.979 (0.553 / 0.824 with ONNX Runtime's
    placement: products and the residual path quantized too); dynamic-int8: 0.967 / 0.992."""
    cosines, counts = minilm_static
    assert cosines["minmax"].min() >= 0.87, cosines["minmax"].min()
    assert cosines["minmax"].mean() >= 0.97, cosines["minmax"].mean()
    assert cosines["search"].min() >= 0.98, cosines["search"].min()
    assert cosines["search"].mean() >= 0.995, cosines["search"].mean()
    assert cosines["search16"].min() >= 0.98, cosines["search16"].min()
    for name in cosines:  # every weight MatMul of the 6 layers in int8
        assert counts[name]["int8_weight_matmuls"] == 36, counts[name]


def test_convolutions_in_int8(tiny_bundle, tmp_path, image_folder):
    """A ResNet's Convs past the stem get Q/DQ on their inputs (per-tensor activations,
    per-output-channel weights on axis 0), as TensorRT fuses them; the stem, reading the
    image itself, stays float unless convs=all; its scores stay close to fp32's."""
    from images import photos

    path = shutil.copytree(tiny_bundle("resnet", "image-classification"), tmp_path / "bundle")
    name = variant_from_bundle(path, "static-int8", calibration=image_folder)
    graph = path / f"onnx/model_{name}.onnx"
    check_tensorrt_placement(graph)
    model = onnx.load(str(graph))
    producer = {o: n for n in model.graph.node for o in n.output}
    initializers = {t.name for t in model.graph.initializer}
    inputs = {i.name for i in model.graph.input}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    stem = [n.name for n in convs if n.input[0] in inputs]
    assert len(stem) == 1 and len(convs) > 2
    for conv in convs:
        if conv.name in stem:
            assert conv.input[1] in initializers  # float weights
            continue
        weight = producer[conv.input[1]]
        assert weight.op_type == "DequantizeLinear" and weight.input[0] in initializers
        assert {a.name: a.i for a in weight.attribute}.get("axis", 1) == 0, conv.name
        assert producer[conv.input[0]].op_type == "DequantizeLinear", conv.name
    record = Bundle.load(path).variants[name]["recipe"]["options"]
    assert record["quantized"]["int8"]["Conv"] == len(convs) - 1
    assert record["quantized"]["float"] == stem and record["convs"] == "auto"
    images = photos()
    fp32, int8 = (pipeline("image-classification", model=path, variant=v, top_k=1000)(images)
                  for v in ("fp32", name))
    for a, b in zip(fp32, int8):
        scores = {d["label"]: d["score"] for d in b}
        assert max(abs(d["score"] - scores[d["label"]]) for d in a) < 0.05
    for convs_option, expected in (("all", len(convs)), ("none", 0)):
        other = variant_from_bundle(path, "static-int8", calibration=image_folder,
                                    name=convs_option, convs=convs_option)
        quantized = Bundle.load(path).variants[other]["recipe"]["options"]["quantized"]
        assert quantized["int8"].get("Conv", 0) == expected, quantized

