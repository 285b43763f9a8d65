"""compare on a Decision Transformer bundle: its task metric is the error of the next action
(mean absolute, lower is better), measured on trajectories saved as .npz, for a quantized
variant against fp32."""

from __future__ import annotations

import shutil

import numpy as np

from calibration import compare_variants, variant_from_bundle
from calibration.metrics import metric_drop
from runtime.cli.bench_inputs import trajectory

TASK = "reinforcement-learning"


def test_dynamic_int8_is_measured_by_the_next_action(tiny_bundle, tmp_path):
    path = tmp_path / "bundle"
    shutil.copytree(tiny_bundle("decision_transformer", TASK), path)
    name = variant_from_bundle(path, "dynamic-int8", name="int8")
    episodes = [trajectory(11, 3, 20, seed) for seed in range(12)]
    arrays = {key: np.stack([e[key] for e in episodes]) for key in episodes[0]}
    arrays["returns_to_go"] = arrays["returns_to_go"][..., None]
    arrays["attention_mask"] = np.ones((12, 20), np.float32)
    np.savez(tmp_path / "episodes.npz", **arrays)
    report = compare_variants(path, tmp_path / "episodes.npz", layers=False)
    task = report["variants"][name]["task"]
    assert task["metric"] == "action_abs_error" and task["count"] == 12
    assert 0 < task["value"] <= task["max_abs_error"] < 0.2
    assert metric_drop(task["metric"], task["value"]) == task["value"]
    # the fp32 graph against PyTorch's model on the same feeds
    exact = compare_variants(path, tmp_path / "episodes.npz", variants=["fp32"],
                             reference="pytorch", layers=False)
    assert exact["variants"]["fp32"]["task"]["max_abs_error"] < 1e-5
