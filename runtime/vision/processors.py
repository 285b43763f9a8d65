"""Image processors read from ``preprocessor_config.json``, as data: no transformers needed.

Each class mirrors one transformers *slow* image processor (the reference when torchvision is
absent) and reads every field that class reads, with its defaults. All run the same steps:

    RGB PIL image -> resize (Pillow, on uint8, the config's filter) -> center crop (uint8)
        -> rescale and normalize (one float32 multiply-add per channel) -> pad -> NCHW batch

The resize is the one transformers makes (it, too, converts to PIL and calls ``Image.resize``),
so the pixels going into the arithmetic are identical. transformers then rescales in float64,
rounds to float32 and normalizes in float32; the fused ``x * scale + offset`` in float32 differs
from that by a few float32 roundings (under 1e-6 for the usual configs) and is several times
faster. ``pixel_values`` is always float32, also where transformers would keep uint8 (no rescale
and no normalize).

    ImageProcessor                     base: from_dir / from_config dispatch, the steps above
    ├── ViTImageProcessor              fixed {"height", "width"}
    │   ├── SegformerImageProcessor      (ImageNet defaults, 512x512)
    │   ├── BeitImageProcessor           + center crop (bicubic, 256 -> 224)
    │   │   └── DeiTImageProcessor
    │   └── DPTImageProcessor            keep_aspect_ratio, ensure_multiple_of, centered pad
    ├── CLIPImageProcessor             shortest edge (bicubic) + center crop
    ├── ConvNextImageProcessor         shortest edge / crop_pct + crop below 384, else square
    ├── GLPNImageProcessor             rounded down to size_divisor, rescale only
    ├── DetrImageProcessor             shortest/longest edge, pad to the batch, pixel_mask
    │   └── YolosImageProcessor          sizes rounded down to 16, pad without a mask
    ├── Mask2FormerImageProcessor      torchvision-style edge, up to size_divisor, pixel_mask
    │   └── MaskFormerImageProcessor
    ├── LevitImageProcessor            short edge to 256/224 of shortest_edge + center crop
    ├── ImageGPTImageProcessor         fixed size, [-1, 1], nearest color cluster: input_ids
    ├── ViltImageProcessor             short edge, long edge capped, down to size_divisor, mask
    ├── DonutImageProcessor            long axis aligned, short edge, thumbnail, centered pad
    ├── OwlViTImageProcessor           fixed {"height", "width"} (bicubic), optional crop
    └── Owlv2ImageProcessor            gray pad to a square, anti-aliased resize (float32)

>>> processor = ImageProcessor.from_config({"image_processor_type": "ViTImageProcessor"})
>>> from PIL import Image
>>> processor([Image.new("RGB", (640, 480))])["pixel_values"].shape
(1, 3, 224, 224)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..errors import InputError, did_you_mean
from ..preprocessor_config import (
    MAX_IMAGE_SIDE,
    given,
    integer,
    number,
    read_directory,
    shown,
)
from .antialias import resize_antialiased
from .color_clusters import nearest_clusters, read_clusters

IMAGENET_DEFAULT = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMAGENET_STANDARD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))

# transformers' PILImageResampling values, which configs store.
RESAMPLING = {int(f): f for f in Image.Resampling}
BILINEAR, BICUBIC = Image.Resampling.BILINEAR, Image.Resampling.BICUBIC

HEIGHT_WIDTH = frozenset({"height", "width"})
SHORTEST = frozenset({"shortest_edge"})
SHORTEST_LONGEST = frozenset({"shortest_edge", "longest_edge"})
MAX_HEIGHT_WIDTH = frozenset({"max_height", "max_width"})
# The most pixels one image may be resized to: MAX_IMAGE_SIDE squared (~200 MB of RGB). A thin
# image under a shortest-edge rule may pass MAX_IMAGE_SIDE on its long side (CLIP crops it back).
MAX_RESIZED_PIXELS = MAX_IMAGE_SIDE ** 2
# The largest pixel value rescale and normalize may make: far below float32's 3.4e38, so that
# a model's arithmetic on them stays finite (ImageNet's settings make at most 2.7).
MAX_PIXEL_VALUE = 1e30
# The key sets transformers' get_size_dict accepts at all.
_VALID_SIZES = (HEIGHT_WIDTH, SHORTEST, SHORTEST_LONGEST, frozenset({"longest_edge"}),
                MAX_HEIGHT_WIDTH)


class ImageProcessor:
    """Base of the processors: ``from_dir`` / ``from_config`` pick the class the config names.

    A subclass sets its transformers name, defaults and accepted size forms, and overrides
    ``resized_size`` (where the image is resized to) and ``layout`` (how a batch is padded)
    where its model differs.
    """

    type_name: ClassVar[str] = ""
    model_type: ClassVar[str] = ""           # config.json's model_type, when the config names none
    model_input_names: tuple[str, ...] = ("pixel_values",)
    default_size: ClassVar[Any] = {"height": 224, "width": 224}
    size_default_to_square: ClassVar[bool] = True
    size_forms: ClassVar[tuple[frozenset, ...]] = (HEIGHT_WIDTH,)
    default_resample: ClassVar[int] = BILINEAR
    default_mean_std: ClassVar[tuple] = IMAGENET_STANDARD
    default_center_crop: ClassVar[bool | None] = None  # None: the class has no center crop
    normalizes: ClassVar[bool] = True

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_dir(cls, directory: str | Path) -> ImageProcessor:
        """The processor of a bundle or checkpoint directory (its preprocessor_config.json; a
        config.json beside it gives the model_type when the processor config names no type)."""
        config, model_type = read_directory(directory, "image processor")
        return cls.from_config(config, model_type=model_type)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, model_type: str | None = None
                    ) -> ImageProcessor:
        """The processor a preprocessor_config.json dict names (``image_processor_type``, else
        the legacy ``feature_extractor_type``, else the model's ``model_type``). Called on a
        subclass, that subclass is made whatever the config names."""
        if not isinstance(config, Mapping):
            raise InputError(
                f"An image processor config must be a dict, got {type(config).__name__}. Note: "
                "pass the parsed preprocessor_config.json."
            )
        if cls is not ImageProcessor:
            return cls(config)
        return processor_class(config, model_type=model_type)(config)

    def __init__(self, config: Mapping[str, Any] | None = None):
        config = dict(config or {})
        self.config = config
        self.do_resize = bool(config.get("do_resize", True))
        self.size = self.read_size(config)
        self.resample = _resample(config.get("resample", self.default_resample), self.do_resize)
        self.do_rescale = bool(config.get("do_rescale", True))
        self.rescale_factor = (number(config, "rescale_factor", 1 / 255, self.type_name,
                                      nonzero=True) if self.do_rescale else 1.0)
        self.do_normalize = self.normalizes and bool(config.get("do_normalize", True))
        if self.do_normalize:
            default_mean, default_std = self.default_mean_std
            self.image_mean = _channels(config, "image_mean", default_mean, self.type_name)
            self.image_std = _channels(config, "image_std", default_std, self.type_name,
                                       positive=True)
        self.do_center_crop, self.crop_size = False, None
        if self.default_center_crop is not None:
            self.do_center_crop = bool(config.get("do_center_crop", self.default_center_crop))
        if self.do_center_crop:
            crop = _size_dict(given(config, "crop_size", {"height": 224, "width": 224}),
                              default_to_square=True, name="crop_size")
            self.crop_size = _height_width(crop, "crop_size", self.type_name)
        if self.do_resize:
            self.check_size_form()
        # Rescale and normalize fused: x * scale + offset per channel, in float32. Without a
        # rescale the values reach the hundreds, where the fused form would differ by 1e-4;
        # there transformers' own (x - mean) / std is as cheap, and exact.
        scale = np.full(3, self.rescale_factor)
        offset = np.zeros(3)
        if self.do_normalize:
            with np.errstate(over="ignore"):
                scale, offset = scale / self.image_std, -self.image_mean / self.image_std
        self._check_pixel_range(scale, offset)
        self._affine = (scale.astype(np.float32), offset.astype(np.float32))
        self._standardize = None
        if self.do_normalize and not self.do_rescale:
            self._standardize = (self.image_mean.astype(np.float32),
                                 self.image_std.astype(np.float32))

    def _check_pixel_range(self, scale: np.ndarray, offset: np.ndarray) -> None:
        """Finite values of each config may still make pixel values float32 cannot hold
        (an image_std of 1e-300): infinite or NaN scores, without an error."""
        with np.errstate(over="ignore", invalid="ignore"):
            largest = np.abs(np.stack([offset, 255 * scale + offset])).max()
        if not largest < MAX_PIXEL_VALUE:
            raise InputError(
                f"{self.type_name}'s rescale_factor={self.rescale_factor:g}"
                + (f", image_mean={self.image_mean.tolist()} and image_std="
                   f"{self.image_std.tolist()}" if self.do_normalize else "")
                + f" would make pixel values of {largest:.3g}, beyond what float32 holds. "
                "Note: fix them in preprocessor_config.json (ImageNet's are 1/255, "
                "[0.485, 0.456, 0.406] and [0.229, 0.224, 0.225])."
            )

    def read_size(self, config: Mapping[str, Any]) -> dict:
        return _size_dict(given(config, "size", self.default_size),
                          default_to_square=self.size_default_to_square)

    def check_size_form(self) -> None:
        if frozenset(self.size) not in self.size_forms:
            forms = " or ".join(str(sorted(form)) for form in self.size_forms)
            raise InputError(
                f"{self.type_name} cannot resize to size={self.size}. Note: its size must have "
                f"the keys {forms} (transformers refuses this config too)."
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # --- the steps --------------------------------------------------------------------------
    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) an image of this size is resized to."""
        return self.size["height"], self.size["width"]

    def center_crop_size(self) -> tuple[int, int] | None:
        return self.crop_size if self.do_center_crop else None

    def layout(self, sizes: list[tuple[int, int]]
               ) -> tuple[tuple[int, int], list[tuple[int, int]]]:
        """(height, width) of the batch and the (top, left) of each image in it. Without
        padding every image must come out of the same size."""
        if len(set(sizes)) > 1:
            raise InputError(
                f"{self.type_name} made images of different sizes {sorted(set(sizes))} from "
                "this batch, which cannot be stacked (transformers fails on it too). Note: "
                "process the images one at a time."
            )
        return sizes[0], [(0, 0)] * len(sizes)

    def padded_layout(self, sizes: list[tuple[int, int]], pad_size: tuple[int, int] | None
                      ) -> tuple[tuple[int, int], list[tuple[int, int]]]:
        """Padding at the bottom and right, to pad_size or else the batch's largest sizes."""
        if pad_size is None:
            return (max(h for h, _ in sizes), max(w for _, w in sizes)), [(0, 0)] * len(sizes)
        for index, (height, width) in enumerate(sizes):
            if height > pad_size[0] or width > pad_size[1]:
                raise InputError(
                    f"Image {index} is {width}x{height} after resizing, larger than the "
                    f"pad_size {pad_size[1]}x{pad_size[0]} of {self.type_name}. Note: raise "
                    "pad_size in preprocessor_config.json, or remove it to pad to the largest "
                    "image of the batch."
                )
        return pad_size, [(0, 0)] * len(sizes)

    def pixel_mask(self, sizes, canvas) -> np.ndarray | None:
        """The mask of real (1) and padded (0) pixels, for the processors that return one."""
        if "pixel_mask" not in self.model_input_names:
            return None
        if all(size == canvas for size in sizes):
            return np.ones((len(sizes), *canvas), dtype=np.int64)
        mask = np.zeros((len(sizes), *canvas), dtype=np.int64)
        for row, (height, width) in zip(mask, sizes):
            row[:height, :width] = 1
        return mask

    # --- running ----------------------------------------------------------------------------
    def image_list(self, images) -> Sequence[Image.Image]:
        """``images`` as a non-empty list (one image is a list of one); a clear error else."""
        if isinstance(images, Image.Image):
            images = [images]
        if not isinstance(images, Sequence) or not images:
            raise InputError(
                f"{self.type_name} needs a non-empty list of PIL images, got "
                f"{type(images).__name__}. Note: runtime.vision.images.load_images makes one from "
                "paths, bytes or arrays.")
        return images

    def __call__(self, images: Sequence[Image.Image] | Image.Image) -> dict[str, np.ndarray]:
        """{"pixel_values": float32 NCHW, and "pixel_mask": int64 NHW where the model takes
        one}, equal to transformers' ``processor(images=..., return_tensors="np")``."""
        images = self.image_list(images)
        prepared = [self.prepare(image, index) for index, image in enumerate(images)]
        sizes = [(image.height, image.width) for image in prepared]
        canvas, offsets = self.layout(sizes)
        padded = any(size != canvas for size in sizes)
        pixels = (np.zeros if padded else np.empty)((len(prepared), 3, *canvas), np.float32)
        for out, image, (top, left) in zip(pixels, prepared, offsets):
            self.normalize_into(image, out[:, top:top + image.height, left:left + image.width])
        result = {"pixel_values": pixels}
        mask = self.pixel_mask(sizes, canvas)
        if mask is not None:
            result["pixel_mask"] = mask
        return result

    def prepare(self, image: Image.Image, index: int = 0) -> Image.Image:
        """One image resized and center-cropped: still uint8, as transformers has it then."""
        if not isinstance(image, Image.Image):
            raise InputError(
                f"{self.type_name} takes PIL images, got {type(image).__name__} at index "
                f"{index}. Note: runtime.vision.images.load_images makes them from paths, bytes or "
                "arrays."
            )
        if image.mode != "RGB":
            image = image.convert("RGB")
        if self.do_resize:
            height, width = self.resized_size(image.height, image.width)
            if height * width > MAX_RESIZED_PIXELS:
                raise InputError(
                    f"{self.type_name} would resize image {index} of {image.width}x"
                    f"{image.height} pixels to {width}x{height}, over the limit of "
                    f"{MAX_RESIZED_PIXELS:,} pixels. Note: the image is too thin for this "
                    "model's size settings; crop it closer to square first."
                )
            if height < 1 or width < 1:
                raise InputError(
                    f"{self.type_name} would resize image {index} of {image.width}x"
                    f"{image.height} pixels to {width}x{height}, which has no pixels. Note: "
                    "the image is too small (or too thin) for this model; pass a larger one."
                )
            if (width, height) != image.size:
                image = image.resize((width, height), self.resample)
        crop = self.center_crop_size()
        return _center_crop(image, crop) if crop is not None else image

    def normalize_into(self, image: Image.Image, out: np.ndarray) -> None:
        """out[c] = image[c] * scale[c] + offset[c] in float32, never via float64; one band
        at a time, each contiguous (faster than strided reads of an HWC array)."""
        for channel, band in enumerate(image.split()):
            plane = out[channel]
            if self._standardize is not None:
                mean, std = self._standardize
                np.subtract(np.asarray(band), mean[channel], out=plane, dtype=np.float32)
                plane /= std[channel]
                continue
            scale, offset = self._affine
            np.multiply(np.asarray(band), scale[channel], out=plane, dtype=np.float32)
            if offset[channel]:
                plane += offset[channel]


# --- resize rules shared by several processors ----------------------------------------------
def shortest_edge_size(height: int, width: int, size: int, max_size: int | None = None
                       ) -> tuple[int, int]:
    """torchvision's rule (transformers' get_resize_output_image_size): the short edge to
    ``size``, the long one in proportion, rounded down; then capped at ``max_size``."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if width <= height else (new_short, new_long)


def _center_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """transformers' center_crop: the middle, with the offsets rounded down; where the image
    is smaller, zeros around it (0 before rescale and normalize, as there), which is what
    Pillow's crop gives for a box beyond the image."""
    (crop_h, crop_w), (height, width) = size, (image.height, image.width)
    if (crop_h, crop_w) == (height, width):
        return image
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return image.crop((left, top, left + crop_w, top + crop_h))


# --- the processors -------------------------------------------------------------------------
class ViTImageProcessor(ImageProcessor):
    type_name = "ViTImageProcessor"
    model_type = "vit"


class SegformerImageProcessor(ViTImageProcessor):
    type_name = "SegformerImageProcessor"
    model_type = "segformer"
    default_size = {"height": 512, "width": 512}
    default_mean_std = IMAGENET_DEFAULT


class BeitImageProcessor(ViTImageProcessor):
    type_name = "BeitImageProcessor"
    model_type = "beit"
    default_size = {"height": 256, "width": 256}
    default_resample = BICUBIC
    default_center_crop = True


class DeiTImageProcessor(BeitImageProcessor):
    type_name = "DeiTImageProcessor"
    model_type = "deit"


class CLIPImageProcessor(ImageProcessor):
    type_name = "CLIPImageProcessor"
    model_type = "clip"
    default_size = {"shortest_edge": 224}
    size_default_to_square = False
    size_forms = (SHORTEST, HEIGHT_WIDTH, SHORTEST_LONGEST)
    default_resample = BICUBIC
    default_mean_std = OPENAI_CLIP
    default_center_crop = True

    def read_size(self, config):
        size = super().read_size(config)
        if config.get("use_square_size") and "shortest_edge" in size:
            size = {"height": size["shortest_edge"], "width": size["shortest_edge"]}
        return size

    def resized_size(self, height, width):
        if "shortest_edge" in self.size:  # the longest_edge is not used by CLIP
            return shortest_edge_size(height, width, self.size["shortest_edge"])
        return super().resized_size(height, width)


class ConvNextImageProcessor(ImageProcessor):
    """Below 384 the short edge goes to shortest_edge / crop_pct, then a center crop; from 384
    on the image is resized to a square, as the ConvNeXt paper evaluates."""

    type_name = "ConvNextImageProcessor"
    model_type = "convnext"
    default_size = {"shortest_edge": 384}
    size_default_to_square = False
    size_forms = (SHORTEST, SHORTEST_LONGEST)

    def __init__(self, config=None):
        super().__init__(config)
        # crop_pct scales the short edge up before the crop: in (0, 1], and not so small that
        # the resize passes MAX_IMAGE_SIDE (shortest_edge / crop_pct)
        self.crop_pct = number(self.config, "crop_pct", 224 / 256, self.type_name, above=0.0,
                               maximum=1.0)
        edge = self.size.get("shortest_edge")
        if self.do_resize and edge is not None and edge < 384 and (
                edge / self.crop_pct > MAX_IMAGE_SIDE):
            raise InputError(
                f"{self.type_name} has crop_pct={self.crop_pct:g}, which resizes the short edge "
                f"to {edge} / {self.crop_pct:g} = {edge / self.crop_pct:.0f} pixels, over the "
                f"limit of {MAX_IMAGE_SIDE}. Note: fix it in preprocessor_config.json "
                "(ConvNeXt's is 0.875)."
            )

    def resized_size(self, height, width):
        edge = self.size["shortest_edge"]
        if edge < 384:
            return shortest_edge_size(height, width, int(edge / self.crop_pct))
        return edge, edge

    def center_crop_size(self):
        edge = self.size["shortest_edge"]
        return (edge, edge) if self.do_resize and edge < 384 else None


class GLPNImageProcessor(ImageProcessor):
    """Sides rounded down to a multiple of size_divisor; rescale by 1/255 (the config's
    rescale_factor is not read), no normalization."""

    type_name = "GLPNImageProcessor"
    model_type = "glpn"
    normalizes = False
    size_forms = ()

    def __init__(self, config=None):
        config = dict(config or {})
        config.pop("rescale_factor", None)
        super().__init__(config)
        self.size_divisor = integer(self.config, "size_divisor", 32, self.type_name, minimum=1,
                                    maximum=MAX_IMAGE_SIDE)

    def read_size(self, config):
        return {}

    def check_size_form(self):
        pass

    def resized_size(self, height, width):
        divisor = self.size_divisor
        return height // divisor * divisor, width // divisor * divisor


class DPTImageProcessor(ViTImageProcessor):
    """{"height", "width"}, or with keep_aspect_ratio the scale closest to 1 of the two, each
    side rounded to ensure_multiple_of; with do_pad, padded around to size_divisor."""

    type_name = "DPTImageProcessor"
    model_type = "dpt"
    default_size = {"height": 384, "width": 384}
    default_resample = BICUBIC

    def __init__(self, config=None):
        super().__init__(config)
        self.keep_aspect_ratio = bool(self.config.get("keep_aspect_ratio", False))
        self.ensure_multiple_of = integer(self.config, "ensure_multiple_of", 1, self.type_name,
                                          minimum=1, maximum=MAX_IMAGE_SIDE)
        self.do_pad = bool(self.config.get("do_pad", False))
        self.size_divisor = self.config.get("size_divisor")
        if self.do_pad:
            self.size_divisor = integer(self.config, "size_divisor", 0, self.type_name,
                                        maximum=MAX_IMAGE_SIDE)
            if self.size_divisor < 1:
                raise InputError(
                    "DPTImageProcessor has do_pad=true but no size_divisor. Note: set "
                    "size_divisor (e.g. 32) or do_pad=false."
                )

    def resized_size(self, height, width):
        scale_h, scale_w = self.size["height"] / height, self.size["width"] / width
        if self.keep_aspect_ratio:  # scale as little as possible
            if abs(1 - scale_w) < abs(1 - scale_h):
                scale_h = scale_w
            else:
                scale_w = scale_h
        multiple = self.ensure_multiple_of
        return (round(scale_h * height / multiple) * multiple,
                round(scale_w * width / multiple) * multiple)

    def layout(self, sizes):
        if not self.do_pad:
            return super().layout(sizes)
        divisor = self.size_divisor
        padded = [(math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor)
                  for h, w in sizes]
        canvas, _ = super().layout(padded)
        return canvas, [((ph - h) // 2, (pw - w) // 2) for (h, w), (ph, pw) in zip(sizes, padded)]


class DetrImageProcessor(ImageProcessor):
    """The short edge to shortest_edge unless the long one would pass longest_edge; the batch
    padded at the bottom and right to its largest image (or pad_size), with a pixel_mask."""

    type_name = "DetrImageProcessor"
    model_type = "detr"
    model_input_names = ("pixel_values", "pixel_mask")
    default_size = {"shortest_edge": 800, "longest_edge": 1333}
    size_default_to_square = False
    size_forms = (SHORTEST_LONGEST, MAX_HEIGHT_WIDTH, HEIGHT_WIDTH)
    default_mean_std = IMAGENET_DEFAULT
    returns_mask = True

    def __init__(self, config=None):
        super().__init__(config)
        self.do_pad = bool(self.config["pad_and_return_pixel_mask"]  # legacy name, first
                           if "pad_and_return_pixel_mask" in self.config
                           else self.config.get("do_pad", True))
        pad_size = self.config.get("pad_size")
        self.pad_size = _height_width(pad_size, "pad_size", self.type_name) if pad_size else None
        self.model_input_names = (("pixel_values", "pixel_mask")
                                  if self.do_pad and self.returns_mask else ("pixel_values",))

    def read_size(self, config):
        if "max_size" in config:  # legacy: size=800, max_size=1333
            max_size = config["max_size"]
        else:
            max_size = None if config.get("size") is None else 1333
        return _size_dict(given(config, "size", self.default_size), default_to_square=False,
                          max_size=max_size)

    def resized_size(self, height, width):
        size = self.size
        if "shortest_edge" in size:
            return self.aspect_size(height, width, size["shortest_edge"], size["longest_edge"])
        if "max_height" in size:
            scale = min(size["max_height"] / height, size["max_width"] / width)
            return int(height * scale), int(width * scale)
        return size["height"], size["width"]

    @staticmethod
    def aspect_size(height, width, size, max_size):
        """DETR's get_size_with_aspect_ratio, float operations in the same order."""
        size, scaled = _capped_short_edge(height, width, size, max_size)
        if (height <= width and height == size) or (width <= height and width == size):
            return height, width
        if width < height:
            return int(scaled * height / width), size
        return size, int(scaled * width / height)

    def layout(self, sizes):
        if not self.do_pad:
            return super().layout(sizes)
        return self.padded_layout(sizes, self.pad_size)

    def pixel_mask(self, sizes, canvas):
        return super().pixel_mask(sizes, canvas) if self.do_pad else None


def _capped_short_edge(height, width, size, max_size) -> tuple[int, float]:
    """DETR's cap: where the long edge would pass max_size, the short edge it allows, rounded,
    and unrounded (the long edge is scaled by the unrounded one)."""
    if max_size is not None:
        min_side, max_side = float(min(height, width)), float(max(height, width))
        if max_side / min_side * size > max_size:
            raw_size = max_size * min_side / max_side
            return int(round(raw_size)), raw_size
    return size, size


class YolosImageProcessor(DetrImageProcessor):
    type_name = "YolosImageProcessor"
    model_type = "yolos"
    model_input_names = ("pixel_values",)
    returns_mask = False

    @staticmethod
    def aspect_size(height, width, size, max_size):
        """YOLOS' variant: the short side is tested before the no-resize case, and both sides
        are rounded down to a multiple of 16."""
        size, scaled = _capped_short_edge(height, width, size, max_size)
        if width < height:
            out_h, out_w = int(scaled * height / width), size
        elif (height <= width and height == size) or (width <= height and width == size):
            out_h, out_w = height, width
        else:
            out_h, out_w = size, int(scaled * width / height)
        return out_h - out_h % 16, out_w - out_w % 16


class Mask2FormerImageProcessor(ImageProcessor):
    """torchvision's shortest-edge rule capped at longest_edge (or a fixed size), both sides
    then rounded up to size_divisor; the batch padded at the bottom and right, pixel_mask."""

    type_name = "Mask2FormerImageProcessor"
    model_type = "mask2former"
    model_input_names = ("pixel_values", "pixel_mask")
    default_size = {"shortest_edge": 800, "longest_edge": 1333}
    size_default_to_square = False
    size_forms = (SHORTEST_LONGEST, HEIGHT_WIDTH)
    default_mean_std = IMAGENET_DEFAULT

    def __init__(self, config=None):
        super().__init__(config)
        # 0 turns the rounding off, as in transformers
        self.size_divisor = integer(self.config, "size_divisor", 32, self.type_name, minimum=0,
                                    maximum=MAX_IMAGE_SIDE)
        pad_size = self.config.get("pad_size")
        self.pad_size = _height_width(pad_size, "pad_size", self.type_name) if pad_size else None
        shortest, longest = self.size.get("shortest_edge"), self.size.get("longest_edge")
        if shortest is not None and longest is not None and longest <= shortest:
            raise InputError(
                f"{self.type_name} has longest_edge {longest} <= shortest_edge {shortest}. "
                "Note: longest_edge must be larger (transformers refuses this config too)."
            )

    def read_size(self, config):
        max_size = config.get("max_size", 1333)
        return _size_dict(given(config, "size", self.default_size), default_to_square=False,
                          max_size=max_size)

    def resized_size(self, height, width):
        if "shortest_edge" in self.size:
            height, width = shortest_edge_size(height, width, self.size["shortest_edge"],
                                               self.size["longest_edge"])
        else:
            height, width = self.size["height"], self.size["width"]
        if self.size_divisor > 0:
            divisor = self.size_divisor
            height, width = (math.ceil(height / divisor) * divisor,
                             math.ceil(width / divisor) * divisor)
        return height, width

    def layout(self, sizes):
        return self.padded_layout(sizes, self.pad_size)


class MaskFormerImageProcessor(Mask2FormerImageProcessor):
    type_name = "MaskFormerImageProcessor"
    model_type = "maskformer"


class LevitImageProcessor(ImageProcessor):
    """The short edge to 256/224 of shortest_edge (bicubic), then a center crop; or a fixed
    {"height", "width"}."""

    type_name = "LevitImageProcessor"
    model_type = "levit"
    default_size = {"shortest_edge": 224}
    size_default_to_square = False
    size_forms = (SHORTEST, HEIGHT_WIDTH)
    default_resample = BICUBIC
    default_mean_std = IMAGENET_DEFAULT
    default_center_crop = True

    def resized_size(self, height, width):
        if "shortest_edge" in self.size:
            return shortest_edge_size(height, width, int((256 / 224) * self.size["shortest_edge"]))
        return super().resized_size(height, width)


class ImageGPTImageProcessor(ImageProcessor):
    """Resized to {"height", "width"}, scaled to [-1, 1] (do_normalize), each pixel replaced by
    the id of its nearest color cluster (runtime.vision.color_clusters): ``input_ids``
    (batch, height * width), as transformers' processor gives them."""

    type_name = "ImageGPTImageProcessor"
    model_type = "imagegpt"
    model_input_names = ("input_ids",)
    default_size = {"height": 256, "width": 256}
    normalizes = False  # its own normalization: x / 127.5 - 1

    def __init__(self, config=None):
        super().__init__(config)
        self.to_unit_range = bool(self.config.get("do_normalize", True))
        if not self.config.get("do_color_quantize", True):
            raise InputError(
                f"{self.type_name} has do_color_quantize=false: it would give pixel values, and "
                "an ImageGPT graph reads color-cluster ids. Note: set do_color_quantize to true "
                "in preprocessor_config.json.")
        self.clusters = read_clusters(self.config, self.type_name)

    def __call__(self, images):
        """{"input_ids": int64 (batch, height * width)}."""
        images = self.image_list(images)
        pixels = [np.asarray(self.prepare(image, index)) for index, image in enumerate(images)]
        self.layout([p.shape[:2] for p in pixels])  # one size (without do_resize, an error)
        if self.to_unit_range:  # transformers' rescale (float64, to float32), then - 1
            pixels = [(p.astype(np.float64) * (1 / 127.5)).astype(np.float32) - 1
                      for p in pixels]
        return {"input_ids": nearest_clusters(np.array(pixels), self.clusters)}


class ViltImageProcessor(ImageProcessor):
    """The short edge to shortest_edge, the long one capped at 1333/800 of it, both rounded
    half up, then down to size_divisor; the batch padded at the bottom and right to its
    largest image, with a pixel_mask (ViLT's position embeddings follow each image's own
    size, and the mask keeps padding out of attention)."""

    type_name = "ViltImageProcessor"
    model_type = "vilt"
    model_input_names = ("pixel_values", "pixel_mask")
    default_size = {"shortest_edge": 384}
    size_default_to_square = False
    size_forms = (SHORTEST,)
    default_resample = BICUBIC

    def __init__(self, config=None):
        super().__init__(config)
        self.size_divisor = integer(self.config, "size_divisor", 32, self.type_name, minimum=1,
                                    maximum=MAX_IMAGE_SIDE)
        self.do_pad = bool(self.config["pad_and_return_pixel_mask"]  # legacy name, first
                           if "pad_and_return_pixel_mask" in self.config
                           else self.config.get("do_pad", True))
        self.model_input_names = (("pixel_values", "pixel_mask") if self.do_pad
                                  else ("pixel_values",))

    def resized_size(self, height, width):
        """transformers' vilt get_resize_output_image_size, float operations in its order."""
        shorter = self.size["shortest_edge"]
        longer = int(1333 / 800 * shorter)
        scale = shorter / min(height, width)
        if height < width:
            new_height, new_width = shorter, scale * width
        else:
            new_height, new_width = scale * height, shorter
        if max(new_height, new_width) > longer:
            scale = longer / max(new_height, new_width)
            new_height, new_width = scale * new_height, scale * new_width
        new_height, new_width = int(new_height + 0.5), int(new_width + 0.5)
        divisor = self.size_divisor
        return new_height // divisor * divisor, new_width // divisor * divisor

    def layout(self, sizes):
        return self.padded_layout(sizes, None) if self.do_pad else super().layout(sizes)


class DonutImageProcessor(ImageProcessor):
    """Donut's documents, in transformers' order: the long axis turned to the size's long axis
    (do_align_long_axis: 90 degrees clockwise), the short edge to the size's shorter side, a
    thumbnail within the size (bicubic, Pillow's reducing_gap 2), then black padding around to
    the size (centered: random_padding is for training). The size is {"height", "width"}, or
    a legacy [width, height] list."""

    type_name = "DonutImageProcessor"
    model_type = "donut-swin"
    default_size = {"height": 2560, "width": 1920}

    def __init__(self, config=None):
        super().__init__(config)
        self.do_thumbnail = bool(self.config.get("do_thumbnail", True))
        self.do_align_long_axis = bool(self.config.get("do_align_long_axis", False))
        self.do_pad = bool(self.config.get("do_pad", True))
        self.check_size_form()  # every step reads the height and width, not only the resize

    def read_size(self, config):
        size = given(config, "size", self.default_size)
        if isinstance(size, (list, tuple)):  # transformers reverses a list: [width, height]
            size = list(size)[::-1]
        return _size_dict(size, default_to_square=True)

    def resized_size(self, height, width):
        return shortest_edge_size(height, width, min(self.size["height"], self.size["width"]))

    def prepare(self, image: Image.Image, index: int = 0) -> Image.Image:
        target_h, target_w = self.size["height"], self.size["width"]
        if isinstance(image, Image.Image) and self.do_align_long_axis and (
                (target_w < target_h and image.width > image.height)
                or (target_w > target_h and image.width < image.height)):
            image = image.transpose(Image.Transpose.ROTATE_270)  # numpy's rot90(k=3)
        image = super().prepare(image, index)
        if self.do_thumbnail:
            height, width = min(image.height, target_h), min(image.width, target_w)
            if (height, width) != (image.height, image.width):
                if image.height > image.width:
                    width = int(image.width * height / image.height)
                elif image.width > image.height:
                    height = int(image.height * width / image.width)
                if height < 1 or width < 1:
                    raise InputError(
                        f"{self.type_name} would shrink image {index} of {image.width}x"
                        f"{image.height} pixels to {width}x{height}, which has no pixels. Note: "
                        "the image is too thin for this model; crop it closer to its aspect.")
                image = image.resize((width, height), BICUBIC, reducing_gap=2.0)
        if self.do_pad:
            if image.height > target_h or image.width > target_w:
                raise InputError(
                    f"Image {index} is {image.width}x{image.height} after resizing, larger than "
                    f"the {target_w}x{target_h} {self.type_name} pads to (transformers fails on "
                    "it too). Note: set do_thumbnail true in preprocessor_config.json.")
            canvas = Image.new("RGB", (target_w, target_h))  # black: 0 before normalizing
            canvas.paste(image, ((target_w - image.width) // 2, (target_h - image.height) // 2))
            image = canvas
        return image


class OwlViTImageProcessor(ImageProcessor):
    """OWL-ViT: a fixed {"height", "width"} (bicubic), then a center crop if asked (768 by
    default); CLIP's mean and std. (Early configs' "rescale" flag is read by transformers and
    then overridden by do_rescale, so it is not read here either.)"""

    type_name = "OwlViTImageProcessor"
    model_type = "owlvit"
    default_size = {"height": 768, "width": 768}
    default_resample = BICUBIC
    default_mean_std = OPENAI_CLIP
    default_center_crop = False

    def __init__(self, config=None):
        config = dict(config or {})
        config.setdefault("crop_size", {"height": 768, "width": 768})
        super().__init__(config)


class Owlv2ImageProcessor(ImageProcessor):
    """OWLv2, in float32 as transformers' slow processor runs it: rescaled to [0, 1], padded at
    the bottom and right to a square of gray (0.5), resized with scikit-image's anti-aliased
    resize (runtime.vision.antialias), normalized with CLIP's mean and std. The boxes a model
    predicts are relative to the padded square."""

    type_name = "Owlv2ImageProcessor"
    model_type = "owlv2"
    default_size = {"height": 960, "width": 960}
    default_mean_std = OPENAI_CLIP

    def __init__(self, config=None):
        super().__init__(config)
        self.do_pad = bool(self.config.get("do_pad", True))
        if not self.do_rescale:
            raise InputError(
                "Owlv2ImageProcessor with do_rescale=false is not supported: transformers then "
                "pads and resizes uint8 pixels, rounding each step. Note: set do_rescale true "
                "in preprocessor_config.json (OWLv2's checkpoints have it).")

    def __call__(self, images):
        images = self.image_list(images)
        arrays = [self.pixels(image, index) for index, image in enumerate(images)]
        self.layout([array.shape[1:] for array in arrays])  # one size, or a clear error
        return {"pixel_values": np.stack(arrays)}

    def pixels(self, image: Image.Image, index: int = 0) -> np.ndarray:
        """One image's float32 (3, height, width) pixel values."""
        if not isinstance(image, Image.Image):
            raise InputError(
                f"{self.type_name} takes PIL images, got {type(image).__name__} at index "
                f"{index}. Note: runtime.vision.images.load_images makes them from paths, bytes or "
                "arrays.")
        height, width = image.height, image.width
        side = max(height, width)
        for what, (out_h, out_w) in (("pad", (side, side) if self.do_pad else (0, 0)),
                                     ("resize", (self.size["height"], self.size["width"])
                                      if self.do_resize else (0, 0))):
            if out_h * out_w > MAX_RESIZED_PIXELS:  # float32 and float64 copies of it
                raise InputError(
                    f"{self.type_name} would {what} image {index} of {width}x{height} pixels "
                    f"to {out_w}x{out_h}, over the limit of {MAX_RESIZED_PIXELS:,} pixels. "
                    "Note: the image is too thin (or the size too large); crop it closer to "
                    "square first.")
        array = np.asarray(image.convert("RGB"))
        array = (array.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_pad:
            square = np.full((side, side, 3), 0.5, dtype=np.float32)
            square[:height, :width] = array
            array = square
        if self.do_resize:
            array = resize_antialiased(array, (self.size["height"], self.size["width"]))
        if self.do_normalize:
            array = ((array - self.image_mean.astype(np.float32))
                     / self.image_std.astype(np.float32))
        return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)


# The table: transformers' class name -> ours. Legacy names ("...FeatureExtractor") and the
# fast variants ("...Fast", which transformers uses with torchvision) map to the same rows.
PROCESSORS: dict[str, type[ImageProcessor]] = {cls.type_name: cls for cls in (
    ViTImageProcessor, SegformerImageProcessor, BeitImageProcessor, DeiTImageProcessor,
    DPTImageProcessor, CLIPImageProcessor, ConvNextImageProcessor, GLPNImageProcessor,
    DetrImageProcessor, YolosImageProcessor, Mask2FormerImageProcessor,
    MaskFormerImageProcessor, ViltImageProcessor, DonutImageProcessor,
    OwlViTImageProcessor, Owlv2ImageProcessor,
    LevitImageProcessor, ImageGPTImageProcessor,
)}
MODEL_TYPES: dict[str, type[ImageProcessor]] = {cls.model_type: cls for cls in PROCESSORS.values()}


def processor_class(config: Mapping[str, Any], *, model_type: str | None = None
                    ) -> type[ImageProcessor]:
    """The class for a preprocessor_config.json dict."""
    given = config.get("image_processor_type") or config.get("feature_extractor_type")
    if given:
        name = str(given)[:200].removesuffix("Fast").replace("FeatureExtractor", "ImageProcessor")
        if isinstance(given, str) and name in PROCESSORS:
            return PROCESSORS[name]
        raise InputError(
            f"The runtime has no image processor {shown(given)}. " + did_you_mean(name, PROCESSORS)
        )
    if isinstance(model_type, str) and model_type in MODEL_TYPES:
        return MODEL_TYPES[model_type]
    raise InputError(
        "The image processor config names no image_processor_type (nor feature_extractor_type)"
        + (f", and the model type {shown(model_type)} has no default processor" if model_type
           else "")
        + ". Note: add \"image_processor_type\" to preprocessor_config.json, one of: "
        + ", ".join(sorted(PROCESSORS)) + "."
    )


# --- reading config values ------------------------------------------------------------------
def _channels(config, key, default, type_name: str, *, positive: bool = False) -> np.ndarray:
    """Three finite numbers (R, G, B), or one for all three; above 0 with ``positive`` (a
    divisor: an image_std of 0 would make every score NaN)."""
    value = given(config, key, default)
    values = [value] * 3 if _real(value) else value
    if (not isinstance(values, (list, tuple)) or len(values) != 3
            or not all(_real(v) for v in values)):
        raise InputError(f"The image processor's {key} must be 3 numbers (R, G, B) or one, got "
                         f"{shown(value)}. Note: fix it in preprocessor_config.json.")
    array = np.array(values, dtype=np.float64)
    if not np.isfinite(array).all() or (positive and (array <= 0).any()):
        wanted = "finite numbers above 0" if positive else "finite numbers"
        raise InputError(f"{type_name} has {key}={shown(value)}: it must hold {wanted}. Note: "
                         "fix it in preprocessor_config.json.")
    return array


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _resample(value, needed: bool) -> Image.Resampling:
    if value is None and not needed:
        return BILINEAR
    if isinstance(value, str) and value.upper() in Image.Resampling.__members__:
        return Image.Resampling[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value in RESAMPLING:
        return RESAMPLING[value]
    problem = ("resample is null while do_resize is true" if value is None
               else f"Unknown resample {shown(value)}")
    names = ", ".join(f"{int(f)} ({f.name.lower()})" for f in sorted(Image.Resampling))
    raise InputError(f"{problem} in the image processor config (transformers refuses it too). "
                     f"Note: known values are {names}.")


def _size_dict(size, *, default_to_square: bool, max_size=None, name: str = "size") -> dict:
    """transformers' get_size_dict: an int, a (height, width) pair or a dict, as a dict; every
    side an integer from 1 to MAX_IMAGE_SIDE."""
    result = None
    if isinstance(size, bool):
        pass
    elif isinstance(size, int):
        if default_to_square:
            result = {"height": size, "width": size}
        else:
            result = ({"shortest_edge": size} if max_size is None
                      else {"shortest_edge": size, "longest_edge": max_size})
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        result = {"height": size[0], "width": size[1]}
    elif isinstance(size, Mapping) and frozenset(size) in _VALID_SIZES:
        result = dict(size)
    forms = " or ".join(str(sorted(form)) for form in _VALID_SIZES)
    if result is None:
        raise InputError(
            f"Cannot read the image processor's {name}={shown(size)}. Note: it is an integer, a "
            f"[height, width] pair, or a dict of integers with the keys {forms}."
        )
    for key, value in result.items():
        if key == "longest_edge" and not isinstance(size, Mapping):
            what = "max_size"  # legacy: size=800, max_size=1333
        else:
            what = name if isinstance(size, int) else f"{name}[{key!r}]"
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(
                f"Cannot read the image processor's {what}={shown(value)}: a side is an integer "
                f"number of pixels. Note: {name} is an integer, a [height, width] pair, or a "
                f"dict of integers with the keys {forms}."
            )
        _check_side(value, what)
    return result


def _check_side(value: int, what: str) -> None:
    if not 1 <= value <= MAX_IMAGE_SIDE:
        raise InputError(
            f"The image processor's {what} is {value} pixels: it must be from 1 to "
            f"{MAX_IMAGE_SIDE}. Note: fix it in preprocessor_config.json."
        )


def _height_width(size, name: str, type_name: str) -> tuple[int, int]:
    if (not isinstance(size, Mapping) or set(size) != HEIGHT_WIDTH
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in size.values())):
        raise InputError(f"{type_name} needs {name} with the keys 'height' and 'width', got "
                         f"{shown(size)}. Note: fix it in preprocessor_config.json.")
    for key in ("height", "width"):
        _check_side(size[key], f"{name}[{key!r}]")
    return size["height"], size["width"]
