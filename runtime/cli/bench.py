"""`edgeport bench BUNDLE [--variants ...] [--backend onnxruntime tensorrt openvino[:PRECISION]]
[--precision f32|bf16|f16] [--against transformers] [--batch ...] [--sequence ...]
[--iterations N] [--json PATH]`:
latency per stage, throughput, memory, size and cold start of a bundle's pipeline
(``runtime.cli.timing``) on each backend, beside transformers on request."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from ..bundle import BACKENDS, Bundle
from ..errors import InputError, MissingDependencyError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory (from `edgeport export`)")
    parser.add_argument("--variants", nargs="+", metavar="VARIANT",
                        help="variants to time (default: all the bundle has)")
    parser.add_argument("--against", choices=["transformers"],
                        help="also time transformers.pipeline with PyTorch on the checkpoint the "
                             "bundle was exported from, interleaved, and print the speed-ups "
                             "(needs the export extra)")
    parser.add_argument("--task", help="the task to run (default: the bundle's), e.g. "
                                       "translation_en_to_de")
    parser.add_argument("--batch", nargs="+", type=int, default=[1], metavar="N",
                        help="batch sizes: items per call (default: 1)")
    parser.add_argument("--sequence", nargs="+", type=int, metavar="N",
                        help="text bundles: tokens per generated text, special tokens included "
                             "(default: 128; generation: the prompt)")
    parser.add_argument("--seconds", type=float, metavar="S",
                        help="audio bundles: seconds of generated audio (default: 5)")
    parser.add_argument("--max-new-tokens", type=int, metavar="N",
                        help="generating bundles: tokens each call generates, greedily "
                             "(default: 32)")
    parser.add_argument("--input", dest="inputs", nargs="+", action="extend", metavar="INPUT",
                        help="your own inputs instead of generated ones: texts (question-"
                             "answering: contexts), or image or audio files for vision and "
                             "audio bundles")
    parser.add_argument("--iterations", type=int, default=20, metavar="N",
                        help="timed calls per backend and batch/sequence (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, metavar="N",
                        help="untimed calls before (default: 3)")
    parser.add_argument("--cold-starts", type=int, default=1, metavar="N",
                        help="fresh processes per backend timing import, load and first result; "
                             "0 skips them (default: 1)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="intra-op threads of both sides (default: each library's own)")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda or cuda:N, or tensorrt[:N] for ONNX Runtime's TensorRT "
                             "provider (default: cpu)")
    parser.add_argument("--backend", dest="engines", nargs="+", default=["onnxruntime"],
                        metavar="BACKEND",
                        help=f"what runs each variant, side by side: {', '.join(BACKENDS)} "
                             "(default: onnxruntime; tensorrt with --device cuda, plans built "
                             "when missing); openvino:f32, openvino:bf16, openvino:f16 run "
                             "OpenVINO at that precision (several in one run: openvino:f32 "
                             "openvino:bf16); plain openvino at --precision, else at "
                             "OpenVINO's default for the device (bf16 on a CPU with "
                             "avx512_bf16 or AMX). Rows are named VARIANT (openvino "
                             "PRECISION); dynamic-int8 variants are not run on OpenVINO")
    parser.add_argument("--precision", choices=["f32", "bf16", "f16"],
                        help="the precision hint of the openvino backends that name none "
                             "(openvino only: on onnxruntime and tensorrt the variant sets the "
                             "precision)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the whole report as JSON to PATH")


def main(args) -> int:
    from ..bundle import write_json_atomic
    from .timing import benchmark, markdown

    if args.json is not None:  # before the slow part: a report that cannot be written fails now
        if args.json.is_dir():
            raise InputError(f"--json {args.json} is a folder. Note: name the report file, e.g. "
                             f"{args.json / 'bench.json'}.")
        if not args.json.parent.is_dir():
            problem = "is not a folder" if args.json.parent.exists() else "does not exist"
            raise InputError(f"--json {args.json}: the directory {args.json.parent} {problem}. "
                             "Note: create it first, or write the report elsewhere.")
    if args.inputs:
        check_inputs(args.bundle, args.task, args.inputs)
    reference = _reference_factory() if args.against else None
    progress = ProgressBar()
    try:
        report = benchmark(
            args.bundle, task=args.task, variants=args.variants, reference=reference,
            batches=args.batch, sequences=args.sequence, seconds=args.seconds,
            max_new_tokens=args.max_new_tokens, inputs=args.inputs, iterations=args.iterations,
            warmup=args.warmup, cold_starts=args.cold_starts, threads=args.threads,
            device=args.device, engines=args.engines, precision=args.precision,
            progress=progress)
    finally:
        progress.close()
    print(markdown(report), end="")
    if args.json is not None:
        write_json_atomic(args.json, report)
    return 0


def check_inputs(path: str, task: str | None, inputs: list[str]) -> None:
    """An InputError for an --input that is not valid UTF-8 text, when the bundle reads text
    (for image and audio bundles, an input is a file name, which may be any bytes)."""
    from .run import check_text, reads_text

    if all(_is_unicode(text) for text in inputs):
        return  # the usual case: no need to look at the bundle here
    from ..tasks import pipeline_class

    bundle = Bundle.load(path)
    if reads_text(pipeline_class(bundle.check_task(task), bundle.manifest.get("family"),
                                 bundle.manifest.get("model_type"))):
        for number, text in enumerate(inputs, 1):
            check_text(text, f"--input {number}")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reference_factory():
    """exporter.bench_reference's maker, loaded by name: the runtime never imports the exporter,
    and torch and transformers are needed only here."""
    try:
        module = importlib.import_module("exporter.bench_reference")
    except ImportError as exc:
        raise MissingDependencyError(
            f"--against transformers needs torch and transformers: {exc}. Note: install them "
            "with `pip install 'edgeport[export]'`, or bench without --against."
        ) from None
    return module.reference_from_bundle


class ProgressBar:
    """A progress bar on stderr for long runs: tqdm when it is installed (shown after 2 s, so
    short runs stay quiet), else a line every 5 s."""

    def __init__(self):
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        self._tqdm, self._bar = tqdm, None
        self._shown = time.monotonic() - 3  # the first plain line comes after 2 s

    def __call__(self, done: int, total: int, what: str) -> None:
        if self._tqdm is not None:
            if self._bar is None:
                self._bar = self._tqdm(total=total, unit="call", delay=2, leave=False,
                                       file=sys.stderr)
            self._bar.set_description(what, refresh=False)
            self._bar.update(done - self._bar.n)
        elif time.monotonic() - self._shown >= 5:
            self._shown = time.monotonic()
            print(f"edgeport bench: {what}: {done}/{total} calls", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
