"""Fixtures of the calibration tests on image bundles: folders of real photos and generated
images, written with PIL into temporary directories."""

from __future__ import annotations

import shutil

import pytest
from images import generated, photos
from PIL import Image

# One format per original, in turn: every suffix calibration.data reads as an image is used.
IMAGE_FORMATS = ("jpg", "png", "bmp", "webp", "tif", "gif", "jpeg")


def write_image_folder(folder, *, variations: bool = True) -> list[str]:
    """scikit-image's photos and the generated odd-sized images saved under ``folder`` in every
    image format calibration reads, with (``variations``) a mirrored copy of each and a crop
    in a subfolder: 21 images of varied content, size and aspect. Their relative paths."""
    folder.mkdir(parents=True, exist_ok=True)
    if variations:
        (folder / "crops").mkdir(exist_ok=True)
    names = []
    for index, image in enumerate([*photos(), *generated()]):
        name = f"image{index}.{IMAGE_FORMATS[index % len(IMAGE_FORMATS)]}"
        image.save(folder / name)
        names.append(name)
        if variations:
            image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / f"mirror{index}.png")
            width, height = image.size
            image.crop((0, 0, max(width * 2 // 3, 64), max(height * 2 // 3, 64))).save(
                folder / "crops" / f"crop{index}.jpg")
            names += [f"mirror{index}.png", f"crops/crop{index}.jpg"]
    return sorted(names)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """A folder of 21 images (read-only for the tests: copy it to change it)."""
    folder = tmp_path_factory.mktemp("images") / "photos"
    write_image_folder(folder)
    return folder


@pytest.fixture(scope="session")
def write_images():
    """write_images(folder, variations=True) -> the relative paths written (see
    write_image_folder)."""
    return write_image_folder


@pytest.fixture
def vision_bundle(tiny_bundle, tmp_path):
    """vision_bundle(model_type, task) -> a private copy of the tiny bundle (recipes and
    compare write into it)."""
    def make(model_type: str, task: str):
        return shutil.copytree(tiny_bundle(model_type, task), tmp_path / f"{model_type}-bundle")
    return make


@pytest.fixture(scope="session")
def detector(tiny_checkpoint, tmp_path_factory):
    """A tiny DETR whose queries differ and are confident (the random tiny one gives every query
    the same box at probability 0.17, which no threshold turns into truth): its decoder and heads
    get weights of unit gain."""
    import torch
    import transformers

    from exporter import bundle_from_checkpoint

    source = tiny_checkpoint("detr", "object-detection")
    model = transformers.DetrForObjectDetection.from_pretrained(source).eval()
    torch.manual_seed(1)
    gains = [(model.model.decoder, 1.5), (model.model.input_projection, 1.5),
             (model.class_labels_classifier, 3.0), (model.bbox_predictor, 1.2)]
    with torch.no_grad():
        model.model.query_position_embeddings.weight.normal_(0, 1.0)
        for module, gain in gains:
            for layer in module.modules():
                if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
                    layer.weight.normal_(0, gain / layer.weight.shape[1] ** 0.5)
    directory = tmp_path_factory.mktemp("confident-detr")
    model.save_pretrained(directory / "checkpoint")
    shutil.copy(source / "preprocessor_config.json", directory / "checkpoint")
    return bundle_from_checkpoint(directory / "checkpoint", directory / "bundle",
                                  task="object-detection")
