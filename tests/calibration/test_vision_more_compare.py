"""quantize and compare on issue 18's further vision bundles: image-feature-extraction scored by
the cosine of the whole features (an exact copy scores 1, dynamic int8 close to it, a perturbed
weight lower); the PyTorch reference agrees with fp32 for ViTMAE (its patches kept in order),
MaskFormer (its semantic maps without Mask2Former's upscaling) and ImageGPT (color clusters)."""

from __future__ import annotations

import numpy as np
import pytest
from noisy_variants import noisy_variant

from calibration.compare import compare_variants
from calibration.quantize import variant_from_bundle
from calibration.report import write_reports
from runtime import Bundle, pipeline

FEATURES = "image-feature-extraction"


def test_image_features_int8_and_compare(vision_bundle, image_folder):
    bundle = Bundle.load(vision_bundle("vit", FEATURES))
    variant_from_bundle(bundle, "dynamic-int8", name="int8")
    bundle = noisy_variant(Bundle.load(bundle.path))
    report = compare_variants(bundle, image_folder, samples=8, layers=False)
    assert report["task_metric"] == "embedding_cosine_min"
    int8 = report["variants"]["int8"]["task"]
    noisy = report["variants"]["noisy"]["task"]
    assert int8["pooling"] == "none (the whole last hidden state)"
    assert 0.9 < int8["value"] < 1.0 and int8["count"] == 8
    assert noisy["value"] < int8["value"]
    paths = write_reports(bundle, report)
    assert "embedding_cosine_min" in paths["md"].read_text()
    # the int8 variant runs in the pipeline, with features close to fp32's
    image = str(image_folder / int8["changes"][0]["input"])  # the one that moved the most
    fp32 = np.asarray(pipeline(FEATURES, model=bundle.path)(image))
    int8_features = np.asarray(pipeline(FEATURES, model=bundle.path, variant="int8")(image))
    assert fp32.shape == int8_features.shape
    cosine = float(np.dot(fp32.ravel(), int8_features.ravel()) / (
        np.linalg.norm(fp32) * np.linalg.norm(int8_features)))
    assert cosine > 0.9


@pytest.mark.parametrize("model_type, task", [
    ("vit_mae", FEATURES), ("maskformer", "image-segmentation"),
    ("imagegpt", "image-classification"), ("levit", "image-classification"),
])
def test_pytorch_reference_agrees_with_fp32(model_type, task, vision_bundle, image_folder):
    bundle = Bundle.load(vision_bundle(model_type, task))
    report = compare_variants(bundle, image_folder, samples=4, reference="pytorch", layers=False)
    fp32 = report["variants"]["fp32"]
    assert fp32["task"]["value"] == pytest.approx(1.0)
    # (MaskFormer's mask logits reach the hundreds: their differences are relative)
    assert all(o["cosine_min"] > 1 - 1e-6 for o in fp32["outputs"].values()), fp32["outputs"]
