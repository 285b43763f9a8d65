"""Quantization recipes: every recipe makes a variant beside the fp32 graph (which stays byte for
byte the same), records itself in the manifest, runs through the runtime, and stays within a
recipe-specific distance of fp32; the real all-MiniLM-L6-v2 is checked against PyTorch.

The bounds (measured on these tiny random models and on all-MiniLM-L6-v2 with onnxruntime 1.31
on an AVX-512 VNNI CPU; each bound leaves at least 2x the worst measured error as margin):

- optimize: fusions only reorder float math: max |diff| <= 1e-4 x the output scale (the
  exporter's own validation tolerance); measured <= 2e-6.
- fp16: an 11-bit mantissa (relative step 4.9e-4) through two layers: max |diff| <= 1e-2 x
  the output scale; measured <= 3.8e-3 (MPNet 5.5e-2 before its position-bucket arithmetic was
  kept fp32, which this bound catches).
- dynamic-int8: 8-bit activations per tensor, so each output row moves in direction only a
  little: per-row cosine >= 0.98 (measured >= 0.995). Top-1: every row whose fp32 top-1 leads
  the runner-up by more than 10% of the row's range keeps it (measured: so do all rows with a
  5% lead). Plain argmax agreement is no bound on random tiny models: their near-tied logits
  flip (measured 0.89 on text-classification, 0.96 on fill-mask over 30k tokens).
- static-int8: symmetric int8 with fixed calibrated ranges is coarser: per-row cosine >= 0.9
  (measured >= 0.978), and the same top-1 rule.
- int4: 16 levels per 32-weight block, on hidden size 32 one block per column: cosine of the
  whole output tensor >= 0.9 (measured >= 0.966); the real MiniLM shows what int4 keeps of a
  trained model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from sentences import CALIBRATION_SENTENCES, SENTENCES, sentence_transformers_reference

from calibration import recipes
from calibration.quantize import variant_from_bundle
from calibration.recipes import RECIPES
from runtime import Bundle, InputError, pipeline

TASKS = ["text-classification", "token-classification", "question-answering", "fill-mask",
         "feature-extraction"]

TEXTS = SENTENCES[:12]
CALIBRATION = [f"Calibration sentence {i} is about {topic}{'!' * (i % 3)}" + " and more" * (i % 5)
               for i, topic in enumerate(["rain", "trains", "music", "code", "tea", "stars"] * 4)]

# recipe -> (structural mark of the new graph, numeric check against fp32)
DEFAULTS = {name: recipe.options for name, recipe in RECIPES.items()}
VARIANT = {"dynamic-int8": "int8", "static-int8": "qdq", "fp16": "fp16", "int4": "q4",
           "int8-weights": "q8", "optimize": "opt"}


# --- helpers -----------------------------------------------------------------------------------

def _copy(path, tmp_path) -> Path:
    """A private copy of a session bundle: recipes write into the bundle."""
    return shutil.copytree(path, tmp_path / "bundle")


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _calibration_file(bundle: Bundle, tmp_path) -> Path:
    if bundle.task == "question-answering":
        path = tmp_path / "squad.jsonl"
        path.write_text("\n".join(json.dumps({"question": f"What is {text.split()[-1]}?",
                                              "context": text}) for text in CALIBRATION))
    else:
        path = tmp_path / "lines.txt"
        path.write_text("\n".join(CALIBRATION) + "\n")
    return path


def _feeds(bundle_path, texts=TEXTS) -> list[dict]:
    """Feeds made by the runtime's own preprocessing: one per text, and one padded batch."""
    pipe = pipeline(model=bundle_path)
    single = [pipe.text_feed([e]) for e in pipe.tokenizer.encode_batch(texts, truncation=True)]
    return single + [pipe.text_feed(pipe.tokenizer.encode_batch(texts[:6], truncation=True))]


def _compare(bundle: Bundle, variant: str, feeds) -> dict:
    """Distances of a variant's outputs from fp32's over feeds (padding positions left out):
    per output row (a token's features, a text's labels, a text's span logits)."""
    ref, got = bundle.engine("model", "fp32"), bundle.engine("model", variant)
    rows, scale, worst = [], 0.0, 0.0
    for feed in feeds:
        expected, actual = ref.run(feed), got.run(feed)
        assert expected.keys() == actual.keys()
        mask = feed["attention_mask"].astype(bool)
        for name in expected:
            a, b = expected[name], actual[name]
            assert a.shape == b.shape and b.dtype == np.float32, (name, b.shape, b.dtype)
            if a.ndim == 3:  # [batch, sequence, features]: the real tokens only
                pairs = zip(a[mask], b[mask])
            elif a.shape == mask.shape:  # QA start/end logits [batch, sequence]
                pairs = zip([x[m] for x, m in zip(a, mask)], [x[m] for x, m in zip(b, mask)])
            else:  # [batch, labels]
                pairs = zip(a, b)
            for x, y in pairs:
                rows.append((x, y))
                scale = max(scale, float(np.abs(x).max()))
                worst = max(worst, float(np.abs(x - y).max()))
    cosine = [float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12)) for x, y in rows]
    # rows whose top-1 leads the runner-up by more than 10% of the row's range: an error
    # smaller than half that lead cannot change their top-1
    decisive = [x.argmax() == y.argmax() for x, y in rows
                if np.diff(np.sort(x)[-2:])[0] > 0.1 * np.ptp(x)]
    flat_a = np.concatenate([x for x, _ in rows])
    flat_b = np.concatenate([y for _, y in rows])
    return {
        "relative_max_diff": worst / scale,
        "min_row_cosine": min(cosine),
        "cosine": float(flat_a @ flat_b / (np.linalg.norm(flat_a) * np.linalg.norm(flat_b))),
        "argmax_agreement": float(np.mean([x.argmax() == y.argmax() for x, y in rows])),
        "decisive_agreement": float(np.mean(decisive)),
    }


def _check_close(recipe: str, distance: dict) -> None:
    if recipe == "optimize":
        assert distance["relative_max_diff"] <= 1e-4, distance
    elif recipe == "fp16":
        assert distance["relative_max_diff"] <= 1e-2, distance
    elif recipe == "dynamic-int8":
        assert distance["min_row_cosine"] >= 0.98, distance
        assert distance["decisive_agreement"] == 1.0, distance
    elif recipe == "static-int8":
        assert distance["min_row_cosine"] >= 0.9, distance
        assert distance["decisive_agreement"] == 1.0, distance
    elif recipe == "int4":
        assert distance["cosine"] >= 0.9, distance
    elif recipe == "int8-weights":  # 8-bit weights and activations, per block of 32
        assert distance["min_row_cosine"] >= 0.99, distance  # measured >= 0.997
        assert distance["decisive_agreement"] == 1.0, distance
    else:
        raise AssertionError(f"no bound for {recipe}")


def _ops(path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _check_graph(recipe: str, path, model_type: str) -> None:
    """The recipe really changed the graph the way it says (a no-op recipe would pass any
    numeric bound)."""
    model = onnx.load(str(path))
    ops = _ops(path)
    initializers = {t.name: t for t in model.graph.initializer}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in initializers]
    if recipe == "dynamic-int8":
        assert ops.get("MatMulInteger", 0) + ops.get("QAttention", 0) > 0, ops
        assert not matmuls, [n.name for n in matmuls]  # every weight MatMul was quantized
    elif recipe == "static-int8":
        assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0, ops
        zero_points = [numpy_helper.to_array(initializers[n.input[2]]) for n in model.graph.node
                       if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert all(z.dtype == np.int8 and not z.any() for z in zero_points)  # symmetric int8
        consumers = {i: n for n in model.graph.node for i in n.input}
        per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                       and numpy_helper.to_array(initializers[n.input[1]]).ndim == 1]
        assert per_channel
        for node in per_channel:  # one scale per output channel of the weight
            user = consumers[node.output[0]]
            attrs = {a.name: a.i for a in [*node.attribute, *user.attribute]}
            assert user.op_type in ("MatMul", "Gemm")
            assert attrs["axis"] == (0 if user.op_type == "Gemm" and attrs.get("transB") else 1)
    elif recipe == "fp16":
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
        elem = onnx.TensorProto.FLOAT
        assert all(v.type.tensor_type.elem_type in (elem, onnx.TensorProto.INT64)
                   for v in [*model.graph.input, *model.graph.output])  # keep_io_types
        typed = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(
            model).graph.value_info}
        for node in model.graph.node:
            if node.op_type in ("LayerNormalization", "Softmax"):
                assert typed.get(node.output[0], elem) == elem, node.name
    elif recipe in ("int4", "int8-weights"):
        assert ops.get("MatMulNBits", 0) > 0 and not matmuls, ops
        for node in model.graph.node:
            if node.op_type == "MatMulNBits":
                attrs = {a.name: a.i for a in node.attribute}
                assert attrs["bits"] == (4 if recipe == "int4" else 8)
                assert attrs["block_size"] == 32
    elif recipe == "optimize":
        assert ops.get("SkipLayerNormalization", 0) > 0, ops
        if model_type in ("bert", "roberta", "distilbert"):
            assert ops.get("Attention", 0) > 0, ops


def _structure(result):
    """The outline of a pipeline result: list length or dict keys, without the numbers."""
    if isinstance(result, list):
        return ["list", len(result)]
    if isinstance(result, dict):
        return ["dict", sorted(result)]
    return [type(result).__name__]


def _run_pipeline(task: str, path, variant: str):
    pipe = pipeline(task, model=path, variant=variant)
    if task == "question-answering":
        return pipe(question="Where do cats sit?", context="The cat sits outside on the mat.")
    if task == "fill-mask":
        return pipe("The cat [MASK] outside.")
    return pipe(TEXTS[:3])


# --- every recipe on tiny bundles ----------------------------------------------------------------

# Every recipe that makes a graph from a graph (the llm recipe builds LLMs from their checkpoint:
# tests/calibration/test_llm_recipe.py).
GRAPH_RECIPES = [name for name, recipe in RECIPES.items() if not recipe.wants_checkpoint]
CASES = ([("bert", task, recipe) for task in TASKS for recipe in GRAPH_RECIPES]
         + [(model_type, "text-classification", recipe)
            for model_type in ("distilbert", "roberta", "albert", "deberta-v2")
            for recipe in ("dynamic-int8", "fp16", "optimize")]
         + [("mpnet", "feature-extraction", recipe) for recipe in GRAPH_RECIPES]
         + [("xlm-roberta", "fill-mask", recipe) for recipe in ("static-int8", "int4")])


@pytest.mark.parametrize("model_type, task, recipe", CASES)
def test_recipe_makes_a_variant_close_to_fp32(model_type, task, recipe, tiny_bundle, tmp_path):
    path = _copy(tiny_bundle(model_type, task), tmp_path)
    fp32_graph = path / "onnx" / "model.onnx"
    fp32_sha = _sha(fp32_graph)
    calibration = (_calibration_file(Bundle.load(path), tmp_path)
                   if RECIPES[recipe].needs_calibration else None)

    name = variant_from_bundle(path, recipe, calibration=calibration)

    assert name == VARIANT[recipe]
    bundle = Bundle.load(path)
    assert _sha(fp32_graph) == fp32_sha  # the fp32 graph is untouched
    info = bundle.variants[name]
    assert info["files"] == {"model": f"onnx/model_{name}.onnx"}
    assert (path / "onnx" / f"model_{name}.onnx").is_file()
    assert sorted(p.name for p in (path / "onnx").iterdir()) == ["model.onnx",
                                                                 f"model_{name}.onnx"]
    record = info["recipe"]
    assert record["name"] == recipe and record["source"] == "fp32"
    for option, default in DEFAULTS[recipe].items():  # the options used, defaults filled in
        if option == "model_type":
            assert record["options"][option] == model_type
        else:
            # None: the recipe's own choice (a node list: none; int4's accuracy_level: ONNX
            # Runtime's default), recorded as chosen
            expected = ([] if default is None and option not in ("accuracy_level", "smooth_alpha")
                        else default)
            assert record["options"][option] == expected
    if calibration is not None:
        assert record["calibration"] == {"path": str(calibration), "samples": len(CALIBRATION),
                                         "seed": 0}
    _check_graph(recipe, path / info["files"]["model"], model_type)

    _check_close(recipe, _compare(bundle, name, _feeds(path)))
    got, expected = _run_pipeline(task, path, name), _run_pipeline(task, path, "fp32")
    assert _structure(got) == _structure(expected)
    if recipe in ("optimize", "fp16") and task == "text-classification":
        assert [r["label"] for r in got] == [r["label"] for r in expected]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in expected],
                                   atol=1e-2 if recipe == "fp16" else 1e-4)


# --- static-int8 calibration -----------------------------------------------------------------

@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_static_calibration_methods(method, tiny_bundle, tmp_path):
    path = _copy(tiny_bundle("bert", "feature-extraction"), tmp_path)
    calibration = _calibration_file(Bundle.load(path), tmp_path)
    minmax = variant_from_bundle(path, "static-int8", calibration=calibration, name="minmax",
                                 method="minmax")
    name = variant_from_bundle(path, "static-int8", calibration=calibration, name=method,
                               method=method, samples=10, seed=3)
    bundle = Bundle.load(path)
    record = bundle.variants[name]["recipe"]
    assert record["options"]["method"] == method
    assert record["calibration"] == {"path": str(calibration), "samples": 10, "seed": 3}
    _check_graph("static-int8", path / f"onnx/model_{name}.onnx", "bert")
    _check_close("static-int8", _compare(bundle, name, _feeds(path)))
    scales = {}
    for variant in (minmax, name):  # the method changed the activation ranges
        model = onnx.load(str(path / f"onnx/model_{variant}.onnx"))
        values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        scales[variant] = sorted(float(values[n.input[1]]) for n in model.graph.node
                                 if n.op_type == "QuantizeLinear" and values[n.input[1]].ndim == 0)
    assert len(scales[minmax]) == len(scales[name]) and scales[minmax] != scales[name]


def test_static_from_question_answering_jsonl(tiny_bundle, tmp_path):
    path = _copy(tiny_bundle("bert", "question-answering"), tmp_path)
    squad = tmp_path / "squad.jsonl"
    squad.write_text("\n".join(json.dumps({"question": "Who sells shells?",
                                           "context": text}) for text in SENTENCES))
    name = variant_from_bundle(path, "static-int8", calibration=squad, samples=20)
    bundle = Bundle.load(path)
    assert bundle.variants[name]["recipe"]["calibration"]["samples"] == 20
    answer = pipeline("question-answering", model=path, variant=name)(
        question="Where does the cat sit?", context="The cat sits outside on a warm mat.")
    assert set(answer) == {"score", "start", "end", "answer"} and 0 <= answer["score"] <= 1
    with pytest.raises(InputError, match="needs JSON lines with 'question' and 'context'"):
        lines = tmp_path / "lines.txt"
        lines.write_text("a plain line\n")
        variant_from_bundle(path, "static-int8", calibration=lines, name="other")


def test_nodes_to_exclude_stay_fp32(tiny_bundle, tmp_path):
    path = _copy(tiny_bundle("bert", "text-classification"), tmp_path)
    model = onnx.load(str(path / "onnx/model.onnx"))
    weights = {t.name for t in model.graph.initializer}
    first = next(n.name for n in model.graph.node
                 if n.op_type == "MatMul" and n.input[1] in weights)
    for recipe, mark in (("dynamic-int8", "MatMulInteger"), ("int4", "MatMulNBits")):
        name = variant_from_bundle(path, recipe, nodes_to_exclude=[first])
        assert Bundle.load(path).variants[name]["recipe"]["options"]["nodes_to_exclude"] == [
            first]
        quantized = onnx.load(str(path / f"onnx/model_{name}.onnx"))
        kept = [n for n in quantized.graph.node if n.name == first]
        assert [n.op_type for n in kept] == ["MatMul"]
        assert _ops(path / f"onnx/model_{name}.onnx")[mark] >= 1


# --- optimize, and quantizing on top of it ----------------------------------------------------

def test_dynamic_int8_on_top_of_an_optimize_variant(tiny_bundle, tmp_path):
    path = _copy(tiny_bundle("roberta", "text-classification"), tmp_path)
    assert variant_from_bundle(path, "optimize") == "opt"
    record = Bundle.load(path).variants["opt"]["recipe"]["options"]
    assert record["model_type"] == "roberta" and record["optimizer_model_type"] == "bert"
    assert record["fused"]["Attention"] == 2 and record["fused"]["SkipLayerNormalization"] == 4
    name = variant_from_bundle(path, "dynamic-int8", source="opt", name="opt-int8")
    bundle = Bundle.load(path)
    assert bundle.variants[name]["recipe"]["source"] == "opt"
    ops = _ops(path / "onnx/model_opt-int8.onnx")
    assert ops.get("QAttention") == 2 and "SkipLayerNormalization" in ops, ops
    _check_close("dynamic-int8", _compare(bundle, name, _feeds(path)))
    labels = pipeline(model=path, variant=name)(TEXTS)
    assert [r["label"] for r in labels] == [r["label"] for r in pipeline(model=path)(TEXTS)]


def test_optimize_padding_batch_matches_fp32(tiny_bundle, tmp_path):
    """The fused Attention reads the attention mask: padded rows of a batch match fp32."""
    path = _copy(tiny_bundle("bert", "feature-extraction"), tmp_path)
    variant_from_bundle(path, "optimize", opt_level=0)
    assert Bundle.load(path).variants["opt"]["recipe"]["options"]["opt_level"] == 0
    feeds = _feeds(path, SENTENCES[:8])[-1:]  # one padded batch of texts of varied length
    assert not feeds[0]["attention_mask"].all()
    _check_close("optimize", _compare(Bundle.load(path), "opt", feeds))


# --- dynamic-int8 row_scaling (calibration.outliers) -------------------------------------------

def _calibration(tmp_path):
    path = tmp_path / "calibration.txt"
    path.write_text("\n".join(CALIBRATION_SENTENCES) + "\n")
    return path


def test_row_scaled_variants_run_close_to_fp32(tiny_bundle, tmp_path):
    """Plain and on top of an optimize variant (Attention smoothed from calibration data)."""
    path = shutil.copytree(tiny_bundle("bert", "text-classification"), tmp_path / "bundle")
    plain = variant_from_bundle(path, "dynamic-int8", name="rows", row_scaling=True)
    variant_from_bundle(path, "optimize")
    fused = variant_from_bundle(path, "dynamic-int8", name="opt-rows", source="opt",
                                row_scaling=True, calibration=_calibration(tmp_path))
    bundle = Bundle.load(path)
    record = bundle.variants[plain]["recipe"]
    assert record["options"]["row_scaling"] is True
    assert record["options"]["row_scaled_inputs"] == 8  # 2 layers: QKV, context, FFN in, out
    assert record["options"]["smoothed_attention"] == 0 and "calibration" not in record
    record = bundle.variants[fused]["recipe"]
    assert record["options"]["smoothed_attention"] == 2
    # with calibration data, only the inputs whose rows spread are scaled; fused: 3 per layer
    assert record["options"]["row_scaled_inputs"] + record["options"]["rows_even"] == 6
    assert record["calibration"]["samples"] == len(CALIBRATION_SENTENCES)
    assert _ops(path / "onnx/model_opt-rows.onnx")["QAttention"] == 2
    for name in (plain, fused):
        scaled = bundle.variants[name]["recipe"]["options"]["row_scaled_inputs"]
        assert _ops(path / f"onnx/model_{name}.onnx").get("ReduceMax", 0) == scaled
        _check_close("dynamic-int8", _compare(bundle, name, _feeds(path)))
        # the runtime runs it (labels themselves are near-tied on a random tiny model)
        results = pipeline(model=path, variant=name)(SENTENCES[:12])
        assert _structure(results) == _structure(pipeline(model=path)(SENTENCES[:12]))


def test_row_scaling_errors(tiny_bundle, tmp_path):
    path = shutil.copytree(tiny_bundle("bert", "text-classification"), tmp_path / "bundle")
    variant_from_bundle(path, "optimize")
    with pytest.raises(InputError, match="cannot reach inside a fused Attention.*--calibration"):
        variant_from_bundle(path, "dynamic-int8", source="opt", name="x", row_scaling=True)
    with pytest.raises(InputError, match="reads calibration data only with row_scaling"):
        variant_from_bundle(path, "dynamic-int8", calibration=_calibration(tmp_path))
    with pytest.raises(InputError, match="row_scaling option takes true or false"):
        variant_from_bundle(path, "dynamic-int8", row_scaling="yes")
    assert sorted(Bundle.load(path).variants) == ["fp32", "opt"]


@pytest.mark.parametrize("model_type, task", [("bert", "text-classification"),
                                             ("bart", "text2text-generation")])
def test_a_variant_with_external_weights_loads(model_type, task, tiny_bundle, tmp_path,
                                               monkeypatch):
    """A graph over 2 GB keeps its weights in a file beside it; the variant's graph reads them
    under the variant's own file name (here forced on tiny models; BART's merged decoder holds
    its weights in the If branches)."""
    monkeypatch.setattr(recipes, "_large", lambda model: True)
    path = shutil.copytree(tiny_bundle(model_type, task), tmp_path / "bundle")
    name = variant_from_bundle(path, "dynamic-int8", row_scaling=True)
    bundle = Bundle.load(path)
    files = bundle.variants[name]["files"]
    assert bundle.variants[name]["data_files"] == {g: [f + "_data"] for g, f in files.items()}
    for relative in files.values():
        model = onnx.load(str(path / relative), load_external_data=False)
        locations = {e.value for t in model.graph.initializer for e in t.external_data
                     if e.key == "location"}
        assert locations == {Path(relative).name + "_data"}
        mode = (path / relative).stat().st_mode & 0o777
        assert (path / (relative + "_data")).stat().st_mode & 0o777 == mode
    if task == "text-classification":
        _check_close("dynamic-int8", _compare(bundle, name, _feeds(path)))
    else:  # every graph loads and generates
        result = pipeline(model=path, variant=name)(TEXTS[0], max_new_tokens=4)
        assert isinstance(result[0]["generated_text"], str)


# --- the real all-MiniLM-L6-v2 against PyTorch --------------------------------------------------

@pytest.fixture(scope="module")
def minilm_cosines(minilm_bundle, tmp_path_factory):
    """Per-sentence cosine to PyTorch of the fp32 bundle and of its int8 (per channel, the
    default), int8 per-tensor and int4 variants, through the runtime pipeline."""
    path = shutil.copytree(minilm_bundle, tmp_path_factory.mktemp("minilm") / "bundle")
    calibration = path.parent / "calibration.txt"
    calibration.write_text("\n".join(CALIBRATION_SENTENCES) + "\n")
    variants = {
        "fp32": "fp32",
        "int8": variant_from_bundle(path, "dynamic-int8"),
        "int8-per-tensor": variant_from_bundle(path, "dynamic-int8", name="int8-per-tensor",
                                               per_channel=False),
        "q4": variant_from_bundle(path, "int4"),
        "opt": variant_from_bundle(path, "optimize"),
        "opt-int8-rows": variant_from_bundle(path, "dynamic-int8", name="opt-int8-rows",
                                             source="opt", row_scaling=True,
                                             calibration=calibration),
    }
    reference = sentence_transformers_reference(SENTENCES)
    cosines = {}
    for key, variant in variants.items():
        embeddings = np.array(pipeline("feature-extraction", model=path, variant=variant)(
            SENTENCES))
        assert embeddings.shape == (len(SENTENCES), 384)
        cosines[key] = (embeddings * reference).sum(1) / np.linalg.norm(embeddings, axis=1)
    sizes = {key: (path / Bundle.load(path).variants[v]["files"]["model"]).stat().st_size
             for key, v in variants.items()}
    return cosines, sizes


def test_minilm_dynamic_int8_per_channel_against_pytorch(minilm_cosines):
    cosines, sizes = minilm_cosines
    assert len(SENTENCES) >= 50
    assert cosines["fp32"].min() >= 0.9999  # the reference and the bundle agree
    per_channel, per_tensor = cosines["int8"], cosines["int8-per-tensor"]
    # Measured: per channel min 0.967 (on "OK."), mean 0.9925; per tensor min 0.866, mean 0.956.
    assert per_channel.min() >= 0.95, _worst(per_channel)
    assert per_channel.mean() >= 0.99, per_channel.mean()
    assert per_channel.min() >= per_tensor.min() + 0.05, (per_channel.min(), per_tensor.min())
    assert per_channel.mean() > per_tensor.mean() + 0.02
    assert sizes["int8"] < sizes["fp32"] / 3.5  # int8 weights, embeddings included


def test_minilm_plain_dynamic_int8_misses_099_on_short_sentences(minilm_cosines):
    """Measured, not hidden: dynamic int8 quantizes each MatMul input per tensor, and the [CLS]
    row's outlier activations (about 28 against 2-7 in the other rows) set that range, so very
    short sentences, whose mean pool has few other rows, lose most ('OK.' 0.967). The
    accuracy-aware variant (tests/calibration/test_budget.py) and row_scaling reach 0.99."""
    cosines, _ = minilm_cosines
    short = [i for i, s in enumerate(SENTENCES) if len(s.split()) <= 3]
    assert cosines["int8"].min() < 0.99
    assert cosines["int8"][short].min() == cosines["int8"].min()


def test_minilm_row_scaled_int8_reaches_099_against_pytorch(minilm_cosines):
    """The issue's bar: dynamic int8 with min cosine >= 0.99 against PyTorch over 50+ varied
    sentences. Made as users make it: optimize, then dynamic-int8 on top with row_scaling,
    calibrated on other sentences than these. Measured: min 0.9913 (0.965 without
    row_scaling), mean 0.998; benchmarks/quantization.py times it."""
    cosines, sizes = minilm_cosines
    assert len(SENTENCES) >= 50
    assert cosines["opt-int8-rows"].min() >= 0.99, _worst(cosines["opt-int8-rows"])
    assert cosines["opt-int8-rows"].mean() >= 0.995
    assert sizes["opt-int8-rows"] < sizes["fp32"] / 3.5


def test_minilm_int4_keeps_the_meaning(minilm_cosines):
    cosines, sizes = minilm_cosines
    # Measured: min 0.90, mean 0.97 (4-bit weights, fp32 activations); the embedding-table
    # Gather stays fp32, so the file shrinks to about 60%.
    assert cosines["q4"].min() >= 0.85, _worst(cosines["q4"])
    assert cosines["q4"].mean() >= 0.95
    assert sizes["q4"] < sizes["fp32"] * 0.7


def _worst(cosines: np.ndarray) -> list:
    order = np.argsort(cosines)[:5]
    return [(round(float(cosines[i]), 4), SENTENCES[i][:40]) for i in order]


# --- errors --------------------------------------------------------------------------------------

@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    return _copy(tiny_bundle("bert", "text-classification"), tmp_path)


def _unchanged(path, variants) -> None:
    """A failed recipe leaves no variant and no file behind."""
    bundle = Bundle.load(path)
    assert sorted(bundle.variants) == sorted(variants)
    expected = sorted(p for v in variants for p in bundle.variants[v]["files"].values())
    assert sorted(f"onnx/{p.name}" for p in (path / "onnx").iterdir()) == expected


def test_no_recipe_on_an_already_quantized_variant(bundle_copy):
    variant_from_bundle(bundle_copy, "dynamic-int8")
    for recipe in GRAPH_RECIPES:
        with pytest.raises(InputError, match="'int8' is already quantized.*start from 'fp32'"):
            variant_from_bundle(bundle_copy, recipe, source="int8", name="again",
                                calibration=(_calibration_file(Bundle.load(bundle_copy),
                                                               bundle_copy.parent)
                                             if RECIPES[recipe].needs_calibration else None))
    _unchanged(bundle_copy, ["fp32", "int8"])
    # the recipe itself refuses a quantized graph file too, whoever calls it
    for recipe, options in (("int4", {}), ("fp16", {}), ("optimize", {"model_type": "bert"})):
        with pytest.raises(InputError, match=r"model_int8.onnx is already quantized \(it has "):
            RECIPES[recipe].make(bundle_copy / "onnx/model_int8.onnx",
                                 bundle_copy.parent / "x.onnx", **options)
    variant_from_bundle(bundle_copy, "fp16")
    with pytest.raises(InputError, match="already quantized \\(its weights are float16\\)"):
        RECIPES["int4"].make(bundle_copy / "onnx/model_fp16.onnx", bundle_copy.parent / "x.onnx")


def test_an_existing_variant_name(bundle_copy):
    variant_from_bundle(bundle_copy, "dynamic-int8")
    before = _sha(bundle_copy / "onnx/model_int8.onnx")
    with pytest.raises(InputError, match="already has a variant 'int8'.*--overwrite"):
        variant_from_bundle(bundle_copy, "dynamic-int8", per_channel=False)
    assert _sha(bundle_copy / "onnx/model_int8.onnx") == before
    variant_from_bundle(bundle_copy, "dynamic-int8", per_channel=False, overwrite=True)
    bundle = Bundle.load(bundle_copy)
    assert bundle.variants["int8"]["recipe"]["options"]["per_channel"] is False
    assert _sha(bundle_copy / "onnx/model_int8.onnx") != before
    _unchanged(bundle_copy, ["fp32", "int8"])


def test_calibration_data_errors(bundle_copy, tmp_path):
    with pytest.raises(InputError, match="No calibration data at .*missing.txt: it does not"):
        variant_from_bundle(bundle_copy, "static-int8", calibration=tmp_path / "missing.txt")
    with pytest.raises(InputError, match="static-int8 recipe needs calibration data"):
        variant_from_bundle(bundle_copy, "static-int8")
    with pytest.raises(InputError, match="needs calibration data"):  # called directly
        RECIPES["static-int8"].make(bundle_copy / "onnx/model.onnx", tmp_path / "x.onnx")
    with pytest.raises(InputError, match="takes no calibration data"):
        variant_from_bundle(bundle_copy, "int4",
                            calibration=_calibration_file(Bundle.load(bundle_copy), tmp_path))
    with pytest.raises(InputError, match="sample 0 has no 'attention_mask'"):
        RECIPES["static-int8"].make(bundle_copy / "onnx/model.onnx", tmp_path / "x.onnx",
                                    feeds=[{"input_ids": np.ones((1, 4), np.int64)}])
    _unchanged(bundle_copy, ["fp32"])


@pytest.mark.parametrize("recipe, options, message", [
    ("dynamic-int8", {"per_chanel": False},
     "takes no option 'per_chanel'. Did you mean 'per_channel'\\?"),
    ("int4", {"blocksize": 64}, "takes no option 'blocksize'. Did you mean 'block_size'\\?"),
    ("fp16", {"per_channel": True}, "fp16 recipe takes no option 'per_channel'"),
    ("static-int8", {"method": "entrpy"},
     "Unknown method 'entrpy' for the static-int8 recipe. Did you mean 'entropy'\\? Note: "
     "known values are: entropy, minmax, percentile, search."),
    ("static-int8", {"method": "foo"}, "Unknown method 'foo'.*Note: known values are"),
    ("dynamic-int8", {"weight_type": "int4"}, "Unknown weight_type 'int4'.*Did you mean"),
    ("dynamic-int8", {"per_channel": "no"}, "per_channel option takes true or false, got 'no'"),
    ("int4", {"block_size": 24}, "block_size must be a power of two of at least 16, got 24"),
    ("int4", {"block_size": 8}, "block_size must be a power of two of at least 16, got 8"),
    ("int4", {"block_size": "32"}, "power of two of at least 16, got '32'"),
    ("int4", {"symmetric": 1}, "symmetric option takes true or false, got 1"),
    ("fp16", {"op_block_list": ["Softmx"]},
     "op_block_list names 'Softmx', which is no op type of the graph. Did you mean 'Softmax'"),
    ("fp16", {"op_block_list": "Softmax"}, "takes a list of op types, got 'Softmax'"),
    ("dynamic-int8", {"nodes_to_exclude": ["/bert/encoder/layer.0/output/dense/MatMull"]},
     "no node name of the graph. Did you mean '/bert/encoder/layer.0/output/dense/MatMul'"),
    ("optimize", {"opt_level": 3}, "Unknown opt_level 3 for the optimize recipe.*0, 1, 2, 99"),
    ("optimize", {"model_type": "bertt"},
     "no fusions for model_type 'bertt'. Did you mean 'bert'"),
    ("optimize", {"num_heads": -2}, "num_heads must be a whole number >= 0, got -2"),
])
def test_bad_options_are_clear_errors(recipe, options, message, bundle_copy, tmp_path):
    calibration = (_calibration_file(Bundle.load(bundle_copy), tmp_path)
                   if RECIPES[recipe].needs_calibration else None)
    with pytest.raises(InputError, match=message) as caught:
        variant_from_bundle(bundle_copy, recipe, calibration=calibration, **options)
    assert "Note:" in str(caught.value) or "Did you mean" in str(caught.value)
    _unchanged(bundle_copy, ["fp32"])


def test_a_graph_without_matmul(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "bias"], ["y"], name="add")], "no-matmul",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.ones(4, np.float32), "bias")])
    source = tmp_path / "add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), source)
    for recipe in ("int4", "dynamic-int8"):
        with pytest.raises(InputError, match="add.onnx has no MatMul with a constant weight, so "
                                             f"the {recipe} recipe has nothing to quantize"):
            RECIPES[recipe].make(source, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
    with pytest.raises(InputError, match="needs the model's architecture"):
        RECIPES["optimize"].make(source, tmp_path / "out.onnx")
    with pytest.raises(InputError, match="cannot read .*broken.onnx"):
        (tmp_path / "broken.onnx").write_bytes(b"not a graph")
        RECIPES["fp16"].make(tmp_path / "broken.onnx", tmp_path / "out.onnx")


def test_fp16_of_a_graph_with_external_weights(tiny_bundle, tmp_path, monkeypatch):
    """A graph over EXTERNAL_DATA_BYTES (BERT-base, 440 MB) is written with external weights;
    the fp16 converter still needs every tensor's type to cast around the ops kept fp32
    (before: BERT-base's fp16 variant did not load, LayerNorm bound to fp16 and fp32)."""
    path = _copy(tiny_bundle("bert", "text-classification"), tmp_path)
    monkeypatch.setattr(recipes, "EXTERNAL_DATA_BYTES", 1024)
    name = variant_from_bundle(path, "fp16")
    assert (path / "onnx" / f"model_{name}.onnx_data").is_file()  # the large-graph path
    _check_graph("fp16", path / "onnx" / f"model_{name}.onnx", "bert")
    _check_close("fp16", _compare(Bundle.load(path), name, _feeds(path)))
