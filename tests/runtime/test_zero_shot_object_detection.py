"""zero-shot-object-detection: OWL-ViT and OWLv2 from exported bundles find the same boxes as
transformers.pipeline on the same tiny checkpoints (same labels in the same order, boxes to the
pixel, scores within 1e-4), on real photos and odd sizes, in every input form it takes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from compare import assert_same
from images import all_images, generated, photos
from owl_checkpoints import TINY_OWL

from exporter.architectures import infer_task
from runtime import Bundle
from runtime.errors import InputError

TASK = "zero-shot-object-detection"
ARCHITECTURES = [model_type for model_type, task in TINY_OWL if task == TASK]
LABELS = ["cat", "a dog on a sofa", "rocket", "café", "tree"]


def _rgb(image):  # transformers' OWL processors refuse grayscale; the runtime converts
    return image.convert("RGB")


def assert_same_detections(actual, expected, where, *, tie=1e-5):
    """assert_same, except that detections whose scores are within ``tie`` may come in either
    order: dozens of scores of a random tiny model lie closer than that, and the last bit of a
    score (ONNX Runtime vs PyTorch, padded vs unpadded queries) may swap two of them."""
    if expected and isinstance(expected[0], list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for index, (got, wanted) in enumerate(zip(actual, expected)):
            assert_same_detections(got, wanted, f"{where}[{index}]", tie=tie)
        return
    assert isinstance(actual, list) and len(actual) == len(expected), \
        f"{where}: {len(actual)} detections != {len(expected)}\n{actual}\n{expected}"
    for got, wanted in zip(actual, expected):  # the same order up to ties
        assert abs(got["score"] - wanted["score"]) <= tie, f"{where}: {got} != {wanted}"
    remaining, matched = list(actual), []
    for wanted in expected:
        same = [got for got in remaining if (got["label"], got["box"]) == (wanted["label"],
                                                                           wanted["box"])]
        assert same, f"{where}: {wanted} not found in {actual}"
        best = min(same, key=lambda got: abs(got["score"] - wanted["score"]))
        remaining.remove(best)
        matched.append(best)
    assert_same(matched, expected, where)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_export_validates_at_two_batches_and_two_query_counts(model_type, tiny_bundle):
    bundle = Bundle.load(tiny_bundle(model_type, TASK))
    report = json.loads((bundle.path / "reports" / "validation.json").read_text())
    assert report["passed"]
    cases = {(c["batch"], c["num_queries"], c["text_batch"]) for c in report["cases"]}
    assert cases == {(b, q, b * q) for b in (1, 3) for q in (2, 3)}
    assert set(report["max_abs_diff"]) == {"logits", "pred_boxes", "text_embeds", "image_embeds"}
    inputs = {spec["name"]: spec["dims"] for spec in bundle.graphs["model"]["inputs"]}
    assert inputs["input_ids"] == ["text_batch", "sequence"]
    assert inputs["pixel_values"] == ["batch", 3, 48, 48]  # the model's one image size


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_the_task_is_inferred_from_the_detector_class(model_type, tiny_checkpoint):
    config = json.loads((tiny_checkpoint(model_type, TASK) / "config.json").read_text())
    assert config["architectures"][0].endswith("ForObjectDetection")
    assert infer_task(config) == TASK


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    for image in all_images():
        found = runtime(image, candidate_labels=LABELS)
        assert found, "the tiny model finds something at the default threshold"
        assert_same_detections(found, reference(_rgb(image), candidate_labels=LABELS),
                    f"{model_type} {image.size}")
    for image in photos()[:2]:
        for kwargs in ({"candidate_labels": "cat,remote control", "threshold": 0.3, "top_k": 4},
                       {"text_queries": ["only one"], "threshold": 0.0, "top_k": 0}):
            assert_same_detections(runtime(image, **kwargs), reference(image, **kwargs),
                        f"{model_type} {image.size} {kwargs}")


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_lists_of_images_and_of_dicts_match_transformers(model_type, runtime_pipeline,
                                                         reference_pipeline):
    runtime = runtime_pipeline(model_type, TASK)
    reference = reference_pipeline(model_type, TASK)
    images = [photos()[0], generated()[0]]
    per_image = [LABELS[:2], "tree,car"]  # transformers pairs the labels with the images
    assert_same_detections(runtime(images, candidate_labels=per_image, top_k=3),
                reference(images, candidate_labels=per_image, top_k=3), "list of images")
    requests = [{"image": image, "candidate_labels": labels}
                for image, labels in zip(images, per_image)]
    assert_same_detections(runtime(requests, threshold=0.2), reference(requests, threshold=0.2),
                "list of dicts")
    assert_same_detections(runtime(requests[0]), reference(requests[0]), "one dict")
    # consecutive images with the same labels run as one batch (batch x queries text rows)
    images = [*photos()[:3], generated()[1]]
    per_image = [LABELS, LABELS, LABELS, LABELS[:2]]
    assert_same_detections(runtime(images, candidate_labels=per_image, batch_size=3),
                reference(images, candidate_labels=per_image, batch_size=3), "batches")


def test_owlv2_boxes_are_relative_to_the_padded_square(runtime_pipeline):
    """OWLv2 pads a wide image at the bottom: a box can reach below the image itself, as
    transformers scales it by the longer side."""
    detect = runtime_pipeline("owlv2", TASK)
    wide = generated()[2]  # 250 x 45
    boxes = [d["box"] for d in detect(wide, candidate_labels=LABELS, threshold=0.0)]
    assert max(box["ymax"] for box in boxes) > wide.height


def test_arguments_given_to_the_pipeline_are_defaults(runtime_pipeline):
    detect = runtime_pipeline("owlvit", TASK, candidate_labels=LABELS, top_k=2)
    assert detect(photos()[0]) == detect(photos()[0], candidate_labels=LABELS, top_k=2)
    assert len(detect(photos()[0])) == 2


def test_scores_are_sorted_and_above_the_threshold(runtime_pipeline):
    detect = runtime_pipeline("owlvit", TASK)
    found = detect(photos()[1], candidate_labels=LABELS, threshold=0.25)
    scores = [d["score"] for d in found]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0.25
    assert {d["label"] for d in found} <= set(LABELS)
    assert all(isinstance(v, int) for d in found for v in d["box"].values())


def test_bad_inputs_are_clear_errors(runtime_pipeline):
    detect = runtime_pipeline("owlvit", TASK)
    image = photos()[0]
    with pytest.raises(InputError, match="candidate_labels must be a non-empty list"):
        detect(image)
    with pytest.raises(InputError, match="candidate_labels must be a non-empty list"):
        detect(image, candidate_labels=[])
    with pytest.raises(InputError, match="one entry per image"):
        detect([image, image], candidate_labels=LABELS)
    with pytest.raises(InputError, match="no 'candidate_labels'"):
        detect({"image": image})
    with pytest.raises(InputError, match="threshold must be a number"):
        detect(image, candidate_labels=LABELS, threshold="high")
    with pytest.raises(InputError, match="top_k must be"):
        detect(image, candidate_labels=LABELS, top_k=-1)
    with pytest.raises(InputError, match="tokens long"):
        detect(image, candidate_labels=["word " * 20])
    with pytest.raises(InputError, match="takes no argument 'hypothesis_template'"):
        detect(image, candidate_labels=LABELS, hypothesis_template="{}")
    with pytest.raises(InputError, match="needs an image"):
        detect(candidate_labels=LABELS)
    with pytest.raises(InputError, match="is one image, got a list of 2"):
        detect({"image": [image, image], "candidate_labels": LABELS})
    with pytest.raises(InputError, match="batch_size must be a positive int"):
        detect(image, candidate_labels=LABELS, batch_size=0)


def test_runs_where_torch_and_scipy_cannot_be_imported(tiny_bundle, tmp_path):
    """OWLv2's anti-aliased resize is numpy's own: no scipy on the device either."""
    photo = tmp_path / "astronaut.png"
    photos()[0].save(photo)
    code = textwrap.dedent("""
        import json, sys
        sys.modules.update(dict.fromkeys(("torch", "transformers", "optimum", "scipy")))
        from runtime import pipeline
        detect = pipeline(model=sys.argv[2])
        found = detect(sys.argv[1], candidate_labels=["cat", "rocket"], threshold=0.0)
        print(json.dumps({"found": len(found), "heavy": [m for m in sys.modules
              if m.split(".")[0] in ("torch", "transformers", "scipy") and sys.modules[m]]}))
    """)
    proc = subprocess.run([sys.executable, "-c", code, str(photo),
                           str(tiny_bundle("owlv2", TASK))], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"found": 2 * 16, "heavy": []}  # 16 patches, 2 labels
