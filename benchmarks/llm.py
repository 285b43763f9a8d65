"""Small LLMs on the CPU: edgeport (fp32 and int4) against transformers' generate() and
onnxruntime-genai, side by side in one run.

    python benchmarks/llm.py OUT_DIR [--models qwen2.5-0.5b llama-3.2-1b] [--prompt 128]
                             [--new-tokens 128] [--rounds 2] [--threads N] [--tiny]

Each model is a real-size architecture with seeded random weights (no download is possible
here, and speed does not depend on the weights): Qwen2.5-0.5B's and Llama 3.2 1B's configs. It
is saved as a checkpoint, exported with edgeport (fp32, and the int4 recipe at block size 32 and
accuracy level 4: int8 activations), and built with onnxruntime-genai's model builder (fp32 and
int4, its CPU defaults) when onnxruntime-genai is installed. Every engine then generates
greedily at batch 1 from the same random prompt, in its own process (so that peak memory is
its own), ``--rounds`` times after a warm-up; the table gives the medians of

- time to first token (the prompt in one pass, then the first pick),
- decode tokens/s (the tokens after the first, over their time),
- peak resident memory of the process (the model loaded, the run done),

with each engine's decode rate against transformers' fp32. The same-precision engines are
checked to pick the same tokens as transformers (fp32) where their numerics allow.

onnxruntime-genai: ``pip install --no-deps onnxruntime-genai==0.11.2`` (it needs onnxruntime
>= 1.23.2; 0.12 and later's builder needs transformers 5, which the export extra cannot take).
``--tiny`` runs the code path on the tests' tiny configs (tests/test_benchmark_suite.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

# Real configs (from the checkpoints' config.json), random weights.
MODELS = {
    "qwen2.5-0.5b": ("Qwen2Config", dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        bos_token_id=151643, eos_token_id=151645), "chatml"),
    "llama-3.2-1b": ("LlamaConfig", dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, vocab_size=128256, max_position_embeddings=131072,
        rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        bos_token_id=128000, eos_token_id=128009), "llama3"),
}
TINY = {"qwen2.5-0.5b": "qwen2", "llama-3.2-1b": "llama"}
# edgeport's, named by variant: the exported graph (optimum's trace) at fp32 and through the int4
# recipe; the llm recipe's GroupQueryAttention graph at fp32 ("llm32") and int4 ("llm").
ENGINES = ("transformers-fp32", "edgeport-fp32", "edgeport-int4", "edgeport-llm32",
           "edgeport-llm", "genai-fp32", "genai-int4")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- preparing the models ------------------------------------------------------------------------

def checkpoint(name: str, folder: Path, tiny: bool) -> Path:
    """The random-weight checkpoint (reused when it is there)."""
    target = folder / "checkpoint"
    if (target / "config.json").is_file():
        return target
    import torch
    import transformers
    from generation_checkpoints import build_tiny_generation_checkpoint, llm_tokenizer

    if tiny:
        return build_tiny_generation_checkpoint(TINY[name], "text-generation", target)
    config_class, values, style = MODELS[name]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(**values)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(target)  # random weights at the real models' scale (init 0.02)
    llm_tokenizer(style).save_pretrained(target)  # the prompt is token ids; any tokenizer serves
    return target


def bundle(folder: Path, source: Path) -> Path:
    from calibration import variant_from_bundle
    from exporter import bundle_from_checkpoint
    from runtime import Bundle

    target = folder / "bundle"
    if not (target / "manifest.json").is_file():
        say(f"exporting {source} with edgeport ...")
        bundle_from_checkpoint(source, target, task="text-generation", progress=say)
    made = Bundle.load(target).variants
    if "int4" not in made:
        say("int4 variant (block 32, accuracy level 4) ...")
        variant_from_bundle(target, "int4", name="int4", block_size=32, accuracy_level=4)
    if "llm32" not in made:
        say("llm variants (GroupQueryAttention: fp32, and int4 at block 32, accuracy level 4) ...")
        variant_from_bundle(target, "llm", name="llm32", precision="fp32", progress=say)
        variant_from_bundle(target, "int4", name="llm", source="llm32", block_size=32,
                            accuracy_level=4)
    return target


def genai_models(folder: Path, source: Path) -> dict[str, Path]:
    """onnxruntime-genai's builds, or {} when it is not installed."""
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError:
        say("onnxruntime-genai is not installed: its rows are left out "
            "(pip install --no-deps onnxruntime-genai==0.11.2)")
        return {}
    built = {}
    for precision in ("fp32", "int4"):
        target = folder / f"genai-{precision}"
        if not (target / "genai_config.json").is_file():
            say(f"building onnxruntime-genai {precision} ...")
            done = subprocess.run(
                [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(source),
                 "-o", str(target), "-p", precision, "-e", "cpu", "-c",
                 str(folder / "genai-cache")], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"onnxruntime-genai's builder failed:\n{done.stderr[-3000:]}")
        built[precision] = target
    return built


# --- one engine, in its own process --------------------------------------------------------------

def _prompt(length: int, vocab: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, min(vocab, 600), size=(1, length),
                                             dtype=np.int64)


def _edgeport(path: Path, variant: str, threads):
    from runtime import Bundle
    from runtime.generation import (
        OnnxGenerationModel,
        model_generation_config,
        resolve_generation_config,
        run,
    )

    loaded = Bundle.load(path)
    model = OnnxGenerationModel.from_bundle(loaded, variant, threads=threads)
    defaults = model_generation_config(loaded.read_json("generation_config.json"), loaded.config)

    def generate(ids, count):
        config = resolve_generation_config(defaults, max_new_tokens=count,
                                           min_new_tokens=count, do_sample=False)
        first = []
        start = time.perf_counter()
        output = run(model, ids, np.ones_like(ids), config,
                     on_tokens=lambda tokens: first or first.append(time.perf_counter()))
        return start, first[0], time.perf_counter(), output.sequences[0, ids.shape[1]:]

    return generate


def _transformers(path: Path, threads):
    import torch
    import transformers
    from transformers.generation import BaseStreamer

    if threads:
        torch.set_num_threads(threads)
    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()

    class FirstToken(BaseStreamer):
        def __init__(self):
            self.calls, self.first = 0, None

        def put(self, value):  # the prompt first, then each new token
            self.calls += 1
            if self.calls == 2:
                self.first = time.perf_counter()

        def end(self):
            pass

    def generate(ids, count):
        streamer = FirstToken()
        tensor = torch.from_numpy(ids)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(tensor, attention_mask=torch.ones_like(tensor),
                                 max_new_tokens=count, min_new_tokens=count, do_sample=False,
                                 pad_token_id=0, streamer=streamer)
        return start, streamer.first, time.perf_counter(), out[0, ids.shape[1]:].numpy()

    return generate


def _genai(path: Path):
    import onnxruntime_genai as og

    model = og.Model(str(path))  # its CPU session takes every core, as ONNX Runtime's default

    def generate(ids, count):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=ids.shape[1] + count, min_length=ids.shape[1]
                                  + count, do_sample=False, batch_size=1)
        start = time.perf_counter()
        generator = og.Generator(model, params)
        generator.append_tokens(ids.astype(np.int32))
        tokens, first = [], None
        while not generator.is_done() and len(tokens) < count:
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
            first = first or time.perf_counter()
        return start, first, time.perf_counter(), np.array(tokens)

    return generate


def _peak_rss() -> int:
    """This process's peak resident memory, in bytes: VmHWM (getrusage's ru_maxrss would count
    the parent's peak too, which survives the fork and exec of a worker)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(args) -> int:
    """Measure one engine; print its result as JSON on stdout."""
    engine, path = args.worker, Path(args.path)
    kind, precision = engine.split("-", 1)
    if kind == "edgeport":
        generate = _edgeport(path, precision, args.threads)
    elif kind == "transformers":
        generate = _transformers(path, args.threads)
    else:
        generate = _genai(path)
    prompt = _prompt(args.prompt, args.vocab)
    generate(_prompt(8, args.vocab), 4)  # warm-up
    first, decode, tokens = [], [], None
    for _ in range(args.rounds):
        start, first_at, end, tokens = generate(prompt, args.new_tokens)
        first.append(first_at - start)
        decode.append((args.new_tokens - 1) / (end - first_at))
    peak = _peak_rss()
    print(json.dumps({"engine": engine, "ttft_s": statistics.median(first),
                      "decode_tokens_per_s": statistics.median(decode),
                      "peak_rss_bytes": peak, "tokens": [int(t) for t in tokens]}))
    return 0


def measure(engine: str, path: Path, args, vocab: int) -> dict:
    command = [sys.executable, __file__, "--worker", engine, "--path", str(path),
               "--prompt", str(args.prompt), "--new-tokens", str(args.new_tokens),
               "--rounds", str(args.rounds), "--vocab", str(vocab)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if done.returncode:
        raise RuntimeError(f"{engine} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the run -----------------------------------------------------------------------------------

def table(name: str, results: list[dict], args) -> str:
    base = next(r for r in results if r["engine"] == "transformers-fp32")
    lines = [f"### {name}: batch 1, prompt {args.prompt}, {args.new_tokens} new tokens, greedy, "
             f"{args.rounds} rounds (median)", "",
             "| engine | time to first token (s) | decode tokens/s | x transformers | "
             "peak RSS (GB) | tokens as transformers |", "|---|---|---|---|---|---|"]
    for r in results:
        same = sum(a == b for a, b in zip(r["tokens"], base["tokens"]))
        lines.append(f"| {r['engine']} | {r['ttft_s']:.3f} | {r['decode_tokens_per_s']:.1f} | "
                     f"{r['decode_tokens_per_s'] / base['decode_tokens_per_s']:.2f} | "
                     f"{r['peak_rss_bytes'] / 2**30:.2f} | {same}/{len(base['tokens'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--vocab", type=int, default=600, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.out is None:
        parser.error("give OUT_DIR")
    args.out.mkdir(parents=True, exist_ok=True)
    sections, results = [], {}
    for name in args.models:
        folder = args.out / name
        folder.mkdir(exist_ok=True)
        source = checkpoint(name, folder, args.tiny)
        exported = bundle(folder, source)
        vocab = json.loads((source / "config.json").read_text())["vocab_size"]
        paths = {"transformers-fp32": source, "edgeport-fp32": exported,
                 "edgeport-int4": exported,
                 "edgeport-llm32": exported, "edgeport-llm": exported,
                 **{f"genai-{p}": path for p, path in genai_models(folder, source).items()}}
        rows = []
        for engine in ENGINES:
            if engine in paths:
                say(f"{name}: {engine} ...")
                rows.append(measure(engine, paths[engine], args, vocab))
        results[name] = rows
        sections.append(table(name, rows, args))
        text = "\n\n".join([f"Machine: {_machine(args)}", *sections])
        # written after each model, so that a run stopped later keeps what it measured
        (args.out / "llm.json").write_text(json.dumps(
            {"machine": _machine(args), "results": results}, indent=1))
        (args.out / "llm.md").write_text(text + "\n")
    print(text)
    return 0


def _machine(args) -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    return f"{model}, {os.cpu_count()} cores, threads {args.threads or 'default'}"


if __name__ == "__main__":
    raise SystemExit(main())
