"""Decision Transformer: optimum's graph fails at every length (its last Reshape reads T from the
interleaved, three times longer sequence); edgeport's export patch makes one graph that agrees
with the model's own forward at two batch sizes and two trajectory lengths."""

from __future__ import annotations

import json

import pytest

from exporter import bundle_from_checkpoint
from exporter.configs import CUSTOM_CONFIGS, CustomConfig
from exporter.configs.decision_transformer import TASKS, DecisionTransformerOnnxConfig
from runtime.errors import ExportError, ValidationError

TASK = "reinforcement-learning"


def test_one_graph_holds_at_every_batch_and_length(tiny_bundle):
    report = json.loads((tiny_bundle("decision_transformer", TASK) / "reports" /
                         "validation.json").read_text())
    assert report["passed"]
    shapes = {(case["batch"], case["sequence"]) for case in report["cases"]}
    assert shapes == {(1, 9), (1, 23), (3, 9), (3, 23)}
    outputs = set(report["cases"][0]["outputs"])
    assert {"action_preds", "state_preds", "return_preds"} <= outputs


def test_without_the_patch_the_graph_fails(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(CUSTOM_CONFIGS, "decision_transformer",
                        CustomConfig(DecisionTransformerOnnxConfig, TASKS))
    with pytest.raises((ExportError, ValidationError), match="Reshape"):
        bundle_from_checkpoint(tiny_checkpoint("decision_transformer", TASK), tmp_path / "b")
    assert not (tmp_path / "b").exists()
