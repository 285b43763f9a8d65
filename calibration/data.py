"""Calibration and comparison data: feeds made from user files by the bundle's own runtime
preprocessing, the exact preprocessing that will run on the device.

One list of feeds (``name -> array``, batch 1 each) serves static quantization, ``compare`` and
(later) TensorRT profile ranges.

>>> feeds = feeds_from_path(Bundle.load("bundle"), "sentences.txt", samples=100)  # doctest: +SKIP
>>> sorted(feeds[0])                                                               # doctest: +SKIP
['attention_mask', 'input_ids', 'token_type_ids']
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.bundle import Bundle
from runtime.errors import InputError

Feed = dict[str, np.ndarray]

_TEXT_SUFFIXES = (".txt", ".text", ".lines")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a")


@dataclass
class Samples:
    """What a data file held: the raw inputs (texts, or question/context dicts) for the task
    metrics of ``compare``, and the feeds made from them for the graphs."""

    inputs: list = field(default_factory=list)
    feeds: list[Feed] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.feeds)


def _progress(items: Iterable, total: int, description: str, enabled: bool) -> Iterator:
    if not enabled:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=description, unit="sample", leave=False)


def _pick(items: list, samples: int | None, seed: int) -> list:
    """A seeded shuffle, then the first ``samples``: the same subset for the same seed."""
    if samples is not None and (not isinstance(samples, int) or samples < 1):
        raise InputError(f"samples must be a positive int, got {samples!r}.")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [items[i] for i in order[:samples]]


def _text_lines(path: Path) -> list[str]:
    lines = [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line.strip()]


def _jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number} is not valid JSON ({exc.msg}).") from None
    return rows


def load_samples(bundle: Bundle, path: str | os.PathLike, *, samples: int | None = None,
                 seed: int = 0, progress: bool = False) -> Samples:
    """Read ``path`` (a text file of lines, JSON lines, an ``.npz``, or a folder of files) and
    make feeds with the bundle's runtime preprocessing."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"No calibration data at {path}: it does not exist.")
    if path.suffix == ".npz":
        return _npz_samples(bundle, path, samples, seed)
    if path.is_dir():
        return _folder_samples(bundle, path, samples, seed, progress)
    if path.suffix in _JSONL_SUFFIXES:
        rows = _pick(_jsonl(path), samples, seed)
        if not rows:
            raise InputError(f"{path} holds no JSON lines. Note: one JSON object per line.")
        return _text_samples(bundle, rows, progress)
    if path.suffix in _TEXT_SUFFIXES or path.suffix == "":
        lines = _pick(_text_lines(path), samples, seed)
        if not lines:
            raise InputError(f"{path} holds no text lines. Note: one text per line.")
        return _text_samples(bundle, lines, progress)
    raise InputError(
        f"Cannot read calibration data from {path.name}. Note: give a text file of lines "
        f"({', '.join(_TEXT_SUFFIXES)}), JSON lines ({', '.join(_JSONL_SUFFIXES)}), an .npz of "
        "arrays named as the graph's inputs, or a folder of images or audio files."
    )


def feeds_from_path(bundle: Bundle, path: str | os.PathLike, **options) -> list[Feed]:
    """Just the feeds of ``load_samples``: for static quantization."""
    return load_samples(bundle, path, **options).feeds


def _modality(bundle: Bundle) -> str:
    return bundle.manifest.get("modality", "text")


def _folder_samples(bundle, path, samples, seed, progress) -> Samples:
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(f"The calibration folder {path} is empty. Note: put sample files in it.")
    kinds = {"image" if p.suffix.lower() in _IMAGE_SUFFIXES
             else "audio" if p.suffix.lower() in _AUDIO_SUFFIXES
             else "text" if p.suffix.lower() in _TEXT_SUFFIXES else "other" for p in files}
    modality = _modality(bundle)
    if kinds == {"text"} and modality == "text":
        lines = [line for p in files for line in _text_lines(p)]
        return _text_samples(bundle, _pick(lines, samples, seed), progress)
    wrong = sorted(kinds - {modality})
    if wrong:
        raise InputError(
            f"The calibration folder {path} holds {' and '.join(wrong)} files, but this "
            f"{bundle.task} bundle reads {modality}. Note: give {modality} samples, e.g. a text "
            "file with one input per line."
        )
    raise InputError(
        f"Calibration from a folder of {modality} files is not supported for {bundle.task} "
        "bundles yet. Note: give an .npz of input arrays instead."
    )


def _text_samples(bundle: Bundle, rows: list, progress: bool) -> Samples:
    from runtime.pipeline import pipeline_from_bundle

    if _modality(bundle) != "text":
        raise InputError(
            f"Text calibration data was given, but this {bundle.task} bundle reads "
            f"{_modality(bundle)}. Note: give {_modality(bundle)} samples."
        )
    pipe = pipeline_from_bundle(bundle)
    question_answering = bundle.task == "question-answering"
    result = Samples()
    for row in _progress(rows, len(rows), "preprocessing", progress):
        if question_answering:
            if isinstance(row, str):
                raise InputError(
                    "question-answering calibration needs JSON lines with 'question' and "
                    "'context', got a plain text line. Note: write one "
                    '{"question": ..., "context": ...} object per line to a .jsonl file.'
                )
            if not isinstance(row, dict) or not {"question", "context"} <= set(row):
                raise InputError(
                    f"Each JSON line needs 'question' and 'context', got {row!r:.80}."
                )
            encoding = pipe.tokenizer.encode_batch(
                [row["question"]], [row["context"]], truncation="only_second",
                max_length=min(pipe.max_positions or 384, 384))[0]
        else:
            text = row.get("text") if isinstance(row, dict) else row
            if not isinstance(text, str):
                raise InputError(f"Expected a text (or {{'text': ...}}), got {row!r:.80}.")
            encoding = pipe.tokenizer.encode_batch([text], truncation=True)[0]
        result.inputs.append(row)
        result.feeds.append(pipe.text_feed([encoding]))
    return result


def _npz_samples(bundle: Bundle, path: Path, samples, seed) -> Samples:
    try:
        arrays = dict(np.load(path, allow_pickle=False))
    except Exception as exc:
        raise InputError(f"Cannot read {path} as .npz: {exc}.") from None
    inputs, _ = bundle.graph_specs(next(iter(bundle.graphs)))
    names = [spec.name for spec in inputs]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise InputError(
            f"{path} lacks arrays for the graph inputs {missing}. Note: save one array per "
            f"input, named {names}, with samples along the first axis."
        )
    counts = {arrays[n].shape[0] for n in names}
    if len(counts) != 1:
        raise InputError(f"The arrays of {path} hold different sample counts: {sorted(counts)}.")
    rows = _pick(list(range(counts.pop())), samples, seed)
    if not rows:
        raise InputError(f"{path} holds no samples.")
    feeds = [{n: arrays[n][i:i + 1] for n in names} for i in rows]
    return Samples(inputs=[None] * len(feeds), feeds=feeds)


def dim_ranges(bundle: Bundle, feeds: Iterable[Feed], graph: str = "model") -> dict:
    """The (min, median, max) size each named dynamic dim of ``graph``'s inputs takes in
    ``feeds``: what a TensorRT optimization profile needs (min, opt, max), from the same feeds
    that calibrate and compare.

    >>> dim_ranges(bundle, feeds)                                   # doctest: +SKIP
    {'batch': (1, 1, 1), 'sequence': (6, 14, 37)}
    """
    inputs, _ = bundle.graph_specs(graph)
    seen: dict[str, list[int]] = {}
    for feed in feeds:
        for spec in inputs:
            if spec.name not in feed:
                continue
            shape = np.shape(feed[spec.name])
            if len(shape) != len(spec.dims):
                raise InputError(
                    f"Feed input {spec.name!r} has shape {shape}; the graph declares dims "
                    f"{list(spec.dims)}."
                )
            for size, dim in zip(shape, spec.dims):
                if isinstance(dim, str):
                    seen.setdefault(dim, []).append(int(size))
    if not seen:
        raise InputError("No feed holds an input of the graph, so no dim range can be taken.")
    return {dim: (min(sizes), int(np.median(sizes)), max(sizes)) for dim, sizes in seen.items()}
