"""`edgeport bench` on OpenVINO at chosen precisions, beside ONNX Runtime, on a tiny BERT
classifier with fp32, static-int8 (qdq) and dynamic-int8 (int8) variants: every row runs, is
named by its backend and precision, runs at that precision (the compiled model's hint), and
dynamic-int8 is left out of OpenVINO's rows with the reason; a precision with a backend that
takes none, or an unknown one, is one clear line. Skipped only where openvino cannot be
imported."""

from __future__ import annotations

import json
import shutil

import pytest

ov = pytest.importorskip("openvino", reason="the openvino extra is not installed")

from runtime.cli import main  # noqa: E402
from runtime.cli.timing import CPU_FLAGS, EdgeportBackend, backend_rows  # noqa: E402


@pytest.fixture
def bert_variants(quantized_tiny_bert, tmp_path):
    """The tiny BERT classifier with "qdq" (static-int8) and "int8" (dynamic-int8), a copy
    (OpenVINO's compiled-model cache goes into the bundle)."""
    return shutil.copytree(quantized_tiny_bert, tmp_path / "bundle")


def test_openvino_precisions_side_by_side(bert_variants, tmp_path, capsys):
    report_path = tmp_path / "bench.json"
    assert main(["bench", str(bert_variants), "--backend", "onnxruntime", "openvino:f32",
                 "openvino:bf16", "--sequence", "16", "--iterations", "2", "--warmup", "1",
                 "--cold-starts", "0", "--json", str(report_path)]) == 0
    table = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    names = [backend["name"] for backend in report["backends"]]
    assert names == ["fp32", "qdq", "int8", "fp32 (openvino f32)", "qdq (openvino f32)",
                     "fp32 (openvino bf16)", "qdq (openvino bf16)"]
    for backend in report["backends"]:
        openvino = "openvino" in backend["name"]
        precision = backend["name"].rstrip(")").rpartition(" ")[2] if openvino else None
        assert backend["precision"] == precision
        assert ("openvino" in backend["versions"]) == openvino
    runs = {run["backend"]: run for run in report["runs"]}
    assert list(runs) == names
    for run in runs.values():
        assert run["calls"] == 2 and run["sequence"] == 16
        assert 0 < run["latency_ms"]["engine"]["median"] <= run["latency_ms"]["total"]["median"]
    # dynamic-int8 is not run on OpenVINO, and the report says why
    assert [entry["backend"] for entry in report["not_run"]] == ["int8 (openvino f32)",
                                                                 "int8 (openvino bf16)"]
    assert all("MatMulInteger" in entry["reason"] and "static-int8" in entry["reason"]
               for entry in report["not_run"])
    assert "Not run: int8 (openvino f32): The variant 'int8' (dynamic-int8)" in table
    for name in names:
        assert f"| {name} | 1 | 16 |" in table
    assert report["settings"]["engines"] == ["onnxruntime", "openvino:f32", "openvino:bf16"]
    flags = report["machine"]["cpu_flags"]
    assert flags is not None and set(flags) <= set(CPU_FLAGS)
    assert "avx2" in flags and f"({' '.join(flags)})" in table  # every x86-64 CPU here has it


def test_each_row_runs_at_its_precision(bert_variants):
    """The compiled models' precision hints are the rows' own: the label is not just a name."""
    from runtime import Bundle

    bundle = Bundle.load(bert_variants)
    picked = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    rows = backend_rows(["openvino:f32", "openvino", "openvino:bf16", "onnxruntime"])
    # plain openvino runs at the CPU's default, and is one row with the hint that names it
    assert [row.precision for row in rows] == [*dict.fromkeys(["f32", picked, "bf16"]), None]
    for row in rows[:-1]:
        backend = EdgeportBackend(bundle, "fp32", row=row)
        hint = backend.pipe.engine.compiled.get_property("INFERENCE_PRECISION_HINT")
        assert hint.get_type_name() == row.precision == backend.precision
        assert backend.name == f"fp32 (openvino {row.precision})"
    precision = backend_rows(["openvino"], precision="f32")
    assert [(row.hint, row.precision) for row in precision] == [("f32", "f32")]


@pytest.mark.parametrize("argv, message", [
    (["--precision", "bf16"], "--precision bf16 is OpenVINO's precision hint, and no openvino "
                              "backend is benched"),
    (["--backend", "onnxruntime:bf16"], "--backend onnxruntime:bf16: only openvino takes a "
                                        "precision"),
    (["--backend", "tensorrt:f16"], "only openvino takes a precision"),
    (["--backend", "openvino:int4"], "unknown OpenVINO precision 'int4'"),
    (["--backend", "openvin"], "Unknown backend 'openvin'. Did you mean 'openvino'?"),
    (["--backend", "openvino", "--variants", "int8"],
     "The variant 'int8' (dynamic-int8) does not run on OpenVINO"),
])
def test_precision_errors_are_one_clear_line(argv, message, bert_variants, capsys):
    assert main(["bench", str(bert_variants), *argv, "--iterations", "1",
                 "--cold-starts", "0"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("edgeport bench: error:")
