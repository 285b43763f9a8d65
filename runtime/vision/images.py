"""User inputs to RGB PIL images, as transformers' ``load_image`` and its pipelines make them.

An image may be given as a file path (``str`` or ``os.PathLike``), the bytes of an image file, a
binary file object, a base64 ``data:image/...`` URI, a ``PIL.Image.Image``, or a ``uint8`` numpy
array (height x width, or height x width x 1, 3 or 4 channels). Like transformers, every image
is turned upright by its EXIF orientation and converted to RGB with Pillow's ``convert("RGB")``:
alpha is dropped (not blended), grayscale is repeated into three channels, palettes are looked
up, CMYK is converted, and 16-bit or 32-bit grayscale saturates at 255, exactly as the reference
does.

Stricter than transformers, and said so in each error: the runtime never downloads (an
``http(s)://`` address is refused), a file is decoded completely when it is loaded (a truncated
JPEG fails here, not later inside a model call), and an image of more than
``PIL.Image.MAX_IMAGE_PIXELS`` pixels is refused where Pillow would only warn.

>>> images, single = load_images("photo.jpg")                    # doctest: +SKIP
>>> single, images[0].mode                                        # doctest: +SKIP
(True, 'RGB')
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError

_KINDS = ("a file path, the bytes of an image file, a PIL image, or a uint8 numpy array "
          "(height x width x 3)")
_EXIF_ORIENTATION = 0x0112


def load_images(inputs) -> tuple[list[Image.Image], bool]:
    """(list of RGB images, whether a single image was given) for one image or a list/tuple of
    them; any other iterable is one item, and refused unless it is an image itself.

    >>> from PIL import Image
    >>> images, single = load_images([Image.new("L", (4, 3)), Image.new("RGBA", (2, 2))])
    >>> [image.mode for image in images], single
    (['RGB', 'RGB'], False)
    """
    if not isinstance(inputs, (list, tuple)):
        return [load_image(inputs)], True
    if not inputs:
        raise InputError(
            f"At least one image is required, got an empty {type(inputs).__name__}. Note: pass "
            f"an image or a non-empty list of images; an image is {_KINDS}."
        )
    images = []
    for index, item in enumerate(inputs):
        try:
            images.append(load_image(item))
        except InputError as error:
            raise type(error)(f"Image {index} of {len(inputs)}: {error}") from error
    return images, False


def load_image(item) -> Image.Image:
    """One RGB image, upright, fully decoded, from any of the accepted kinds of input.

    >>> import numpy as np
    >>> load_image(np.zeros((2, 3), dtype=np.uint8)).size
    (3, 2)
    """
    if isinstance(item, Image.Image):
        return _rgb(item, "The PIL image")
    if isinstance(item, np.ndarray):
        return _rgb(_from_array(item), "The numpy array")
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        return _open(io.BytesIO(data), f"The image data given ({len(data)} bytes)")
    if isinstance(item, str):
        return _from_string(item)
    if isinstance(item, os.PathLike):
        return _from_path(Path(item))
    if hasattr(item, "read"):
        return _open(item, f"The file object {item!r:.80}")
    raise InputError(
        f"Cannot read an image from {type(item).__name__}: {item!r:.80}. Note: an image is "
        f"{_KINDS}, or a list of those."
    )


def _from_string(text: str) -> Image.Image:
    if text.startswith(("http://", "https://")):
        raise InputError(
            f"The runtime does not download images, and got the address {text!r:.120}. Note: "
            "download it yourself and pass the local path or the file's bytes."
        )
    if text.startswith("data:"):
        header, _, payload = text.partition(",")
        if not header.startswith("data:image/") or not header.endswith(";base64"):
            raise InputError(
                f"The data URI {text!r:.60} is not a base64 image. Note: a data URI must look "
                "like 'data:image/png;base64,...'."
            )
        return _open(io.BytesIO(_base64(payload, "The data URI")), "The data URI")
    if os.path.exists(text):  # os.path, not pathlib: False, not an error, for a long base64
        return _from_path(Path(text))
    data = _maybe_base64(text)
    if data is not None and _is_image(data):  # as transformers: a string may be bare base64
        return _open(io.BytesIO(data), "The base64 string")
    raise InputError(
        f"No such file: {text!r:.200}. Note: pass the path of an existing image file (relative "
        f"paths start at {os.getcwd()}), its bytes, or a base64 'data:image/...' URI."
    )


def _from_path(path: Path) -> Image.Image:
    if os.path.isdir(path):
        raise InputError(
            f"{path} is a directory, not an image file. Note: pass the path of one image, or a "
            "list of paths."
        )
    if not os.path.exists(path):
        raise InputError(f"No such file: {path}. Note: pass the path of an existing image file.")
    try:
        return _open(path, f"The file {path}")
    except OSError as error:  # unreadable: permissions, a device, ...
        raise InputError(
            f"Cannot read {path}: {error}. Note: check that the file is readable."
        ) from error


def _base64(payload: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise InputError(f"{what} is not valid base64 ({error}). Note: encode the image file's "
                         "bytes with base64.b64encode.") from error


def _maybe_base64(text: str) -> bytes | None:
    compact = "".join(text.split())
    if len(compact) < 16 or len(compact) % 4:
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def _is_image(data: bytes) -> bool:
    try:
        Image.open(io.BytesIO(data)).close()
    except UnidentifiedImageError:
        return False
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        pass  # an image, refused by _open with a clear error
    return True


def _open(source, what: str) -> Image.Image:
    """Open, check the size, decode completely: every error here, none later."""
    try:
        opened = Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise _too_large(what, _pixels_in(error)) from error
    except UnidentifiedImageError as error:
        raise InputError(
            f"{what} is not an image Pillow can read. Note: pass an image file (PNG, JPEG, "
            "WebP, GIF, BMP, TIFF and the other formats Pillow reads); a file that is not one, "
            "such as a text file or an HTML error page saved under an image name, cannot be "
            "used."
        ) from error
    with opened:  # closes the file Pillow opened; the decoded pixels stay
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and opened.width * opened.height > limit:
            raise _too_large(what, opened.width * opened.height, opened.size)
        return _rgb(opened, what)


def _pixels_in(error: Exception) -> int | None:
    digits = [word for word in str(error).replace("(", " ").split() if word.isdigit()]
    return int(digits[0]) if digits else None


def _too_large(what: str, pixels: int | None, size: tuple[int, int] | None = None) -> InputError:
    count = f"{pixels:,} pixels" if pixels is not None else "too many pixels"
    shape = f" ({size[0]}x{size[1]})" if size else ""
    return InputError(
        f"{what} has {count}{shape}, over Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
        "(PIL.Image.MAX_IMAGE_PIXELS), which guards against decompression bombs. Note: if you "
        "trust the file, raise the limit first (`PIL.Image.MAX_IMAGE_PIXELS = "
        f"{max(pixels or 0, Image.MAX_IMAGE_PIXELS or 0) + 1}`, or None for no limit), or "
        "shrink the image."
    )


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise InputError(
            f"A numpy image must be uint8 (0-255), got {array.dtype}. Note: for floats in "
            "[0, 1] pass `(array * 255).round().astype(np.uint8)`; transformers' pipelines "
            "take no arrays at all, and its processors rescale float arrays twice."
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (3, 4):
        raise InputError(
            f"The numpy array of shape {array.shape} looks channels-first. Note: pass height x "
            "width x channels, e.g. `array.transpose(1, 2, 0)`."
        )
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise InputError(
            f"Cannot make an image of a numpy array of shape {array.shape}. Note: pass height x "
            "width (grayscale) or height x width x 3 (RGB) or x 4 (RGBA); for a batch, pass a "
            "list of arrays."
        )
    return Image.fromarray(np.ascontiguousarray(array))


def _rgb(image: Image.Image, what: str) -> Image.Image:
    """Decoded, upright, RGB. The caller's image is never changed: a new one is made when
    anything must change, and the same one is returned when nothing must."""
    try:
        image.load()  # decode now: Pillow opens lazily, and a truncated file fails only here
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(
            f"{what} could not be decoded: {error}. Note: the file is damaged or incomplete "
            "(e.g. a partial download); save it again, or set "
            "`PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True` to use what can be decoded."
        ) from error
    if image.width == 0 or image.height == 0:
        raise InputError(
            f"{what} is empty ({image.width}x{image.height} pixels). Note: pass an image of at "
            "least 1x1 pixel."
        )
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    return image if image.mode == "RGB" else image.convert("RGB")

