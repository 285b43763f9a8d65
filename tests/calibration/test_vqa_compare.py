"""compare on a visual-question-answering bundle (ViLT): each photo of a folder is paired with
one of the built-in questions; top-1 answer agreement is 1 for an exact copy of fp32 and below 1
for a variant with a perturbed answer head, against the PyTorch reference too. VisualBERT
compares from an .npz of its feeds."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from multimodal_checkpoints import ANSWERS, VISUAL_EMBEDDING_DIM
from onnx import numpy_helper

from calibration.compare import compare_variants
from calibration.data import VQA_QUESTIONS, load_samples
from calibration.report import write_reports
from calibration.variants import staging_for, write_variant
from runtime import Bundle, pipeline

TASK = "visual-question-answering"


def _add_variant(bundle: Bundle, name: str, model: onnx.ModelProto | None = None) -> Bundle:
    with staging_for(bundle) as staging:
        if model is None:
            shutil.copy(bundle.graph_path("model", "fp32"), staging / "model.onnx")
        else:
            onnx.save(model, str(staging / "model.onnx"))
        return write_variant(bundle, name, {"model": staging / "model.onnx"},
                             {"name": "copy" if model is None else "noise"})


def _noisy_head(bundle: Bundle, scale: float) -> onnx.ModelProto:
    model = onnx.load(str(bundle.graph_path("model", "fp32")))
    node = next(n for n in model.graph.node if n.name == "/classifier/classifier.3/Gemm")
    weights = {t.name: t for t in model.graph.initializer}
    name = next(i for i in node.input if i in weights and len(weights[i].dims) >= 2)
    array = numpy_helper.to_array(weights[name])
    noise = np.random.default_rng(0).standard_normal(array.shape).astype(array.dtype)
    weights[name].CopyFrom(numpy_helper.from_array(array + scale * array.std() * noise, name))
    return model


def test_samples_pair_each_image_with_a_question(vision_bundle, image_folder):
    bundle = Bundle.load(vision_bundle("vilt", TASK))
    samples = load_samples(bundle, image_folder, samples=4)
    answer = pipeline(TASK, model=bundle.path)
    engine = bundle.engine("model", "fp32")
    for i, (name, feed) in enumerate(zip(samples.inputs, samples.feeds)):
        file, question = name.split(" | ")
        assert question == VQA_QUESTIONS[i % len(VQA_QUESTIONS)]
        # the feed is what the pipeline runs for this image and question: the same best answer
        best = ANSWERS[int(engine.run(feed)["logits"][0].argmax())]
        assert best == answer(image=str(image_folder / file), question=question, top_k=1)[0][
            "answer"]


@pytest.mark.parametrize("reference", ["fp32", "pytorch"])
def test_answer_agreement(vision_bundle, image_folder, reference):
    bundle = _add_variant(Bundle.load(vision_bundle("vilt", TASK)), "same")
    bundle = _add_variant(bundle, "noisy", _noisy_head(bundle, 3.0))
    report = compare_variants(bundle, image_folder, reference=reference, samples=12,
                              layer_samples=2)
    assert report["task_metric"] == "top1_agreement"
    same = report["variants"]["same"]["task"]
    assert same["value"] == 1.0 and same["flips"] == []
    noisy = report["variants"]["noisy"]["task"]
    assert noisy["count"] == 12
    assert noisy["flips"] and noisy["value"] == pytest.approx(1 - len(noisy["flips"]) / 12)
    assert noisy["answers"] == len(ANSWERS)
    change = noisy["changes"][0]
    assert {change["reference"], change["variant"]} <= set(ANSWERS)
    assert " | " in change["input"]  # the image and the question asked
    paths = write_reports(bundle, report)
    assert change["reference"] in paths["md"].read_text()


def test_visual_bert_compares_from_an_npz(vision_bundle, tmp_path):
    """VisualBERT's feeds (text and region features) come from an .npz; the embeddings are
    mean-pooled over the text's and the real regions' tokens."""
    bundle = _add_variant(Bundle.load(vision_bundle("visual_bert", "feature-extraction")), "same")
    rng = np.random.default_rng(0)
    count, regions = 6, 5
    mask = np.ones((count, 1, regions), np.int64)
    mask[::2, :, -2:] = 0  # padded regions in every other sample
    np.savez(tmp_path / "feeds.npz",
             input_ids=rng.integers(1000, 5000, (count, 1, 9)),
             attention_mask=np.ones((count, 1, 9), np.int64),
             token_type_ids=np.zeros((count, 1, 9), np.int64),
             visual_embeds=rng.standard_normal(
                 (count, 1, regions, VISUAL_EMBEDDING_DIM)).astype(np.float32),
             visual_attention_mask=mask, visual_token_type_ids=np.ones_like(mask))
    report = compare_variants(bundle, tmp_path / "feeds.npz", layer_samples=2)
    assert report["task_metric"] == "embedding_cosine_min"
    assert report["variants"]["same"]["task"]["value"] == pytest.approx(1.0)
