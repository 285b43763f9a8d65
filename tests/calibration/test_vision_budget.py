"""Accuracy-aware quantization of image bundles (--max-drop), measured on a folder of photos
with the vision task metrics."""

from __future__ import annotations

import shutil

from calibration.budget import variant_within_budget
from calibration.compare import compare_variants
from runtime import Bundle
from runtime.cli import main


def test_vit_top1_budget_end_to_end_from_the_command_line(tiny_bundle, tmp_path, image_folder,
                                                          capsys):
    path = shutil.copytree(tiny_bundle("vit", "image-classification"), tmp_path / "vit")
    assert main(["quantize", str(path), "--recipe", "dynamic-int8", "--max-drop", "top1=0.01",
                 "--data", str(image_folder)]) == 0
    out = capsys.readouterr().out
    assert "top1_agreement drop 0.0000 within 0.01" in out and "Wrote variant 'int8'" in out
    accuracy = Bundle.load(path).variants["int8"]["accuracy"]
    assert accuracy["metric"] == "top1_agreement" and accuracy["value"] == 1.0
    assert accuracy["accuracy_aware"]["excluded"] == []
    # measured again, on its own: 21 photos, every top-1 label kept
    report = compare_variants(path, image_folder, variants=["int8"], layers=False)
    assert report["variants"]["int8"]["task"]["value"] == 1.0
    assert report["data"]["samples"] == 21


def test_static_int8_vit_with_no_label_flip_allowed(tiny_bundle, tmp_path, image_folder):
    """static-int8 with per-tensor weights, calibrated on the photos, flips a label; leaving
    nodes in fp32 brings it back. The data the budget is measured on defaults to the
    calibration folder. (The default, per-channel weights, flips none of the 21.)"""
    path = shutil.copytree(tiny_bundle("vit", "image-classification"), tmp_path / "vit")
    record = variant_within_budget(path, "static-int8", "top1=0.0", calibration=image_folder,
                                   per_channel=False)
    assert record["metric"] == "top1_agreement" and record["drop"] == 0.0
    first = record["rounds"][0]
    assert first["drop"] > 0.0 and record["excluded"]  # measured: 1 flip in 21 at first
    assert all(r["drop"] > 0 for r in record["rounds"] if r["excluded"] < len(record["excluded"]))
    options = Bundle.load(path).variants["qdq"]["recipe"]["options"]
    assert options["nodes_to_exclude"] == record["excluded"]
    report = compare_variants(path, image_folder, variants=["qdq"], layers=False)
    assert report["variants"]["qdq"]["task"]["value"] == 1.0


def test_segformer_miou_budget(tiny_bundle, tmp_path, image_folder):
    path = shutil.copytree(tiny_bundle("segformer", "image-segmentation"), tmp_path / "seg")
    record = variant_within_budget(path, "dynamic-int8", "miou=0.01", data=image_folder,
                                   samples=12)
    assert record["metric"] == "miou" and record["drop"] <= 0.01
    assert record["rounds"][0]["drop"] > 0.01 and record["excluded"]  # measured: 0.975 at first
    report = compare_variants(path, image_folder, variants=["int8"], samples=12, layers=False)
    assert report["variants"]["int8"]["task"]["value"] >= 0.99


def test_detection_map_budget(detector, tmp_path, image_folder):
    path = shutil.copytree(detector, tmp_path / "detr")
    record = variant_within_budget(path, "dynamic-int8", "map=0.05", data=image_folder,
                                   samples=8)
    assert record["metric"] == "map50" and record["drop"] <= 0.05
    assert Bundle.load(path).variants["int8"]["accuracy"]["metric"] == "map50"
