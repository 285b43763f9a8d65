"""``compare_variants``: run a bundle's variants and a reference on data, and measure how far
apart they are: numeric metrics per output, the task metric a user would notice, latency, size,
and the layers where the error enters.

>>> report = compare_variants(Bundle.load("bundle"), "sentences.txt")     # doctest: +SKIP
>>> report["variants"]["int8"]["task"]["value"]                            # doctest: +SKIP
0.98

Task metrics, each against the reference's own result as the truth: top-1 agreement
(text and image classification, fill-mask, zero-shot image classification over its candidate
labels), entity F1, answer-span F1, the minimum embedding cosine, mAP@0.5 of boxes
(object detection), mIoU of label maps (image segmentation), AbsRel of depth maps (depth
estimation, with RMSE and delta1 beside it), and the word error rate of transcripts (speech
recognition, CER beside it; lower is better for these three), top-1 agreement again for audio
classification.

Text bundles have built-in samples; image and audio bundles need ``data`` (a folder of image
or audio files): none are built in, and random noise is not what a model sees.

The reference is the fp32 graph (``reference="fp32"``) or the PyTorch checkpoint the bundle was
exported from (``reference="pytorch"``, needs the export extra). The reference always runs where
its numbers are exact: fp32 on ONNX Runtime's CPU (or PyTorch). The variants run where they will
be deployed: ``backend`` (onnxruntime, openvino, tensorrt), ``device`` and, on OpenVINO, a
``precision`` hint (f32, bf16, f16; None: what OpenVINO picks for the device, bf16 on a CPU that
has it), so that the accuracy and latency reported are those of what actually runs; each
variant's ``measured_on`` says where it ran and at which precision (for OpenVINO the one it
really ran at). Off the reference's engine the fp32 variant can be measured too ("fp32 at
bf16": what the precision alone costs). Every engine sees the same
batch-1 feeds, made by the bundle's own runtime preprocessing (``calibration.data``); on each
sample the reference and the variants run in turn, so that only one sample's outputs are held at
a time and every engine is timed under the same conditions.

The concerns live beside it: ``reference`` (PyTorch), ``task_metrics``, ``numeric``, ``layers``,
``compare_generation`` for generative bundles, ``perplexity`` for decoder-only ones (on a
text file); the report's parts in ``report``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from numbers import Integral
from pathlib import Path

import numpy as np

from runtime.backends.engine import Engine
from runtime.bundle import Bundle
from runtime.errors import (
    InputError,
    TaskError,
    did_you_mean,
)
from runtime.text.tokenizer import TextTokenizer

from . import metrics
from .compare_generation import NEW_TOKENS, compare_generation
from .data import Samples, is_generative, load_samples, progress_bar
from .engines import (
    REFERENCE_ENGINE,
    check_runs_on,
    engine_options,
    measured_on,
    runnable,
)
from .layers import LAYER_SAMPLES, TOP_LAYERS, add_layers
from .numeric import OutputStats, real_part, token_outputs
from .perplexity import perplexity_section, perplexity_text, text_from_file
from .reference import REFERENCES, TorchEngine
from .report import json_ready, report_header, variant_header, versions
from .task_metrics import SCORERS
from .variants import record_accuracy

GENERATION_TASKS = ("text-generation", "text2text-generation", "summarization", "translation")


# --- built-in data ------------------------------------------------------------------------------
# Varied on purpose: short and long, questions, numbers, names and places (for entities),
# punctuation, other scripts, emoji, negations. Used when no data file is given.
BUILTIN_TEXTS = (
    "I love this phone, the battery lasts for days.",
    "This was the worst meal I have had in years.",
    "The film was fine, nothing special.",
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday.",
    "Apple opened a new office in Munich, Germany.",
    "The package arrived two days late and the box was crushed.",
    "Can you tell me how to reset my password?",
    "Stocks fell 3.2% after the central bank raised rates to 5.25%.",
    "Barack Obama was born in Honolulu, Hawaii, in 1961.",
    "I'm not sure whether I like it or not.",
    "Absolutely fantastic service!!! Will come back :)",
    "The Amazon river flows through Brazil, Peru and Colombia.",
    "Meh.",
    "Microsoft and OpenAI announced a partnership in San Francisco.",
    "The quick brown fox jumps over the lazy dog.",
    "Please don't call me after 9 pm, I'm usually asleep by then.",
    "Le service était lent mais la nourriture était excellente.",
    "Das Hotel war sauber und das Personal sehr freundlich.",
    "東京は日本の首都です。",
    "Emoji are tokens too 🤖🚀",
    "Dr. Jane Smith works at the Mayo Clinic in Rochester, Minnesota.",
    "The meeting is on 2026-11-21 at 14:30 in room B-204.",
    "Not bad at all, though the sequel was better.",
    "She said the update broke her laptop's Wi-Fi driver again.",
    "The United Nations held its summit in Geneva last week.",
    "Tokenization splits unbelievably long words into pieces.",
    "Why does my code crash when the list is empty?",
    "The concert in Madrid was cancelled because of the storm.",
    "I would not recommend this product to anyone.",
    "Manchester United beat Liverpool 2-1 at Old Trafford.",
    "The recipe calls for 200 g of flour, 2 eggs and a pinch of salt.",
    "Great value for the money, but shipping took forever.",
    "NASA's rover landed near the Jezero crater on Mars.",
    "The instructions were confusing and the app kept freezing.",
    "Thank you so much for your help yesterday!",
    "In 1492, Columbus sailed across the Atlantic from Spain.",
    "The battery died after an hour. Terrible.",
    "Our team in Toronto ships the new release next Monday.",
    "It's okay, I guess, if you like that sort of thing.",
    "A long sentence that goes on and on about nothing in particular, adding clause after "
    "clause, comma after comma, until the reader wonders whether it will ever end at all.",
)
BUILTIN_QUESTIONS = (
    ("Where was Barack Obama born?", "Barack Obama was born in Honolulu, Hawaii, in 1961. He "
     "later studied at Columbia University and Harvard Law School."),
    ("When did Columbus cross the Atlantic?", "In 1492, Columbus sailed across the Atlantic "
     "from Spain with three ships."),
    ("Who met Emmanuel Macron?", "Angela Merkel met Emmanuel Macron in Berlin on Tuesday to "
     "discuss trade."),
    ("What did the central bank do?", "Stocks fell 3.2% after the central bank raised rates to "
     "5.25%, the highest level in two decades."),
    ("Where is the Jezero crater?", "NASA's rover landed near the Jezero crater on Mars in "
     "February 2021 after a seven-month journey."),
    ("How much flour does the recipe need?", "The recipe calls for 200 g of flour, 2 eggs and "
     "a pinch of salt. Bake it for 25 minutes."),
    ("Which river flows through Peru?", "The Amazon river flows through Brazil, Peru and "
     "Colombia before it reaches the Atlantic Ocean."),
    ("Who won the match?", "Manchester United beat Liverpool 2-1 at Old Trafford on Sunday "
     "afternoon."),
    ("Where does Jane Smith work?", "Dr. Jane Smith works at the Mayo Clinic in Rochester, "
     "Minnesota, where she leads the cardiology group."),
    ("Why was the concert cancelled?", "The concert in Madrid was cancelled because of the "
     "storm, and tickets will be refunded."),
    ("When is the meeting?", "The meeting is on 2026-11-21 at 14:30 in room B-204; bring your "
     "laptop."),
    ("What is the capital of Japan?", "Tokyo is the capital of Japan and its largest city, "
     "with about 14 million people."),
    ("Who announced a partnership?", "Microsoft and OpenAI announced a partnership in San "
     "Francisco that will run for ten years."),
    ("Where did the summit take place?", "The United Nations held its summit in Geneva last "
     "week; more than 100 countries attended."),
    ("When does the team ship the release?", "Our team in Toronto ships the new release next "
     "Monday, after the final tests pass."),
    ("What broke her Wi-Fi?", "She said the update broke her laptop's Wi-Fi driver again, so "
     "she rolled it back."),
)
# Fill-mask sentences: "{mask}" becomes the tokenizer's mask token.
BUILTIN_MASKED = (
    "The capital of France is {mask}.",
    "I {mask} this phone, the battery lasts for days.",
    "The quick brown {mask} jumps over the lazy dog.",
    "She drinks a cup of {mask} every morning.",
    "The meeting was moved to {mask} afternoon.",
    "He plays the {mask} in a jazz band.",
    "Water boils at 100 degrees {mask}.",
    "The {mask} was delicious and the service was friendly.",
    "My favourite colour is {mask}.",
    "They travelled to Italy by {mask}.",
    "The doctor told him to get more {mask}.",
    "Paris is a city in {mask}.",
    "I forgot my {mask} at home again.",
    "The children played in the {mask} all day.",
    "This is the best {mask} I have ever read.",
    "The weather today is {mask} and windy.",
)


def builtin_rows(bundle: Bundle) -> list:
    """The built-in samples for the bundle's task: texts, question/context dicts, or masked
    texts (with the bundle's own mask token) for fill-mask.

    Image bundles have none: an InputError says to pass a folder of images.

    >>> rows = builtin_rows(Bundle.load("qa-bundle"))            # doctest: +SKIP
    >>> sorted(rows[0])                                           # doctest: +SKIP
    ['context', 'question']
    """
    modality = bundle.manifest.get("modality", "text")
    if modality != "text":
        kind = "audio" if modality == "audio" else "image"
        examples = ("recordings" if kind == "audio" else "photos")
        raise InputError(
            f"compare has no built-in samples for {bundle.task} bundles (they read "
            f"{modality.replace('text-image', 'images')}). Note: pass --data "
            f"FOLDER_OF_{kind.upper()}_FILES (data= in Python): a folder of {kind} files like "
            f"those the model will see, e.g. 50 to 100 {examples}; an .npz of input arrays "
            "works too."
        )
    if bundle.task == "question-answering":
        return [{"question": q, "context": c} for q, c in BUILTIN_QUESTIONS]
    if bundle.task == "fill-mask":
        mask = TextTokenizer.from_dir(bundle.path).mask_token
        if mask is None:
            raise InputError(
                f"The fill-mask bundle {bundle.path} has no mask token in its tokenizer, so the "
                "built-in masked sentences cannot be made. Note: pass --data with your own texts."
            )
        return [{"text": text.format(mask=mask)} for text in BUILTIN_MASKED]
    return [{"text": text} for text in BUILTIN_TEXTS]


def _load_data(bundle: Bundle, data, samples: int, seed: int, progress: bool
               ) -> tuple[Samples, str]:
    if data is not None:
        return load_samples(bundle, data, samples=samples, seed=seed, progress=progress), str(data)
    # The built-in rows go through load_samples too, so they are preprocessed exactly as a
    # user's file would be.
    with tempfile.TemporaryDirectory(prefix="edgeport-compare-") as directory:
        path = Path(directory) / "builtin.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in builtin_rows(bundle)),
                        encoding="utf-8")
        return load_samples(bundle, path, samples=samples, seed=seed, progress=progress), \
            "built-in"


# --- the comparison -----------------------------------------------------------------------------
def _positive_int(value, name: str, note: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}. Note: {note}")
    return int(value)


def _choose_variants(bundle: Bundle, variants, reference: str, options: Mapping | None = None
                     ) -> tuple[list[str], dict[str, str]]:
    """The variants to run on ``options``' engine, and those left out of the default list
    because that backend refuses them (name -> why). fp32 is a variant to run (and one of the
    default ones) when the variants run elsewhere than the reference: on another backend or
    device, or at a precision hint."""
    options = REFERENCE_ENGINE if options is None else options
    itself = reference == "fp32" and dict(options) == REFERENCE_ENGINE
    skipped: dict[str, str] = {}
    if variants is None:
        chosen, skipped = runnable(bundle, options, [name for name in bundle.variants
                                                     if not (name == "fp32" and itself)])
    else:
        if isinstance(variants, str):
            variants = [variants]
        if not variants:
            raise InputError(
                "The list of variants to compare is empty. Note: name at least one, or leave "
                f"it out to compare all of {', '.join(bundle.variants)}."
            )
        chosen = []
        for name in variants:
            if name not in bundle.variants:
                raise InputError(f"The bundle {bundle.path} has no variant {name!r}. "
                                 + did_you_mean(name, bundle.variants))
            if name == "fp32" and itself:
                raise InputError(
                    "fp32 is the reference; comparing it with itself measures nothing. Note: "
                    "leave fp32 out of the variants, use --reference pytorch, or measure fp32 "
                    "on another backend or precision (--backend openvino --precision bf16)."
                )
            check_runs_on(bundle, options, variant=name)  # before any data is read
            if name not in chosen:
                chosen.append(name)
    if not chosen:
        raise InputError(
            f"The bundle {bundle.path} has no variants to compare: it holds only "
            f"{', '.join(bundle.variants)}. Note: make one with `edgeport quantize BUNDLE "
            "--recipe RECIPE`, compare fp32 with PyTorch (--reference pytorch), or measure fp32 "
            "on another backend or precision (--backend openvino --precision bf16)."
        )
    return chosen, skipped


def compare_variants(
    bundle: Bundle | str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    variants: Sequence[str] | None = None,
    reference: str = "fp32",
    samples: int = 100,
    seed: int = 0,
    progress: bool = False,
    layers: bool = True,
    runs: int = 1,
    layer_samples: int = LAYER_SAMPLES,
    top: int = TOP_LAYERS,
    new_tokens: int | None = None,
    perplexity: str | os.PathLike | None = None,
    perplexity_window: int | None = None,
    perplexity_stride: int | None = None,
    backend: str = "onnxruntime",
    device: str = "cpu",
    precision: str | None = None,
) -> dict:
    """Run the reference and each variant on the data; return the report (JSON-ready).

    ``data`` is a file or folder for ``calibration.data.load_samples`` (None: the built-in
    samples of text bundles; image bundles need a folder of images); ``samples`` and ``seed``
    pick a seeded subset. ``variants`` defaults to every variant but the reference. Each sample
    is timed ``runs`` times per engine (its fastest run counts), after one warm-up run per
    engine. ``layers`` measures, for each variant, where its error enters (``top`` nodes), on
    the ``layer_samples`` samples where the variants' outputs err most. Nothing is written:
    see ``calibration.report.write_reports`` and ``record_summaries``.

    Generative bundles (text-generation, text2text-generation, summarization, translation)
    generate greedily from each text, at most ``new_tokens`` new tokens (default 20), and are
    measured by token agreement, BLEU and the first divergence (``compare_generation``).
    ``perplexity``, a UTF-8 text file, adds the report's ``perplexity`` section (decoder-only
    bundles): the fp32 graph's, each variant's and (reference "pytorch") PyTorch's perplexity on
    it, over windows of ``perplexity_window`` tokens every ``perplexity_stride``
    (``calibration.perplexity``).

    ``backend``, ``device`` and ``precision`` (OpenVINO's hint: f32, bf16, f16, None for its
    default) say where the variants run and are timed; the reference stays fp32 on ONNX
    Runtime's CPU (or PyTorch), the truth they are measured against. Off that engine, "fp32"
    is a variant like the others (and one of the default ones): fp32 at bf16 on OpenVINO is
    what bf16 alone costs. The default variants leave out those the backend refuses
    (dynamic-int8 on OpenVINO: the report's ``skipped`` says why); one named is refused with
    that reason before anything runs. The per-layer analysis runs each variant's graph on ONNX
    Runtime (it reads every intermediate tensor): it locates the error the graph's
    quantization adds, not the backend's precision (its ``backend`` says so).

    >>> report = compare_variants("bundle", variants=["int8"])     # doctest: +SKIP
    >>> report["variants"]["int8"]["latency_ms"]["median_ms"]       # doctest: +SKIP
    1.9
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    generative = is_generative(bundle)
    if generative:
        new_tokens = _positive_int(NEW_TOKENS if new_tokens is None else new_tokens,
                                   "new_tokens", "each text generates at most this many tokens "
                                   f"(default {NEW_TOKENS}).")
    elif new_tokens is not None:
        raise InputError(
            f"new_tokens (--max-new-tokens) is for generative bundles; {bundle.task} bundles "
            "generate nothing. Note: leave it out."
        )
    if bundle.task not in SCORERS and not generative:
        raise TaskError(
            f"compare does not support {bundle.task!r} bundles yet. Note: it supports "
            f"{', '.join([*SCORERS, *GENERATION_TASKS])}."
        )
    if set(bundle.graphs) != {"model"} and not generative:
        raise InputError(
            f"compare runs single-graph bundles; {bundle.path} has the graphs "
            f"{sorted(bundle.graphs)}. Note: multi-graph (encoder-decoder) bundles come later."
        )
    if reference not in REFERENCES:
        raise InputError(f"Unknown reference {reference!r}. " + did_you_mean(reference, REFERENCES))
    samples = _positive_int(samples, "samples", "compare needs at least one sample (e.g. 100).")
    runs = _positive_int(runs, "runs", "each sample is timed this many times (default 1).")
    layer_samples = _positive_int(layer_samples, "layer_samples", "e.g. 4.")
    top = _positive_int(top, "top", "how many nodes the per-layer list shows (e.g. 20).")
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise InputError(f"seed must be an int, got {seed!r}. Note: the same seed picks the "
                         "same samples.")
    text = None  # checked and tokenized before anything runs
    if perplexity is not None:  # perplexity_text checks the bundle's family first
        text = perplexity_text(bundle, text_from_file(perplexity), window=perplexity_window,
                               stride=perplexity_stride, source=str(perplexity))
    elif perplexity_window is not None or perplexity_stride is not None:
        raise InputError("perplexity_window and perplexity_stride (--window, --stride) shape "
                         "the perplexity measurement. Note: pass a text file with perplexity "
                         "(--perplexity FILE), or leave them out.")
    options = engine_options(backend, device, precision)
    chosen, skipped = _choose_variants(bundle, variants, reference, options)

    loaded, source = _load_data(bundle, data, samples, seed, progress)
    if generative:
        report = compare_generation(bundle, loaded, source, chosen=chosen, reference=reference,
                                    seed=seed, progress=progress, layers=layers, runs=runs,
                                    layer_samples=layer_samples, top=top, new_tokens=new_tokens,
                                    options=options)
        report["skipped"] = skipped
        if text is not None:
            report["perplexity"] = perplexity_section(bundle, text, chosen, reference=reference,
                                                      progress=progress, options=options,
                                                      skipped=skipped)
        return report
    feeds, inputs = loaded.feeds, loaded.inputs
    tokenizer = (TextTokenizer.from_dir(bundle.path)
                 if bundle.manifest.get("modality", "text") in ("text", "text-image") else None)
    scorer = SCORERS[bundle.task](bundle, tokenizer, loaded)

    reference_engine: Engine = (TorchEngine(bundle) if reference == "pytorch"
                                else bundle.engine("model", "fp32"))
    engines = {name: bundle.engine("model", name, **options) for name in chosen}
    output_names = [spec.name for spec in bundle.graph_specs("model")[1]]
    per_token = token_outputs(bundle)

    for engine in [reference_engine, *engines.values()]:
        engine.run(feeds[0])  # warm-up: first runs allocate and pick kernels
    times: dict[str | None, list[float]] = {None: [], **{name: [] for name in chosen}}
    reduced: dict[str | None, list] = {None: [], **{name: [] for name in chosen}}
    stats = {name: {out: OutputStats() for out in output_names} for name in chosen}
    # Per sample, the largest relative output error of any variant: the per-layer analysis
    # runs on the samples where the variants err most, which is where the error is visible.
    sample_error = np.zeros(len(feeds))

    def timed(engine, feed):
        best, result = math.inf, None
        for _ in range(runs):
            start = time.perf_counter()
            result = engine.run(feed)
            best = min(best, time.perf_counter() - start)
        return result, best

    for index, feed in enumerate(progress_bar(feeds, len(feeds), f"comparing {len(chosen)} "
                                                              "variant(s)", progress)):
        expected, seconds = timed(reference_engine, feed)
        times[None].append(seconds)
        reduced[None].append(scorer.reduce(feed, expected))
        mask = feed.get("attention_mask")
        mask = None if mask is None else np.asarray(mask)
        for name, engine in engines.items():
            got, seconds = timed(engine, feed)
            times[name].append(seconds)
            reduced[name].append(scorer.reduce(feed, got))
            for out in output_names:
                where = mask if out in per_token else None
                ref, var = real_part(expected[out], where), real_part(got[out], where)
                stats[name][out].add(ref, var)
                error = metrics.relative_error(ref, var)
                # NaN is the worst error there is; max() and argsort would pass over it
                error = error if math.isfinite(error) else math.inf
                sample_error[index] = max(sample_error[index], error)

    reference_latency = metrics.latency_summary(times[None])
    report = {
        **report_header(bundle, reference, reference_latency),
        "data": {"source": source, "samples": len(feeds), "seed": seed},
        "task_metric": scorer.metric,
        "timing": {"runs_per_sample": runs, "warmup_runs": 1, "batch": 1},
        "measured_on": {**options, "precision": precision},
        "variants": {},
        "skipped": skipped,
        "versions": versions(backend),
    }
    for name in chosen:
        outputs = {out: stats[name][out].summary() for out in output_names}
        latency = metrics.latency_summary(times[name])
        sqnrs = [o["sqnr_db"] for o in outputs.values() if o["sqnr_db"] is not None]
        report["variants"][name] = {
            **variant_header(bundle, name, latency, reference_latency),
            "task": scorer.score(reduced[None], reduced[name], inputs),
            # The worst output's mean cosine; NaN (None in JSON) when any output has NaN,
            # which a plain min() could skip over.
            "cosine": float(np.min([o["cosine_mean"] for o in outputs.values()])),
            # The worst output's SQNR; None when every output is identical to the reference.
            "sqnr_db": min(sqnrs) if sqnrs else None,
            "outputs": outputs,
            "measured_on": measured_on(engines[name], options),
            "layers": None,
        }

    if layers:
        worst = sorted(np.argsort(-sample_error, kind="stable")[:layer_samples].tolist())
        add_layers(bundle, report, chosen, {"model": [feeds[i] for i in worst]}, top,
                    progress)
        for name in chosen:
            if report["variants"][name]["layers"]:
                report["variants"][name]["layers"]["sample_indices"] = worst
                report["variants"][name]["layers"]["backend"] = "onnxruntime"
    return json_ready(report)


def summary_of(report: Mapping, name: str) -> dict:
    """The short accuracy record of one variant that the manifest keeps.

    >>> summary_of(report, "int8")["metric"]                         # doctest: +SKIP
    'top1_agreement'
    """
    variant = report["variants"][name]
    return {
        "reference": report["reference"]["name"],
        "metric": variant["task"]["metric"],
        "value": variant["task"]["value"],
        "cosine": variant["cosine"],
        "latency_ms": variant["latency_ms"]["median_ms"],
        "speedup": variant["speedup"],
        "samples": report["data"]["samples"],
        "data": report["data"]["source"],
        "measured_on": variant.get("measured_on"),
        "report": "reports/accuracy.json",
        "created": report["created"],
    }


def record_summaries(bundle: Bundle, report: Mapping) -> Bundle:
    """Store each compared variant's accuracy summary in the manifest; the reloaded bundle.

    >>> bundle = record_summaries(bundle, report)                   # doctest: +SKIP
    """
    for name in report["variants"]:
        if name not in bundle.variants:
            raise InputError(
                f"The report compares a variant {name!r} that the bundle {bundle.path} no "
                "longer has. Note: run the comparison again."
            )
        bundle = record_accuracy(bundle, name, summary_of(report, name))
    return bundle
