"""`edgeport compare BUNDLE [--data PATH] [--variants A B ...] [--reference fp32|pytorch]
[--backend B [--device D] [--precision P]] [--perplexity FILE]`: run variants (on a backend, at
a precision) against a reference on data, print a summary table (and the perplexity of each
engine on FILE), write the reports."""

from __future__ import annotations

import argparse
import sys

from runtime.backends.engine import BACKENDS
from runtime.cli.command import json_for_stdout, terminal_safe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory")
    parser.add_argument("--data", metavar="PATH",
                        help="samples: text lines, JSON lines (question/context for "
                             "question-answering), an .npz, or a folder (default: built-in "
                             "samples; image and audio bundles need a folder of image or audio "
                             "files)")
    parser.add_argument("--variants", nargs="+", metavar="VARIANT",
                        help="variants to compare (default: all but the reference)")
    parser.add_argument("--reference", default="fp32", metavar="fp32|pytorch",
                        help="what the variants are measured against: the fp32 graph (default) "
                             "or the PyTorch checkpoint the bundle was exported from (needs "
                             "the export extra)")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKENDS,
                        help="what runs the variants (and times them): onnxruntime (default), "
                             "openvino or tensorrt; the reference stays fp32 on ONNX Runtime's "
                             "CPU. Off onnxruntime, fp32 is a variant too (fp32 at bf16)")
    parser.add_argument("--device", default="cpu",
                        help="the variants' device: cpu (default), cuda[:N]; with --backend "
                             "openvino: cpu, gpu (an Intel iGPU), npu or auto")
    parser.add_argument("--precision", choices=["f32", "bf16", "f16"],
                        help="openvino: the precision hint the variants run at (default: what "
                             "OpenVINO picks for the device, bf16 on a CPU with bf16); the "
                             "report says which ran")
    parser.add_argument("--samples", type=int, default=100, help="samples to run (100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample shuffle (0)")
    parser.add_argument("--runs", type=int, default=1,
                        help="timed runs per sample and engine; the fastest counts (1)")
    parser.add_argument("--max-new-tokens", type=int, metavar="N",
                        help="generative bundles: tokens each text generates at most, greedily "
                             "(20)")
    parser.add_argument("--perplexity", metavar="FILE",
                        help="decoder-only bundles: also measure perplexity on this UTF-8 text "
                             "file (at most 64 MB) with the fp32 graph, each variant and, with "
                             "--reference pytorch, the PyTorch checkpoint; the report gets a "
                             "perplexity section")
    parser.add_argument("--window", type=int, metavar="N",
                        help="with --perplexity: tokens each pass sees (512, or the model's "
                             "positions where it has fewer)")
    parser.add_argument("--stride", type=int, metavar="N",
                        help="with --perplexity: tokens between the starts of windows; each "
                             "window scores only its tokens not scored before (half the window)")
    parser.add_argument("--no-layers", action="store_true",
                        help="skip the per-layer error analysis")
    parser.add_argument("--reports", metavar="DIR",
                        help="write the reports into DIR and leave the bundle as it is (by "
                             "default they go to BUNDLE/reports and the accuracy summaries into "
                             "its manifest)")
    parser.add_argument("--json", action="store_true",
                        help="print the whole report as JSON instead of the summary table")


def main(args) -> int:
    from runtime.bundle import Bundle

    from .compare import compare_variants, record_summaries
    from .report import measured_on_text, perplexity_table, summary_table, write_reports

    bundle = Bundle.load(args.bundle)
    report = compare_variants(
        bundle, args.data, variants=args.variants, reference=args.reference,
        samples=args.samples, seed=args.seed, runs=args.runs, layers=not args.no_layers,
        new_tokens=args.max_new_tokens, perplexity=args.perplexity,
        perplexity_window=args.window, perplexity_stride=args.stride,
        backend=args.backend, device=args.device, precision=args.precision,
        progress=True,  # tqdm writes to stderr; stdout stays the table or the JSON
    )
    paths = write_reports(bundle, report, args.reports)
    if args.reports is None:
        record_summaries(bundle, report)
    if args.json:
        print(json_for_stdout(report, indent=2))
    else:  # names in the table come from the manifest: no terminal control characters
        data = report["data"]
        print(terminal_safe(f"{report['task']} on {data['samples']} samples ({data['source']}), "
                            f"reference {report['reference']['name']}; "
                            f"{measured_on_text(report)}:\n", keep="\n"))
        print(terminal_safe(summary_table(report), keep="\n"))
        print()
        if report.get("perplexity"):
            section = report["perplexity"]
            print(terminal_safe(f"perplexity on {section['source']} ({section['scored']} "
                                f"tokens scored, window {section['window']}, stride "
                                f"{section['stride']}):\n", keep="\n"))
            print(terminal_safe(perplexity_table(report), keep="\n"))
            print()
        for kind in ("md", "html", "json"):
            print(terminal_safe(f"report: {paths[kind]}"))
    if args.reports is None:
        print("accuracy summaries recorded in manifest.json", file=sys.stderr)
    return 0
