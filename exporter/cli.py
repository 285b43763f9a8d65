"""`edgeport export CHECKPOINT -o BUNDLE [--task TASK] [--opset N]`.

Imports nothing heavy at module level: `edgeport --help` must work without the export extra.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint directory (save_pretrained), or a hub id")
    parser.add_argument("-o", "--output", required=True, help="bundle directory to write")
    parser.add_argument("--task", help="task to export for (default: inferred from config.json)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: optimum's choice)")
    parser.add_argument("--atol", type=float,
                        help="validation tolerance (default: per architecture)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    parser.add_argument("--word-timestamps", action="store_true",
                        help="Whisper: add the alignment heads' graph that "
                             "return_timestamps='word' needs")


def main(args) -> int:
    from .build import bundle_from_checkpoint

    path = bundle_from_checkpoint(
        args.checkpoint, args.output, task=args.task, opset=args.opset, atol=args.atol,
        overwrite=args.overwrite, progress=lambda line: print(line, file=sys.stderr, flush=True),
        word_timestamps=args.word_timestamps,
    )
    from runtime.bundle import Bundle
    from runtime.cli.command import terminal_safe

    bundle = Bundle.load(path)
    worst = max(bundle.manifest["validation"]["max_abs_diff"].values())
    # model_type comes from the checkpoint's config.json: no terminal control characters
    print(terminal_safe(f"Exported {bundle.model_type} for {bundle.task} to {path} "
                        f"(validated against PyTorch: max abs diff {worst:.1e})."))
    return 0
