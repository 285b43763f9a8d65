"""OpenVINO beside ONNX Runtime, transformers and the peer, optimum-intel, end to end: BERT-base
text classification and the real all-MiniLM-L6-v2, speed and accuracy in one run.

    python benchmarks/openvino_bench.py OUT_DIR [--models NAME ...] [--iterations N] [--threads N]
                                        [--tiny]

Models (benchmarks/suite.py builds and exports them): bert-base-uncased text classification
(its real config, seeded random weights: its accuracy numbers say how far a backend moves the
logits, not what a trained model keeps) and all-MiniLM-L6-v2 feature extraction (the real
checkpoint). Each bundle gets dynamic-int8 ("int8", suite.py's), optimize ("opt": ONNX
Runtime's fused Attention and LayerNorms, which OpenVINO's ONNX reader maps to its own),
int8-weights ("q8": 8-bit weights, activations quantized at run time, no calibration) and
static-int8 ("qdq", calibrated on the accuracy tests' 32 calibration sentences, as
benchmarks/static_int8.py).

Timed with `edgeport bench`'s code (``runtime.cli.timing.benchmark``), every side interleaved in
one run, the pipeline called as users call it, batch 1, generated texts of 128 tokens:
edgeport's pipeline on ONNX Runtime (fp32, int8, opt, q8, qdq) and on OpenVINO at f32 and at
bf16 (fp32, opt, q8 and qdq: int8 MatMuls, the rest at the precision; dynamic-int8 is refused
there), the peer (optimum-intel's OVModelForSequenceClassification / OVModelForFeatureExtraction,
exported with export=True from the same checkpoint folder, in transformers.pipeline, at its
default precision), and transformers.pipeline on PyTorch. Accuracy, per edgeport row and the peer:
the model's outputs against PyTorch's on the accuracy tests' 58 held-out sentences, one at a
time (classification: argmax agreement, the smallest logit cosine and the largest logit
difference; feature extraction: the smallest and mean cosine of mean-pooled sentence
embeddings). Then, per OpenVINO row and the peer, where the engine time goes: OpenVINO's own
per-layer counters (PERF_COUNT) over 20 calls, the share of the weight MatMuls and the rate they
run at (what bounds every side on a CPU, and the targets). OUT_DIR gets results.md and
results.json, with the CPU model, its bf16 / int8 flags and the versions; checkpoints and
bundles stay in OUT_DIR/models and are reused. No cold starts.

The peer is left out, with the reason printed and recorded, when optimum-intel cannot be
imported (`pip install --no-deps optimum-intel==1.27.0` fits this project's pins: the newest
release pulls torch 2.14). --tiny: the tests' tiny checkpoints (the smoke test; its numbers
mean nothing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from calibration.quantize import variant_from_bundle  # noqa: E402
from runtime import Bundle  # noqa: E402
from runtime.cli import timing  # noqa: E402
from runtime.cli.bench import ProgressBar  # noqa: E402

NAMES = ("bert-base-uncased", "all-MiniLM-L6-v2")
ENGINES = ["onnxruntime", "openvino:f32", "openvino:bf16"]
PEER = "optimum-intel"
SETTINGS = {"batches": [1], "sequences": [128]}
# The targets on a CPU with bf16: BERT-base end to end, times transformers.pipeline.
TARGETS = {"fp32 (openvino bf16)": 4.0, "qdq (openvino bf16)": 6.0}
# Two sides that run the same OpenVINO kernels this close are level: runs on these machines
# move a median by more.
LEVEL = 0.03


def say(line: str) -> None:
    print(f"openvino: {line}", file=sys.stderr, flush=True)


# --- the peer -----------------------------------------------------------------------------------
def peer_missing() -> str | None:
    """Why optimum-intel's row cannot run here, or None."""
    try:
        import optimum.intel  # noqa: F401
        from optimum.intel import OVModelForFeatureExtraction  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install's own error
        return (f"optimum-intel cannot be imported ({type(exc).__name__}: {exc}); install it "
                "with `pip install --no-deps optimum-intel==1.27.0` (the newest release needs "
                "torch 2.14, past this project's pin)")
    return None


class OptimumIntelBackend:
    """The peer: optimum-intel's OVModel exported from the bundle's checkpoint (export=True,
    its default precision for the device) in ``transformers.pipeline``, its stages noted on a
    StageClock as ``exporter.bench_reference.TransformersBackend`` notes PyTorch's: the
    pipeline's ``_forward`` is inference, the OVModel's forward the engine."""

    kind = "peer"
    name = PEER
    takes_batch_size = True
    cold_start = None  # the benchmark makes no cold starts

    def __init__(self, bundle: Bundle, task: str, *, generates: bool = False,
                 threads: int | None = None, device: str = "cpu"):
        from importlib.metadata import version

        import openvino
        import optimum.intel
        import transformers

        from runtime.backends.openvino.libs import openvino_version

        checkpoint = Path(bundle.manifest["source"]["checkpoint"])
        model_class = {"text-classification": optimum.intel.OVModelForSequenceClassification,
                       "feature-extraction": optimum.intel.OVModelForFeatureExtraction}[task]
        config = {"PERFORMANCE_HINT": "LATENCY"}  # optimum-intel's own default
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.model = model_class.from_pretrained(str(checkpoint), export=True, ov_config=config,
                                                 device=device.upper())
        self.pipe = transformers.pipeline(
            task, model=self.model, tokenizer=transformers.AutoTokenizer.from_pretrained(
                checkpoint))
        self.precision = self.model.request.get_property(
            "INFERENCE_PRECISION_HINT").get_type_name()
        self.clock = timing.StageClock()
        self.size_bytes = None
        self.versions = {"optimum-intel": version("optimum-intel"),
                         "openvino": openvino_version(openvino),
                         "transformers": transformers.__version__}
        self._mark_stages()

    def __call__(self, *args, **kwargs):
        return self.pipe(*args, **kwargs)

    def _mark_stages(self) -> None:
        def timed(method, record):
            def call(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return method(*args, **kwargs)
                finally:
                    record(start, time.perf_counter())
            return call

        self.pipe._forward = timed(self.pipe._forward,
                                   lambda s, e: self.clock.spans.append((s, e)))
        # an instance attribute shadows the method: OVModel.__call__ calls self.forward
        self.model.forward = timed(self.model.forward,
                                   lambda s, e: self.clock.runs.append(("model", s, e, 1)))


# --- accuracy -----------------------------------------------------------------------------------
def accuracy(bundle: Bundle, task: str, rows: list[tuple[str, str, object]], peer,
             texts: list[str], threads: int | None) -> dict[str, dict]:
    """Per row (name, variant, BackendRow) and the peer: its outputs against PyTorch's on
    ``texts``, one at a time."""
    import torch
    import transformers

    checkpoint = bundle.manifest["source"]["checkpoint"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    model_class = (transformers.AutoModelForSequenceClassification
                   if task == "text-classification" else transformers.AutoModel)
    reference = model_class.from_pretrained(checkpoint).eval()
    encoded = [tokenizer(text, return_tensors="np") for text in texts]
    with torch.inference_mode():
        expected = [_output(reference(**{k: torch.from_numpy(v) for k, v in e.items()}))
                    for e in encoded]
    results = {}
    for name, variant, row in rows:
        options = {"threads": threads} if threads else {}
        if row.hint is not None:
            options["precision"] = row.hint
        engine = bundle.engine("model", variant, backend=row.backend, **options)
        takes = {spec.name for spec in engine.inputs}
        output = engine.outputs[0].name
        actual = [engine.run({k: v.astype(np.int64) for k, v in e.items() if k in takes})[output]
                  for e in encoded]
        results[name] = _agreement(task, expected, actual, encoded)
    if peer is not None:
        actual = [_output(peer.model(**{k: torch.from_numpy(v) for k, v in e.items()}))
                  for e in encoded]
        results[peer.name] = _agreement(task, expected, actual, encoded)
    return results


def _output(result) -> np.ndarray:
    value = result.logits if hasattr(result, "logits") else result.last_hidden_state
    return value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)


def _agreement(task: str, expected: list, actual: list, encoded: list) -> dict:
    if task == "text-classification":
        cosines = [_cosine(e.ravel(), a.ravel()) for e, a in zip(expected, actual)]
        agree = [int(np.argmax(e) == np.argmax(a)) for e, a in zip(expected, actual)]
        return {"agreement": float(np.mean(agree)), "min_cosine": float(min(cosines)),
                "max_abs_diff": float(max(np.abs(e - a).max()
                                          for e, a in zip(expected, actual)))}
    cosines = [_cosine(_pooled(e, x["attention_mask"]), _pooled(a, x["attention_mask"]))
               for e, a, x in zip(expected, actual, encoded)]
    return {"min_cosine": float(min(cosines)), "mean_cosine": float(np.mean(cosines))}


def _pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The sentence embedding of all-MiniLM-L6-v2: the tokens' mean under the mask."""
    mask = mask.astype(np.float64)[..., None]
    return (hidden.astype(np.float64) * mask).sum(axis=1).ravel() / mask.sum()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- where the engine time goes -----------------------------------------------------------------
PROFILE_RUNS = 20


def weight_matmul_flops(path: Path, tokens: int) -> int:
    """The multiply-adds of the graph's weight MatMuls and Gemms (a constant weight of rank 2)
    at ``tokens`` tokens, times 2: every one counted over every token (the pooler and the
    classifier, which read one, are under 1% of BERT-base's)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    flops = 0
    for node in graph.node:
        weight = shapes.get(node.input[1]) if node.op_type in ("MatMul", "Gemm") else None
        if weight is not None and len(weight) == 2:
            flops += 2 * tokens * weight[0] * weight[1]
    return flops


class LayerCounters:
    """OpenVINO's own per-layer counters (PERF_COUNT) of ``model`` (a path or an ov.Model)
    compiled for the CPU as the engine compiles it, one call at a time (``call``)."""

    def __init__(self, model, precision: str, threads: int | None, tokens: int):
        import openvino

        config = {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True,
                  "INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = openvino.Core().compile_model(model, "CPU", config)
        self.threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        self.feed = {port.get_any_name(): np.full((1, tokens), 1 if "mask" in
                                                  port.get_any_name() else 0, np.int64)
                     for port in compiled.inputs}
        self.request = compiled.create_infer_request()
        self.calls: list[dict[tuple[str, str], float]] = []  # (layer type, kernel) -> ms

    def call(self, record: bool = True) -> None:
        self.request.infer(self.feed)
        if record:
            spent: dict[tuple[str, str], float] = {}
            for layer in self.request.profiling_info:
                key = (layer.node_type, layer.exec_type)
                spent[key] = spent.get(key, 0.0) + layer.real_time.total_seconds() * 1e3
            self.calls.append(spent)

    def summary(self, flops: int) -> dict:
        """The engine time per call, the time in the weight MatMuls (FullyConnected layers,
        at whatever precision they run) and the rate they run at, and the layer types that
        take the most (name, kernel, ms); each the median over the calls."""
        calls = self.calls
        spent = {key: float(np.median([c.get(key, 0.0) for c in calls])) for key in calls[0]}
        total = float(np.median([sum(c.values()) for c in calls]))
        matmuls = float(np.median([sum(ms for (kind, _), ms in c.items()
                                       if kind.startswith("FullyConnected")) for c in calls]))
        return {"engine_ms": total, "weight_matmul_ms": matmuls,
                "weight_matmul_share": matmuls / total if total else None,
                "gflops_per_thread": (flops / (matmuls * 1e-3) / 1e9 / self.threads
                                      if matmuls else None),
                "threads": self.threads,
                "top": [[kind, kernel, ms] for (kind, kernel), ms in
                        sorted(spent.items(), key=lambda item: -item[1])[:4]]}


def profiles(bundle: Bundle, rows: list, peer, threads: int | None) -> dict[str, dict]:
    """``LayerCounters`` of each OpenVINO row (name, variant, BackendRow) and of the peer's
    model at 128 tokens, their calls interleaved (other work on the machine slows every side
    alike), warmed up first; the FLOPs are the fp32 graph's weight MatMuls'."""
    tokens = SETTINGS["sequences"][0]
    flops = weight_matmul_flops(bundle.graph_path("model", "fp32"), tokens)
    sides = {name: LayerCounters(str(bundle.graph_path("model", variant)), row.precision,
                                 threads, tokens)
             for name, variant, row in rows if row.backend == "openvino"}
    if peer is not None:
        sides[peer.name] = LayerCounters(peer.model.model, peer.precision, threads, tokens)
    for round_ in range(3 + PROFILE_RUNS):
        for side in sides.values():
            side.call(record=round_ >= 3)  # warm-up calls pick kernels and allocate
    return {name: side.summary(flops) for name, side in sides.items()}


# --- the run ------------------------------------------------------------------------------------
def run_model(model, out: Path, *, tiny: bool, iterations: int, warmup: int,
              threads: int | None, peer_reason: str | None) -> dict:
    from sentences import SENTENCES
    from static_int8 import data
    from suite import prepared_bundle

    from exporter.bench_reference import reference_from_bundle

    bundle, int8 = prepared_bundle(model, out / "models" / model.name, tiny=tiny)
    if "qdq" not in bundle.variants:
        calibration, _ = data("text", out / "data" / "text")
        say(f"{model.name}: quantizing (static-int8, calibrated on {calibration.name})")
        variant_from_bundle(bundle.path, "static-int8", name="qdq", calibration=calibration)
        bundle = Bundle.load(bundle.path)
    if "opt" not in bundle.variants:  # ONNX Runtime's fusions, which OpenVINO reads too
        say(f"{model.name}: optimizing")
        variant_from_bundle(bundle.path, "optimize", name="opt")
        bundle = Bundle.load(bundle.path)
    if "q8" not in bundle.variants:  # int8 on OpenVINO without calibration data
        say(f"{model.name}: quantizing (int8-weights)")
        variant_from_bundle(bundle.path, "int8-weights", name="q8")
        bundle = Bundle.load(bundle.path)
    variants = ["fp32", int8, "opt", "q8", "qdq"]
    made = []

    def peer(*args, **kwargs):
        made.append(OptimumIntelBackend(*args, **kwargs))
        return made[-1]

    say(f"{model.name}: benchmarking {', '.join(variants)} on {', '.join(ENGINES)}, "
        + ("optimum-intel and " if peer_reason is None else "") + "transformers")
    progress = ProgressBar()
    try:
        report = timing.benchmark(bundle, variants=variants, engines=ENGINES,
                           reference=reference_from_bundle,
                           peers=[peer] if peer_reason is None else [],
                           iterations=iterations, warmup=warmup, cold_starts=0,
                           threads=threads, progress=progress, **SETTINGS)
    finally:
        progress.close()
    skipped = {entry["backend"] for entry in report["not_run"]}
    rows = [(row.label(variant), variant, row) for row in timing.backend_rows(ENGINES)
            for variant in variants if row.label(variant) not in skipped]
    say(f"{model.name}: accuracy against PyTorch on {len(SENTENCES)} sentences")
    measured = accuracy(bundle, bundle.task, rows, made[0] if made else None, SENTENCES,
                        threads)
    if made:
        report["peer_precision"] = made[0].precision
    say(f"{model.name}: OpenVINO's per-layer counters")
    profiled = profiles(bundle, rows, made[0] if made else None, threads)
    return {"model": model.name, "task": bundle.task, "report": report, "accuracy": measured,
            "profile": profiled, "peer": "run" if made else peer_reason}


def cpu() -> dict:
    """The CPU as lscpu names it, the flags bf16 and int8 speed depend on, OpenVINO's view."""
    import openvino

    from runtime.backends.openvino.libs import openvino_version

    info = timing._machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
        info["lscpu_model_name"] = next(
            (line.partition(":")[2].strip() for line in lscpu.splitlines()
             if line.startswith("Model name")), None)
    except (OSError, subprocess.SubprocessError):
        info["lscpu_model_name"] = None
    core = openvino.Core()
    info["openvino"] = openvino_version(openvino)
    info["openvino_cpu"] = {
        "name": str(core.get_property("CPU", "FULL_DEVICE_NAME")),
        "default_precision": core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name(),
        "capabilities": [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]}
    return info


def table(result: dict) -> list[str]:
    """One row per side: median and p90 ms, times transformers and times the peer, accuracy."""
    report, measured = result["report"], result["accuracy"]
    runs = {run["backend"]: run for run in report["runs"]}
    base = runs["transformers"]["latency_ms"]["total"]["median"]
    peer = runs.get(PEER)
    classification = result["task"] == "text-classification"
    header = ["side", "p50 ms", "p90 ms", "engine ms", "x transformers", "x optimum-intel",
              *(["agreement", "min logit cosine", "max logit diff"] if classification
                else ["min embedding cosine", "mean embedding cosine"])]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for name, run in runs.items():
        median = run["latency_ms"]["total"]["median"]
        score = measured.get(name)
        cells = ([f"{score['agreement']:.3f}", f"{score['min_cosine']:.5f}",
                  f"{score['max_abs_diff']:.4f}"] if classification and score
                 else [f"{score['min_cosine']:.5f}", f"{score['mean_cosine']:.5f}"] if score
                 else ["(reference)" if name == "transformers" else "-"]
                 + ["-"] * (2 if classification else 1))
        label = (f"{name} ({report.get('peer_precision', '?')})" if name == PEER else name)
        lines.append("| " + " | ".join([
            label, f"{median:.1f}", f"{run['latency_ms']['total']['p90']:.1f}",
            f"{run['latency_ms']['engine']['median']:.1f}", timing.format_ratio(base / median),
            (timing.format_ratio(peer["latency_ms"]["total"]["median"] / median) if peer
             else "-"),
            *cells]) + " |")
    return lines


def profile_table(result: dict) -> list[str]:
    """Where OpenVINO's engine time goes, per OpenVINO row and the peer."""
    lines = ["| side | engine ms | weight MatMuls ms | share | GFLOP/s per thread | "
             "the most time (layer, kernel, ms) |", "|---|---:|---:|---:|---:|---|"]
    for name, found in result["profile"].items():
        rate = found["gflops_per_thread"]
        lines.append(
            f"| {name} | {found['engine_ms']:.1f} | {found['weight_matmul_ms']:.1f} | "
            f"{found['weight_matmul_share']:.0%} | {rate:.0f} | "
            + ", ".join(f"{kind} {kernel} {ms:.1f}" for kind, kernel, ms in found["top"]) + " |"
            if rate else f"| {name} | {found['engine_ms']:.1f} | - | - | - | - |")
    return lines


def targets(result: dict) -> list[str]:
    """The issue's targets for BERT-base, reached or not, on this CPU."""
    runs = {run["backend"]: run["latency_ms"]["total"]["median"]
            for run in result["report"]["runs"]}
    lines = []
    for name, target in TARGETS.items():
        if name not in runs:
            continue
        speedup = runs["transformers"] / runs[name]
        line = (f"- {name}: {speedup:.2f}x transformers (target {target:.0f}x: "
                f"{'reached' if speedup >= target else 'not reached'})")
        found = result.get("profile", {}).get(name)
        if speedup < target and found:  # what the target asks of the engine, and what it has
            line += (f"; the target needs {runs['transformers'] / target:.1f} ms end to end, "
                     f"and the weight MatMuls alone take {found['weight_matmul_ms']:.1f} ms "
                     f"of the engine's {found['engine_ms']:.1f} here")
        if PEER in runs:
            ratio = runs[PEER] / runs[name]
            standing = ("ahead of it" if ratio > 1 + LEVEL else "behind it"
                        if ratio < 1 - LEVEL else f"level with it, within {LEVEL:.0%}")
            line += f"; {ratio:.2f}x optimum-intel ({standing})"
        lines.append(line)
    return lines


def results_markdown(results: dict) -> str:
    machine = results["machine"]
    ov_cpu = machine["openvino_cpu"]
    lines = [
        "# OpenVINO beside ONNX Runtime, transformers and optimum-intel", "",
        f"{machine['lscpu_model_name'] or machine['processor']}"
        + (f" ({ov_cpu['name']})" if ov_cpu["name"] != machine["lscpu_model_name"] else "")
        + f", {machine['cpus_usable'] or machine['cpus']} CPUs; flags: "
        f"{' '.join(machine['cpu_flags'] or []) or 'none of avx2, avx512, amx'}; OpenVINO "
        f"{machine['openvino']} (CPU default precision {ov_cpu['default_precision']}, "
        f"capabilities {' '.join(ov_cpu['capabilities'])}); "
        f"{results['settings']['iterations']} timed calls per side after "
        f"{results['settings']['warmup']} warm-up, interleaved; batch 1, 128 tokens, end to end"
        + (" (tiny models: the numbers mean nothing)" if results["settings"]["tiny"] else "")
        + ".", "",
        "x: times faster (their median over ours). Accuracy: against PyTorch on 58 held-out "
        "sentences, one at a time.",
    ]
    for result in results["models"]:
        load = result["report"]["machine"]["load_average"]
        lines += ["", f"## {result['model']} ({result['task']})", "",
                  f"Load average {load['start']:.1f} -> {load['end']:.1f} (other work on the "
                  "machine: the ratios of sides timed interleaved hold better than the "
                  "times).", "", *table(result)]
        if result["peer"] != "run":
            lines += ["", f"optimum-intel not run: {result['peer']}"]
        lines += [f"Not run: {entry['backend']}: {entry['reason'].split(':')[0]}"
                  for entry in result["report"]["not_run"]]
        lines += ["", "Where OpenVINO's engine time goes (its per-layer counters, "
                  f"medians of {PROFILE_RUNS} calls at 128 tokens, the sides' calls interleaved, "
                  "after the timed runs; GFLOP/s: the weight MatMuls' "
                  "multiply-adds x 2 over their time, per inference thread):", "",
                  *profile_table(result)]
        if result["model"] == "bert-base-uncased":
            lines += ["", *targets(result)]
    lines += ["", "## Every report (`edgeport bench`'s tables)", ""]
    lines += [timing.markdown(result["report"]) for result in results["models"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, metavar="OUT_DIR")
    parser.add_argument("--models", nargs="+", choices=NAMES, default=list(NAMES))
    parser.add_argument("--iterations", type=int, default=30,
                        help="timed calls per side (default 30)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="threads of every side (default: each "
                                                    "library's own)")
    parser.add_argument("--tiny", action="store_true",
                        help="the tests' tiny checkpoints (a smoke test; numbers mean nothing)")
    args = parser.parse_args(argv)
    from suite import MODELS

    args.out.mkdir(parents=True, exist_ok=True)
    reason = peer_missing()
    if reason:
        say(f"the peer is left out: {reason}")
    results = {"machine": cpu(),
               "settings": {"tiny": args.tiny, "iterations": args.iterations,
                            "warmup": args.warmup, "threads": args.threads, **SETTINGS},
               "models": [run_model(model, args.out, tiny=args.tiny,
                                    iterations=args.iterations, warmup=args.warmup,
                                    threads=args.threads, peer_reason=reason)
                          for model in MODELS if model.name in args.models]}
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    text = results_markdown(results)
    (args.out / "results.md").write_text(text)
    print(text.split("\n## Every report")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
