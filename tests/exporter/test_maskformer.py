"""MaskFormer's export config and patches: one graph agrees with PyTorch at every image size and
batch (its own copy of Swin patched as Mask2Former's Swin is), each patch is needed for that, and
a ResNet-backed MaskFormer exports too."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest
import torch
from optimum.exporters.onnx import onnx_export_from_model
from segmenter_tracing import max_differences, trace_without
from vision_more_checkpoints import _maskformer_config

from exporter import bundle_from_checkpoint
from exporter.configs import custom_onnx_config
from exporter.configs.maskformer import PATCHES

# (batch, height, width): 224 x 224 needs no window padding (window 7) in any stage, the others
# do; 202 x 302 is no multiple of 32 nor of the patch size; 96 x 32 makes 1-wide feature maps.
SIZES = [(1, 384, 384), (3, 256, 320), (3, 224, 224), (1, 202, 302), (1, 96, 32)]


@pytest.fixture(scope="module")
def model():
    import transformers

    torch.manual_seed(0)
    return transformers.MaskFormerForInstanceSegmentation(_maskformer_config(transformers)).eval()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("maskformer")
    config = custom_onnx_config(model, "image-segmentation")
    onnx_export_from_model(model, out, task="image-segmentation", do_validation=False,
                           preprocessors=[], custom_onnx_configs={"model": config})
    return ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])



@pytest.mark.parametrize("batch,height,width", SIZES)
def test_one_graph_agrees_with_pytorch_at_every_size(exported, model, batch, height, width):
    differences = max_differences(exported, model, batch, height, width)
    assert max(differences.values()) <= 1e-4, differences


def test_graph_declares_dynamic_dims(exported):
    dims = {value.name: value.shape for value in exported.get_inputs() + exported.get_outputs()}
    assert dims == {
        "pixel_values": ["batch_size", "num_channels", "height", "width"],
        "class_queries_logits": ["batch_size", "num_queries", 3],
        "masks_queries_logits": ["batch_size", "num_queries", "mask_height", "mask_width"],
    }


@pytest.mark.parametrize("left_out,traced,checked", [
    ("always_crop_window_padding", (224, 224), (256, 320)),  # Reshape error
    ("always_pad_to_patches", (288, 352), (202, 302)),  # masks one row and column short
    ("always_pad_to_even", (288, 352), (202, 302)),  # Concat error
])
def test_each_patch_is_needed(model, tmp_path, left_out, traced, checked):
    session = trace_without(model, PATCHES, left_out, *traced, tmp_path / "model.onnx")
    assert max(max_differences(session, model, 2, *traced).values()) <= 1e-4  # a fair trace
    try:
        differences = max_differences(session, model, 1, *checked)
    except Exception as error:  # ONNX Runtime's own error types
        assert "Reshape" in str(error) or "Concat" in str(error)
    else:
        assert max(differences.values()) > 1e-2, differences


def test_a_resnet_backed_maskformer_exports(tmp_path):
    """MaskFormer's other backbone: a ResNet, validated at two sizes and batches."""
    import transformers

    backbone = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32],
                                         depths=[1, 1, 1, 1],
                                         out_features=["stage1", "stage2", "stage3", "stage4"])
    config = _maskformer_config(transformers)
    config.backbone_config = backbone
    torch.manual_seed(0)
    transformers.MaskFormerForInstanceSegmentation(config).save_pretrained(tmp_path / "ckpt")
    transformers.MaskFormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}
                                          ).save_pretrained(tmp_path / "ckpt")
    bundle = bundle_from_checkpoint(tmp_path / "ckpt", tmp_path / "bundle")
    report = json.loads((bundle / "reports" / "validation.json").read_text())
    assert report["passed"] and len({(c["height"], c["width"]) for c in report["cases"]}) == 2
    assert json.loads((bundle / "manifest.json").read_text())["task"] == "image-segmentation"
