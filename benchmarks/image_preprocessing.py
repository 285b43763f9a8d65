"""The runtime's DETR image processor against transformers' DetrImageProcessor, batch 1.

    python benchmarks/image_preprocessing.py [--seconds S] [--size WxH] [--min-speedup X]

Both processors are built from facebook/detr-resnet-50's preprocessor_config.json (shortest
edge 800, longest 1333) and given the same RGB PIL images: scikit-image's photos and seeded
noise, resized to 640x480 (the photos' usual size; each becomes 1066x800). Their outputs are
checked first (pixel_values within 1e-5, pixel_mask equal), then each is timed over interleaved
rounds; the script prints both medians and p90s and the speed-up, and exits 1 when the speed-up
is under --min-speedup. Needs transformers (the export extra) and scikit-image.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import summary, timed_rounds  # noqa: E402

from runtime.vision.images import load_image  # noqa: E402
from runtime.vision.processors import ImageProcessor  # noqa: E402

DETR_RESNET_50 = {
    "do_normalize": True, "do_resize": True, "feature_extractor_type": "DetrFeatureExtractor",
    "format": "coco_detection", "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225], "max_size": 1333, "size": 800,
}
TOLERANCE = 1e-5


def images(size: tuple[int, int]) -> list[Image.Image]:
    from skimage import data

    photos = [load_image(array) for array in (data.astronaut(), data.coffee(), data.chelsea(),
                                              data.rocket(), data.camera())]
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).resize(
        (640, 480), Image.Resampling.BICUBIC)]
    return [image.resize(size, Image.Resampling.BICUBIC) for image in photos + noise]


def reference_processor():
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers.DetrImageProcessor.from_dict(DETR_RESNET_50)


def check_outputs(ours, reference, inputs) -> float:
    """The largest difference of pixel_values; an AssertionError where they disagree."""
    worst = 0.0
    for image in inputs:
        expected = reference(images=[image], return_tensors="np")
        got = ours([image])
        assert sorted(got) == sorted(expected.keys()), (sorted(got), sorted(expected.keys()))
        assert got["pixel_values"].shape == expected["pixel_values"].shape
        assert got["pixel_values"].dtype == np.float32
        np.testing.assert_array_equal(got["pixel_mask"], expected["pixel_mask"])
        difference = np.abs(got["pixel_values"].astype(np.float64) - expected["pixel_values"])
        worst = max(worst, float(difference.max()))
    assert worst <= TOLERANCE, f"pixel_values differ by {worst:.2e} > {TOLERANCE}"
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="timing budget for both processors together (default 20)")
    parser.add_argument("--size", default="640x480", help="input image size WxH (640x480)")
    parser.add_argument("--min-speedup", type=float, default=0.0,
                        help="exit 1 when the runtime is less than this many times faster")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    inputs = images((width, height))
    ours = ImageProcessor.from_config(DETR_RESNET_50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = reference_processor()
        worst = check_outputs(ours, reference, inputs)
        calls = {
            "runtime": lambda image: ours([image]),
            "transformers": lambda image: reference(images=[image], return_tensors="np"),
        }
        samples = timed_rounds(calls, inputs, args.seconds)

    import PIL
    import transformers

    out = ours([inputs[0]])["pixel_values"].shape
    print(f"DETR preprocessing (facebook/detr-resnet-50 config), batch 1, {len(inputs)} images "
          f"of {width}x{height} -> {out[3]}x{out[2]}; Pillow {PIL.__version__}, numpy "
          f"{np.__version__}, transformers {transformers.__version__}")
    print(f"outputs checked: pixel_values max abs difference {worst:.2e} (<= {TOLERANCE}), "
          "pixel_mask equal")
    print("| processor | median ms | p90 ms | samples |")
    print("|---|---|---|---|")
    for name, values in samples.items():
        median, p90 = summary(values)
        print(f"| {name} | {median:.2f} | {p90:.2f} | {len(values)} |")
    speedup = summary(samples["transformers"])[0] / summary(samples["runtime"])[0]
    print(f"speed-up (transformers median / runtime median): {speedup:.2f}x")
    if speedup < args.min_speedup:
        print(f"under the required {args.min_speedup:.2f}x", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
