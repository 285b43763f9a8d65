"""`edgeport bench --against transformers` on issue 18's further vision bundles: image features
(transformers' image-feature-extraction pipeline on the same generated photos) and ImageGPT's
color-cluster classification. Nothing here asserts a speed."""

from __future__ import annotations

import json

import pytest

from runtime.cli import main
from runtime.cli.timing import STAGES

QUICK = ["--iterations", "2", "--warmup", "1", "--cold-starts", "0"]


@pytest.mark.parametrize("model_type, task", [("vit", "image-feature-extraction"),
                                              ("imagegpt", "image-classification")])
def test_against_transformers(model_type, task, tiny_bundle, tmp_path, capsys):
    path = tmp_path / "report.json"
    assert main(["bench", str(tiny_bundle(model_type, task)), *QUICK, "--batch", "1", "2",
                 "--against", "transformers", "--json", str(path)]) == 0
    report, out = json.loads(path.read_text()), capsys.readouterr().out
    assert report["task"] == task
    assert [(r["backend"], r["batch"]) for r in report["runs"]] == [
        ("fp32", 1), ("transformers", 1), ("fp32", 2), ("transformers", 2)]
    for run in report["runs"]:
        assert run["items_per_s"] > 0 and set(run["latency_ms"]) == set(STAGES)
    assert all(value > 0 for ratio in report["ratios"] for value in ratio["speedup"].values())
    assert "Speed-up over transformers" in out
