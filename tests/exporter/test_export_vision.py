"""Export every vision architecture x task, validated against PyTorch at two batch sizes and
two image sizes (one for the models whose image size is fixed, which the graph then states)."""

from __future__ import annotations

import json
import shutil

import pytest
from vision_checkpoints import TINY_VISION

from exporter import bundle_from_checkpoint
from exporter.architectures import ARCHITECTURES
from exporter.validate import IMAGE_SIZES
from runtime import Bundle, ExportError, ValidationError
from runtime.dims import DIM_NAMES


@pytest.mark.parametrize(("model_type", "task"), sorted(TINY_VISION))
def test_export_validates_against_pytorch(model_type, task, tiny_bundle):
    bundle = Bundle.load(tiny_bundle(model_type, task))
    row = ARCHITECTURES[model_type]
    assert (bundle.task, bundle.model_type, bundle.manifest["modality"]) == (
        task, model_type, row.modality)
    report = json.loads((bundle.path / "reports" / "validation.json").read_text())
    assert report["passed"]
    sizes = {(c["height"], c["width"]) for c in report["cases"]}
    assert {c["batch"] for c in report["cases"]} == {1, 3}
    pixels = next(s for s in bundle.graphs["model"]["inputs"] if s["name"] == "pixel_values")
    if row.fixed_image_size:
        assert len(sizes) == 1 and pixels["dims"][1:] == [3, *sizes.pop()]
    else:
        assert sizes == set(IMAGE_SIZES)
        assert pixels["dims"] == ["batch", "channels", "height", "width"]
    for spec in bundle.graphs["model"]["inputs"]:
        assert all(isinstance(d, int) or d in DIM_NAMES for d in spec["dims"])
    assert {o["name"] for o in bundle.graphs["model"]["outputs"]} == set(report["max_abs_diff"])
    assert bundle.manifest["preprocessing"]["image_processor"] == "preprocessor_config.json"
    assert (bundle.path / "preprocessor_config.json").is_file()
    assert (bundle.path / "tokenizer.json").is_file() == ("text" in row.modality)


def test_task_is_inferred_for_vision_checkpoints(tiny_checkpoint, tmp_path):
    path = bundle_from_checkpoint(tiny_checkpoint("clip", "zero-shot-image-classification"),
                                  tmp_path / "clip")
    assert Bundle.load(path).task == "zero-shot-image-classification"


def test_a_checkpoint_without_image_processor_is_refused(tiny_checkpoint, tmp_path):
    checkpoint = shutil.copytree(tiny_checkpoint("vit", "image-classification"), tmp_path / "c")
    (checkpoint / "preprocessor_config.json").unlink()
    with pytest.raises(ExportError, match="no preprocessor_config.json"):
        bundle_from_checkpoint(checkpoint, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_an_unknown_image_processor_is_refused(tiny_checkpoint, tmp_path):
    checkpoint = shutil.copytree(tiny_checkpoint("vit", "image-classification"), tmp_path / "c")
    config = json.loads((checkpoint / "preprocessor_config.json").read_text())
    config["image_processor_type"] = "FancyImageProcessor"
    (checkpoint / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match="FancyImageProcessor"):
        bundle_from_checkpoint(checkpoint, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_a_graph_that_fails_at_another_size_is_refused(tmp_path, monkeypatch):
    """Swin's classifier picks window size and shift from the input size in Python: traced at
    224, its graph cannot run at 64x96. Validation at two sizes must catch that (which is why
    the row says fixed_image_size)."""
    import dataclasses

    import torch
    import transformers

    import exporter.architectures as architectures

    config = transformers.SwinConfig(image_size=224, embed_dim=16, depths=[1, 1, 2, 1],
                                     num_heads=[1, 1, 2, 2], window_size=7, num_labels=3)
    torch.manual_seed(0)
    transformers.SwinForImageClassification(config).save_pretrained(tmp_path / "swin")
    transformers.ViTImageProcessor().save_pretrained(tmp_path / "swin")
    row = dataclasses.replace(ARCHITECTURES["swin"], fixed_image_size=False)
    monkeypatch.setitem(architectures.ARCHITECTURES, "swin", row)
    with pytest.raises(ValidationError, match="fails at batch 1, height 64, width 96"):
        bundle_from_checkpoint(tmp_path / "swin", tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
