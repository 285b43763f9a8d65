"""Images from user inputs: every kind of input, every image mode as transformers loads it, and a
clear error for each bad input."""

from __future__ import annotations

import base64
import functools
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from runtime.errors import InputError
from runtime.vision.images import load_image, load_images
from runtime.vision.processors import ImageProcessor

VIT = {"image_processor_type": "ViTImageProcessor", "size": {"height": 32, "width": 40},
       "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}


@functools.cache
def photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee()).resize((64, 48))


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# --- every kind of input ----------------------------------------------------------------------
def test_every_kind_of_input_gives_the_same_rgb_image(tmp_path):
    path = tmp_path / "photo.png"
    photo().save(path)
    data = path.read_bytes()
    array = np.asarray(photo())
    kinds = {
        "str path": str(path), "Path": path, "bytes": data, "bytearray": bytearray(data),
        "memoryview": memoryview(data), "file object": io.BytesIO(data), "PIL": photo(),
        "numpy HWC uint8": array, "numpy HWC RGBA": np.dstack([array, np.full(array.shape[:2],
                                                                                9, np.uint8)]),
        "data URI": "data:image/png;base64," + base64.b64encode(data).decode(),
        "bare base64": base64.b64encode(data).decode(),
    }
    for kind, item in kinds.items():
        image = load_image(item)
        assert image.mode == "RGB", kind
        np.testing.assert_array_equal(np.asarray(image), array, err_msg=kind)


def test_grayscale_arrays_become_rgb():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for array in (gray, gray[..., None]):
        image = load_image(array)
        assert image.size == (4, 3)
        np.testing.assert_array_equal(np.asarray(image), np.repeat(gray[..., None], 3, axis=2))


def test_load_images_tells_whether_one_image_was_given(tmp_path):
    path = tmp_path / "photo.jpg"
    photo().save(path)
    images, single = load_images(path)
    assert single and len(images) == 1
    images, single = load_images([str(path), photo(), np.asarray(photo()), path.read_bytes()])
    assert not single and [image.size for image in images] == [(64, 48)] * 4
    images, single = load_images((photo(),))
    assert not single and len(images) == 1


def test_the_callers_image_is_not_changed():
    rgba = photo().convert("RGBA")
    assert load_image(rgba).mode == "RGB" and rgba.mode == "RGBA"
    rgb = photo()
    assert load_image(rgb) is rgb  # nothing to change: no copy


def test_a_loaded_file_is_closed_and_fully_decoded(tmp_path):
    path = tmp_path / "photo.png"
    photo().save(path)
    image = load_image(path)
    path.unlink()  # decoded already: nothing is read later
    assert getattr(image, "fp", None) is None
    assert np.asarray(image).shape == (48, 64, 3)


# --- modes, as transformers' load_image makes them -------------------------------------------
def _mode_images() -> dict[str, tuple[Image.Image, str]]:
    base = photo()
    gray = np.asarray(base.convert("L"))
    palette = base.convert("P")
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    return {
        "RGBA": (base.convert("RGBA"), "PNG"),
        "LA": (base.convert("LA"), "PNG"),
        "P": (palette, "PNG"),
        "P with transparency": (transparent, "PNG"),
        "L": (base.convert("L"), "PNG"),
        "1": (base.convert("1"), "PNG"),
        "CMYK": (base.convert("CMYK"), "JPEG"),
        "CMYK TIFF": (base.convert("CMYK"), "TIFF"),
        "I;16": (Image.fromarray(gray.astype(np.uint16) * 257), "PNG"),
        "I": (Image.fromarray(gray.astype(np.int32) * 3), "TIFF"),
        "F": (Image.fromarray(gray.astype(np.float32) / 255), "TIFF"),
        "RGB JPEG": (base, "JPEG"),
    }


@pytest.mark.parametrize("mode", list(_mode_images()))
def test_modes_give_what_transformers_gives(mode, tmp_path):
    import transformers
    from transformers.image_utils import load_image as reference_load

    image, fmt = _mode_images()[mode]
    path = tmp_path / f"image.{fmt.lower()}"
    image.save(path, fmt)
    reference = transformers.ViTImageProcessor(**VIT)
    ours = ImageProcessor.from_config(VIT)
    for source in (str(path), Image.open(path)):  # a path, and an image the caller opened
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = reference(images=[reference_load(source)], return_tensors="np")
        got = ours([load_image(source)])
        assert got["pixel_values"].shape == expected["pixel_values"].shape
        np.testing.assert_allclose(got["pixel_values"], expected["pixel_values"], atol=1e-5,
                                   rtol=0)
    np.testing.assert_array_equal(np.asarray(load_image(path)),
                                  np.asarray(reference_load(str(path))))


def test_sixteen_bit_images_saturate_as_in_transformers(tmp_path):
    values = np.array([[0, 200, 255, 256, 40000]], dtype=np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(values).save(path)
    np.testing.assert_array_equal(np.asarray(load_image(path))[0, :, 0],
                                  [0, 200, 255, 255, 255])


def test_exif_orientation_turns_the_image_upright(tmp_path):
    from transformers.image_utils import load_image as reference_load

    exif = photo().getexif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    photo().save(path, exif=exif.tobytes())
    image = load_image(path)
    assert image.size == (48, 64)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(reference_load(str(path))))
    opened = Image.open(path)
    assert load_image(opened).size == (48, 64) and opened.size == (64, 48)


# --- clear errors -----------------------------------------------------------------------------
def test_bad_inputs_are_refused_clearly(tmp_path):
    jpeg = encoded(Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 160, 3),
                                                                     dtype=np.uint8)), "JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    cases = [
        (str(tmp_path / "notes.txt"), r"notes\.txt is not an image Pillow can read\. Note:"),
        (b"plain text, no image", r"\(20 bytes\) is not an image Pillow can read"),
        (tmp_path / "cut.jpg", r"cut\.jpg could not be decoded: image file is truncated.*"
                               r"LOAD_TRUNCATED_IMAGES"),
        (jpeg[: len(jpeg) // 2], "could not be decoded: image file is truncated"),
        (Image.new("RGB", (0, 5)), r"The PIL image is empty \(0x5 pixels\)"),
        (np.zeros((0, 4, 3), np.uint8), r"is empty \(4x0 pixels\)"),
        (str(tmp_path / "missing.png"), r"No such file: '.*missing\.png'\. Note:"),
        (tmp_path / "missing.png", r"No such file: .*missing\.png\. Note:"),
        (tmp_path, "is a directory, not an image file"),
        (3, r"Cannot read an image from int: 3\. Note: an image is a file path"),
        ({"image": "x.png"}, "Cannot read an image from dict"),
        (None, "Cannot read an image from NoneType"),
        ("https://example.com/cat.jpg", r"does not download images.*Note: download it"),
        ("http://example.com/cat.jpg", "does not download images"),
        (np.zeros((4, 4, 3), np.float32), r"must be uint8 \(0-255\), got float32.*\* 255"),
        (np.zeros((4, 4, 3), np.uint16), "must be uint8"),
        (np.zeros((3, 40, 50), np.uint8), r"looks channels-first.*transpose\(1, 2, 0\)"),
        (np.zeros((2, 4, 4, 3), np.uint8), r"shape \(2, 4, 4, 3\).*list of arrays"),
        (np.zeros((4, 4, 2), np.uint8), r"shape \(4, 4, 2\)"),
        ("data:text/plain;base64,aGVsbG8=", "is not a base64 image"),
        ("data:image/png;base64,#not base64#", "is not valid base64"),
        ([], "At least one image is required, got an empty list"),
        ([photo(), 7], r"Image 1 of 2: Cannot read an image from int"),
    ]
    for item, message in cases:
        with pytest.raises(InputError, match=message):
            load_images(item)


@pytest.mark.parametrize("limit,warning_only", [(6000, True), (1000, False)])
def test_images_over_the_decompression_bomb_limit_are_refused(monkeypatch, limit,
                                                              warning_only):
    """Over MAX_IMAGE_PIXELS Pillow warns, over twice that it raises: both are an error here,
    naming the pixel count, the limit, and how to raise it."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    data = encoded(Image.new("RGB", (100, 100)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(InputError, match=rf"has 10,000 pixels.*limit of {limit:,} pixels "
                                             r"\(PIL\.Image\.MAX_IMAGE_PIXELS\).*"
                                             r"MAX_IMAGE_PIXELS = 10001"):
            load_image(data)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
        assert load_image(data).size == (100, 100)


def test_truncated_images_load_when_pillow_is_told_to(monkeypatch):
    jpeg = encoded(photo(), "JPEG")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert load_image(jpeg[: len(jpeg) * 2 // 3]).size == (64, 48)


def test_an_unreadable_file_is_refused_clearly(tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    photo().save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(InputError, match=r"Cannot read .*photo\.png: .*Permission denied"):
        load_image(Path(path))
