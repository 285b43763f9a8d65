"""The runtime's image processors against transformers' slow ones, built from the same dict:
same keys, shapes and dtypes, pixel values within 1e-5, on real photos and on odd sizes."""

from __future__ import annotations

import functools
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from runtime.errors import BundleNotFoundError, InputError
from runtime.vision.images import load_image
from runtime.vision.processors import MODEL_TYPES, PROCESSORS, ImageProcessor

TOLERANCE = 1e-5

# The preprocessor_config.json of Hub checkpoints, legacy keys and all, as from_pretrained
# reads them (DETR's at its shortest_edge 800 is also run at a small size, for speed).
HUB_CONFIGS = {
    "google/vit-base-patch16-224": {
        "do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2,
        "size": 224},
    "facebook/convnext-tiny-224": {
        "crop_pct": 0.875, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "ConvNextFeatureExtractor",
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 3,
        "size": 224},
    "facebook/detr-resnet-50": {
        "do_normalize": True, "do_resize": True, "feature_extractor_type": "DetrFeatureExtractor",
        "format": "coco_detection", "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225], "max_size": 1333, "size": 800},
    "hustvl/yolos-small": {
        "do_normalize": True, "do_resize": True, "feature_extractor_type": "YolosFeatureExtractor",
        "format": "coco_detection", "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225], "max_size": 1333, "size": 512},
    "nvidia/segformer-b0-finetuned-ade-512-512": {
        "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "SegformerFeatureExtractor",
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "reduce_labels": True, "resample": 2, "size": 512},
    "facebook/mask2former-swin-tiny-coco-instance": {
        "do_normalize": True, "do_resize": True, "ignore_index": 255,
        "image_mean": [0.48500001430511475, 0.4560000002384186, 0.4059999883174896],
        "image_processor_type": "Mask2FormerImageProcessor",
        "image_std": [0.2290000021457672, 0.2239999920129776, 0.22499999403953552],
        "num_labels": 80, "reduce_labels": False, "resample": 2, "size": 384,
        "size_divisor": 32},
    "facebook/maskformer-swin-tiny-coco": {
        "do_normalize": True, "do_resize": True, "feature_extractor_type":
        "MaskFormerFeatureExtractor", "ignore_index": 255, "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225], "max_size": 1333, "num_labels": 133,
        "reduce_labels": False, "size": 400, "size_divisibility": 32},
    "vinvino02/glpn-kitti": {
        "do_rescale": True, "do_resize": True, "feature_extractor_type": "GLPNFeatureExtractor",
        "resample": 2, "size_divisor": 32},
    "Intel/dpt-large": {
        "do_normalize": True, "do_resize": True, "feature_extractor_type": "DPTFeatureExtractor",
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2,
        "size": 384},
    "Intel/dpt-hybrid-midas": {
        "do_normalize": True, "do_resize": True, "ensure_multiple_of": 32,
        "image_processor_type": "DPTImageProcessor", "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5], "keep_aspect_ratio": True, "resample": 3,
        "size": {"height": 384, "width": 384}},
    "openai/clip-vit-base-patch32": {
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224},
    "microsoft/beit-base-patch16-224": {
        "crop_size": 224, "do_center_crop": False, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "BeitFeatureExtractor", "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5], "reduce_labels": False, "resample": 2, "size": 224},
    "facebook/deit-base-distilled-patch16-224": {
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "DeiTFeatureExtractor", "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225], "resample": 3, "size": 256},
    "dandelin/vilt-b32-finetuned-vqa": {
        "do_normalize": True, "do_resize": True, "feature_extractor_type": "ViltFeatureExtractor",
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3,
        "size": 384, "size_divisor": 32},
}
# Checkpoints too big to run on every photo here: two photos at the real size, all at this one.
SMALLER = {
    "facebook/detr-resnet-50": {"size": 200, "max_size": 333},
    "hustvl/yolos-small": {"size": 192, "max_size": 320},
}

# Other configs: every size form, flag and legacy key the processors read. Run on small images.
VARIANTS = [
    ("LevitImageProcessor", {"size": {"shortest_edge": 40}, "crop_size": 32}),
    ("DonutImageProcessor", {"size": {"height": 48, "width": 36}, "do_thumbnail": True,
                             "do_align_long_axis": True, "do_pad": True}),
    ("ViTImageProcessor", {"size": [40, 30], "resample": 1}),
    ("ViTImageProcessor", {"size": 40, "resample": 4, "do_center_crop": True, "crop_size": 8}),
    ("ViTImageProcessor", {"size": 40, "resample": 5, "rescale_factor": 0.5,
                           "image_mean": [100, 110, 120], "image_std": [50, 60, 70]}),
    ("ViTImageProcessor", {"size": {"height": 24, "width": 40}, "do_rescale": False}),
    ("ViTImageProcessor", {"size": 24, "do_normalize": False}),
    ("ViTImageProcessor", {"do_resize": False, "image_mean": 0.3, "image_std": 0.2}),
    ("SegformerImageProcessor", {"size": {"height": 30, "width": 20}}),
    ("BeitImageProcessor", {"size": 40}),
    ("DeiTImageProcessor", {"size": {"height": 20, "width": 30},
                            "crop_size": {"height": 25, "width": 25}}),
    ("CLIPImageProcessor", {"size": {"height": 40, "width": 30}, "crop_size": 30}),
    ("CLIPImageProcessor", {"size": 48, "use_square_size": True, "crop_size": 40}),
    ("CLIPImageProcessor", {"size": {"shortest_edge": 36, "longest_edge": 99}, "crop_size": 36,
                            "resample": 0}),
    ("CLIPImageProcessor", {"do_resize": False, "crop_size": {"height": 100, "width": 33}}),
    ("ConvNextImageProcessor", {}),
    ("ConvNextImageProcessor", {"size": {"shortest_edge": 64}, "crop_pct": None}),
    ("ConvNextImageProcessor", {"size": 40, "crop_pct": 0.5}),
    ("GLPNImageProcessor", {"size_divisor": 4, "rescale_factor": 0.5}),
    ("GLPNImageProcessor", {"size_divisor": 8, "do_rescale": False}),
    ("DPTImageProcessor", {"size": 40}),
    ("DPTImageProcessor", {"size": {"height": 40, "width": 60}, "keep_aspect_ratio": True,
                           "ensure_multiple_of": 7, "do_pad": True, "size_divisor": 16}),
    ("DetrImageProcessor", {"size": {"max_height": 100, "max_width": 60}}),
    ("DetrImageProcessor", {"size": {"height": 64, "width": 48}}),
    ("DetrImageProcessor", {"size": {"height": 64, "width": 48}, "do_pad": False}),
    ("DetrImageProcessor", {"size": {"shortest_edge": 64, "longest_edge": 100},
                            "pad_size": {"height": 120, "width": 130}}),
    ("DetrImageProcessor", {"size": 64}),
    ("DetrImageProcessor", {"do_resize": False}),
    ("YolosImageProcessor", {"size": {"shortest_edge": 64, "longest_edge": 100}}),
    ("YolosImageProcessor", {"size": 64, "max_size": 90, "do_pad": False}),
    ("Mask2FormerImageProcessor", {"size": {"height": 50, "width": 70}}),
    ("Mask2FormerImageProcessor", {"size": {"height": 50, "width": 70}, "size_divisor": 0}),
    ("Mask2FormerImageProcessor", {"size": 64, "max_size": 100, "size_divisor": 16,
                                   "pad_size": {"height": 120, "width": 128}}),
    ("MaskFormerImageProcessor", {"size": 64}),
    ("ViltImageProcessor", {"size": {"shortest_edge": 64}, "size_divisor": 16}),
    ("ViltImageProcessor", {"size": 48, "size_divisor": 8, "pad_and_return_pixel_mask": False,
                            "resample": 2}),
    ("ViltImageProcessor", {"size": 40, "do_pad": True, "do_rescale": False,
                            "image_mean": [100, 110, 120], "image_std": [50, 60, 70]}),
    # OWL-ViT's early configs have a "rescale" flag, which transformers reads and overrides
    ("OwlViTImageProcessor", {"size": 40, "do_center_crop": True, "crop_size": 36,
                              "rescale": False, "resample": 2}),
    ("OwlViTImageProcessor", {"size": {"height": 30, "width": 44}}),
    ("Owlv2ImageProcessor", {"size": {"height": 48, "width": 48}}),
    ("Owlv2ImageProcessor", {"size": {"height": 40, "width": 56}, "do_pad": False,
                             "image_mean": 0.5, "image_std": 0.25}),
    ("Owlv2ImageProcessor", {"size": 24, "do_normalize": False, "rescale_factor": 0.5}),
]


@functools.cache
def photos() -> tuple[Image.Image, ...]:
    """Real photos of several aspects (camera is grayscale: loaded as RGB, as pipelines do)."""
    from skimage import data

    return tuple(load_image(array) for array in (
        data.astronaut(), data.coffee(), data.chelsea(), data.camera(), data.rocket()))


@functools.cache
def odd_images() -> tuple[Image.Image, ...]:
    """Seeded noise of odd sizes and aspects, (width, height) below, down to one pixel."""
    rng = np.random.default_rng(7)
    return tuple(Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
                 for width, height in ((1, 1), (3, 500), (641, 479), (1000, 17), (17, 1000),
                                       (97, 61)))


@functools.cache
def small_images() -> tuple[Image.Image, ...]:
    return (photos()[0].resize((120, 90)), photos()[2].resize((50, 77)), odd_images()[5],
            odd_images()[3].resize((300, 17)), photos()[4].resize((64, 96)))


def reference(type_name: str, config: dict):
    import transformers

    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(transformers, type_name).from_dict(config)


def reference_type(config: dict) -> str:
    name = config.get("image_processor_type") or config["feature_extractor_type"]
    return name.replace("FeatureExtractor", "ImageProcessor")


def run_reference(processor, images):
    """transformers on ``images``, or the exception it raised. The channel layout is given:
    on its own it guesses, and takes a 1x1 RGB image for channels-first."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return processor(images=list(images), return_tensors="np",
                             input_data_format="channels_last")
    except ValueError as error:
        return error


def assert_same(expected, got, label=""):
    assert sorted(expected.keys()) == sorted(got), label
    for key in got:
        want = np.asarray(expected[key])
        assert got[key].shape == want.shape, (label, key)
        if key == "pixel_values":
            assert got[key].dtype == np.float32, label
            assert np.abs(got[key].astype(np.float64) - want).max() <= TOLERANCE, (label, key)
        else:
            assert got[key].dtype == want.dtype, (label, key)
            assert np.array_equal(got[key], want), (label, key)


def assert_parity(config: dict, images, label: str, *, batch=()) -> int:
    """Compares image by image, then ``batch`` as one call; where transformers refuses an
    image (resized to nothing), the runtime must refuse it too, with an InputError. Returns
    how many images both processed."""
    ref = reference(reference_type(config), config)
    ours = ImageProcessor.from_config(config)
    compared = 0
    for image in images:
        expected = run_reference(ref, [image])
        if isinstance(expected, Exception):
            with pytest.raises(InputError, match="has no pixels|too small"):
                ours([image])
            continue
        assert_same(expected, ours([image]), f"{label} {image.size}")
        compared += 1
    if batch:
        expected = run_reference(ref, batch)
        if isinstance(expected, Exception):  # images of different sizes, and no padding
            with pytest.raises(InputError, match="different sizes|no pixels"):
                ours(list(batch))
        else:
            assert_same(expected, ours(list(batch)), f"{label} batch")
    return compared


@pytest.mark.parametrize("checkpoint", sorted(HUB_CONFIGS))
def test_hub_configs_match_transformers_on_photos_and_odd_sizes(checkpoint):
    config = HUB_CONFIGS[checkpoint]
    images = [*photos(), *odd_images()]
    if checkpoint in SMALLER:
        assert_parity(config, photos()[:2], f"{checkpoint} full size")
        config = {**config, **SMALLER[checkpoint]}
    compared = assert_parity(config, images, checkpoint, batch=photos()[:3])
    assert compared >= len(photos())


@pytest.mark.parametrize("type_name,config", VARIANTS,
                         ids=[f"{name}-{i}" for i, (name, _) in enumerate(VARIANTS)])
def test_config_variants_match_transformers(type_name, config):
    config = {"image_processor_type": type_name, **config}
    assert assert_parity(config, small_images(), type_name, batch=small_images()) >= 3


# Processors that make no pixel_values, compared with transformers in their own modules.
ELSEWHERE = {"ImageGPTImageProcessor": "test_vision_more_rows.py (color-cluster input_ids)"}


def test_every_processor_has_a_parity_case():
    covered = {reference_type(config) for config in HUB_CONFIGS.values()}
    covered |= {name for name, _ in VARIANTS} | set(ELSEWHERE)
    assert covered == set(PROCESSORS)


@pytest.mark.parametrize("config", [
    {"image_processor_type": "DetrImageProcessor", "size": {"shortest_edge": 64,
                                                            "longest_edge": 100}},
    {"image_processor_type": "YolosImageProcessor", "size": 64, "max_size": 100},
    {"image_processor_type": "Mask2FormerImageProcessor", "size": 64, "max_size": 100},
    {"image_processor_type": "DPTImageProcessor", "do_resize": False, "do_pad": True,
     "size_divisor": 512},
], ids=["detr", "yolos", "mask2former", "dpt"])
def test_padded_batches_of_different_sizes(config):
    """Padding to the largest image of the batch, and the pixel_mask of what is real."""
    images = [photos()[1].resize((160, 107)), photos()[3].resize((70, 70)), odd_images()[0],
              odd_images()[5], odd_images()[2].resize((200, 150))]
    if config["image_processor_type"] == "DPTImageProcessor":
        del images[2]  # its pad guesses the channel axis, and takes 1x1 RGB for channels-first
    ref = reference(config["image_processor_type"], config)
    expected = run_reference(ref, images)
    got = ImageProcessor.from_config(config)(images)
    assert_same(expected, got, "padded batch")
    assert got["pixel_values"].shape[0] == len(images)
    if "pixel_mask" in got:
        assert got["pixel_mask"].min() == 0 and got["pixel_mask"].max() == 1


def test_pixel_mask_marks_the_real_pixels():
    processor = ImageProcessor.from_config(
        {"image_processor_type": "DetrImageProcessor", "size": {"height": 20, "width": 30}})
    small = ImageProcessor.from_config(
        {"image_processor_type": "DetrImageProcessor", "do_resize": False})
    out = small([Image.new("RGB", (30, 20)), Image.new("RGB", (10, 40))])
    assert out["pixel_values"].shape == (2, 3, 40, 30)
    assert out["pixel_mask"][0, :20].all() and not out["pixel_mask"][0, 20:].any()
    assert out["pixel_mask"][1, :, :10].all() and not out["pixel_mask"][1, :, 10:].any()
    assert not out["pixel_values"][0, :, 20:].any()  # the padding is 0 after normalization
    assert processor([Image.new("RGB", (5, 5))])["pixel_mask"].dtype == np.int64


def test_same_size_batches_stack_and_different_sizes_are_refused():
    vit = ImageProcessor.from_config(HUB_CONFIGS["google/vit-base-patch16-224"])
    assert vit(list(small_images()))["pixel_values"].shape == (5, 3, 224, 224)
    glpn = ImageProcessor.from_config(HUB_CONFIGS["vinvino02/glpn-kitti"])
    with pytest.raises(InputError, match="different sizes.*one at a time"):
        glpn([photos()[0], photos()[1]])


def test_model_input_names():
    def names(config):
        return ImageProcessor.from_config(config).model_input_names

    assert names(HUB_CONFIGS["facebook/detr-resnet-50"]) == ("pixel_values", "pixel_mask")
    assert names({"image_processor_type": "DetrImageProcessor", "do_pad": False}) == (
        "pixel_values",)
    assert names(HUB_CONFIGS["hustvl/yolos-small"]) == ("pixel_values",)
    assert names(HUB_CONFIGS["facebook/mask2former-swin-tiny-coco-instance"]) == (
        "pixel_values", "pixel_mask")
    assert names(HUB_CONFIGS["google/vit-base-patch16-224"]) == ("pixel_values",)
    for config in HUB_CONFIGS.values():
        out = ImageProcessor.from_config(config)([photos()[2]])
        assert tuple(out) == ImageProcessor.from_config(config).model_input_names


def test_non_rgb_images_given_to_the_processor_are_converted():
    vit = ImageProcessor.from_config(HUB_CONFIGS["google/vit-base-patch16-224"])
    gray = photos()[3].convert("L")
    np.testing.assert_array_equal(vit([gray])["pixel_values"],
                                  vit([gray.convert("RGB")])["pixel_values"])
    assert gray.mode == "L"  # the caller's image is left as it was


# --- dispatch and config errors ---------------------------------------------------------------
@pytest.mark.parametrize("key,name,expected", [
    ("image_processor_type", "DetrImageProcessor", "DetrImageProcessor"),
    ("image_processor_type", "ViTImageProcessorFast", "ViTImageProcessor"),
    ("feature_extractor_type", "DPTFeatureExtractor", "DPTImageProcessor"),
    ("feature_extractor_type", "MaskFormerFeatureExtractor", "MaskFormerImageProcessor"),
])
def test_dispatch_on_the_type_named_in_the_config(key, name, expected):
    assert type(ImageProcessor.from_config({key: name})).__name__ == expected


def test_model_type_is_the_fallback_and_every_processor_has_one():
    assert type(ImageProcessor.from_config({}, model_type="segformer")).__name__ == (
        "SegformerImageProcessor")
    assert set(MODEL_TYPES.values()) == set(PROCESSORS.values())
    with pytest.raises(InputError, match="names no image_processor_type.*ViTImageProcessor"):
        ImageProcessor.from_config({"do_resize": True}, model_type="bert")


def test_unknown_type_suggests_the_closest():
    with pytest.raises(InputError, match=r"no image processor 'DetrImageProcesor'\. Did you "
                                         r"mean 'DetrImageProcessor'\? Note: known values"):
        ImageProcessor.from_config({"image_processor_type": "DetrImageProcesor"})
    with pytest.raises(InputError, match="SamImageProcessor.*Note: known values are: "
                                         "BeitImageProcessor"):
        ImageProcessor.from_config({"image_processor_type": "SamImageProcessor"})


def test_from_dir_reads_the_processor_and_the_model_type(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(HUB_CONFIGS["openai/clip-vit-base-patch32"]))
    clip = ImageProcessor.from_dir(tmp_path)
    assert type(clip).__name__ == "CLIPImageProcessor" and clip.crop_size == (224, 224)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": 64}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "glpn"}))
    assert type(ImageProcessor.from_dir(tmp_path)).__name__ == "GLPNImageProcessor"
    with pytest.raises(BundleNotFoundError, match="No preprocessor_config.json in"):
        ImageProcessor.from_dir(tmp_path / "nowhere")
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(InputError, match="Cannot read .*preprocessor_config.json.*JSON object"):
        ImageProcessor.from_dir(tmp_path)


@pytest.mark.parametrize("config,message", [
    ({"image_processor_type": "ViTImageProcessor", "size": {"shortest_edge": 224}},
     r"cannot resize to size=\{'shortest_edge': 224\}.*\['height', 'width'\]"),
    ({"image_processor_type": "DetrImageProcessor", "size": {"shortest_edge": 800}},
     "cannot resize to size"),
    ({"image_processor_type": "ViTImageProcessor", "size": {"height": 224}},
     "Cannot read the image processor's size"),
    ({"image_processor_type": "ViTImageProcessor", "size": "big"},
     "Cannot read the image processor's size='big'"),
    ({"image_processor_type": "ViTImageProcessor", "resample": 42}, "Unknown resample 42"),
    ({"image_processor_type": "ViTImageProcessor", "resample": None},
     "resample is null while do_resize is true"),
    ({"image_processor_type": "ViTImageProcessor", "image_mean": [0.5, 0.5]},
     "image_mean must be 3 numbers"),
    ({"image_processor_type": "ViTImageProcessor", "rescale_factor": "1/255"},
     "rescale_factor must be a number"),
    ({"image_processor_type": "Mask2FormerImageProcessor", "size": 800, "max_size": 600},
     "longest_edge 600 <= shortest_edge 800"),
    ({"image_processor_type": "DPTImageProcessor", "do_pad": True},
     "do_pad=true but no size_divisor"),
    ({"image_processor_type": "CLIPImageProcessor", "crop_size": {"shortest_edge": 3}},
     "needs crop_size with the keys 'height' and 'width'"),
])
def test_bad_configs_are_refused_clearly(config, message):
    with pytest.raises(InputError, match=message):
        ImageProcessor.from_config(config)


def test_bad_calls_are_refused_clearly():
    vit = ImageProcessor.from_config({"image_processor_type": "ViTImageProcessor"})
    with pytest.raises(InputError, match="takes PIL images, got ndarray at index 1.*load_images"):
        vit([photos()[0], np.zeros((4, 4, 3), np.uint8)])
    with pytest.raises(InputError, match="non-empty list of PIL images"):
        vit([])
    detr = ImageProcessor.from_config({"image_processor_type": "DetrImageProcessor",
                                       "size": 64, "pad_size": {"height": 64, "width": 64}})
    with pytest.raises(InputError, match="larger than the pad_size 64x64"):
        detr([photos()[1]])
    glpn = ImageProcessor.from_config(HUB_CONFIGS["vinvino02/glpn-kitti"])
    with pytest.raises(InputError, match="resize image 0 of 1000x17 pixels to 992x0"):
        glpn([odd_images()[3]])


def test_a_single_image_is_a_batch_of_one():
    vit = ImageProcessor.from_config({"image_processor_type": "ViTImageProcessor"})
    assert vit(photos()[0])["pixel_values"].shape == (1, 3, 224, 224)
    assert "ViTImageProcessor" in repr(vit)
