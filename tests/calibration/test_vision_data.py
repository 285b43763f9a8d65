"""Calibration data from folders of images: every image file becomes a batch-1 feed made by the
bundle's own runtime preprocessing, with clear errors for files of the wrong kind."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from calibration.data import CANDIDATE_LABELS, dim_ranges, feeds_from_path, load_samples
from runtime import Bundle, InputError, pipeline
from runtime.vision.images import load_image


def test_every_image_becomes_the_pipelines_own_feed(tiny_bundle, image_folder, write_images,
                                                     tmp_path):
    bundle = Bundle.load(tiny_bundle("vit", "image-classification"))
    samples = load_samples(bundle, image_folder)
    assert len(samples) == 21  # every format, the subfolder included
    assert sorted(samples.inputs) == write_images(tmp_path / "again")
    assert {name.rsplit(".", 1)[1] for name in samples.inputs} == {
        "jpg", "jpeg", "png", "bmp", "webp", "tif", "gif"}
    pipe = pipeline(model=bundle.path)
    for name, feed in zip(samples.inputs, samples.feeds):
        expected = pipe.image_feed([load_image(image_folder / name)])
        assert feed.keys() == expected.keys() == {"pixel_values"}
        assert feed["pixel_values"].shape == (1, 3, 32, 32)
        np.testing.assert_array_equal(feed["pixel_values"], expected["pixel_values"])
    # ... and the graph runs on them
    bundle.engine("model", "fp32").run(samples.feeds[0])


def test_sample_count_and_seeded_shuffle(tiny_bundle, image_folder):
    bundle = Bundle.load(tiny_bundle("vit", "image-classification"))
    first = load_samples(bundle, image_folder, samples=6, seed=1).inputs
    assert len(set(first)) == 6
    assert load_samples(bundle, image_folder, samples=6, seed=1).inputs == first
    assert load_samples(bundle, image_folder, samples=6, seed=2).inputs != first
    with pytest.raises(InputError, match="samples must be a positive int"):
        load_samples(bundle, image_folder, samples=0)


def test_images_of_varied_size_give_detr_its_dim_ranges(tiny_bundle, image_folder):
    bundle = Bundle.load(tiny_bundle("detr", "object-detection"))
    feeds = feeds_from_path(bundle, image_folder)
    heights = sorted(feed["pixel_values"].shape[2] for feed in feeds)
    ranges = dim_ranges(bundle, feeds)
    assert ranges["batch"] == (1, 1, 1)
    assert ranges["height"] == (heights[0], int(np.median(heights)), heights[-1])
    assert ranges["height"][0] < ranges["height"][2]  # the shortest edge is 64, the rest varies


def test_clip_pairs_each_image_with_the_candidate_labels(tiny_bundle, image_folder):
    bundle = Bundle.load(tiny_bundle("clip", "zero-shot-image-classification"))
    assert bundle.manifest["modality"] == "text-image"
    samples = load_samples(bundle, image_folder, samples=3)
    assert samples.labels == list(CANDIDATE_LABELS)
    pipe = pipeline(model=bundle.path)
    texts = [f"This is a photo of {label}." for label in CANDIDATE_LABELS]
    expected = pipe.text_feed(pipe.tokenizer.encode_batch(texts))
    for name, feed in zip(samples.inputs, samples.feeds):
        assert sorted(feed) == ["attention_mask", "input_ids", "pixel_values"]
        assert feed["input_ids"].shape[0] == len(CANDIDATE_LABELS)
        np.testing.assert_array_equal(feed["input_ids"], expected["input_ids"])
        np.testing.assert_array_equal(feed["pixel_values"], pipe.image_feed(
            [load_image(image_folder / name)])["pixel_values"])
    # the feed is what the zero-shot pipeline runs for these labels: the same scores
    logits = bundle.engine("model", "fp32").run(samples.feeds[0])["logits_per_image"][0]
    scores = pipe(str(image_folder / samples.inputs[0]), candidate_labels=list(CANDIDATE_LABELS))
    best = max(scores, key=lambda s: s["score"])
    assert best["label"] == CANDIDATE_LABELS[int(np.argmax(logits))]


def test_wrong_kinds_of_files_are_clear_errors(tiny_bundle, tmp_path, write_images):
    vit = Bundle.load(tiny_bundle("vit", "image-classification"))
    folder = tmp_path / "mixed"
    write_images(folder, variations=False)
    (folder / "notes.txt").write_text("not an image\n")
    with pytest.raises(InputError, match="holds text files, but this image-classification "
                                         r"bundle reads image \(found: notes.txt\)\. Note: give "
                                         "a folder of image files"):
        load_samples(vit, folder)
    (folder / "notes.txt").unlink()
    (folder / ".DS_Store").write_bytes(b"\0\1")  # hidden files are not samples
    assert len(load_samples(vit, folder)) == 7
    with pytest.raises(InputError, match="Text calibration data was given, but this "
                                         "image-classification bundle reads image. Note: give a "
                                         "folder of image files"):
        (tmp_path / "lines.txt").write_text("a line\n")
        load_samples(vit, tmp_path / "lines.txt")
    clip = Bundle.load(tiny_bundle("clip", "zero-shot-image-classification"))
    with pytest.raises(InputError, match="zero-shot-image-classification bundle reads image"):
        load_samples(clip, tmp_path / "lines.txt")
    empty = tmp_path / "empty"
    (empty / ".hidden").mkdir(parents=True)
    (empty / ".hidden" / "a.png").write_bytes(b"")
    with pytest.raises(InputError, match="is empty"):
        load_samples(vit, empty)
    # images for a text bundle: the error that was there before
    bert = Bundle.load(tiny_bundle("bert", "text-classification"))
    with pytest.raises(InputError, match="holds image files, but this text-classification bundle "
                                         "reads text"):
        load_samples(bert, folder)


def test_a_damaged_or_unusable_image_is_named(tiny_bundle, tmp_path, write_images):
    vit = Bundle.load(tiny_bundle("vit", "image-classification"))
    folder = tmp_path / "images"
    write_images(folder, variations=False)
    good = (folder / "image0.jpg").read_bytes()
    (folder / "broken.jpg").write_bytes(good[: len(good) // 3])  # a partial download
    with pytest.raises(InputError, match=r"broken\.jpg could not be decoded.*damaged or "
                                         "incomplete"):
        load_samples(vit, folder)
    (folder / "broken.jpg").write_text("<html>404</html>")  # an error page under an image name
    with pytest.raises(InputError, match=r"broken\.jpg is not an image Pillow can read"):
        load_samples(vit, folder)
    (folder / "broken.jpg").unlink()
    # readable, but too small for a model whose processor rounds sizes down to 32
    glpn = Bundle.load(tiny_bundle("glpn", "depth-estimation"))
    Image.new("RGB", (20, 90)).save(folder / "thin.png")
    with pytest.raises(InputError, match=r"calibration image .*thin\.png cannot be used: "
                                         "GLPNImageProcessor would resize"):
        load_samples(glpn, folder)


def test_npz_rows_and_stacked_inputs(tiny_bundle, tmp_path, image_folder):
    vit = Bundle.load(tiny_bundle("vit", "image-classification"))
    pixels = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "pixels.npz", pixel_values=pixels)
    feeds = feeds_from_path(vit, tmp_path / "pixels.npz", samples=3, seed=4)
    assert len(feeds) == 3 and all(f["pixel_values"].shape == (1, 3, 32, 32) for f in feeds)
    np.savez(tmp_path / "pixels.npz", pixel_values=pixels[0, 0])
    with pytest.raises(InputError, match=r"has shape \(32, 32\); the graph declares dims"):
        feeds_from_path(vit, tmp_path / "pixels.npz")
    # CLIP: a whole text batch per sample (rank + 1), pixel rows as usual
    clip = Bundle.load(tiny_bundle("clip", "zero-shot-image-classification"))
    made = load_samples(clip, image_folder, samples=4)
    np.savez(tmp_path / "clip.npz", **{name: np.stack([f[name][0] if name == "pixel_values"
                                                        else f[name] for f in made.feeds])
                                       for name in made.feeds[0]})
    again = load_samples(clip, tmp_path / "clip.npz", seed=0)
    assert again.labels is None and len(again) == 4
    for feed in again.feeds:
        assert feed["input_ids"].shape == made.feeds[0]["input_ids"].shape
        assert feed["pixel_values"].shape == (1, 3, 32, 32)
        assert any(np.array_equal(feed["pixel_values"], f["pixel_values"]) for f in made.feeds)
