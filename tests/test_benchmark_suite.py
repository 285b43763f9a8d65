"""The benchmark suite's code path on the tests' tiny models, so that it keeps working (the
real-size run is `python benchmarks/suite.py OUT_DIR`, not part of the tests)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "suite.py"


def load_suite(monkeypatch):
    """benchmarks/suite.py as a module (registered first: its dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location("benchmark_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_suite_runs_on_tiny_models(tmp_path, monkeypatch):
    suite = load_suite(monkeypatch)
    names = ["bert-base-uncased", "t5-small", "vit-base-patch16-224", "wav2vec2-base-960h"]
    assert set(names) <= {model.name for model in suite.MODELS}
    argv = [str(tmp_path), "--tiny", "--quick", "--iterations", "2", "--cold-starts", "0",
            "--models", *names]
    assert suite.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [entry["name"] for entry in results["models"]] == names
    for entry in results["models"]:
        report = entry["report"]
        assert [b["name"] for b in report["backends"]] == ["fp32", "int8", "transformers"]
        assert {r["variant"] for r in report["ratios"]} == {"fp32", "int8"}
    assert results["models"][1]["task"] == "translation_en_to_de"
    text = (tmp_path / "results.md").read_text()
    for name in names:
        assert f"| {name} |" in text
    # a second run reuses the checkpoints and bundles it finds
    bundle = tmp_path / "models" / "bert-base-uncased" / "bundle" / "manifest.json"
    stamp = bundle.stat().st_mtime_ns
    assert suite.main([*argv[:-len(names)], "bert-base-uncased"]) == 0
    assert bundle.stat().st_mtime_ns == stamp


def test_memory_benchmark_runs_on_a_tiny_bundle(tiny_bundle, capsys):
    """benchmarks/memory.py's code path (the 10,000-call run is not part of the tests)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "memory.py"
    spec = importlib.util.spec_from_file_location("benchmark_memory", path)
    memory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory)
    assert memory.main([str(tiny_bundle("bert", "text-classification")), "--calls", "200"]) == 0
    printed = capsys.readouterr().out
    assert "after 100 calls" in printed and "after 200" in printed
    result = memory.measure(tiny_bundle("bert", "feature-extraction"), calls=120, batch=2,
                            say=lambda line: None)
    assert sorted(result["memory"]) == [12, 24, 36, 48, 60, 72, 84, 96, 100, 108, 120]
    assert all(value > 10 * 2**20 for value in result["memory"].values())
    assert len(set(result["lengths"])) == 17


def test_flops_counts_bert_and_measures_against_matmul(tiny_bundle, monkeypatch):
    """benchmarks/flops.py: the FLOP count of a BERT graph matches the architecture's, and the
    measurement runs (its rates on a tiny model mean nothing)."""
    monkeypatch.syspath_prepend(str(SUITE.parent))
    import flops

    from runtime import Bundle

    bundle = Bundle.load(tiny_bundle("bert", "text-classification"))
    config = bundle.config
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    layers, labels = config["num_hidden_layers"], len(config["id2label"])
    batch, sequence = 2, 8
    expected = batch * (
        sequence * layers * 2 * (4 * hidden * hidden + 2 * hidden * inner)  # per token
        + 2 * (hidden * hidden + hidden * labels)  # pooler and classifier, per sequence
        + layers * 4 * sequence * sequence * hidden)  # Q K^T and P V
    counted = flops.graph_flops(bundle.graph_path(), batch, sequence)
    assert counted["flops"] == expected and counted["layers"] == layers
    result = flops.measure(bundle.path, batch=batch, sequence=sequence, seconds=0.5, threads=1)
    assert set(result["rates"]) == {"model", "model's FFN MatMul", "square MatMul 1024^3"}
    assert all(rate > 0 for rate in result["rates"].values())


def test_llm_benchmark_runs_on_tiny_models(tmp_path):
    """benchmarks/llm.py's code path on the tiny Qwen2 and Llama (the real-size run is
    `python benchmarks/llm.py OUT_DIR`)."""
    pytest.importorskip("onnxruntime_genai", reason="the llm extra (onnxruntime-genai)")
    path = SUITE.parent / "llm.py"
    spec = importlib.util.spec_from_file_location("benchmark_llm", path)
    llm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(llm)
    argv = [str(tmp_path), "--tiny", "--prompt", "8", "--new-tokens", "5", "--rounds", "1"]
    assert llm.main(argv) == 0
    results = json.loads((tmp_path / "llm.json").read_text())["results"]
    assert sorted(results) == ["llama-3.2-1b", "qwen2.5-0.5b"]
    for name, rows in results.items():
        engines = {row["engine"]: row for row in rows}
        assert list(engines) == ["transformers-fp32", "edgeport-fp32", "edgeport-int4",
                                 "edgeport-llm32", "edgeport-llm", "genai-fp32", "genai-int4"]
        # same weights, same greedy search: fp32 picks transformers' tokens
        # (onnxruntime-genai's own build of the Llama scales Llama 3's RoPE wrongly: the bug
        # the llm recipe works around, so only its Qwen picks transformers' tokens)
        same = ["edgeport-fp32", "edgeport-llm32", *(["genai-fp32"] if "qwen" in name else [])]
        for engine in same:
            assert engines[engine]["tokens"] == engines["transformers-fp32"]["tokens"], engine
        assert all(len(row["tokens"]) == 5 and row["decode_tokens_per_s"] > 0 for row in rows)
    text = (tmp_path / "llm.md").read_text()
    assert "| edgeport-int4 |" in text and "decode tokens/s" in text


def test_static_int8_benchmark_runs_on_tiny_models(tmp_path, monkeypatch):
    """benchmarks/static_int8.py's code path (the real-size run is not part of the tests)."""
    load_suite(monkeypatch)  # importable as `suite` too, as the script imports it
    monkeypatch.setitem(sys.modules, "suite", sys.modules["benchmark_suite"])
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "static_int8.py"
    spec = importlib.util.spec_from_file_location("benchmark_static_int8", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    names = ["bert-base-uncased", "vit-base-patch16-224"]
    assert bench.main([str(tmp_path), "--tiny", "--models", *names]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["model"] for r in results] == names
    for result in results:
        variants = result["report"]["variants"]
        assert sorted(variants) == sorted(bench.VARIANTS)
        assert variants["qdq"]["recipe"]["options"]["method"] == "search"
        assert variants["qdq"]["recipe"]["options"]["searched"]
        assert variants["qdq-minmax"]["recipe"]["options"]["method"] == "minmax"
        assert variants["qdq16"]["recipe"]["options"]["float_type"] == "fp16"
        assert variants["qdq"]["task"]["metric"] == "top1_agreement"
    text = (tmp_path / "results.md").read_text()
    assert "| **bert-base-uncased** fp32 |" in text and "| qdq-minmax |" in text


def test_openvino_benchmark_runs_on_a_tiny_model(tmp_path, monkeypatch):
    """benchmarks/openvino_bench.py's code path: every side timed, the accuracy of each against
    PyTorch, the CPU recorded (the real-size run is not part of the tests; the peer's row only
    where optimum-intel is installed, else the reason)."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    load_suite(monkeypatch)
    monkeypatch.setitem(sys.modules, "suite", sys.modules["benchmark_suite"])
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "openvino_bench.py"
    spec = importlib.util.spec_from_file_location("benchmark_openvino", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = [str(tmp_path), "--tiny", "--models", "bert-base-uncased", "--iterations", "2",
            "--warmup", "1"]
    assert bench.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    machine = results["machine"]
    assert machine["openvino"] and machine["openvino_cpu"]["default_precision"] in (
        "f32", "bf16", "f16")
    assert machine["cpu_flags"] is not None and machine["lscpu_model_name"]
    [result] = results["models"]
    peer = bench.peer_missing() is None
    assert result["peer"] == ("run" if peer else bench.peer_missing())
    names = [run["backend"] for run in result["report"]["runs"]]
    edgeport = ["fp32", "int8", "opt", "q8", "qdq", "fp32 (openvino f32)", "opt (openvino f32)",
                "q8 (openvino f32)", "qdq (openvino f32)", "fp32 (openvino bf16)",
                "opt (openvino bf16)", "q8 (openvino bf16)", "qdq (openvino bf16)"]
    assert names == [*edgeport, *(["optimum-intel"] if peer else []), "transformers"]
    assert all(run["calls"] == 2 and run["sequence"] == 128 for run in result["report"]["runs"])
    accuracy = result["accuracy"]
    assert sorted(accuracy) == sorted(edgeport + (["optimum-intel"] if peer else []))
    for name in ("fp32", "fp32 (openvino f32)"):  # the same math as PyTorch's, in f32
        assert accuracy[name]["agreement"] == 1.0 and accuracy[name]["max_abs_diff"] < 1e-4
    for name, score in accuracy.items():
        assert 0.99 < score["min_cosine"] <= 1.0 + 1e-9, name
    assert accuracy["fp32 (openvino bf16)"]["max_abs_diff"] > 1e-5  # bf16 is not f32
    profiled = result["profile"]  # OpenVINO's counters: every OpenVINO row and the peer
    assert sorted(profiled) == sorted(name for name in accuracy if "openvino" in name
                                      or name == "optimum-intel")
    for name, found in profiled.items():
        assert 0 < found["weight_matmul_ms"] < found["engine_ms"], name
        assert found["gflops_per_thread"] > 0 and found["top"], name
    text = (tmp_path / "results.md").read_text()
    assert "| fp32 (openvino bf16) |" in text and "Not run: int8 (openvino f32)" in text
    assert "x transformers" in text and ("optimum-intel (" in text) == peer
    assert "| fp32 (openvino f32) | " in text.split("Where OpenVINO's engine time goes")[1]


def test_suite_gains_openvino_rows(tmp_path, monkeypatch):
    """--backend as `edgeport bench` takes it: OpenVINO's rows named by their precision, the
    dynamic-int8 variant left out of them with the reason."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    suite = load_suite(monkeypatch)
    assert suite.main([str(tmp_path), "--tiny", "--quick", "--iterations", "1",
                       "--cold-starts", "0", "--models", "bert-base-uncased",
                       "--backend", "onnxruntime", "openvino:f32"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["settings"]["engines"] == ["onnxruntime", "openvino:f32"]
    [entry] = results["models"]
    report = entry["report"]
    assert [b["name"] for b in report["backends"]] == ["fp32", "int8", "fp32 (openvino f32)",
                                                      "transformers"]
    assert [e["backend"] for e in report["not_run"]] == ["int8 (openvino f32)"]
    assert "| bert-base-uncased | text-classification | fp32 (openvino f32) |" in (
        tmp_path / "results.md").read_text()
