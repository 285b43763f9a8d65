"""Mask2Former's export config and patches: one graph agrees with PyTorch at every image size
and batch, each patch is needed for that, and each is undone after the export."""

from __future__ import annotations

from types import SimpleNamespace

import onnxruntime as ort
import pytest
import torch
from optimum.exporters.onnx import onnx_export_from_model
from segmenter_tracing import max_differences, trace_without
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

from exporter.configs import custom_onnx_config, export_patches
from exporter.configs.mask2former import PATCHES, Mask2FormerOnnxConfig
from runtime import ExportError

ORIGINALS = {patch.name: vars(patch.owner)[patch.attribute] for patch in PATCHES}
# (batch, height, width). 224 x 224 needs no window padding in any stage (window 7), the others
# do; 202 x 302 is not a multiple of 32 (nor of the patch size), which the patches allow too.
# A side of at most 32 pixels makes the 1/32 feature map 1 wide or high (16: the 1/16 one too),
# where a traced torch.linspace gives NaN reference points. Not 64 x 32 or the like here: a 2 x 1
# level leaves 2 values per group in this tiny model's GroupNorm (32 channels, 32 groups), whose
# float32 rounding is then amplified to about 1e-4 (PyTorch float32 vs float64 too).
SIZES = [(1, 384, 384), (3, 256, 320), (3, 224, 224), (1, 202, 302),
         (1, 96, 32), (3, 224, 32), (3, 32, 160), (1, 16, 200)]


def tiny_mask2former() -> Mask2FormerForUniversalSegmentation:
    torch.manual_seed(0)
    swin = SwinConfig(embed_dim=16, depths=[1, 2, 1, 1], num_heads=[1, 1, 2, 2], window_size=7,
                      drop_path_rate=0.0, out_features=["stage1", "stage2", "stage3", "stage4"])
    # init_std: Mask2Former's default (0.02) leaves mask logits near 1e-3, where the masked
    # attention's `sigmoid(logit) < 0.5` flips on rounding noise (differences near 1e-2);
    # 0.2 gives logits near 1, like a trained model's, so a difference means a wrong graph.
    config = Mask2FormerConfig(
        backbone_config=swin, feature_size=32, mask_feature_size=32, hidden_dim=32,
        encoder_feedforward_dim=64, dim_feedforward=64, encoder_layers=1, decoder_layers=2,
        num_attention_heads=2, num_queries=10, num_labels=5, init_std=0.2)
    return Mask2FormerForUniversalSegmentation(config).eval()


@pytest.fixture(scope="module")
def model():
    return tiny_mask2former()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("mask2former")
    config = custom_onnx_config(model, "image-segmentation")
    onnx_export_from_model(model, out, task="image-segmentation", do_validation=False,
                           preprocessors=[], custom_onnx_configs={"model": config})
    return ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])



@pytest.mark.parametrize("batch,height,width", SIZES)
def test_one_graph_agrees_with_pytorch_at_every_size(exported, model, batch, height, width):
    differences = max_differences(exported, model, batch, height, width)
    assert max(differences.values()) <= Mask2FormerOnnxConfig.ATOL_FOR_VALIDATION, differences


def test_graph_declares_dynamic_dims(exported):
    dims = {value.name: value.shape for value in exported.get_inputs() + exported.get_outputs()}
    assert dims == {
        "pixel_values": ["batch_size", "num_channels", "height", "width"],
        "class_queries_logits": ["batch_size", "num_queries", 6],
        "masks_queries_logits": ["batch_size", "num_queries", "mask_height", "mask_width"],
    }


def test_patches_are_undone_after_export_and_on_errors(exported, model):
    def current():
        return {patch.name: vars(patch.owner)[patch.attribute] for patch in PATCHES}

    assert current() == ORIGINALS
    with pytest.raises(RuntimeError, match="inside"), export_patches(model):
        assert all(current()[p.name] is p.replacement for p in PATCHES)
        raise RuntimeError("inside")
    assert current() == ORIGINALS


@pytest.mark.parametrize("left_out,traced,checked", [
    ("dynamic_offset_normalizer", (288, 352), (256, 320)),  # wrong numbers
    ("always_crop_window_padding", (224, 224), (256, 320)),  # Reshape error
    ("always_pad_to_patches", (288, 352), (202, 302)),  # masks one row and column short
    ("always_pad_to_even", (288, 352), (202, 302)),  # Concat error
    # wrong numbers; a smaller trace, as the other patches keep the trace size out of the graph
    ("reference_points_without_linspace", (128, 160), (96, 32)),
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


def test_custom_config_is_none_for_other_models_and_refuses_other_tasks():
    def model(model_type):
        return SimpleNamespace(config=SimpleNamespace(model_type=model_type))

    assert custom_onnx_config(model("swin"), "image-classification") is None
    with pytest.raises(ExportError, match="its tasks are: image-segmentation"):
        custom_onnx_config(model("mask2former"), "image-classification")
