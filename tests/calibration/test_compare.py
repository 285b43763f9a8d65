"""compare: variants against a reference on data, with reports; on copies of tiny bundles
holding variants made here (an exact copy of fp32, a perturbed weight, dynamic int8)."""

from __future__ import annotations

import doctest
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from calibration import compare as compare_module
from calibration import report as report_module
from calibration import task_metrics
from calibration.compare import compare_variants, record_summaries
from calibration.report import write_reports
from calibration.variants import staging_for, write_variant
from runtime import Bundle, InputError, MissingDependencyError
from runtime.cli import main

GRAPH_OUTPUTS = {
    "text-classification": ["logits"],
    "token-classification": ["logits"],
    "question-answering": ["start_logits", "end_logits"],
    "fill-mask": ["logits"],
    "feature-extraction": ["last_hidden_state"],
}
# task -> (the node whose weight gets noise, noise scale in weight std). The tiny random text
# classifier answers "positive" to nearly everything, so only a large change of its classifier
# flips labels; for the other tasks a layer-0 weight is perturbed, so that the perturbed node
# has to be told apart from everything downstream of it.
PERTURBED = {
    "text-classification": ("/classifier/Gemm", 10.0),
    "token-classification": ("/bert/encoder/layer.0/attention/output/dense/MatMul", 1.0),
    "question-answering": ("/bert/encoder/layer.0/attention/output/dense/MatMul", 1.0),
    "fill-mask": ("/bert/encoder/layer.0/attention/output/dense/MatMul", 1.0),
    "feature-extraction": ("/encoder/layer.0/attention/output/dense/MatMul", 1.0),
}


def _copy(tiny_bundle, tmp_path, task) -> Bundle:
    # Session bundles are shared by other tests: variants go into a copy.
    return Bundle.load(shutil.copytree(tiny_bundle("bert", task), tmp_path / "bundle"))


def _add_variant(bundle: Bundle, name: str, model: onnx.ModelProto | None = None,
                 recipe: str = "test") -> Bundle:
    with staging_for(bundle) as staging:
        if model is None:
            shutil.copy(bundle.graph_path("model", "fp32"), staging / "model.onnx")
        else:
            onnx.save(model, str(staging / "model.onnx"))
        return write_variant(bundle, name, {"model": staging / "model.onnx"}, {"name": recipe})


def _int8_variant(bundle: Bundle) -> Bundle:
    """A per-channel dynamic int8 variant made with ORT directly (independent of the recipes
    under test elsewhere)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with staging_for(bundle) as staging:
        quantize_dynamic(bundle.graph_path("model", "fp32"), staging / "model.onnx",
                         weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        return write_variant(bundle, "int8", {"model": staging / "model.onnx"},
                             {"name": "dynamic-int8"})


def _perturbed(bundle: Bundle, node_name: str, scale: float) -> onnx.ModelProto:
    """The fp32 graph with seeded noise added to the weight that ``node_name`` reads."""
    model = onnx.load(str(bundle.graph_path("model", "fp32")))
    node = next(n for n in model.graph.node if n.name == node_name)
    weights = {t.name: t for t in model.graph.initializer}
    name = next(i for i in node.input if i in weights)
    array = numpy_helper.to_array(weights[name])
    noise = np.random.default_rng(0).standard_normal(array.shape).astype(array.dtype)
    weights[name].CopyFrom(numpy_helper.from_array(array + scale * array.std() * noise, name))
    return model


@pytest.mark.parametrize("task", sorted(PERTURBED))
def test_copy_agrees_and_perturbed_weight_is_found(task, tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path, task)
    bundle = _add_variant(bundle, "same", recipe="copy")
    node, scale = PERTURBED[task]
    bundle = _add_variant(bundle, "noisy", _perturbed(bundle, node, scale), recipe="noise")

    report = compare_variants(bundle, samples=24, seed=1)

    assert report["task"] == task and report["reference"]["name"] == "fp32"
    assert report["data"]["source"] == "built-in"
    assert report["data"]["samples"] == min(24, len(compare_module.builtin_rows(bundle)))
    assert list(report["variants"]) == ["same", "noisy"]
    assert report["reference"]["latency_ms"]["runs"] == report["data"]["samples"]
    metric = task_metrics.TASK_METRICS[task]
    assert report["task_metric"] == metric
    for name, variant in report["variants"].items():
        assert set(variant) >= {"recipe", "bytes", "latency_ms", "speedup", "task", "cosine",
                                "sqnr_db", "outputs", "layers"}
        assert variant["task"]["metric"] == metric
        assert list(variant["outputs"]) == GRAPH_OUTPUTS[task]
        assert variant["bytes"] == os.path.getsize(bundle.path / f"onnx/model_{name}.onnx")
        latency = variant["latency_ms"]
        assert 0 < latency["median_ms"] <= latency["p90_ms"]
        assert latency["runs"] == report["data"]["samples"]
        assert variant["layers"]["tensors_compared"] > 50

    same = report["variants"]["same"]
    assert same["task"]["value"] == pytest.approx(1.0)
    assert same["task"]["flips"] == [] and same["task"]["changes"] == []
    for output in same["outputs"].values():
        assert output["max_abs"] == 0.0 and output["mean_abs"] == 0.0
        assert output["identical"] and output["sqnr_db"] is None
        assert output["histogram"]["zeros"] > 0 and sum(output["histogram"]["counts"]) == 0
    assert same["cosine"] == pytest.approx(1.0)
    assert same["layers"]["top"] == []
    assert all(error == 0.0 for _, error in same["layers"]["profile"])

    noisy = report["variants"]["noisy"]
    assert noisy["task"]["value"] < 1.0
    assert noisy["cosine"] < 0.99
    assert all(o["max_abs"] > 0 and not o["identical"] for o in noisy["outputs"].values())
    if task in ("text-classification", "fill-mask", "token-classification",
                "question-answering"):
        assert noisy["task"]["flips"]
    if task == "text-classification":
        flips, count = noisy["task"]["flips"], noisy["task"]["count"]
        assert count == report["data"]["samples"]
        assert noisy["task"]["value"] == pytest.approx(1 - len(flips) / count)
        change = noisy["task"]["changes"][0]
        assert change["sample"] == flips[0] and change["reference"] != change["variant"]
    top = noisy["layers"]["top"]
    assert top[0]["name"] == node  # the error enters where the weight changed
    assert top == sorted(top, key=lambda r: -r["growth"])

    if task == "fill-mask":  # the built-in sentences are masked: agreement at the masks
        assert noisy["task"]["samples_with_masks"] == report["data"]["samples"]
        assert noisy["task"]["positions"] == report["data"]["samples"]
    if task == "question-answering":
        assert 0 <= noisy["task"]["exact_match"] <= noisy["task"]["value"] < 1.0
    if task == "feature-extraction":
        assert noisy["task"]["mean"] >= noisy["task"]["value"]
        assert noisy["task"]["pooling"] == "mean"

    paths = write_reports(bundle, report)
    assert sorted(p.name for p in paths.values()) == ["accuracy.html", "accuracy.json",
                                                      "accuracy.md"]
    assert json.loads(paths["json"].read_text()) == report
    page = paths["html"].read_text()
    assert "http" not in page and "<script" not in page and "<link" not in page
    assert page.count("<svg") >= 1 + 2 * len(GRAPH_OUTPUTS[task])  # scatter, histograms, layers
    assert node in page and "noisy" in page
    markdown = paths["md"].read_text()
    assert "| noisy | noise |" in markdown and "Where the error enters" in markdown
    assert not list(paths["json"].parent.glob(".accuracy*"))  # no temp files left

    bundle = record_summaries(bundle, report)
    recorded = Bundle.load(bundle.path).variants["noisy"]["accuracy"]
    assert recorded["metric"] == metric
    assert recorded["value"] == noisy["task"]["value"]
    assert recorded["cosine"] == noisy["cosine"]
    assert recorded["latency_ms"] == noisy["latency_ms"]["median_ms"]
    assert Bundle.load(bundle.path).variants["fp32"]["accuracy"] is None


def test_dynamic_int8_variant_is_matched_by_tensor_name(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path, "question-answering")
    bundle = _int8_variant(bundle)
    report = compare_variants(bundle, samples=8, layers=True)
    int8 = report["variants"]["int8"]
    assert int8["bytes"] < 0.5 * report["reference"]["bytes"]
    assert 0.99 < int8["cosine"] < 1.0
    assert int8["sqnr_db"] > 15
    layers = int8["layers"]
    # quantize_dynamic inserts nodes and tensors of its own, but keeps the names of the
    # tensors it replaces: most of fp32's float tensors are still compared
    assert layers["tensors_compared"] > 80
    ops = {row["op_type"] for row in layers["top"]}
    assert ops & {"MatMul", "Gather"}  # where int8 weights are read
    assert all(row["growth"] > 0 for row in layers["top"])


def test_pytorch_reference(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path, "text-classification")
    bundle = _add_variant(bundle, "same")
    report = compare_variants(bundle, samples=6, reference="pytorch")
    assert report["reference"]["name"] == "pytorch"
    assert report["reference"]["checkpoint"] == bundle.manifest["source"]["checkpoint"]
    assert list(report["variants"]) == ["fp32", "same"]  # fp32 is a variant of PyTorch now
    fp32 = report["variants"]["fp32"]
    assert fp32["task"]["value"] == 1.0
    assert fp32["outputs"]["logits"]["max_abs"] < 1e-4
    assert fp32["layers"] is None  # nothing to locate: fp32 is the graph layers compare with
    assert report["variants"]["same"]["layers"]["top"] == []


def test_pytorch_reference_errors(tiny_bundle, tmp_path, monkeypatch):
    bundle = _copy(tiny_bundle, tmp_path, "text-classification")
    bundle.manifest["source"]["checkpoint"] = str(tmp_path / "gone")
    with pytest.raises(InputError, match="gone, does not exist.*--reference fp32"):
        compare_variants(bundle, samples=2, reference="pytorch")
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgeport\[export\]'"):
        compare_variants(bundle, samples=2, reference="pytorch")


def test_data_files(tiny_bundle, tmp_path):
    bundle = _add_variant(_copy(tiny_bundle, tmp_path, "text-classification"), "same")
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(f"sample number {i} is here" for i in range(12)) + "\n")
    report = compare_variants(bundle, lines, samples=5, seed=3, layers=False)
    assert report["data"] == {"source": str(lines), "samples": 5, "seed": 3}
    assert report["variants"]["same"]["layers"] is None
    assert report["variants"]["same"]["latency_ms"]["runs"] == 5

    qa = _add_variant(Bundle.load(shutil.copytree(tiny_bundle("bert", "question-answering"),
                                                  tmp_path / "qa")), "same")
    pairs = tmp_path / "qa.jsonl"
    pairs.write_text("".join(json.dumps({"question": f"what is {i}?",
                                         "context": f"{i} is a number after {i - 1}."}) + "\n"
                             for i in range(4)))
    report = compare_variants(qa, pairs, layers=False)
    assert report["data"]["samples"] == 4
    assert report["variants"]["same"]["task"]["exact_match"] == 1.0
    # a data file of the wrong kind: load_samples' own error
    with pytest.raises(InputError, match="needs JSON lines with 'question' and 'context'"):
        compare_variants(qa, lines, layers=False)


def test_bad_arguments_are_clear_errors(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path, "text-classification")
    with pytest.raises(InputError, match="no variants to compare.*only fp32.*edgeport quantize"):
        compare_variants(bundle)
    bundle = _add_variant(bundle, "int8")
    with pytest.raises(InputError, match="no variant 'int9'. Did you mean 'int8'"):
        compare_variants(bundle, variants=["int9"])
    with pytest.raises(InputError, match="fp32 is the reference.*Note:"):
        compare_variants(bundle, variants=["fp32"])
    with pytest.raises(InputError, match="samples must be a positive int, got 0.*Note:"):
        compare_variants(bundle, samples=0)
    with pytest.raises(InputError, match="Did you mean 'pytorch'"):
        compare_variants(bundle, reference="torch")
    with pytest.raises(InputError, match="runs must be a positive int"):
        compare_variants(bundle, runs=0)


def test_cli(tiny_bundle, tmp_path, capsys):
    bundle = _add_variant(_copy(tiny_bundle, tmp_path, "token-classification"), "same")
    assert main(["compare", str(bundle.path), "--samples", "4", "--no-layers"]) == 0
    out = capsys.readouterr().out
    assert "| variant | recipe | entity_f1 |" in out and "| same | test | 1.0000 |" in out
    assert f"report: {bundle.path / 'reports' / 'accuracy.html'}" in out
    assert Bundle.load(bundle.path).variants["same"]["accuracy"]["value"] == 1.0

    assert main(["compare", str(bundle.path), "--samples", "3", "--json",
                 "--variants", "same"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data"]["samples"] == 3 and report["variants"]["same"]["layers"]["top"] == []


@pytest.mark.parametrize("extra, message", [
    (["--variants", "sam"], "no variant 'sam'. Did you mean 'same'"),
    (["--samples", "0"], "samples must be a positive int"),
    (["--reference", "torch"], "Did you mean 'pytorch'"),
    (["--data", "/no/such/file.txt"], "does not exist"),
])
def test_cli_errors_are_one_clear_line(extra, message, tiny_bundle, tmp_path, capsys):
    bundle = _add_variant(_copy(tiny_bundle, tmp_path, "text-classification"), "same")
    assert main(["compare", str(bundle.path), *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("edgeport compare: error:")


def test_compare_runs_where_torch_cannot_be_imported(tiny_bundle, tmp_path):
    bundle = _add_variant(_copy(tiny_bundle, tmp_path, "text-classification"), "same")
    blocker = textwrap.dedent("""
        import sys
        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers"):
                    raise ModuleNotFoundError(f"blocked for this test: {name}", name=name)
        sys.meta_path.insert(0, Blocker())
        from runtime.cli import main
        code = main(["compare", sys.argv[1], "--samples", "3"])
        assert "torch" not in sys.modules and "transformers" not in sys.modules
        print("first", code)
        print("second", main(["compare", sys.argv[1], "--samples", "3", "--reference",
                              "pytorch"]))
    """)
    result = subprocess.run([sys.executable, "-c", blocker, str(bundle.path)],
                            capture_output=True, text=True, timeout=120)
    assert "first 0" in result.stdout, result.stderr
    assert "second 1" in result.stdout
    assert "pip install 'edgeport[export]'" in result.stderr


def test_docstring_examples_hold():
    for module in (compare_module, report_module):
        assert doctest.testmod(module).failed == 0


def test_padding_is_masked_out(tiny_bundle, tmp_path):
    from runtime.text.tokenizer import TextTokenizer

    bundle = _add_variant(_copy(tiny_bundle, tmp_path, "fill-mask"), "same")
    tokenizer = TextTokenizer.from_dir(bundle.path)
    texts = ["short", "a somewhat longer text without masks"]
    padded = tokenizer.pad(tokenizer.encode_batch(texts), pad_to=16)
    np.savez(tmp_path / "padded.npz", **padded)
    report = compare_variants(bundle, tmp_path / "padded.npz", layers=False)
    task = report["variants"]["same"]["task"]
    # no masks in the inputs: every real token counts, no padding position does
    assert task["samples_with_masks"] == 0
    assert task["positions"] == int(padded["attention_mask"].sum()) < 2 * 16
    assert report["variants"]["same"]["outputs"]["logits"]["histogram"]["zeros"] == (
        int(padded["attention_mask"].sum()) * len(tokenizer))


def test_a_variant_that_gives_nan_still_gets_a_valid_report(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path, "text-classification")
    model = onnx.load(str(bundle.graph_path("model", "fp32")))
    bias = next(t for t in model.graph.initializer if t.name == "classifier.bias")
    bias.CopyFrom(numpy_helper.from_array(np.full(3, np.nan, np.float32), bias.name))
    bundle = _add_variant(bundle, "broken", model)
    report = compare_variants(bundle, samples=4)
    broken = report["variants"]["broken"]
    assert broken["cosine"] is None and broken["outputs"]["logits"]["max_abs"] is None
    assert broken["outputs"]["logits"]["nonfinite"] == 4 * 3
    first = broken["layers"]["top"][0]  # where the NaN appears; nothing after it adds more
    assert first["name"] == "/classifier/Gemm" and first["error"] is None
    assert len(broken["layers"]["top"]) == 1
    paths = write_reports(bundle, report)

    def refuse(constant):
        raise AssertionError(f"{constant} in strict JSON")

    json.loads(paths["json"].read_text(), parse_constant=refuse)
    assert "NaN/∞" in paths["md"].read_text() and "NaN/∞" in paths["html"].read_text()


def test_real_minilm_int8_embeddings(minilm_bundle, tmp_path):
    """The real all-MiniLM-L6-v2 with per-channel dynamic int8: sentence-transformers pooling
    from the bundle, and embeddings close to fp32 (about 0.99 min cosine, as measured when
    the project was planned)."""
    bundle = Bundle.load(shutil.copytree(minilm_bundle, tmp_path / "minilm"))
    bundle = _int8_variant(bundle)
    report = compare_variants(bundle, samples=20, layer_samples=2)
    task = report["variants"]["int8"]["task"]
    assert task["pooling"] == "sentence-transformers"
    assert 0.95 < task["value"] < 1.0 and task["value"] <= task["mean"]
    assert task["changes"][0]["cosine"] == task["value"]  # the worst sample is listed first
    assert report["variants"]["int8"]["bytes"] < 0.4 * report["reference"]["bytes"]
    assert report["variants"]["int8"]["layers"]["top"]
