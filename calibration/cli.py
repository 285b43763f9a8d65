"""`edgeport quantize BUNDLE --recipe RECIPE [--calibration PATH] [options]`."""

from __future__ import annotations

import argparse
import sys

from runtime.backends.engine import BACKENDS
from runtime.cli.command import terminal_safe
from runtime.cli.run import key_values
from runtime.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .recipes import RECIPES

    parser.add_argument("bundle", help="bundle directory")
    parser.add_argument("--recipe", required=True, metavar="RECIPE",
                        help=f"one of: {', '.join(RECIPES) or '(none yet)'}")
    parser.add_argument("--calibration", metavar="PATH",
                        help="calibration data (static recipes): text lines, JSON lines, .npz, "
                             "or a folder of samples (images for image bundles)")
    parser.add_argument("--samples", type=int, default=100, help="calibration samples (100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample shuffle (0)")
    parser.add_argument("--name", help="variant name (default: from the recipe, e.g. int8)")
    parser.add_argument("--from", dest="source", default="fp32",
                        help="variant to start from (default fp32; e.g. an optimize variant)")
    parser.add_argument("--option", dest="options", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a recipe option, VALUE parsed as JSON when it can be "
                             "(--option per_channel=false --option method=entropy)")
    parser.add_argument("--graphs", nargs="+", metavar="GRAPH",
                        help="the graphs to make (default: all); the others are shared with "
                             "the --from variant as they are (e.g. --graphs "
                             "decoder_model_merged: a 4-bit decoder beside an fp32 encoder)")
    parser.add_argument("--overwrite", action="store_true", help="replace a variant of that name")
    parser.add_argument("--max-drop", metavar="METRIC=VALUE",
                        help="accuracy-aware: leave the most sensitive nodes in fp32 until the "
                             "task metric drops at most VALUE below fp32 (top1=0.01, f1=0.02, "
                             "cosine=0.01, map50=0.02, miou=0.02, abs_rel=0.01, wer=0.02, "
                             "tokens=0.05)")
    parser.add_argument("--data", metavar="PATH",
                        help="with --max-drop: the data the metric is measured on (default: "
                             "the calibration data, else built-in samples; image and audio "
                             "bundles: a folder of image or audio files)")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKENDS,
                        help="with --max-drop: what runs the variant each round is measured "
                             "on: onnxruntime (default), openvino or tensorrt (the reference "
                             "stays fp32 on ONNX Runtime)")
    parser.add_argument("--device", default="cpu",
                        help="with --max-drop: the device the variant is measured on (cpu; "
                             "openvino: cpu, gpu, npu or auto)")
    parser.add_argument("--precision", choices=["f32", "bf16", "f16"],
                        help="with --max-drop and --backend openvino: the precision hint the "
                             "variant is measured at (default: what OpenVINO picks)")


def main(args) -> int:
    from runtime.bundle import Bundle

    from .quantize import variant_from_bundle
    from .report import runs_on

    def say(line):
        print(line, file=sys.stderr, flush=True)

    options = key_values(args.options, "--option", "per_channel=false")
    common = dict(name=args.name, samples=args.samples, seed=args.seed,
                  overwrite=args.overwrite, progress=say, **options)
    if args.calibration is not None:
        common["calibration"] = args.calibration
    if args.graphs is not None:
        common["graphs"] = args.graphs
    if args.max_drop is not None:
        from .budget import variant_within_budget

        if args.source != "fp32":
            common["source"] = args.source
        record = variant_within_budget(args.bundle, args.recipe, args.max_drop, data=args.data,
                                       backend=args.backend, device=args.device,
                                       precision=args.precision, **common)
        name = record["variant"]
        print(terminal_safe(
            f"{record['metric']} drop {record['drop']:.4f} within {record['max_drop']} on "
            f"{runs_on(record['measured_on'])} with {len(record['excluded'])} node(s) left in "
            f"fp32 after {len(record['rounds'])} round(s)."))
    else:
        if args.data is not None:
            raise InputError("--data goes with --max-drop. Note: for calibration data use "
                             "--calibration PATH.")
        given = [flag for flag, value, default in (
            ("--backend", args.backend, "onnxruntime"), ("--device", args.device, "cpu"),
            ("--precision", args.precision, None)) if value != default]
        if given:
            raise InputError(f"{', '.join(given)} say where --max-drop measures the variant. "
                             "Note: add --max-drop METRIC=VALUE, or leave them out (quantizing "
                             "itself runs no backend; `edgeport compare BUNDLE --backend ...` "
                             "measures a variant there).")
        name = variant_from_bundle(args.bundle, args.recipe, source=args.source, **common)
    bundle = Bundle.load(args.bundle)
    files = ", ".join(bundle.variants[name]["files"].values())
    size = bundle.summary()["variants"][name]["bytes"] / 1e6
    # the file names come from the manifest: shown without terminal control characters
    print(terminal_safe(
        f"Wrote variant {name!r} ({args.recipe}, {size:.1f} MB): {files}. Run it with "
        f"pipeline(..., variant={name!r}) or `edgeport run {args.bundle} --variant {name}`."))
    return 0
