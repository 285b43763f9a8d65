"""Achieved GFLOP/s of an encoder's fp32 graph beside this machine's measured MatMul rate.

    python benchmarks/flops.py [BUNDLE] [--batch B] [--sequence S] [--seconds T] [--threads N]

BUNDLE is a text encoder bundle (BERT family); without it BERT-base (its real config, seeded
random weights: speed does not depend on their values) is built and exported first (needs the
export extra). The graph is timed at batch x sequence tokens through ONNX Runtime, and so are
single MatMuls in the same run, interleaved: the model's own largest shape (tokens x hidden by
hidden x intermediate, where most of its time goes) and a square 1024^3 one. Their rate is the
physical limit the model's GFLOP/s is measured against.

FLOPs are counted from the graph (2 per multiply-add): every MatMul with a constant weight
[K, N] runs once per token (2 K N tokens), a Gemm (the pooler and classifier on the [CLS] row)
once per sequence, and the attention products Q K^T and P V add 4 S^2 hidden per sequence and
layer (the layer count is that of the graph's Softmax nodes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from timing import summary, timed_rounds  # noqa: E402

from runtime import Bundle  # noqa: E402


def graph_flops(path: Path, batch: int, sequence: int) -> dict:
    """The FLOPs of one run of an encoder graph at batch x sequence, counted from its nodes."""
    import onnx

    model = onnx.load(str(path))
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    per_token = per_sequence = 0
    hidden = None  # the input width of the first weight MatMul (a query projection)
    for node in model.graph.node:
        shape = weights.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type == "MatMul" and shape and len(shape) == 2:
            per_token += 2 * shape[0] * shape[1]
            hidden = hidden or shape[0]
        elif node.op_type == "Gemm" and shape and len(shape) == 2:
            per_sequence += 2 * shape[0] * shape[1]
    layers = sum(node.op_type == "Softmax" for node in model.graph.node)
    attention = 4 * sequence * sequence * hidden * layers
    total = batch * (sequence * per_token + per_sequence + attention)
    return {"flops": total, "per_token_weights": per_token, "layers": layers, "hidden": hidden}


def matmul_session(m: int, k: int, n: int, threads: int | None):
    """An ONNX Runtime session of one fp32 MatMul [m, k] x [k, n] (a constant weight, as in the
    model), and its input."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session, {"x": rng.standard_normal((m, k)).astype(np.float32)}


def export_bert_base(directory: Path) -> Path:
    """BERT-base for text classification, as the suite builds it, exported."""
    from suite import bert_base_uncased

    from exporter import bundle_from_checkpoint

    checkpoint = bert_base_uncased(directory / "checkpoint")
    return bundle_from_checkpoint(checkpoint, directory / "bundle", task="text-classification")


def measure(bundle_path: Path, *, batch: int, sequence: int, seconds: float,
            threads: int | None) -> dict:
    bundle = Bundle.load(bundle_path)
    path = bundle.graph_path("model", "fp32")
    counted = graph_flops(path, batch, sequence)
    engine = bundle.engine("model", "fp32", threads=threads)
    feed = {spec.name: np.ones((batch, sequence), np.int64) for spec in engine.inputs}
    hidden = counted["hidden"]
    intermediate = bundle.config.get("intermediate_size", 4 * hidden)
    tokens = batch * sequence
    shapes = {"model's FFN MatMul": (tokens, hidden, intermediate),
              "square MatMul 1024^3": (1024, 1024, 1024)}
    sessions = {name: matmul_session(*shape, threads) for name, shape in shapes.items()}
    calls = {"model": lambda _: engine.run(feed)}
    calls.update({name: (lambda _, s=s, f=f: s.run(None, f)) for name, (s, f) in
                  sessions.items()})
    times = timed_rounds(calls, [None], seconds)
    result = {"flops": counted["flops"], "layers": counted["layers"], "hidden": hidden,
              "batch": batch, "sequence": sequence, "threads": threads, "rates": {}}
    model_ms = summary(times["model"])[0]
    result["rates"]["model"] = counted["flops"] / (model_ms / 1e3) / 1e9
    result["model_ms"] = model_ms
    for name, (m, k, n) in shapes.items():
        ms = summary(times[name])[0]
        result["rates"][name] = 2 * m * k * n / (ms / 1e3) / 1e9
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", type=Path,
                        help="a BERT-family bundle (default: export BERT-base)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20.0, help="timing budget (20)")
    parser.add_argument("--threads", type=int, help="intra-op threads (ONNX Runtime's default)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgeport-flops-") as scratch:
        path = args.bundle
        if path is None:
            print("exporting BERT-base (random weights)", file=sys.stderr, flush=True)
            path = export_bert_base(Path(scratch))
        result = measure(path, batch=args.batch, sequence=args.sequence, seconds=args.seconds,
                         threads=args.threads)
    limit = result["rates"]["model's FFN MatMul"]
    print(f"{path}: batch {result['batch']} x sequence {result['sequence']}, "
          f"{result['layers']} layers, hidden {result['hidden']}; "
          f"{result['flops'] / 1e9:.1f} GFLOP per run; threads: "
          f"{result['threads'] or 'ONNX Runtime default'}")
    print("| what | GFLOP/s | share of the model's FFN MatMul rate |")
    print("|---|---|---|")
    for name, rate in result["rates"].items():
        label = f"model, end to end ({result['model_ms']:.1f} ms)" if name == "model" else name
        print(f"| {label} | {rate:.1f} | {rate / limit:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
