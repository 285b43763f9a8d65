"""ViLT's and VisualBERT's export configs: the bundles validate against PyTorch at two batch
sizes, two text lengths and two image sizes (ViLT, with padded pixel masks) or region counts
(VisualBERT); ViLT's patch is what makes that possible, its graph is deterministic where
PyTorch draws patches at random, and a config that samples patches is refused."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch

from exporter import bundle_from_checkpoint
from exporter.configs import CUSTOM_CONFIGS
from exporter.configs.vilt import _interpolation_weights
from runtime import ExportError
from runtime.backends.engine import OrtEngine

VQA = "visual-question-answering"


def test_vilt_bundle_validates_with_padded_images(tiny_bundle):
    bundle = tiny_bundle("vilt", VQA)
    manifest = json.loads((bundle / "manifest.json").read_text())
    inputs = {spec["name"]: spec["dims"] for spec in manifest["graphs"]["model"]["inputs"]}
    assert inputs == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"],
                      "token_type_ids": ["batch", "sequence"],
                      "pixel_values": ["batch", "channels", "height", "width"],
                      "pixel_mask": ["batch", "height", "width"]}
    report = json.loads((bundle / "reports" / "validation.json").read_text())
    assert report["passed"] and report["max_abs_diff"]["logits"] < 1e-5
    shapes = {(c["batch"], c["sequence"], c["height"], c["width"]) for c in report["cases"]}
    assert {b for b, *_ in shapes} == {1, 3} and {s for _, s, *_ in shapes} == {9, 23}
    assert {(h, w) for *_, h, w in shapes} == {(32, 48), (64, 32)}
    # no patch sampling and no selection by the mask's values left in the graph
    ops = {node.op_type for node in onnx.load(str(bundle / "onnx" / "model.onnx")).graph.node}
    assert not ops & {"Multinomial", "RandomUniform", "RandomNormal", "NonZero", "Unique"}


def test_vilt_graph_is_deterministic_where_pytorch_samples(tiny_bundle, tiny_checkpoint):
    """PyTorch shuffles the patches (and draws the padding ones) on every call; the logits stay
    the same, and the graph gives them without drawing anything."""
    from transformers import ViltForQuestionAnswering

    model = ViltForQuestionAnswering.from_pretrained(tiny_checkpoint("vilt", VQA)).eval()
    engine = OrtEngine(tiny_bundle("vilt", VQA) / "onnx" / "model.onnx")
    rng = np.random.default_rng(3)
    mask = np.zeros((2, 64, 96), dtype=np.int64)
    mask[0], mask[1, :48, :64] = 1, 1
    feed = {"input_ids": rng.integers(1000, 5000, (2, 7)), "attention_mask": np.ones((2, 7)),
            "token_type_ids": np.zeros((2, 7)),
            "pixel_values": (rng.standard_normal((2, 3, 64, 96)) * mask[:, None]),
            "pixel_mask": mask}
    feed = {k: v.astype(np.float32 if k == "pixel_values" else np.int64) for k, v in feed.items()}
    first, second = engine.run(feed)["logits"], engine.run(feed)["logits"]
    np.testing.assert_array_equal(first, second)
    for seed in (0, 1):
        torch.manual_seed(seed)
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits
        np.testing.assert_allclose(first, expected.numpy(), atol=1e-5)


def test_vilt_export_needs_its_patch(tiny_checkpoint, tmp_path, monkeypatch):
    row = CUSTOM_CONFIGS["vilt"]
    monkeypatch.setitem(CUSTOM_CONFIGS, "vilt", dataclasses.replace(row, patches=()))
    with pytest.raises(ExportError):
        bundle_from_checkpoint(tiny_checkpoint("vilt", VQA), tmp_path / "bundle", task=VQA)


def test_vilt_refuses_patch_sampling(tiny_checkpoint, tmp_path):
    checkpoint = tmp_path / "sampling"
    import shutil

    shutil.copytree(tiny_checkpoint("vilt", VQA), checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "max_image_length": 8}))
    with pytest.raises(ExportError, match="max_image_length"):
        bundle_from_checkpoint(checkpoint, tmp_path / "bundle")  # the task from the config


@pytest.mark.parametrize("grid", [4, 12])
def test_interpolation_weights_are_pytorchs_bilinear(grid):
    """The weights resize a position grid as interpolate(bilinear, align_corners=True) does,
    zero past each count (up to the padded length), counts of 1 included."""
    torch.manual_seed(0)
    positions = torch.randn(3, grid, grid)
    counts, length = torch.tensor([1, 5, 9, 17]), 17
    rows = _interpolation_weights(counts, length, grid, torch.float32)
    for b, count in enumerate(counts.tolist()):
        expected = torch.nn.functional.interpolate(
            positions[None], size=(count, count), mode="bilinear", align_corners=True)[0]
        got = torch.einsum("ip,cpq,jq->cij", rows[b], positions, rows[b])
        torch.testing.assert_close(got[:, :count, :count], expected, atol=1e-6, rtol=0)
        assert not got[:, count:].any() and not got[:, :, count:].any()


def test_visual_bert_bundle_validates_with_padded_regions(tiny_bundle):
    bundle = tiny_bundle("visual_bert", "feature-extraction")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["family"] == "visual-text-encoder"
    inputs = {spec["name"]: spec["dims"] for spec in manifest["graphs"]["model"]["inputs"]}
    assert inputs["token_type_ids"] == ["batch", "sequence"]
    assert inputs["visual_embeds"][:2] == ["batch", "visual_sequence"]
    assert isinstance(inputs["visual_embeds"][2], int)  # the model's visual_embedding_dim
    report = json.loads((bundle / "reports" / "validation.json").read_text())
    assert report["passed"]
    assert {c["visual_sequence"] for c in report["cases"]} == {5, 12}
    assert {c["batch"] for c in report["cases"]} == {1, 3}


def test_tensorrt_ranges_cover_vilts_images(tiny_bundle, tmp_path):
    """ViLT's processor caps the long edge at 1333/800 of the short one: the default TensorRT
    profile reaches it (a 64-pixel short edge: up to 106), also from the legacy config of
    dandelin/vilt-b32-finetuned-vqa ("size": 384, a ViltFeatureExtractor: up to 639)."""
    import shutil

    from runtime import Bundle
    from runtime.backends.tensorrt.profiles import default_ranges

    ranges = default_ranges(Bundle.load(tiny_bundle("vilt", VQA)))
    assert ranges["height"] == ranges["width"] == (32, 64, 106)
    assert ranges["sequence"] == (1, 40, 40)
    legacy = shutil.copytree(tiny_bundle("vilt", VQA), tmp_path / "legacy")
    (legacy / "preprocessor_config.json").write_text(json.dumps(
        {"feature_extractor_type": "ViltFeatureExtractor", "size": 384, "size_divisor": 32}))
    assert default_ranges(Bundle.load(legacy))["width"] == (32, 384, 639)
