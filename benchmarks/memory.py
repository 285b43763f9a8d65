"""Resident memory over many calls with varying input shapes, on one text bundle.

    python benchmarks/memory.py [BUNDLE] [--calls 10000] [--variant fp32] [--batch 1]

The pipeline is called ``--calls`` times in this process, each call with texts of another
length (a cycle through 17 lengths from 3 tokens to the model's maximum, so ONNX Runtime meets
a new shape again and again), and the resident set size (VmRSS) is read after 100 calls, then at
every tenth of the run. The bar of issue 8: memory after 10,000 calls no more than 10% above
memory after 100. BUNDLE defaults to the real all-MiniLM-L6-v2, exported first (export extra).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime import pipeline  # noqa: E402
from runtime.cli.bench_inputs import texts_of_length  # noqa: E402

# Memory is compared with its level after this many calls: the sessions' arenas and caches have
# grown to their working size by then.
BASELINE_CALLS = 100
BAR = 0.10  # at most 10% above the baseline


def rss_bytes() -> int:
    """This process's resident set size (Linux: /proc/self/status VmRSS)."""
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS"))


def lengths(maximum: int, count: int = 17) -> list[int]:
    """``count`` token lengths from 3 to ``maximum``, spread geometrically and shuffled in a
    fixed order, so that consecutive calls change shape.

    >>> lengths(512)
    [3, 28, 269, 11, 103, 4, 39, 371, 15, 142, 6, 54, 512, 21, 195, 8, 75]
    """
    steps = sorted({round(3 * (maximum / 3) ** (i / (count - 1))) for i in range(count)})
    order = [(i * 7) % len(steps) for i in range(len(steps))]  # 7 is coprime to 17
    return [steps[i] for i in order]


def measure(bundle, *, calls: int, variant: str = "fp32", batch: int = 1, say=print) -> dict:
    """RSS in bytes after each checkpoint (BASELINE_CALLS, then every tenth of ``calls``)."""
    if calls <= BASELINE_CALLS:
        raise SystemExit(f"--calls must be above {BASELINE_CALLS}, the baseline.")
    pipe = pipeline(model=bundle, variant=variant)
    maximum = min(pipe.max_positions or 512, 512)
    inputs = [texts_of_length(pipe.tokenizer, n, batch) for n in lengths(maximum)]
    checkpoints = {BASELINE_CALLS, *range(calls // 10, calls + 1, calls // 10), calls}
    memory = {}
    for call in range(1, calls + 1):
        texts = inputs[call % len(inputs)]
        pipe(texts[0] if batch == 1 else texts)
        if call in checkpoints:
            memory[call] = rss_bytes()
            say(f"{call:>7} calls: {memory[call] / 2**20:8.1f} MB")
    growth = memory[calls] / memory[BASELINE_CALLS] - 1
    return {"task": pipe.task, "lengths": lengths(maximum), "memory": memory, "growth": growth,
            "within_bar": growth <= BAR}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", help="a text bundle (default: export MiniLM)")
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--variant", default="fp32")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgeport-memory-") as scratch:
        bundle = args.bundle
        if bundle is None:
            from quantization import export_minilm

            bundle = export_minilm(Path(scratch))
        result = measure(bundle, calls=args.calls, variant=args.variant, batch=args.batch)
    base, last = result["memory"][BASELINE_CALLS], result["memory"][args.calls]
    print(f"\n{result['task']}, {args.variant}, batch {args.batch}, lengths "
          f"{sorted(result['lengths'])}: {base / 2**20:.1f} MB after {BASELINE_CALLS} calls, "
          f"{last / 2**20:.1f} MB after {args.calls} ({result['growth']:+.1%}; bar "
          f"+{BAR:.0%}: {'met' if result['within_bar'] else 'missed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
