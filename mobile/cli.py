"""`edgeport mobile BUNDLE -o OUT [--variant NAME] [--shapes NAME=VALUE ...] [--overwrite]`."""

from __future__ import annotations

import argparse
import sys

from runtime.cli.command import terminal_safe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory (from `edgeport export`)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="folder to write (model.ort, report, README, examples)")
    parser.add_argument("--variant", default="fp32", help="the variant to convert (fp32)")
    parser.add_argument("--shapes", nargs="+", default=[], action="extend",
                        metavar="NAME=VALUE",
                        help="fix dims by name (batch=1 sequence=128) for NNAPI and Core ML: "
                             "writes model_fixed.onnx and model_fixed.ort")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def main(args) -> int:
    from .build import mobile_from_bundle

    def say(line):
        print(line, file=sys.stderr, flush=True)

    report = mobile_from_bundle(args.bundle, args.output, variant=args.variant,
                                shapes=args.shapes, overwrite=args.overwrite, say=say)
    ort = report["artifacts"]["model.ort"]
    print(terminal_safe(f"Wrote {args.output}: model.ort ({ort['bytes'] / 1e6:.2f} MB, first "
                        f"inference {ort['first_run_ms']} ms), mobile_report.md, README.md."))
    e2e = report["e2e"]
    if not e2e.get("built"):
        print(terminal_safe(f"No end-to-end graph: {e2e['reason']}"))
    return 0
