"""benchmarks/serving_load.py's code path on a tiny bundle: `edgeport serve` started and stopped
as a user does, clients over HTTP, dynamic batching on and off, and the in-process pipeline,
into a sane results table (the real run, 16 clients for 60 s on all-MiniLM-L6-v2, is
`python benchmarks/serving_load.py OUT_DIR`, not part of the tests; its numbers mean nothing
here)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")
pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")

from triton_server import runnable  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serving_load.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_serving_load", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_wrong_answer_is_an_error():
    """The check of answers against the pipeline's can fail: a wrong one counts as an error."""
    bench = load_benchmark()
    expected = [[0.5, 0.25], [1.0, 0.0]]
    answers = {"a": [0.5, 0.25], "b": [1.0, 0.01]}  # "b" is off by 0.01
    record = bench.client_loop(answers.__getitem__, lambda answer: answer, ["a", "b"], expected,
                               start_at=0.0, end_at=time.time() + 0.2, first=0,
                               stride=1, check_every=1)
    assert record["checked"] > 10 and record["wrong"] == record["errors"] > 0
    assert record["wrong"] in (record["checked"] // 2, record["checked"] // 2 + 1)
    assert "wrong answer for item 1" in record["error_samples"][0]


def test_load_benchmark_runs_on_a_tiny_bundle(tiny_bundle, stub_numpy, tmp_path):
    reason = runnable()
    if reason:
        pytest.skip(f"the bundled tritonserver cannot run here: {reason}")
    bench = load_benchmark()
    argv = [str(tmp_path), "--bundle", str(tiny_bundle("bert", "text-classification")),
            "--clients", "2", "--duration", "2", "--warmup", "1", "--max-batch", "4", "0"]
    assert bench.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {row["name"]: row for row in results["rows"]}
    assert list(rows) == ["in-process, 2 threads", "in-process, 1 thread, batch_size 4",
                          "serve --max-batch 4", "serve --max-batch 0"]
    for row in rows.values():
        assert row["requests"] > 0 and row["items_per_s"] > 0, row
        assert row["errors"] == 0 and row["checked"] > 0, row
        latency = row["latency_ms"]
        assert 0 < latency["median"] <= latency["p90"] <= latency["p99"]
    assert rows["in-process, 1 thread, batch_size 4"]["items_per_s"] == pytest.approx(
        4 * rows["in-process, 1 thread, batch_size 4"]["requests"] / 2)
    for max_batch in (4, 0):
        row = rows[f"serve --max-batch {max_batch}"]
        server = row["server"]
        assert row["protocol"] == "http" and row["triton"].startswith("2.")
        assert server["inferences"] > 0 and server["executions"] > 0
        sizes = {int(size): count for size, count in server["batch_histogram"].items()}
        assert sum(size * count for size, count in sizes.items()) == server["inferences"]
        assert max(sizes) <= max(max_batch, 1)
        assert row["server_cpu_cores"] > 0 and row["client_cpu_cores"] > 0
    assert rows["serve --max-batch 0"]["server"]["average_batch"] == 1
    assert rows["serve --max-batch 4"]["server"]["average_batch"] >= 1
    text = (tmp_path / "results.md").read_text()
    assert "| configuration | protocol | clients | requests | items/s |" in text
    for name in rows:
        assert f"| {name} |" in text
    assert "tritonserver 2." in text and "usable CPUs" in text and "tokens (mean" in text
    # `edgeport serve` was stopped with SIGTERM and left nothing behind (checked by the script)
    assert (tmp_path / "serve-max-batch-4.log").read_text().rstrip().endswith("Stopping.")
