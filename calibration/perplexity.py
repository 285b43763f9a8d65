"""Perplexity of a decoder-only bundle on a text: the fp32 graph, each variant and (with
``reference="pytorch"``) the checkpoint the bundle was exported from, on the same tokens and
windows, so that an int4 or int8 choice is made on a number LLM users know.

The text is tokenized by the bundle's own tokenizer, special tokens as it adds them by default
(Llama's BOS first; GPT-2's none). Perplexity is exp of the mean negative log-likelihood of each
token given the tokens before it, over a sliding window, as in Hugging Face's "Perplexity of
fixed-length models" guide: windows of ``window`` tokens start every ``stride`` tokens, and each
scores only the tokens that are new in it, so every token but the text's first is scored exactly
once, after at least ``window - stride`` tokens of context (all before it, in the first window).

Each window runs in one pass (prefill, empty cache: positions from 0), and the ``logits`` of all
its positions are read; the log-softmax is computed in float64 by numpy for every engine alike,
so that the numbers differ only by what the engines compute.

The variants can run on another backend or precision (``backend="openvino", precision="bf16"``):
then fp32 on ONNX Runtime's CPU is measured too, as ``reference_fp32``, the base every
``ratio_vs_fp32`` divides by, and fp32 on that backend is one of the variants; each variant
records where it ran (``measured_on``), and those the backend refuses (dynamic-int8 on
OpenVINO) are left out of the default list, with the reason, under ``skipped``.

>>> section = perplexity_from_text("llama-bundle", text, window=64)   # doctest: +SKIP
>>> q4 = section["variants"]["q4"]                                    # doctest: +SKIP
>>> round(q4["perplexity"], 2), round(q4["ratio_vs_fp32"], 4)         # doctest: +SKIP
(1102.14, 1.0034)

(a tiny random Llama, which guesses worse than uniformly over its 605 tokens)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

import numpy as np

from runtime.bundle import Bundle
from runtime.errors import InputError, did_you_mean
from runtime.files import read_bytes_file
from runtime.generation.onnx_model import OnnxGenerationModel
from runtime.tasks.base import config_positions
from runtime.tasks.generation import GenerationPipeline
from runtime.text.tokenizer import TextTokenizer

from .data import progress_bar
from .engines import (
    REFERENCE_ENGINE,
    check_runs_on,
    engine_options,
    measured_on,
    runnable,
)
from .reference import REFERENCES, torch_model
from .report import json_ready

# A text beyond this is not a perplexity sample: a few MB measure as well, and far faster.
MAX_TEXT_BYTES = 64 * 2**20
# The window when none is given (the model's positions, where it has fewer).
DEFAULT_WINDOW = 512
# Rows of logits turned into log-probabilities at once: float64 copies of a large vocabulary's
# logits for a whole window would take gigabytes.
_ROWS = 64

Logits = Callable[[np.ndarray], np.ndarray]  # token ids (tokens,) -> logits (tokens, vocab)


@dataclass(frozen=True)
class Window:
    """One pass: the tokens ``[begin, end)`` are fed, and those from ``first`` on are scored
    (each from the logits of the position before it)."""

    begin: int
    end: int
    first: int


@dataclass(frozen=True)
class PerplexityText:
    """A text as measured: its token ids, the windows over them, and where it came from."""

    ids: np.ndarray
    window: int
    stride: int
    windows: tuple[Window, ...]
    source: str | None = None

    @property
    def scored(self) -> int:
        return sum(w.end - w.first for w in self.windows)


def windows_over(tokens: int, window: int, stride: int) -> list[Window]:
    """The sliding windows over ``tokens`` tokens, as the Hugging Face guide makes them; every
    token but the first is scored once.

    >>> windows_over(10, 4, 2)
    [Window(begin=0, end=4, first=1), Window(begin=2, end=6, first=4), \
Window(begin=4, end=8, first=6), Window(begin=6, end=10, first=8)]
    """
    if not 1 <= stride < window:
        raise InputError(
            f"The perplexity stride must be from 1 to the window less one ({window - 1}), got "
            f"{stride}. Note: each window scores its last `stride` tokens after `window - "
            "stride` tokens of context; the default stride is half the window."
        )
    spans, previous = [], 0
    for begin in range(0, tokens, stride):
        end = min(begin + window, tokens)
        spans.append(Window(begin, end, max(previous, 1)))
        previous = end
        if end == tokens:
            break
    return spans


def text_from_file(path: str | os.PathLike) -> str:
    """The UTF-8 text of a file to measure perplexity on; a clear InputError for a missing,
    empty, binary, non-UTF-8 or over-large (``MAX_TEXT_BYTES``) file."""
    path = Path(path)
    what = "The perplexity text file"
    try:
        size = path.stat().st_size if path.is_file() else None
    except OSError:
        size = None
    if size is not None and size > MAX_TEXT_BYTES:
        raise InputError(
            f"{what} {path} is {size:,} bytes, over the limit of {MAX_TEXT_BYTES:,} "
            f"({MAX_TEXT_BYTES // 2**20} MB). Note: a few MB of text measure perplexity as well; "
            "pass a part of it (e.g. `head -n 20000 FILE > part.txt`)."
        )
    data = read_bytes_file(path, what, error=InputError, max_bytes=MAX_TEXT_BYTES,
                           missing=InputError)
    nul = data.find(b"\0")
    if nul >= 0:
        raise InputError(
            f"{what} {path} holds NUL bytes (the first at byte {nul}): it is a binary file, "
            "not text. Note: pass a UTF-8 text file, e.g. a few pages of what the model will "
            "read."
        )
    try:
        text = data.decode("utf-8-sig")  # a BOM, where an editor wrote one, is not text
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{what} {path} is not UTF-8 text (byte {exc.start}: {exc.reason}). Note: convert "
            "it, e.g. `iconv -f LATIN1 -t UTF-8 FILE > text.txt`."
        ) from None
    if not text.strip():
        raise InputError(f"{what} {path} is empty{' (only whitespace)' if text else ''}. "
                         "Note: pass a file holding the text to measure perplexity on.")
    return text


def check_decoder(bundle: Bundle) -> None:
    """An InputError unless the bundle holds a decoder-only model (family "decoder")."""
    family = bundle.manifest.get("family")
    if family != "decoder":
        raise InputError(
            f"Perplexity is measured on decoder-only models; {bundle.path} holds a {bundle.task} "
            f"model of family {family!r}. Note: use a text-generation bundle (GPT-2, Llama, "
            "Qwen2, ...)."
        )


def perplexity_text(bundle: Bundle, text: str, *, window: int | None = None,
                    stride: int | None = None, source: str | None = None) -> PerplexityText:
    """``text`` tokenized by the bundle's tokenizer, and the windows over it; the checks of
    the bundle's family, of ``window`` and ``stride`` (see ``perplexity_from_text``)."""
    check_decoder(bundle)
    if not isinstance(text, str):
        raise InputError(f"The text to measure perplexity on must be a str, got "
                         f"{type(text).__name__}. Note: read a file with text_from_file.")
    positions, key = config_positions(bundle.config, GenerationPipeline.POSITION_KEYS)
    if window is None:
        window = min(DEFAULT_WINDOW, positions or DEFAULT_WINDOW)
    elif isinstance(window, bool) or not isinstance(window, Integral) or window < 2:
        raise InputError(f"The perplexity window must be an int of at least 2 tokens, got "
                         f"{window!r}. Note: the default is {DEFAULT_WINDOW}, or the model's "
                         "positions where it has fewer.")
    elif positions is not None and window > positions:
        raise InputError(
            f"The perplexity window of {window} tokens is longer than the model's {positions} "
            f"positions (config.json's {key}). Note: pass a window of at most {positions}."
        )
    window = int(window)
    if stride is None:
        stride = window // 2
    elif isinstance(stride, bool) or not isinstance(stride, Integral):
        raise InputError(f"The perplexity stride must be an int, got {stride!r}. Note: the "
                         "default is half the window.")
    stride = int(stride)
    windows_over(window, window, stride)  # checks the stride before the text is tokenized
    if not text.strip():
        raise InputError("The text to measure perplexity on is empty. Note: pass some text.")
    encoding = TextTokenizer.from_dir(bundle.path).encode_batch([text])[0]
    ids = np.asarray(encoding.ids, dtype=np.int64)
    if len(ids) < 2:
        raise InputError(
            f"The text tokenizes to {len(ids)} token(s); perplexity scores each token after the "
            "first, so it needs at least 2. Note: pass a longer text."
        )
    return PerplexityText(ids, window, stride, tuple(windows_over(len(ids), window, stride)),
                          source)


def nll_of_window(logits: np.ndarray, ids: np.ndarray, span: Window) -> np.ndarray:
    """The negative log-likelihood (float64, nats) of each scored token of ``span``, from the
    logits (tokens of the window, vocab) of the window's positions: a stable log-softmax.

    >>> nll_of_window(np.zeros((3, 4), np.float32), np.array([0, 1, 2]), Window(0, 3, 1))
    array([1.38629436, 1.38629436])
    """
    logits = np.asarray(logits)
    expected = (span.end - span.begin, logits.shape[-1] if logits.ndim else 0)
    if logits.ndim != 2 or logits.shape[0] != expected[0]:
        raise InputError(f"The logits of a window of {expected[0]} tokens have shape "
                         f"{logits.shape}; expected (tokens, vocab). Note: the graph's logits "
                         "output must be (batch, sequence, vocab).")
    targets = ids[span.first:span.end]
    rows = np.arange(span.first - 1, span.end - 1) - span.begin  # the positions before them
    nll = np.empty(len(targets), dtype=np.float64)
    for start in range(0, len(rows), _ROWS):
        part = logits[rows[start:start + _ROWS]].astype(np.float64)
        top = part.max(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN or inf logits give NaN
            log_sum = top[:, 0] + np.log(np.exp(part - top).sum(axis=1))
        picked = part[np.arange(len(part)), targets[start:start + _ROWS]]
        nll[start:start + len(part)] = log_sum - picked
    return nll


def measured(logits_of: Logits, text: PerplexityText, *, description: str = "",
             progress: bool = False) -> dict:
    """Perplexity, mean NLL, tokens scored and windows of one engine (``logits_of``) on the
    text's windows."""
    total, count = 0.0, 0
    for span in progress_bar(text.windows, len(text.windows), description, progress,
                             unit="window"):
        nll = nll_of_window(logits_of(text.ids[span.begin:span.end]), text.ids, span)
        total += float(nll.sum())
        count += len(nll)
    mean = total / count
    with np.errstate(over="ignore"):
        value = float(np.exp(np.float64(mean)))
    return {"perplexity": value, "nll_mean": mean, "tokens": count,
            "windows": len(text.windows)}


def graph_logits(bundle: Bundle, variant: str, **options) -> Logits:
    """The logits of every position of a window from the bundle's decoder graph in ``variant``
    (on ``options``' engine: ``Bundle.engine``'s backend, device, precision; default ONNX
    Runtime's CPU), fed in one pass with an empty cache. The callable's ``engine`` is the
    decoder's engine (``measured_on`` reads it)."""
    model = OnnxGenerationModel.from_bundle(bundle, variant, **options)
    names = {spec.name for spec in model.decoder.inputs}

    def logits_of(ids: np.ndarray) -> np.ndarray:
        ids = ids[None, :]
        mask = np.ones_like(ids)
        state = model.begin(ids, mask)  # the empty cache, in the graph's shapes and dtypes
        feed = {"input_ids": ids, "attention_mask": mask,
                "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None, :],
                **state.past}
        logits = model.decoder.run({k: v for k, v in feed.items() if k in names})["logits"]
        return np.asarray(logits)[0]  # OpenVINO's engine returns its own array type

    logits_of.engine = model.decoder
    return logits_of


def torch_logits(bundle: Bundle) -> Logits:
    """The logits of every position of a window from the checkpoint the bundle was exported
    from (transformers, float32); torch is imported here, never at import time."""
    torch, model = torch_model(bundle)

    def logits_of(ids: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = model(input_ids=torch.from_numpy(np.ascontiguousarray(ids[None, :]))).logits
        return logits[0].float().numpy()

    return logits_of


def _ratio(value, base) -> float | None:
    if base is None or not (math.isfinite(value) and math.isfinite(base)) or base == 0:
        return None
    return value / base


def perplexity_section(bundle: Bundle, text: PerplexityText, variants: Sequence[str], *,
                       reference: str = "fp32", progress: bool = False,
                       options: Mapping | None = None, skipped: Mapping | None = None) -> dict:
    """The ``perplexity`` section of a report: the fp32 graph, each of ``variants``, and
    PyTorch where ``reference`` is "pytorch"; each variant's ratios to fp32's and PyTorch's.
    ``options``: the engine the variants run on (``engine_options``'s), when not ONNX Runtime's
    CPU; ``skipped``: variants left out because that backend refuses them (name -> why)."""
    options = dict(REFERENCE_ENGINE if options is None else options)
    elsewhere = options != REFERENCE_ENGINE
    pytorch = None
    if reference == "pytorch":
        pytorch = measured(torch_logits(bundle), text, description="perplexity: pytorch",
                           progress=progress)
    base = None
    if elsewhere:
        base = measured(graph_logits(bundle, "fp32"), text, progress=progress,
                        description="perplexity: fp32 (onnxruntime cpu)")
        names = list(variants)
    else:
        names = ["fp32", *(name for name in variants if name != "fp32")]
    results = {}
    for name in dict.fromkeys(names):
        logits_of = graph_logits(bundle, name, **options)
        results[name] = measured(logits_of, text, description=f"perplexity: {name}",
                                 progress=progress)
        results[name]["measured_on"] = measured_on(logits_of.engine, options)
    fp32 = (base or results["fp32"])["perplexity"]
    for result in [*results.values(), *([base] if base else [])]:
        result["ratio_vs_fp32"] = _ratio(result["perplexity"], fp32)
        result["ratio_vs_pytorch"] = _ratio(result["perplexity"],
                                            pytorch and pytorch["perplexity"])
    return json_ready({
        "source": text.source, "tokens": len(text.ids), "scored": text.scored,
        "window": text.window, "stride": text.stride, "windows": len(text.windows),
        "reference": reference, "pytorch": pytorch, "reference_fp32": base,
        "variants": results, "skipped": dict(skipped or {}),
    })


def perplexity_from_text(
    bundle: Bundle | str | os.PathLike,
    text: str,
    *,
    variants: Sequence[str] | None = None,
    reference: str = "fp32",
    window: int | None = None,
    stride: int | None = None,
    progress: bool = False,
    backend: str = "onnxruntime",
    device: str = "cpu",
    precision: str | None = None,
) -> dict:
    """Perplexity of the bundle's fp32 graph, its variants (``variants``; default: all) and,
    with ``reference="pytorch"``, of the checkpoint it was exported from, on ``text``.

    ``window`` is the tokens each pass sees (default 512, or the model's positions where it has
    fewer); ``stride`` how far windows start apart (default half the window). Returns the
    report's ``perplexity`` section: per engine ``perplexity``, ``nll_mean`` (nats per token),
    ``tokens`` (scored) and ``windows``; per variant ``ratio_vs_fp32`` and ``ratio_vs_pytorch``
    (None without PyTorch). ``backend``, ``device``, ``precision``: where the variants run (see
    the module's docstring; ``precision`` is OpenVINO's hint).

    >>> section = perplexity_from_text("gpt2-bundle", text, reference="pytorch")  # doctest: +SKIP
    >>> pytorch, fp32 = section["pytorch"], section["variants"]["fp32"]  # doctest: +SKIP
    >>> round(pytorch["perplexity"], 3), round(fp32["ratio_vs_pytorch"], 6)  # doctest: +SKIP
    (883.455, 1.0)
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    if reference not in REFERENCES:
        raise InputError(f"Unknown reference {reference!r}. " + did_you_mean(reference, REFERENCES))
    options = engine_options(backend, device, precision)
    skipped: dict[str, str] = {}
    if variants is None:
        variants, skipped = runnable(bundle, options, bundle.variants)
    else:
        variants = [variants] if isinstance(variants, str) else list(variants)
        for name in variants:
            if name not in bundle.variants:
                raise InputError(f"The bundle {bundle.path} has no variant {name!r}. "
                                 + did_you_mean(name, bundle.variants))
            check_runs_on(bundle, options, variant=name)
    measured_text = perplexity_text(bundle, text, window=window, stride=stride)
    return perplexity_section(bundle, measured_text, variants, reference=reference,
                              progress=progress, options=options, skipped=skipped)
