"""compare and calibration on vision-encoder-decoder bundles: TrOCR's image-to-text is measured
by the character error rate of the variant's texts against the reference's (WER beside it),
Donut's document-question-answering by the share of answers kept; the fp32 graphs read as the
PyTorch checkpoint does; static int8 is calibrated from the images, by generating."""

from __future__ import annotations

import shutil

import pytest
from document_checkpoints import document_images
from images import photos

from calibration.compare import compare_variants
from calibration.data import DOCUMENT_QUESTIONS, load_samples
from calibration.metrics import error_rates
from calibration.quantize import variant_from_bundle
from runtime import Bundle, pipeline

MODEL_TYPE = "vision-encoder-decoder"


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("documents")
    for index, image in enumerate([*document_images(), *photos()[:2]]):
        image.save(folder / f"image{index}.png")
    return folder


@pytest.fixture(scope="module")
def trocr(tiny_bundle, image_folder, tmp_path_factory):
    """A copy of the tiny TrOCR bundle with dynamic and static int8 variants, and the compare
    report of them."""
    path = shutil.copytree(tiny_bundle(MODEL_TYPE, "image-to-text"),
                           tmp_path_factory.mktemp("trocr") / "bundle")
    variant_from_bundle(path, "dynamic-int8")
    variant_from_bundle(path, "static-int8", calibration=image_folder, samples=3)
    report = compare_variants(path, image_folder, samples=5, layer_samples=1, new_tokens=10)
    return Bundle.load(path), report


def test_trocr_compare_by_character_error_rate(trocr, image_folder):
    bundle, report = trocr
    assert report["task_metric"] == "cer" and report["data"]["samples"] == 5
    images = [source for source in load_samples(bundle, image_folder, samples=5).sources()]

    def texts(variant):
        read = pipeline("image-to-text", model=bundle.path, variant=variant)
        return [read(image, max_new_tokens=10, num_beams=1)[0]["generated_text"]
                for image in images]

    expected = texts("fp32")
    for variant in ("int8", "qdq"):
        task = report["variants"][variant]["task"]
        rates = error_rates(expected, texts(variant))  # the pipeline's own texts
        assert task["value"] == pytest.approx(rates["cer"]), variant
        assert task["wer"] == pytest.approx(rates["wer"])
    parts = report["variants"]["int8"]["layers"]["parts"]
    assert [p["graph"] for p in parts][0] == "encoder_model"


def test_trocr_is_calibrated_by_generating(trocr):
    bundle, _ = trocr
    record = bundle.variants["qdq"]["recipe"]
    feeds = record["calibration"]["feeds"]
    assert feeds["encoder_model"] == 3 and feeds["decoder_model_merged"] > 3


def test_trocr_against_pytorch(trocr, image_folder):
    bundle, _ = trocr
    report = compare_variants(bundle.path, image_folder, variants=["fp32"],
                              reference="pytorch", samples=3, layers=False, new_tokens=8)
    fp32 = report["variants"]["fp32"]
    assert fp32["task"]["value"] == 0.0 and fp32["task"]["token_agreement"] == 1.0


def test_donut_compare_by_answers(tiny_bundle, image_folder, tmp_path):
    path = shutil.copytree(tiny_bundle(MODEL_TYPE, "document-question-answering"),
                           tmp_path / "donut")
    variant_from_bundle(path, "dynamic-int8")
    report = compare_variants(path, image_folder, samples=4, layers=False, new_tokens=8)
    assert report["task_metric"] == "answer_accuracy"
    loaded = load_samples(Bundle.load(path), image_folder, samples=4)
    assert [question for _, question in loaded.sources()] == list(DOCUMENT_QUESTIONS)
    task = report["variants"]["int8"]["task"]
    assert 0.0 <= task["value"] <= 1.0 and "token_agreement" in task
    against = compare_variants(path, image_folder, variants=["fp32"], reference="pytorch",
                               samples=2, layers=False, new_tokens=6)
    assert against["variants"]["fp32"]["task"]["value"] == 1.0
