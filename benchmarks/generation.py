"""GPT-2-small greedy decoding: the runtime against transformers' generate() with PyTorch.

    python benchmarks/generation.py [--new-tokens N] [--rounds R] [--threads T]

A GPT-2-small model (the real gpt2 config: 12 layers, width 768, 50257 tokens) with random
weights is exported to a bundle once (no download is possible, and speed does not depend on the
weights). Both sides decode greedily at batch 1 with their KV cache, from the same prompt ids,
in interleaved rounds; the script checks they produce the same tokens, then prints:

- tokens/s of the runtime and of transformers, and their ratio (target: >= 1.5x);
- the runtime's per-token decode time at prompt 8 and prompt 256 (flat when the cache is used;
  a runtime that re-read the prompt each step would be ~30x slower at 256).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from runtime import Bundle  # noqa: E402
from runtime.generation import (  # noqa: E402
    OnnxGenerationModel,
    model_generation_config,
    resolve_generation_config,
    run,
)


def build_bundle(directory: Path) -> Path:
    """gpt2-small with seeded random weights, exported with edgeport's exporter."""
    import torch
    import transformers
    from generation_checkpoints import gpt2_tokenizer

    from exporter import bundle_from_checkpoint

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    model.save_pretrained(directory / "checkpoint")
    # Any tokenizer serves: the benchmark feeds token ids (the tiny test BPE, ids < 601).
    gpt2_tokenizer().save_pretrained(directory / "checkpoint")
    return bundle_from_checkpoint(directory / "checkpoint", directory / "bundle")


def runtime_tokens(model: OnnxGenerationModel, defaults, prompt: np.ndarray,
                   new: int) -> np.ndarray:
    # min_new_tokens as on the other side: exactly `new` tokens (eos is masked until then)
    config = resolve_generation_config(defaults, max_new_tokens=new, min_new_tokens=new)
    output = run(model, prompt, np.ones_like(prompt), config)
    return output.sequences[0, prompt.shape[1]:]


def torch_tokens(model, prompt: np.ndarray, new: int) -> np.ndarray:
    import torch

    ids = torch.from_numpy(prompt)
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                             min_new_tokens=new, do_sample=False, pad_token_id=0)
    return out[0, prompt.shape[1]:].numpy()


def timed(function, *args) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def decode_ms(model: OnnxGenerationModel, prompt: np.ndarray, steps: int) -> float:
    """Median ms of one cached decode step after a prompt of this length."""
    state = model.begin(prompt, np.ones_like(prompt))
    sequences = prompt
    logits, state = model.next_logits(state, sequences)
    times = []
    for _ in range(steps):
        token = logits.argmax(-1)[:, None]
        sequences = np.concatenate([sequences, token], axis=1)
        start = time.perf_counter()
        logits, state = model.next_logits(state, sequences)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both sides (default: each library's own)")
    args = parser.parse_args(argv)

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="edgeport-bench-") as directory:
        directory = Path(directory)
        print("exporting gpt2-small (random weights) ...", file=sys.stderr)
        bundle = Bundle.load(build_bundle(directory))
        model = OnnxGenerationModel.from_bundle(bundle, threads=args.threads)
        defaults = model_generation_config(bundle.read_json("generation_config.json"),
                                           bundle.config)
        reference = transformers.GPT2LMHeadModel.from_pretrained(
            directory / "checkpoint").eval()
        prompt = np.random.default_rng(0).integers(0, 600, size=(1, 8), dtype=np.int64)

        runtime_tokens(model, defaults, prompt, args.new_tokens)  # warm-up
        torch_tokens(reference, prompt, args.new_tokens)
        runtime_times, torch_times = [], []
        for _ in range(args.rounds):  # interleaved: both see the same machine noise
            seconds, ours = timed(runtime_tokens, model, defaults, prompt, args.new_tokens)
            runtime_times.append(seconds)
            seconds, theirs = timed(torch_tokens, reference, prompt, args.new_tokens)
            torch_times.append(seconds)
        same = np.array_equal(ours, theirs)
        ours_rate = args.new_tokens / statistics.median(runtime_times)
        theirs_rate = args.new_tokens / statistics.median(torch_times)

        long_prompt = np.random.default_rng(1).integers(0, 600, size=(1, 256), dtype=np.int64)
        short_ms, long_ms = decode_ms(model, prompt, 32), decode_ms(model, long_prompt, 32)

    print(f"gpt2-small, greedy, batch 1, prompt 8, {args.new_tokens} new tokens, "
          f"{args.rounds} rounds (median)")
    print("| engine | tokens/s | x transformers |")
    print("|---|---|---|")
    print(f"| transformers generate() (PyTorch {torch.__version__}) | {theirs_rate:.1f} | 1.00 |")
    print(f"| edgeport runtime (ONNX Runtime) | {ours_rate:.1f} | "
          f"{ours_rate / theirs_rate:.2f} |")
    print(f"same tokens: {same}")
    print(f"decode step: {short_ms:.2f} ms after an 8-token prompt, {long_ms:.2f} ms after a "
          f"256-token prompt ({long_ms / short_ms:.2f}x)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
