"""``compare`` on generative bundles (text-generation, text2text-generation, summarization,
translation, and speech recognition by Whisper): each variant generates from the same texts (or
recordings) as the reference, and the report says how far their tokens agree; for Whisper the
task metric is the word error rate of the variant's transcripts against the reference's (CER
and token agreement beside it).

Each engine runs the bundle's own pipeline (prompt prefix, tokenizer, generation settings of
generation_config.json and the task), greedy (``do_sample=False, num_beams=1``) with at most
``new_tokens`` new tokens, on one text at a time. Measured per variant, the reference's tokens
taken as the truth:

    token_agreement     tokens before the first divergence, over all tokens (the task metric)
    position_agreement  positions holding the same token, divergence or not
    exact_match         the share of texts generated identically
    bleu                corpus BLEU-4 (with brevity penalty) of the token ids
    first divergence    per text, the step where the variant first picks another token
    first-step logits   numeric errors of the logits of the first step, which every engine
                        computes from the same prompt (later steps depend on earlier picks)
    latency             per generated token: a text's generation time over its new tokens

The reference is the fp32 graphs, or (``reference="pytorch"``) the checkpoint the bundle was
exported from, driven by the same pipeline and search through ``TorchGenerationModel`` (its
latency is for orientation: its threads share the CPU with ONNX Runtime's, which spin for a
while after each run). Per-layer error is measured on the texts whose first-step logits err
most: a decoder-only model's graph on the prompt step; an encoder-decoder's encoder, and each
branch of its merged decoder on the first decoder steps (``compare.add_layers``).

>>> report = compare_variants("gpt2-bundle", variants=["int8"])          # doctest: +SKIP
>>> task = report["variants"]["int8"]["task"]                             # doctest: +SKIP
>>> task["metric"], task["value"], task["bleu"]                           # doctest: +SKIP
('token_agreement', 0.93, 0.91)
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from runtime.bundle import Bundle
from runtime.errors import EngineError, InputError
from runtime.pipeline import pipeline_from_bundle

from . import metrics
from .data import GREEDY, graph_feeds, progress_bar
from .engines import REFERENCE_ENGINE, measured_on
from .layers import add_layers
from .numeric import OutputStats
from .reference import torch_model
from .report import json_ready, report_header, variant_header, versions
from .task_metrics import LISTED_CHANGES

# How many tokens each text generates at most in a comparison: enough for divergence to show,
# few enough that the comparison of many texts stays quick.
NEW_TOKENS = 20
# The decoder steps of an encoder-decoder whose feeds per-layer error is measured on: the first
# (no cache: the merged decoder's no_past branch) and two cached ones (with_past).
LAYER_STEPS = 3
FIRST_STEP = "first-step logits"


class MeasuredModel:
    """A GenerationModel around another that keeps the logits of the first step and the
    prompt's width (the new tokens start after it in a decoder-only model's sequence)."""

    def __init__(self, model):
        self.model = model
        self.is_encoder_decoder = model.is_encoder_decoder
        self.vocab_size = model.vocab_size
        self.first_logits: np.ndarray | None = None
        self.prompt_width = 0

    def begin(self, input_ids, attention_mask):
        self.first_logits = None
        # an encoder feed by name (Whisper's input_features) holds no prompt
        self.prompt_width = 0 if isinstance(input_ids, Mapping) else int(np.shape(input_ids)[1])
        return self.model.begin(input_ids, attention_mask)

    def expand(self, state, rows):
        return self.model.expand(state, rows)

    def next_logits(self, state, sequences):
        logits, state = self.model.next_logits(state, sequences)
        if self.first_logits is None:
            self.first_logits = np.array(logits, dtype=np.float32)
        return logits, state


class TorchGenerationModel:
    """The checkpoint's transformers model as a GenerationModel (the ``pytorch`` reference):
    the whole prompt on the first step, then only the tokens its KV cache does not hold, the
    attention mask and (GPT-2) position ids as transformers' ``generate()`` makes them.

    transformers grows its cache in place. Copying it at every step (so that a state is never
    changed, as the protocol asks) would cost more than the step itself and distort the
    reference's latency; greedy search, which compare runs, never goes back to a state. So the
    cache is shared, and a state whose cache has moved on since is refused (EngineError), never
    silently used. ``expand`` (beam search) copies.

    >>> model = TorchGenerationModel(Bundle.load("gpt2-bundle"))   # doctest: +SKIP
    """

    def __init__(self, bundle: Bundle):
        self.torch, self.model = torch_model(bundle)
        self.is_encoder_decoder = bool(self.model.config.is_encoder_decoder)
        self.vocab_size = self.model.get_output_embeddings().out_features
        self._positions = (not self.is_encoder_decoder and "position_ids" in
                           inspect.signature(self.model.forward).parameters)

    def begin(self, input_ids, attention_mask):
        torch = self.torch
        if isinstance(input_ids, Mapping):  # an encoder feed by name (Whisper's features)
            feed = {name: torch.from_numpy(np.asarray(value)) for name, value in
                    input_ids.items()}
        else:
            feed = {"input_ids": torch.from_numpy(np.asarray(input_ids, dtype=np.int64))}
        mask = (None if attention_mask is None
                else torch.from_numpy(np.asarray(attention_mask, dtype=np.int64)))
        if mask is not None:
            feed["attention_mask"] = mask
        hidden = None
        if self.is_encoder_decoder:
            with torch.inference_mode():
                hidden = self.model.get_encoder()(**feed, return_dict=True).last_hidden_state
        return {"cache": None, "length": 0, "mask": mask, "hidden": hidden}

    def expand(self, state, rows):
        index = self.torch.from_numpy(np.asarray(rows, dtype=np.int64))
        cache = copy.deepcopy(state["cache"])  # the protocol: a state is never changed
        if cache is not None:
            cache.reorder_cache(index)
        hidden, mask = state["hidden"], state["mask"]
        return {"cache": cache, "length": state["length"],
                "mask": None if mask is None else mask.index_select(0, index),
                "hidden": None if hidden is None else hidden.index_select(0, index)}

    def next_logits(self, state, sequences):
        torch = self.torch
        from transformers.modeling_outputs import BaseModelOutput

        sequences = torch.from_numpy(np.asarray(sequences, dtype=np.int64))
        cache, held = state["cache"], state["length"]
        if cache is not None and cache.get_seq_length() != held:
            raise EngineError(
                "A state of the PyTorch reference was used again after the next step: its "
                "cache has moved on. Note: the PyTorch reference serves searches that go "
                "forward only (greedy, as compare runs)."
            )
        new = sequences[:, held:]
        mask = state["mask"]
        inputs = {"past_key_values": cache, "use_cache": True, "return_dict": True}
        if self.is_encoder_decoder:
            inputs.update(decoder_input_ids=new, attention_mask=mask,
                          encoder_outputs=BaseModelOutput(last_hidden_state=state["hidden"]))
        else:
            grow = sequences.shape[1] - mask.shape[1]
            mask = torch.cat([mask, mask.new_ones((len(mask), grow))], dim=-1)
            inputs.update(input_ids=new, attention_mask=mask)
            if self._positions:
                positions = mask.cumsum(-1) - 1
                positions.masked_fill_(mask == 0, 1)
                inputs["position_ids"] = positions[:, -new.shape[1]:]
        with torch.inference_mode():
            outputs = self.model(**inputs)
        logits = outputs.logits[:, -1, :].float().numpy().copy()
        return logits, {**state, "cache": outputs.past_key_values,
                        "length": int(sequences.shape[1]), "mask": mask}


class _Runner:
    """One engine of the comparison: the bundle's pipeline over a MeasuredModel."""

    def __init__(self, bundle: Bundle, variant: str, *, torch: bool = False, **options):
        """``torch``: the checkpoint's PyTorch model generates, through the same pipeline;
        ``options``: where the graphs run (``Bundle.engine``'s backend, device, precision)."""
        self.pipe = pipeline_from_bundle(bundle, variant=variant, **options)
        self.model = MeasuredModel(TorchGenerationModel(bundle) if torch else self.pipe.model)
        self.pipe.model = self.model
        # a multilingual translator (mBART) translates between its tokenizer's saved languages
        self.languages = getattr(self.pipe, "saved_languages", {})

    def generate(self, source, new_tokens: int, runs: int) -> tuple[list[int], np.ndarray,
                                                                     float]:
        """(the new tokens, the first step's logits (vocab,), the fastest run's seconds) of a
        text, or of a signal for speech recognition (Whisper: the tokens after its prompt)."""
        best, tokens, logits = math.inf, None, None
        for _ in range(runs):
            start = time.perf_counter()
            generated = self._generate(source, new_tokens)
            best = min(best, time.perf_counter() - start)
            if tokens is None:
                tokens, logits = generated, self.model.first_logits[0]
        return tokens, logits, best

    def _generate(self, source, new_tokens: int) -> list[int]:
        if isinstance(source, np.ndarray):  # the speech recognition pipeline's own tokens
            features = self.pipe.features([source])["input_features"]
            return self.pipe.generate_tokens(features, max_new_tokens=new_tokens, num_beams=1)
        if not isinstance(source, str):  # image-to-text: an image (or an image and a question)
            return self.pipe.generate_tokens(source, max_new_tokens=new_tokens, **GREEDY)
        try:
            result = self.pipe(source, max_new_tokens=new_tokens, return_tensors=True,
                               **GREEDY, **self.languages)
        except InputError as error:
            raise InputError(f"Cannot generate from the text {source[:60]!r}: {error}") \
                from None
        sequence = next(v for k, v in result[0].items() if k.endswith("_token_ids"))
        # decoder-only: the prompt, then the new tokens; encoder-decoder: the decoder start
        # token, then the new tokens
        start_at = 1 if self.model.is_encoder_decoder else self.model.prompt_width
        return [int(t) for t in np.asarray(sequence)[start_at:]]


def compare_generation(bundle: Bundle, loaded, source: str, *, chosen: Sequence[str],
                       reference: str, seed: int, progress: bool, layers: bool, runs: int,
                       layer_samples: int, top: int, new_tokens: int,
                       options: Mapping | None = None) -> dict:
    """The report of ``compare_variants`` for a generative bundle (see the module docstring);
    ``loaded`` holds the texts, or the signals of a speech recognition bundle
    (``calibration.data.Samples``); ``options``: where the variants run (the reference runs on
    ONNX Runtime's CPU, or PyTorch), ``engines.engine_options``."""

    options = dict(REFERENCE_ENGINE if options is None else options)
    texts, sources = list(loaded.inputs), loaded.sources()  # names (files) and what is run
    speech = loaded.signals is not None  # Whisper: measured by its transcripts' WER
    # image-to-text: the texts' CER; document questions: the share of answers kept
    reading = getattr(loaded, "images", None) is not None
    answering = reading and bundle.task == "document-question-answering"
    decoder_only = bundle.manifest.get("family") == "decoder"
    runners = {None: _Runner(bundle, "fp32", torch=reference == "pytorch")}
    runners.update({name: _Runner(bundle, name, **options) for name in chosen})
    for runner in runners.values():
        runner.generate(sources[0], 2, 1)  # warm-up: first runs allocate and pick kernels
    tokens: dict = {name: [] for name in runners}
    seconds: dict = {name: [] for name in runners}
    counts: dict = {name: [] for name in runners}
    stats = {name: OutputStats() for name in chosen}
    sample_error = np.zeros(len(texts))
    for index, text in enumerate(progress_bar(sources, len(sources), f"generating with "
                                           f"{len(runners)} engines", progress)):
        expected, first, elapsed = runners[None].generate(text, new_tokens, runs)
        tokens[None].append(expected)
        seconds[None].append(elapsed / max(len(expected), 1))
        counts[None].append(len(expected))
        for name in chosen:
            got, logits, elapsed = runners[name].generate(text, new_tokens, runs)
            tokens[name].append(got)
            seconds[name].append(elapsed / max(len(got), 1))
            counts[name].append(len(got))
            if logits.shape != first.shape:
                raise EngineError(
                    f"The variant {name!r} gives logits of width {logits.shape[-1]}, the "
                    f"reference {first.shape[-1]}. Note: make the variant again."
                )
            stats[name].add(first, logits)
            error = metrics.relative_error(first, logits)
            sample_error[index] = max(sample_error[index], error if math.isfinite(error)
                                      else math.inf)

    tokenizer = runners[None].pipe.tokenizer
    reference_latency = metrics.latency_summary(seconds[None])
    report = report_header(bundle, reference, reference_latency)
    report["reference"]["new_tokens"] = int(np.sum(counts[None]))
    report.update({
        "data": {"source": source, "samples": len(texts), "seed": seed},
        "task_metric": ("wer" if speech else "answer_accuracy" if answering
                        else "cer" if reading else "token_agreement"),
        "timing": {"runs_per_sample": runs, "warmup_runs": 1, "batch": 1,
                   "unit": "ms per generated token"},
        "generation": {"search": "greedy", "max_new_tokens": new_tokens},
        "measured_on": {"precision": None, **options},
        "variants": {},
        "versions": versions(options["backend"]),
    })
    def transcript(ids) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True)

    heard = [transcript(ids) for ids in tokens[None]] if speech or reading else None
    pipe = runners[None].pipe

    def answers(name) -> list:
        return [pipe.answer_of(question, ids) for (_, question), ids in zip(sources,
                                                                             tokens[name])]
    for name in chosen:
        latency = metrics.latency_summary(seconds[name])
        output = stats[name].summary()
        agreement = metrics.token_agreement(tokens[None], tokens[name])
        overlap = metrics.bleu(tokens[None], tokens[name])
        divergences = agreement["first_divergence"]
        changed = [i for i, where in enumerate(divergences) if where is not None]
        changes = [{"sample": i, "input": _short(texts[i]), "step": divergences[i],
                    "reference": _short(transcript(tokens[None][i])),
                    "variant": _short(transcript(tokens[name][i]))}
                   for i in changed[:LISTED_CHANGES]]
        steps = [divergences[i] for i in changed]
        task = {"metric": "token_agreement", "value": agreement["prefix"]}
        if speech:  # the transcripts' word and character error rates lead
            rates = metrics.error_rates(heard, [transcript(ids) for ids in tokens[name]])
            task = {"metric": "wer", "value": rates["wer"], "cer": rates["cer"],
                    "words": rates["words"], "token_agreement": agreement["prefix"]}
        elif answering:  # the answers the pipeline reads, the reference's taken as the truth
            kept = [a == b for a, b in zip(answers(None), answers(name))]
            task = {"metric": "answer_accuracy", "value": float(np.mean(kept)),
                    "token_agreement": agreement["prefix"]}
        elif reading:  # the texts' character (and word) error rates, as for OCR
            rates = metrics.error_rates(heard, [transcript(ids) for ids in tokens[name]])
            task = {"metric": "cer", "value": rates["cer"], "wer": rates["wer"],
                    "words": rates["words"], "token_agreement": agreement["prefix"]}
        report["variants"][name] = {
            **variant_header(bundle, name, latency, reference_latency),
            "task": {
                **task,
                "position_agreement": agreement["position"],
                "exact_match": agreement["exact_match"],
                "bleu": overlap["bleu"], "bleu_precisions": overlap["precisions"],
                "brevity_penalty": overlap["brevity_penalty"],
                "first_divergence_median": float(np.median(steps)) if steps else None,
                "first_divergence": divergences,
                "tokens": agreement["tokens"], "new_tokens": int(np.sum(counts[name])),
                "flips": changed, "changes": changes, "count": agreement["count"],
            },
            "cosine": output["cosine_mean"],
            "sqnr_db": output["sqnr_db"],
            "outputs": {FIRST_STEP: output},
            "measured_on": measured_on(runners[name].pipe.engine, options),
            "layers": None,
        }
    if layers:
        # Per-layer error on the texts whose first-step logits err most, each graph fed what
        # the fp32 graphs give it while generating: a decoder-only model's prompt step (the
        # graph with an empty cache); an encoder-decoder's encoder, and its decoder's first
        # LAYER_STEPS steps (the merged decoder's branch without and with the cache).
        worst = sorted(np.argsort(-sample_error, kind="stable")[:layer_samples].tolist())
        feeds = graph_feeds(bundle, [sources[i] for i in worst],
                            new_tokens=1 if decoder_only else LAYER_STEPS)
        add_layers(bundle, report, chosen, feeds, top, progress)
        for name in chosen:
            if report["variants"][name]["layers"]:
                report["variants"][name]["layers"]["sample_indices"] = worst
                report["variants"][name]["layers"]["backend"] = "onnxruntime"
    return json_ready(report)


def _short(text: str) -> str:
    """A text for a report's table: line breaks and tabs shown as escapes, at most 100
    characters."""
    text = str(text).replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return text if len(text) <= 100 else text[:97] + "..."
