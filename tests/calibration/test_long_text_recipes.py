"""Longformer, BigBird and XLNet bundles through quantize and compare: the dynamic-int8 recipe
makes a variant the runtime runs, and compare measures it with the text metrics every text
encoder gets (built-in samples; Longformer's global attention mask and XLNet's segments come
from the runtime's preprocessing, as on the device)."""

from __future__ import annotations

import shutil

import pytest

from calibration.compare import compare_variants
from calibration.quantize import variant_from_bundle
from runtime import pipeline

CASES = [("longformer", "question-answering"), ("big_bird", "fill-mask"),
         ("xlnet", "text-classification")]


@pytest.mark.parametrize("model_type, task", CASES)
def test_dynamic_int8_variant_and_compare(model_type, task, tiny_bundle, tmp_path):
    path = shutil.copytree(tiny_bundle(model_type, task), tmp_path / "bundle")
    assert variant_from_bundle(path, "dynamic-int8") == "int8"

    report = compare_variants(path, samples=8, layers=False, reference="pytorch")
    fp32, int8 = report["variants"]["fp32"], report["variants"]["int8"]
    assert fp32["cosine"] > 0.99999  # the graph is PyTorch's, fed as the runtime feeds it
    assert fp32["task"]["value"] == 1.0
    assert 0.95 < int8["cosine"] < 1.0  # int8 moves the outputs, a little
    assert report["reference"]["name"] == "pytorch"

    pipe = pipeline(task, model=path, variant="int8")
    if task == "question-answering":
        answer = pipe(question="Where do cats sit?", context="The cat sits outside on the mat.")
        assert set(answer) == {"score", "start", "end", "answer"}
    elif task == "fill-mask":
        assert len(pipe(f"The cat {pipe.tokenizer.mask_token} outside.")) == 5
    else:
        assert pipe("I love this movie!")[0]["label"] in {"negative", "neutral", "positive"}
