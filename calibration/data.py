"""Calibration and comparison data: feeds made from user files by the bundle's own runtime
preprocessing, the exact preprocessing that will run on the device.

One list of feeds (``name -> array``, batch 1 each) serves static quantization, ``compare`` and
(later) TensorRT profile ranges.

What each bundle reads:

    text bundles         a text file of lines, JSON lines (question/context pairs for
                         question-answering), or a folder of text files
    image bundles        a folder of image files (subfolders included, e.g. one per class),
                         each loaded as ``runtime.vision.images`` loads it and preprocessed by the
                         bundle's image processor
    text-image (CLIP)    a folder of images, each paired with one fixed text side: the
                         CANDIDATE_LABELS put into the zero-shot pipeline's default hypothesis
                         template and tokenized with the bundle's tokenizer
    audio bundles        a folder of audio files (subfolders included), each decoded and
                         resampled as ``runtime.audio.loading`` does it and made into
                         features by the bundle's feature extractor; at most
                         MAX_AUDIO_SECONDS of each
    generative bundles   a text file of lines (prompts, documents to summarize, texts to
                         translate), JSON lines with "text", or a folder of text files; each
                         text is generated from greedily with the runtime's own pipeline, and
                         the feeds every graph receives are captured (``graph_feeds``)
    every other bundle   an .npz of arrays named as the graph's inputs

>>> feeds = feeds_from_path(Bundle.load("bundle"), "sentences.txt", samples=100)  # doctest: +SKIP
>>> sorted(feeds[0])                                                               # doctest: +SKIP
['attention_mask', 'input_ids', 'token_type_ids']
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.bundle import Bundle
from runtime.errors import InputError
from runtime.files import parse_json, read_text_file

Feed = dict[str, np.ndarray]

_TEXT_SUFFIXES = (".txt", ".text", ".lines")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a")
# The kind of file a folder holds for each bundle modality: a CLIP bundle reads images (its text
# side is made here).
_FOLDER_KINDS = {"text": "text", "image": "image", "text-image": "image", "audio": "audio"}

# The text side of every sample of a text-image (CLIP) bundle: calibrating and comparing need
# texts as well as images, and a user's folder holds only images. A fixed, documented list keeps
# the feeds reproducible; it spans everyday photo subjects so that the text tower sees varied
# prompts. For labels of your own, save the feeds to an .npz (input_ids of shape
# [samples, labels, sequence]).
CANDIDATE_LABELS = (
    "a person", "a cat", "a dog", "a bird", "a car", "a bicycle", "an airplane", "a boat",
    "a building", "a tree", "a flower", "a mountain", "food", "a cup of coffee", "a computer",
    "a book",
)

# The questions asked of a visual-question-answering bundle's images (image i gets question i
# modulo their number), for the same reason: a folder holds only images. Everyday VQA kinds
# (what, counting, color, yes/no, activity, place), fixed so that the feeds are reproducible.
VQA_QUESTIONS = (
    "What is in the picture?", "How many people are there?", "What color is it?",
    "Is this photo taken indoors?", "What is the person doing?", "Where was this taken?",
)

# The questions asked of a document-question-answering bundle's images, in turn (a folder
# holds only images): what DocVQA asks of receipts, forms and letters.
DOCUMENT_QUESTIONS = ("What is the total?", "What is the date?", "Who is it addressed to?",
                      "What is the invoice number?")

# An audio file longer than this is cut: calibration and comparison need what the model sees per
# run, and a CTC model runs a whole signal at once (one hour of audio would be one feed of
# 57.6 million samples). 30 s is Whisper's window and a long utterance for CTC models.
MAX_AUDIO_SECONDS = 30

# How many tokens each calibration text generates, and at which cached steps (1 = the first step
# after the prompt) the graphs' feeds are kept: the cache grows over a spread of lengths while
# the kept feeds stay few (a cached step's feed holds the whole cache).
CALIBRATION_NEW_TOKENS = 16
CACHED_STEPS = (1, 2, 4, 8)
# Greedy: the tokens a variant is calibrated and compared on are the fp32 model's own choices,
# the same on every run.
GREEDY = {"do_sample": False, "num_beams": 1}


@dataclass
class Samples:
    """What a data file held: the raw inputs (texts, or question/context dicts) for the task
    metrics of ``compare``, and the feeds made from them for the graphs."""

    inputs: list = field(default_factory=list)
    feeds: list[Feed] = field(default_factory=list)
    # text-image bundles: the candidate label of each text row of the feeds (None: unknown,
    # as for an .npz)
    labels: list[str] | None = None
    # speech recognition by generation (Whisper): each input's signal, at the model's rate
    signals: list[np.ndarray] | None = None
    # image-to-text (TrOCR, Donut): each input's image; document-question-answering: each
    # input's (image, question), the question one of DOCUMENT_QUESTIONS in turn
    images: list | None = None

    def sources(self) -> list:
        """What the bundle's pipeline takes, one per sample: the signals of a Whisper bundle,
        the images of an image-to-text one, else the inputs (texts)."""
        if self.signals is not None:
            return self.signals
        return self.images if self.images is not None else self.inputs

    def __len__(self) -> int:
        return len(self.feeds)


def progress_bar(items: Iterable, total: int, description: str, enabled: bool,
                 unit: str = "sample") -> Iterator:
    """``items``, with a progress bar on stderr when ``enabled`` (stdout stays the result)."""
    if not enabled:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=description, unit=unit, leave=False,
                    file=sys.stderr)


def _pick(items: list, samples: int | None, seed: int) -> list:
    """A seeded shuffle, then the first ``samples``: the same subset for the same seed."""
    if samples is not None and (not isinstance(samples, int) or samples < 1):
        raise InputError(f"samples must be a positive int, got {samples!r}.")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [items[i] for i in order[:samples]]


# A calibration text file beyond this is not one: take a sample of it instead.
_MAX_TEXT_BYTES = 1 * 2**30


def _read_text(path: Path) -> str:
    return read_text_file(path, "The calibration data file", error=InputError,
                          max_bytes=_MAX_TEXT_BYTES)


def _text_lines(path: Path) -> list[str]:
    lines = [line.rstrip("\r\n") for line in _read_text(path).splitlines()]
    return [line for line in lines if line.strip()]


def _jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        rows.append(parse_json(line, f"{path}:{number}", error=InputError))
    return rows


def load_samples(bundle: Bundle, path: str | os.PathLike, *, samples: int | None = None,
                 seed: int = 0, progress: bool = False) -> Samples:
    """Read ``path`` (a text file of lines, JSON lines, an ``.npz``, or a folder of files) and
    make feeds with the bundle's runtime preprocessing."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"No calibration data at {path}: it does not exist.")
    if path.suffix == ".npz":
        if is_generative(bundle):
            wanted = _FOLDER_KINDS.get(_modality(bundle), _modality(bundle))
            raise InputError(
                f"{path.name}: a {bundle.task} bundle calibrates and compares from its inputs, "
                "not from arrays (its graphs' feeds are captured while it generates). Note: "
                f"give {_example(wanted)}."
            )
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
    """Just the feeds of ``load_samples``: for static quantization of a one-graph bundle."""
    return load_samples(bundle, path, **options).feeds


def _modality(bundle: Bundle) -> str:
    return bundle.manifest.get("modality", "text")


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    return ("image" if suffix in _IMAGE_SUFFIXES else "audio" if suffix in _AUDIO_SUFFIXES
            else "text" if suffix in _TEXT_SUFFIXES else "other")


def _example(kind: str) -> str:
    return {"image": f"a folder of image files ({', '.join(_IMAGE_SUFFIXES)})",
            "audio": f"a folder of audio files ({', '.join(_AUDIO_SUFFIXES)})"}.get(
        kind, "a text file with one input per line")


def _folder_files(path: Path) -> list[Path]:
    """The files of a folder and its subfolders (one per class is a common layout), sorted;
    hidden files and folders (.DS_Store, .git) left out."""
    return sorted(p for p in path.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def _folder_samples(bundle, path, samples, seed, progress) -> Samples:
    files = _folder_files(path)
    if not files:
        raise InputError(f"The calibration folder {path} is empty. Note: put sample files in it.")
    kinds: dict[str, list[Path]] = {}
    for file in files:
        kinds.setdefault(_kind(file), []).append(file)
    modality = _modality(bundle)
    wanted = _FOLDER_KINDS.get(modality, modality)
    wrong = sorted(set(kinds) - {wanted})
    if wrong:
        examples = ", ".join(str(p.relative_to(path)) for kind in wrong for p in kinds[kind][:2])
        raise InputError(
            f"The calibration folder {path} holds {' and '.join(wrong)} files, but this "
            f"{bundle.task} bundle reads {wanted} (found: {examples}). Note: give "
            f"{_example(wanted)}, and move the other files out."
        )
    if wanted == "text":
        lines = [line for p in files for line in _text_lines(p)]
        return _text_samples(bundle, _pick(lines, samples, seed), progress)
    if wanted == "image":
        return _image_samples(bundle, path, _pick(files, samples, seed), progress)
    return _audio_samples(bundle, path, _pick(files, samples, seed), progress)


def _image_samples(bundle: Bundle, folder: Path, files: list[Path], progress: bool) -> Samples:
    """One batch-1 feed per image file, made as the bundle's pipeline makes it; for text-image
    bundles, with the CANDIDATE_LABELS as the text side of every feed (visual question
    answering: one of VQA_QUESTIONS per image, in turn)."""
    from runtime.pipeline import pipeline_from_bundle
    from runtime.tasks.text import encode_texts
    from runtime.vision.images import load_image

    pipe = pipeline_from_bundle(bundle)
    result = Samples()
    text_feed = {}
    questions = bundle.task == "visual-question-answering"
    if bundle.task == "zero-shot-object-detection":  # the labels as each image's queries
        text_feed = pipe.query_feed(list(CANDIDATE_LABELS))
        result.labels = list(CANDIDATE_LABELS)
    elif _modality(bundle) == "text-image" and not questions:
        template = pipe.parameters["hypothesis_template"]
        text_feed = pipe.text_feed(encode_texts(
            pipe.tokenizer, [template.format(label) for label in CANDIDATE_LABELS]))
        result.labels = list(CANDIDATE_LABELS)
    if is_generative(bundle):  # image-to-text: the graphs' own feeds come from generating
        return _generation_image_samples(bundle, pipe, folder, files, progress)
    for file in progress_bar(files, len(files), "preprocessing", progress):
        image = load_image(file)  # its errors name the file: a damaged one is found here
        question = VQA_QUESTIONS[len(result.feeds) % len(VQA_QUESTIONS)] if questions else None
        try:
            feed = (pipe.pair_feed([(image, question)]) if questions
                    else pipe.image_feed([image]))
        except InputError as error:  # e.g. too small for the model: say which file it is
            raise InputError(f"The calibration image {file} cannot be used: {error}") from None
        name = str(file.relative_to(folder))
        result.inputs.append(f"{name} | {question}" if questions else name)
        result.feeds.append({**text_feed, **feed})
    return result


def _generation_image_samples(bundle: Bundle, pipe, folder: Path, files: list[Path],
                              progress: bool) -> Samples:
    """The images of an image-to-text bundle (with a question each, one of DOCUMENT_QUESTIONS
    in turn, for document-question-answering), each with the encoder's feed."""
    from runtime.vision.images import load_image

    result = Samples(images=[])
    questions = bundle.task == "document-question-answering"
    for file in progress_bar(files, len(files), "preprocessing", progress):
        image = load_image(file)  # its errors name the file: a damaged one is found here
        try:
            feed = pipe.encoder_feed([image])
        except InputError as error:
            raise InputError(f"The calibration image {file} cannot be used: {error}") from None
        name = str(file.relative_to(folder))
        if questions:
            question = DOCUMENT_QUESTIONS[len(result.feeds) % len(DOCUMENT_QUESTIONS)]
            result.images.append((image, question))
            name = f"{name} | {question}"
        else:
            result.images.append(image)
        result.inputs.append(name)
        result.feeds.append(feed)
    return result


def _audio_samples(bundle: Bundle, folder: Path, files: list[Path], progress: bool) -> Samples:
    """One batch-1 feed per audio file (its first MAX_AUDIO_SECONDS), made as the bundle's
    pipeline makes it: decoded, mixed to mono and resampled by ``runtime.audio.loading``, then
    through the bundle's feature extractor."""
    from runtime.audio.loading import load_audio
    from runtime.pipeline import pipeline_from_bundle

    pipe = pipeline_from_bundle(bundle)
    rate = pipe.feature_extractor.sampling_rate
    generative = is_generative(bundle)
    result = Samples(signals=[] if generative else None)
    for file in progress_bar(files, len(files), "preprocessing", progress):
        signal = load_audio(file, rate)[:MAX_AUDIO_SECONDS * rate]  # its errors name the file
        result.inputs.append(str(file.relative_to(folder)))
        if generative:  # Whisper: the encoder's feed; the graphs' own come from generating
            result.signals.append(signal)
            result.feeds.append(pipe.features([signal]))
        else:  # batch 1 has no padding: the mask, where the graph takes one, is all ones
            result.feeds.append(pipe.features([signal], return_attention_mask=True))
    return result


def _text_samples(bundle: Bundle, rows: list, progress: bool) -> Samples:
    from runtime.pipeline import pipeline_from_bundle

    if _modality(bundle) != "text":
        wanted = _FOLDER_KINDS.get(_modality(bundle), _modality(bundle))
        raise InputError(
            f"Text calibration data was given, but this {bundle.task} bundle reads "
            f"{wanted}. Note: give {_example(wanted)}."
        )
    if is_generative(bundle):
        return _generation_samples(bundle, rows, progress)
    pipe = pipeline_from_bundle(bundle)
    question_answering = bundle.task == "question-answering"
    result = Samples()
    for row in progress_bar(rows, len(rows), "preprocessing", progress):
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


# --- generative bundles -------------------------------------------------------------------------

def is_generative(bundle: Bundle) -> bool:
    """Whether the bundle generates text (a decoder-only or encoder-decoder model)."""
    from runtime.generation.onnx_model import FAMILY_GRAPHS

    return bundle.manifest.get("family") in FAMILY_GRAPHS


def _row_text(row) -> str:
    return row["text"] if isinstance(row, dict) else row


class _RecordingEngine:
    """An engine that keeps a copy of the feeds of the calls ``keep(call)`` picks, counting
    calls from the last ``restart()``."""

    def __init__(self, engine, keep):
        self.engine, self.keep = engine, keep
        self.inputs, self.outputs = engine.inputs, engine.outputs
        self.feeds: list[Feed] = []
        self.calls = 0

    def restart(self) -> None:
        self.calls = 0

    def run(self, feed):
        if self.keep(self.calls):
            self.feeds.append({name: np.array(value) for name, value in feed.items()})
        self.calls += 1
        return self.engine.run(feed)


def graph_feeds(bundle: Bundle, texts: list, *, new_tokens: int = CALIBRATION_NEW_TOKENS,
                variant: str = "fp32", progress: bool = False) -> dict[str, list[Feed]]:
    """The feeds each graph of a generative bundle receives while its ``variant`` generates
    greedily (``new_tokens`` at most) from each text (each signal, for Whisper) through the
    bundle's own pipeline (prompt prefix, tokenizer, generation settings): graph name -> feeds.

    The encoder (of an encoder-decoder) runs once per text; the decoder's feeds are kept at
    the prompt (no cache yet) and at the cached steps of CACHED_STEPS, so a decoder is
    calibrated with and without its cache (a merged decoder in both of its branches).

    >>> feeds = graph_feeds(Bundle.load("gpt2-bundle"), ["Hello there"])  # doctest: +SKIP
    >>> [f["input_ids"].shape for f in feeds["model"]]                    # doctest: +SKIP
    [(1, 2), (1, 1), (1, 1), (1, 1), (1, 1)]
    """
    from runtime.generation import OnnxGenerationModel
    from runtime.generation.onnx_model import FAMILY_GRAPHS
    from runtime.pipeline import pipeline_from_bundle

    if not texts:
        raise InputError("No texts to generate from. Note: give at least one text.")
    encoder_graph, decoder_graph = FAMILY_GRAPHS[bundle.manifest["family"]]
    pipe = pipeline_from_bundle(bundle, variant=variant)
    model = pipe.model
    steps = {0, *CACHED_STEPS}
    decoder = _RecordingEngine(model.decoder, lambda call: call in steps)
    encoder = (_RecordingEngine(model.encoder, lambda call: True)
               if model.encoder is not None else None)
    pipe.model = OnnxGenerationModel(decoder, encoder, vocab_size=model.vocab_size)
    for text in progress_bar(texts, len(texts), "generating", progress):
        decoder.restart()
        _generate_greedily(pipe, text, new_tokens)
    feeds = {decoder_graph: decoder.feeds}
    if encoder is not None:
        feeds = {encoder_graph: encoder.feeds, **feeds}
    return feeds


def _generate_greedily(pipe, source, new_tokens: int) -> None:
    """Generate greedily (at most ``new_tokens``) from one input through a generative
    pipeline: a text, or a signal for speech recognition (Whisper)."""
    if isinstance(source, np.ndarray):
        features = pipe.features([source])["input_features"]
        pipe.generate_tokens(features, max_new_tokens=new_tokens, num_beams=1)
        return
    if not isinstance(source, str):  # an image (or an image and its question)
        pipe.generate_tokens(source, max_new_tokens=new_tokens, **GREEDY)
        return
    try:
        # a multilingual translator (mBART) translates between its tokenizer's saved languages
        pipe(source, max_new_tokens=new_tokens, **GREEDY, **getattr(pipe, "saved_languages", {}))
    except InputError as error:
        raise InputError(f"Cannot generate from the text {source[:60]!r}: {error}") from None


def _generation_samples(bundle: Bundle, rows: list, progress: bool) -> Samples:
    """The texts of a generative bundle, each with its tokens as a feed (input_ids and
    attention_mask, as the tokenizer makes them, before any task prefix the pipeline adds):
    the graphs' own feeds come from generating through the pipeline (``graph_feeds``)."""
    from runtime.text.tokenizer import TextTokenizer

    tokenizer = TextTokenizer.from_dir(bundle.path)
    result = Samples()
    for row in progress_bar(rows, len(rows), "preprocessing", progress):
        text = row.get("text") if isinstance(row, dict) else row
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"Expected a text (or {{'text': ...}}), got {row!r:.80}. Note: "
                             f"{bundle.task} bundles take one text per line.")
        ids = np.array([tokenizer.encode_batch([text])[0].ids], dtype=np.int64)
        result.inputs.append(text)
        result.feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    return result


def _npz_samples(bundle: Bundle, path: Path, samples, seed) -> Samples:
    """Samples along the first axis of each array: an array of the input's own rank holds one
    row of it per sample (``pixel_values`` [samples, 3, H, W]); one of a rank more holds a
    whole input per sample (a CLIP ``input_ids`` [samples, labels, sequence])."""
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
    stacked = {}
    for spec in inputs:
        rank = np.ndim(arrays[spec.name])
        if rank not in (len(spec.dims), len(spec.dims) + 1):
            raise InputError(
                f"The array {spec.name!r} of {path} has shape {arrays[spec.name].shape}; the "
                f"graph declares dims {list(spec.dims)}. Note: stack samples along the first "
                f"axis: rank {len(spec.dims)} (one row per sample) or {len(spec.dims) + 1} (one "
                "whole input per sample)."
            )
        stacked[spec.name] = rank == len(spec.dims) + 1
    counts = {arrays[n].shape[0] for n in names}
    if len(counts) != 1:
        raise InputError(f"The arrays of {path} hold different sample counts: {sorted(counts)}.")
    rows = _pick(list(range(counts.pop())), samples, seed)
    if not rows:
        raise InputError(f"{path} holds no samples.")
    feeds = [{n: arrays[n][i] if stacked[n] else arrays[n][i:i + 1] for n in names} for i in rows]
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
