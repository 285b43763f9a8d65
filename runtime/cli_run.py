"""`edgeport run BUNDLE INPUT... [--json] [--output-dir DIR] [--device D] [--backend B]`: a
bundle's pipeline on inputs (texts, or image or audio files for the vision and audio tasks),
from the shell, on the CPU or a GPU, through ONNX Runtime or TensorRT."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from .bundle import BACKENDS
from .errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory (from `edgeport export`)")
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="texts (or image or audio files, for vision and audio bundles) to "
                             "run on; none reads one input per line from stdin")
    parser.add_argument("--task", help="the task to run (default: the bundle's)")
    parser.add_argument("--variant", default="fp32", help="graph variant (default: fp32)")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda or cuda:N (a GPU by index), or tensorrt[:N] for ONNX "
                             "Runtime's TensorRT provider (default: cpu)")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKENDS,
                        help="what runs the graphs: onnxruntime (default), or tensorrt for the "
                             "plans `edgeport build` wrote (with --device cuda)")
    parser.add_argument("--build-if-missing", action="store_true",
                        help="tensorrt: build the plans first when absent or stale")
    parser.add_argument("--context",
                        help="question-answering: the context the INPUT questions ask about")
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="a pipeline argument, VALUE parsed as JSON when it can be "
                             "(--set top_k=3 --set aggregation_strategy=simple)")
    parser.add_argument("--json", action="store_true", help="print results as one JSON document")
    parser.add_argument("--output-dir", type=Path, metavar="DIR",
                        help="vision: save masks and depth maps here (PNG images, .npy arrays) "
                             "and print their paths")


def key_values(pairs: list[str], flag: str = "--set", example: str = "top_k=3") -> dict:
    """KEY=VALUE command-line pairs -> a dict, each VALUE parsed as JSON when it can be.

    >>> key_values(["top_k=3", "aggregation_strategy=simple"])
    {'top_k': 3, 'aggregation_strategy': 'simple'}
    """
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} takes KEY=VALUE, got {pair!r}. Note: e.g. {flag} {example}.")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def main(args) -> int:
    from .pipeline import pipeline

    inputs = list(args.inputs) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not inputs:
        raise InputError("No inputs: give texts as arguments, or one per line on stdin.")
    if args.build_if_missing and args.backend != "tensorrt":
        raise InputError("--build-if-missing builds TensorRT plans: it goes with --backend "
                         "tensorrt.")
    pipe = pipeline(args.task, model=args.bundle, variant=args.variant, device=args.device,
                    backend=args.backend, build_if_missing=args.build_if_missing)
    options = key_values(args.options)
    if pipe.task == "question-answering":
        if args.context is None:
            raise InputError("question-answering needs --context TEXT; the INPUTs are questions.")
        results = [pipe(question=q, context=args.context, **options) for q in inputs]
    elif args.context is not None:
        raise InputError(f"--context is for question-answering; this bundle runs {pipe.task}.")
    else:
        results = [pipe(text, **options) for text in inputs]
    if args.output_dir is not None:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    results = [printable(result, args.output_dir, f"{index}-{Path(str(item)).stem}"[:60])
               for index, (item, result) in enumerate(zip(inputs, results))]
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], ensure_ascii=False))
    else:
        for text, result in zip(inputs, results):
            print(f"{text}\n  {json.dumps(result, ensure_ascii=False)}")
    return 0


def printable(result, directory: Path | None, stem: str):
    """A result with its images and arrays (masks, depth) replaced by the paths they were saved
    to in ``directory``, or by a short description when there is none."""
    saved = 0

    def convert(value, key: str):
        nonlocal saved
        if isinstance(value, (Image.Image, np.ndarray)):
            image = isinstance(value, Image.Image)
            if directory is None:
                shape = f"{value.mode} {value.width}x{value.height}" if image else (
                    f"{value.dtype} {list(value.shape)}")
                return f"<{'image' if image else 'array'} {shape}: pass --output-dir to save it>"
            path = directory / f"{stem}-{key}-{saved}.{'png' if image else 'npy'}"
            saved += 1
            _save(value, path)
            return str(path)
        if isinstance(value, dict):
            return {k: convert(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v, key) for v in value]
        return value

    return convert(result, "result")


def _save(value, path: Path) -> None:
    """Write to a temp file beside ``path``, then rename: never a half-written file."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as stream:
            if isinstance(value, Image.Image):
                value.save(stream, format="PNG")
            else:
                np.save(stream, value)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)

