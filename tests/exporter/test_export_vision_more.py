"""Export of issue 18's further vision rows (LeViT, CvT, MaskFormer, ViTMAE, ImageGPT, and image
encoders for image-feature-extraction), validated against PyTorch at two batch sizes and two
image sizes (one for the fixed-size models, which the graph then states; two sequence lengths for
ImageGPT's color-cluster ids); ViTMAE's graph is deterministic; tasks are inferred from the
pretrained checkpoints' class names."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from vision_more_checkpoints import TINY_VISION_MORE, _vit_mae_config

from exporter import bundle_from_checkpoint
from exporter.architectures import ARCHITECTURES, infer_task
from exporter.validate import IMAGE_SIZES, RANDOM_OPS, check_deterministic
from runtime import Bundle, ValidationError
from runtime.backends.engine import OrtEngine
from runtime.dims import DIM_NAMES


@pytest.mark.parametrize(("model_type", "task"), sorted(TINY_VISION_MORE))
def test_export_validates_against_pytorch(model_type, task, tiny_bundle):
    bundle = Bundle.load(tiny_bundle(model_type, task))
    row = ARCHITECTURES[model_type]
    assert (bundle.task, bundle.model_type) == (task, model_type)
    report = json.loads((bundle.path / "reports" / "validation.json").read_text())
    assert report["passed"] and {c["batch"] for c in report["cases"]} == {1, 3}
    inputs = {spec["name"]: spec for spec in bundle.graphs["model"]["inputs"]}
    for spec in inputs.values():
        assert all(isinstance(d, int) or d in DIM_NAMES for d in spec["dims"])
    assert {o["name"] for o in bundle.graphs["model"]["outputs"]} == set(report["max_abs_diff"])
    if model_type == "imagegpt":  # color-cluster ids, at two lengths
        assert list(inputs) == ["input_ids"] and inputs["input_ids"]["dims"] == ["batch",
                                                                               "sequence"]
        assert {c["sequence"] for c in report["cases"]} == {64, 21}
        return
    sizes = {(c["height"], c["width"]) for c in report["cases"]}
    if row.fixed_image_size:
        assert len(sizes) == 1 and inputs["pixel_values"]["dims"][1:] == [3, *sizes.pop()]
    else:
        assert sizes == set(IMAGE_SIZES)
        assert inputs["pixel_values"]["dims"] == ["batch", "channels", "height", "width"]


@pytest.mark.parametrize(("architectures", "model_type", "task"), [
    (["LevitForImageClassificationWithTeacher"], "levit", "image-classification"),
    (["DeiTForImageClassificationWithTeacher"], "deit", "image-classification"),
    (["CvtForImageClassification"], "cvt", "image-classification"),
    (["ViTMAEForPreTraining"], "vit_mae", "image-feature-extraction"),
    (["ViTModel"], "vit", "image-feature-extraction"),
    (["MaskFormerForInstanceSegmentation"], "maskformer", "image-segmentation"),
    (["ImageGPTForImageClassification"], "imagegpt", "image-classification"),
    (["DetrModel"], "detr", "object-detection"),  # a bare model without features: its task
])
def test_task_is_inferred_from_the_checkpoint_class(architectures, model_type, task):
    assert infer_task({"model_type": model_type, "architectures": architectures}) == task


def test_vit_mae_export_keeps_every_patch_and_is_deterministic(tmp_path):
    """A pretraining checkpoint (mask_ratio 0.75, as facebook/vit-mae-*) exports with mask_ratio
    0: every patch, in image order, equal to transformers' forward with ordered noise, and no
    random op in the graph."""
    import transformers

    config = _vit_mae_config(transformers)
    config.mask_ratio = 0.75
    torch.manual_seed(0)
    transformers.ViTMAEForPreTraining(config).save_pretrained(tmp_path / "ckpt")
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "ckpt")
    bundle = bundle_from_checkpoint(tmp_path / "ckpt", tmp_path / "bundle")
    assert Bundle.load(bundle).task == "image-feature-extraction"
    assert json.loads((bundle / "config.json").read_text())["mask_ratio"] == 0.0
    check_deterministic(bundle / "onnx" / "model.onnx")

    engine = OrtEngine(bundle / "onnx" / "model.onnx")
    pixels = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    got = engine.run({"pixel_values": pixels})["last_hidden_state"]
    assert got.shape == (2, 1 + 16, 32)
    np.testing.assert_array_equal(engine.run({"pixel_values": pixels})["last_hidden_state"], got)
    model = transformers.ViTMAEModel.from_pretrained(tmp_path / "ckpt", mask_ratio=0.0).eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(pixels), noise=torch.arange(16.0).expand(2, -1))
    np.testing.assert_allclose(got, expected.last_hidden_state.numpy(), atol=1e-5)


def test_a_random_graph_is_refused(tiny_checkpoint, tmp_path, monkeypatch):
    """Without the patch that keeps ViTMAE's patches in order, the trace draws its masking noise
    in the graph (RandomUniformLike): the export fails, and writes no bundle."""
    import exporter.configs as configs

    row = dataclasses.replace(configs.CUSTOM_CONFIGS["vit_mae"], patches=())
    monkeypatch.setitem(configs.CUSTOM_CONFIGS, "vit_mae", row)
    checkpoint = shutil.copytree(tiny_checkpoint("vit_mae", "image-feature-extraction"),
                                 tmp_path / "ckpt")
    with pytest.raises(ValidationError, match="draws random numbers.*RandomUniformLike"):
        bundle_from_checkpoint(checkpoint, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
    assert "RandomUniformLike" in RANDOM_OPS


def test_imagegpt_needs_its_position_patch(tiny_checkpoint):
    """transformers 4.57's ImageGPT without a cache (as traced) raises; the patch gives it the
    positions its cached forward computes, so both agree."""
    import transformers

    from exporter.configs.imagegpt import PATCHES
    from exporter.configs.patching import applied

    model = transformers.ImageGPTForImageClassification.from_pretrained(
        tiny_checkpoint("imagegpt", "image-classification")).eval()
    ids = torch.randint(0, 16, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with pytest.raises(TypeError):
            model(input_ids=ids, use_cache=False)
        with applied(PATCHES):
            patched = model(input_ids=ids, use_cache=False).logits
        cached = model(input_ids=ids, use_cache=True).logits
    torch.testing.assert_close(patched, cached, rtol=0, atol=0)
