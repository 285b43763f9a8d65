"""Export vision-encoder-decoder models (TrOCR, Donut): the encoder on images of the one size
it takes and the merged decoder with and without its cache, validated against PyTorch at two
batch sizes and two decoder lengths; the bundle carries the tokenizer and the image processor;
unsupported encoder/decoder pairs and tasks are refused before tracing. And the runtime's
DonutImageProcessor gives transformers' pixel values."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from document_checkpoints import DONUT_SIZE, TINY_DOCUMENT, document_images
from images import all_images

from exporter import bundle_from_checkpoint
from runtime import Bundle, ExportError
from runtime.vision.processors import ImageProcessor


@pytest.mark.parametrize(("model_type", "task"), sorted(TINY_DOCUMENT))
def test_export_validates_against_pytorch(model_type, task, tiny_bundle):
    bundle = Bundle.load(tiny_bundle(model_type, task))
    assert (bundle.task, bundle.model_type, bundle.manifest["family"]) == (
        task, model_type, "encoder-decoder")
    report = json.loads((bundle.path / "reports" / "validation.json").read_text())
    assert report["passed"]
    graphs = {case["graph"] for case in report["cases"]}
    assert graphs == {"encoder_model", "decoder_model_merged"}
    assert {c["batch"] for c in report["cases"]} == {1, 3}
    assert {c.get("step") for c in report["cases"]} == {None, "first", "with past"}
    pixels = next(s for s in bundle.graphs["encoder_model"]["inputs"]
                  if s["name"] == "pixel_values")
    size = list(DONUT_SIZE) if task == "document-question-answering" else [32, 32]
    assert pixels["dims"] == ["batch", 3, *size]  # the one size the encoder takes
    assert (bundle.path / "tokenizer.json").is_file()
    assert (bundle.path / "preprocessor_config.json").is_file()


def _edited(checkpoint, directory, edit):
    target = directory / "checkpoint"
    shutil.copytree(checkpoint, target)
    config = json.loads((target / "config.json").read_text())
    edit(config)
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_unsupported_pairs_and_tasks_are_refused(tiny_checkpoint, tmp_path):
    trocr = tiny_checkpoint("vision-encoder-decoder", "image-to-text")
    with pytest.raises(ExportError, match="document-question-answering takes"):
        bundle_from_checkpoint(trocr, tmp_path / "out", task="document-question-answering")

    def bert_decoder(config):
        config["decoder"]["model_type"] = "bert"

    checkpoint = _edited(trocr, tmp_path, bert_decoder)
    with pytest.raises(ExportError, match="decoder of the kinds trocr, mbart; this "
                                          "checkpoint's decoder is 'bert'"):
        bundle_from_checkpoint(checkpoint, tmp_path / "out2")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


DONUT_CONFIGS = [
    {"size": {"height": 64, "width": 48}, "do_align_long_axis": True},
    {"size": [48, 64]},  # legacy [width, height]
    {"size": {"height": 48, "width": 96}, "do_align_long_axis": True, "resample": 3},
    {"size": {"height": 64, "width": 48}, "do_thumbnail": False, "do_pad": False},
]


@pytest.mark.parametrize("settings", DONUT_CONFIGS, ids=range(len(DONUT_CONFIGS)))
def test_donut_processor_matches_transformers(settings, tmp_path):
    from transformers import DonutImageProcessor

    reference = DonutImageProcessor(**settings)
    reference.save_pretrained(tmp_path)
    ours = ImageProcessor.from_dir(tmp_path)
    assert type(ours).__name__ == "DonutImageProcessor"
    for image in [*all_images(), *document_images()]:
        expected = reference(image.convert("RGB"), return_tensors="np")["pixel_values"]
        got = ours([image])["pixel_values"]
        assert got.shape == expected.shape, (settings, image.size)
        np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=str(image.size))
