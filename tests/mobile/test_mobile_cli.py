"""`edgeport mobile BUNDLE -o OUT`: model.ort, the fixed-shape graph, the report, the README and
examples, on tiny bundles; and its errors, each one line."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from runtime.bundle import file_sha256
from runtime.cli import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    status = main(["mobile", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def ort_outputs(path, feeds, library=None):
    options = ort.SessionOptions()
    if library:
        options.register_custom_ops_library(library)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


@pytest.fixture(scope="module")
def bert_out(tiny_bundle, tmp_path_factory):
    from mobile.build import mobile_from_bundle

    bundle = tiny_bundle("bert", "text-classification")
    out = tmp_path_factory.mktemp("mobile-bert") / "out"
    report = mobile_from_bundle(bundle, out, shapes=["batch=1", "sequence=16"])
    return bundle, out, report


def test_text_classification_folder(bert_out):
    from mobile.convert import sample_feeds
    from runtime.bundle import Bundle

    bundle_path, out, report = bert_out
    bundle = Bundle.load(bundle_path)
    for name in ("model.ort", "model.required_operators.config", "model_fixed.onnx",
                 "model_fixed.ort", "mobile_report.json", "mobile_report.md", "README.md",
                 "examples/android/EdgeportModel.kt", "examples/ios/EdgeportModel.swift",
                 "examples/web/run.mjs"):
        assert (out / name).is_file(), name
    # model.ort gives the bundle graph's outputs, at a size other than the report's sample
    feeds = sample_feeds(bundle, "model", {"batch": 2, "sequence": 7}, seed=3)
    want = ort_outputs(bundle.graph_path(), feeds)["logits"]
    got = ort_outputs(out / "model.ort", feeds)["logits"]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (out / "model.ort").read_bytes()[4:8] == b"ORTM"  # the flatbuffer's identifier
    # the fixed graph: static shapes, same results at them
    fixed = onnx.load(str(out / "model_fixed.onnx"))
    for value in fixed.graph.input:
        assert [d.dim_value for d in value.type.tensor_type.shape.dim] == [1, 16]
    feeds = sample_feeds(bundle, "model", {"batch": 1, "sequence": 16}, seed=4)
    np.testing.assert_allclose(ort_outputs(out / "model_fixed.ort", feeds)["logits"],
                               ort_outputs(bundle.graph_path(), feeds)["logits"], atol=1e-5)
    session = ort.InferenceSession(str(out / "model_fixed.ort"),
                                   providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 16]
    # the operator config: one line per domain and opset, no temp paths left in it
    config = (out / "model.required_operators.config").read_text()
    assert "ai.onnx;" in config and "MatMul" in config and "staging" not in config


def test_text_classification_report(bert_out):
    _, out, report = bert_out
    saved = json.loads((out / "mobile_report.json").read_text())
    assert saved["artifacts"]["model.ort"]["bytes"] == (out / "model.ort").stat().st_size
    for name in ("model.ort", "model_fixed.onnx", "model_fixed.ort"):
        item = saved["artifacts"][name]
        assert item["bytes"] > 0 and item["first_run_ms"] > 0 and item["load_ms"] > 0
        assert item["max_abs_diff"] < 1e-4
    for key in ("model", "model_fixed"):
        providers = saved["execution_providers"][key]["providers"]
        assert set(providers) == {"NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram",
                                  "XNNPACK"}
        for record in providers.values():
            now = record["as_is"]
            assert 0 <= now["supported_nodes"] <= now["nodes"] and now["nodes"] > 10
    dynamic = saved["execution_providers"]["model"]
    assert dynamic["dynamic_inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    nnapi = dynamic["providers"]["NNAPI"]
    # BERT's attention mask path is dynamic: fixing the shapes lets NNAPI take more nodes
    assert nnapi["fixed_shapes_help"] and (nnapi["with_fixed_shapes"]["supported_nodes"]
                                           > nnapi["as_is"]["supported_nodes"])
    xnnpack = dynamic["providers"]["XNNPACK"]["as_is"]  # MatMul and Softmax: its kernels
    assert xnnpack["supported_nodes"] > 0 and "ai.onnx:MatMul" not in xnnpack["unsupported_ops"]
    assert "ai.onnx:LayerNormalization" in xnnpack["unsupported_ops"]
    assert saved["execution_providers"]["model_fixed"]["dynamic_inputs"] == []
    assert saved["fixed_shapes"] == {"fixed": {"batch": 1, "sequence": 16}, "dynamic": []}
    text = (out / "mobile_report.md").read_text()
    assert "| NNAPI |" in text and "| XNNPACK |" in text and "model_fixed.ort" in text
    assert saved["e2e"]["built"] and "model_e2e.ort" in saved["artifacts"]


def test_readme_and_examples(bert_out):
    _, out, _ = bert_out
    readme = (out / "README.md").read_text()
    for text in ("onnxruntime-android:1.31.1", "onnxruntime-extensions-android:0.15.0",
                 "onnxruntime-objc', '~> 1.31.1'", "onnxruntime-extensions-c', '~> 0.15.0'",
                 "onnxruntime-web@1.31.1", "no extensions build", "`logits`", "`text`"):
        assert text in readme, text
    kotlin = (out / "examples/android/EdgeportModel.kt").read_text()
    assert 'inputs["input_ids"]' in kotlin and "OrtxPackage.getLibraryPath()" in kotlin
    assert 'assets.open("model_e2e.ort")' in kotlin
    swift = (out / "examples/ios/EdgeportModel.swift").read_text()
    assert 'forResource: "model", ofType: "ort"' in swift and "RegisterCustomOps" in swift
    js = (out / "examples/web/run.mjs").read_text()
    assert '"attention_mask": new ort.Tensor("int64"' in js and "[1,16]" in js.replace(" ", "")


def test_image_classification_without_shapes(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "vit"
    status, stdout, stderr = run_cli(capsys, tiny_bundle("vit", "image-classification"),
                                     "-o", out)
    assert status == 0, stderr
    assert "Wrote" in stdout and "model.ort" in stdout
    assert (out / "model.ort").is_file() and not (out / "model_fixed.onnx").exists()
    report = json.loads((out / "mobile_report.json").read_text())
    assert report["fixed_shapes"] is None
    assert "with_fixed_shapes" in report["execution_providers"]["model"]["providers"]["NNAPI"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vit"]  # no staging folder left


def test_task_without_e2e_graph_still_writes_model_ort(tiny_bundle, tmp_path, capsys,
                                                       monkeypatch):
    from mobile import e2e_image, e2e_text

    monkeypatch.setattr(e2e_text, "BUILDERS", {})
    monkeypatch.setattr(e2e_image, "BUILDERS", {})
    out = tmp_path / "out"
    status, stdout, stderr = run_cli(capsys, tiny_bundle("vit", "image-classification"),
                                     "-o", out)
    assert status == 0, stderr
    assert "No end-to-end graph" in stdout
    assert (out / "model.ort").is_file() and not (out / "model_e2e.onnx").exists()
    report = json.loads((out / "mobile_report.json").read_text())
    assert report["e2e"]["built"] is False and "image-classification" in report["e2e"]["reason"]
    assert "No end-to-end graph" in (out / "README.md").read_text()


def test_external_data_bundle(tiny_bundle, tmp_path, capsys):
    """A bundle whose weights live in model.onnx_data (as bundles keep them over 128 MB)."""
    source = tiny_bundle("bert", "text-classification")
    bundle = tmp_path / "bundle"
    shutil.copytree(source, bundle)
    model = onnx.load(str(bundle / "onnx/model.onnx"))
    onnx.save(model, str(bundle / "onnx/model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.onnx_data", size_threshold=0)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["variants"]["fp32"]["data_files"] = {"model": ["onnx/model.onnx_data"]}
    for name in ("onnx/model.onnx", "onnx/model.onnx_data"):
        manifest["checksums"][name] = file_sha256(bundle / name)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))
    assert (bundle / "onnx/model.onnx").stat().st_size < 100_000  # the weights moved out

    out = tmp_path / "out"
    status, _, stderr = run_cli(capsys, bundle, "-o", out, "--shapes", "sequence=8")
    assert status == 0, stderr
    from mobile.convert import sample_feeds
    from runtime.bundle import Bundle

    feeds = sample_feeds(Bundle.load(bundle), "model", {"batch": 1, "sequence": 8})
    want = ort_outputs(source / "onnx/model.onnx", feeds)["logits"]
    for name in ("model.ort", "model_fixed.ort", "model_fixed.onnx"):
        np.testing.assert_allclose(ort_outputs(out / name, feeds)["logits"], want, atol=1e-5)
    report = json.loads((out / "mobile_report.json").read_text())
    assert report["artifacts"]["(bundle) onnx/model.onnx"]["bytes"] > 1_000_000  # data counted


# --- errors --------------------------------------------------------------------------------------
def test_generative_bundle_is_refused(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "out"
    status, _, stderr = run_cli(capsys, tiny_bundle("gpt2", "text-generation"), "-o", out)
    assert status == 1 and len(stderr.strip().splitlines()) == 1
    assert "text-generation" in stderr and "end-to-end graphs exist for" in stderr
    assert "text-classification" in stderr
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--variant", "fp33"], "has no variant 'fp33'. Did you mean 'fp32'?"),
    (["--shapes", "sequnce=4"], "'sequnce' is not a dim name. Did you mean 'sequence'?"),
    (["--shapes", "height=4"], "'height' is not a dim of this bundle's graph inputs"),
    (["--shapes", "sequence=0"], "sizes must be at least 1"),
    (["--shapes", "batch=-1"], "sizes must be at least 1"),
    (["--shapes", "sequence=many"], "sizes must be whole numbers"),
    (["--shapes", "sequence=100000"], "takes sequence from 1 to 512"),
])
def test_bad_arguments(tiny_bundle, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    status, _, stderr = run_cli(capsys, tiny_bundle("bert", "text-classification"), "-o", out,
                                *args)
    assert status == 1 and message in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and not out.exists()


def test_output_may_not_replace_the_bundle(tiny_bundle, capsys):
    bundle = tiny_bundle("vit", "image-classification")
    for out in (bundle, bundle.parent):
        status, _, stderr = run_cli(capsys, bundle, "-o", out, "--overwrite")
        assert status == 1 and "would replace the bundle" in stderr
    assert (bundle / "manifest.json").is_file()


def test_missing_bundle(tmp_path, capsys):
    status, _, stderr = run_cli(capsys, tmp_path / "nothing", "-o", tmp_path / "out")
    assert status == 1 and "No bundle at" in stderr and not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(tiny_bundle, tmp_path, capsys):
    bundle = tiny_bundle("vit", "image-classification")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    status, _, stderr = run_cli(capsys, bundle, "-o", out)
    assert status == 1 and "already exists" in stderr and "--overwrite" in stderr
    assert (out / "old.txt").is_file()
    status, _, stderr = run_cli(capsys, bundle, "-o", out, "--overwrite")
    assert status == 0, stderr
    assert not (out / "old.txt").exists() and (out / "model.ort").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_missing_extensions_names_the_extra(tiny_bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime_extensions", None)  # import fails
    status, _, stderr = run_cli(capsys, tiny_bundle("vit", "image-classification"), "-o",
                                tmp_path / "out")
    assert status == 1 and "onnxruntime-extensions" in stderr
    assert "pip install 'edgeport[mobile]'" in stderr and not (tmp_path / "out").exists()
