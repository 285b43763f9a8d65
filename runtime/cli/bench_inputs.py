"""What `edgeport bench` feeds a pipeline: generated inputs of a chosen size per modality, or the
user's own, grouped into the calls of one batch size and one sequence length (a ``Workload``).

Generated inputs are deterministic, so two runs (and the runtime and transformers in one run)
time the same work: texts cut to an exact number of tokens with the bundle's own tokenizer,
photo-like images already at the size the model's processor resizes to, and speech-like
signals (a voiced pitch contour in syllables) of a given length at the model's sampling rate.

>>> texts_of_length(tokenizer, 16, count=2)                      # doctest: +SKIP
['The river rose overnight, and by morning the', 'A small bakery on the corner sells ...']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InputError

# English prose of varied words, numbers and punctuation: what generated texts are cut from.
PASSAGE = [
    "The river rose overnight, and by morning the lower streets of the old town were under "
    "water.",
    "A small bakery on the corner sells bread, pastries and strong coffee from six o'clock.",
    "Researchers measured the temperature of the lake every hour for three years.",
    "She asked whether the train to the airport would leave on time despite the snow.",
    "Prices rose by 4.5 percent last year, the fastest increase in more than a decade.",
    "The committee will publish its final report, with all recommendations, next spring.",
    "Please keep the device away from heat and clean it only with a dry cloth.",
    "Our team won the match in the last minute, and the crowd sang until midnight.",
    "Modern phones carry more computing power than the machines that guided the first "
    "spacecraft to the moon.",
    "He planted tomatoes, beans and sunflowers in the garden behind the house.",
    "The museum opens a new exhibition of early photographs on Friday.",
    "Doctors recommend at least thirty minutes of walking on most days of the week.",
]
QUESTION = "What is this text about?"
# zero-shot-image-classification's and zero-shot-object-detection's candidate labels, the same
# on every side.
CANDIDATE_LABELS = ["a photo of a city", "a photo of a landscape", "a photo of an animal"]
# visual-question-answering's question, asked of every image.
IMAGE_QUESTION = "What is in the picture?"
# document-question-answering's question, asked of every document.
DOCUMENT_QUESTION = "What is the total?"
# A generated image is what a 640x480 photo becomes in the model's processor.
PHOTO_HEIGHT, PHOTO_WIDTH = 480, 640


@dataclass
class Workload:
    """The calls of one cell of the benchmark grid: ``batches`` holds the items of each
    distinct call (``batch`` items each), ``options`` the keyword arguments of every call.
    ``sequence`` is the requested tokens per text (text inputs only), ``tokens`` the measured
    mean."""

    task: str
    batch: int
    sequence: int | None
    batches: list[list[Any]]
    options: dict[str, Any] = field(default_factory=dict)
    tokens: float | None = None

    def arguments(self, items: Sequence[Any], takes_batch_size: bool) -> tuple[tuple, dict]:
        """(args, kwargs) of the pipeline call on ``items``: one item alone, several as a list
        (with ``batch_size`` where the pipeline takes it, so they run as one batch)."""
        kwargs = dict(self.options)
        if len(items) > 1 and takes_batch_size:
            kwargs["batch_size"] = len(items)
        if self.task == "zero-shot-object-detection" and len(items) > 1:
            # a list of images takes one list of labels per image (transformers pairs them)
            kwargs["candidate_labels"] = [kwargs["candidate_labels"]] * len(items)
        if self.task == "document-question-answering":  # a question with each image
            question = kwargs.pop("question")
            items = [{"image": image, "question": question} for image in items]
        if self.task == "question-answering":
            questions, contexts = zip(*items)
            single = len(items) == 1
            kwargs.update(question=questions[0] if single else list(questions),
                          context=contexts[0] if single else list(contexts))
            return (), kwargs
        return ((items[0] if len(items) == 1 else list(items)),), kwargs


# --- generated inputs ---------------------------------------------------------------------------
def token_count(tokenizer, text: str, *, add_special_tokens: bool = True) -> int:
    return len(tokenizer.encode_batch([text], add_special_tokens=add_special_tokens)[0].ids)


def texts_of_length(tokenizer, tokens: int, count: int) -> list[str]:
    """``count`` different texts of ``tokens`` tokens each (special tokens included), cut from
    PASSAGE at a token boundary. A cut inside a word can merge into fewer tokens with some
    vocabularies, so a text may come out a token short; the benchmark records the real count."""
    specials = token_count(tokenizer, "hello") - token_count(tokenizer, "hello",
                                                              add_special_tokens=False)
    content = tokens - specials
    if content < 1:
        raise InputError(
            f"--sequence {tokens} leaves no room for text: the tokenizer adds {specials} special "
            f"tokens. Note: use a sequence of at least {specials + 1}."
        )
    texts = []
    for index in range(count):
        start = index % len(PASSAGE)
        passage = " ".join(PASSAGE[start:] + PASSAGE[:start])
        repeats = content // max(token_count(tokenizer, passage, add_special_tokens=False), 1) + 1
        texts.append(_cut(tokenizer, " ".join([passage] * repeats), content))
    return texts


def _cut(tokenizer, text: str, content: int) -> str:
    offsets = tokenizer.encode_batch([text], add_special_tokens=False)[0].offsets
    for keep in range(content, 0, -1):
        cut = text[:offsets[keep - 1][1]]
        if token_count(tokenizer, cut, add_special_tokens=False) <= content:
            return cut
    return text[:offsets[0][1]]


def photo_like_image(height: int, width: int, seed: int) -> Image.Image:
    """An RGB image with a photo's structure rather than noise's: a smooth gradient, objects
    with edges, and a fine sensor-like grain, so that resizing and decoding work on it as they
    do on photos."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    top, bottom = rng.uniform(0, 255, (2, 3))
    image = np.broadcast_to(top * (1 - rows) + bottom * rows, (height, width, 3)).copy()
    y, x = np.ogrid[:height, :width]
    for _ in range(6):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.05, 0.3) * height, rng.uniform(0.05, 0.3) * width
        inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0
        image[inside] = 0.3 * image[inside] + 0.7 * rng.uniform(0, 255, 3)
    image += rng.normal(0.0, 6.0, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def speech_like_signal(seconds: float, sampling_rate: int, seed: int) -> np.ndarray:
    """Mono float32: a voiced sound with a wandering pitch (120-200 Hz and its harmonics) in
    syllables of about 4 Hz, over faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sampling_rate))) / sampling_rate
    pitch = 160 + 40 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(pitch) / sampling_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 9))
    syllables = np.sin(2 * np.pi * 4 * t + rng.uniform(0, 2 * np.pi)) ** 2
    signal = 0.3 * voiced * syllables / np.abs(voiced).max() + rng.normal(0, 0.01, t.shape)
    return signal.astype(np.float32)


# --- workloads ----------------------------------------------------------------------------------
def modality(pipe) -> str:
    """"image", "audio", "trajectory" or "text": what the pipeline reads (zero-shot image
    classification reads images, and its labels are text; Whisper reads audio, and its tokenizer
    writes; a Decision Transformer reads states, actions and returns)."""
    if type(pipe).task == "reinforcement-learning":
        return "trajectory"
    wanted = type(pipe).preprocessors
    if "image_processor" in wanted:
        return "image"
    if "feature_extractor" in wanted:
        return "audio"
    return "text"


def generation_options(task: str, max_new_tokens: int) -> dict[str, Any]:
    """Greedy decoding of a fixed number of new tokens: text tasks generate exactly
    ``max_new_tokens`` (min_new_tokens too), so tokens/s compares equal work; speech
    recognition stops at the end of the transcript, as it would in use."""
    settings: dict[str, Any] = {"do_sample": False, "num_beams": 1,
                                "max_new_tokens": max_new_tokens}
    if task == "automatic-speech-recognition":
        return {"generate_kwargs": settings}
    if task == "image-to-text":  # transformers takes generation settings in generate_kwargs only
        return {"generate_kwargs": {**settings, "min_new_tokens": max_new_tokens}}
    return {**settings, "min_new_tokens": max_new_tokens}


def workloads(pipe, task: str, *, batches: Sequence[int], sequences: Sequence[int] | None,
              seconds: float | None, max_new_tokens: int | None,
              given: Sequence[Any] | None = None) -> list[Workload]:
    """One workload per (batch, sequence) cell: generated inputs (text: one sequence length per
    cell; image and audio: none), or ``given`` items, loaded already (texts, PIL images, audio
    arrays at the model's rate), cycled to fill the batches."""
    kind = modality(pipe)
    options: dict[str, Any] = {}
    # (transformers' document-question-answering takes no generation settings in a call: both
    # sides generate with the pipeline's own, greedy up to 256 new tokens, the same tokens)
    if pipe.generates and task != "document-question-answering":
        options.update(generation_options(task, max_new_tokens))
    # a multilingual translator (mBART) translates between its tokenizer's saved languages
    options.update(getattr(pipe, "saved_languages", {}))
    if task in ("zero-shot-image-classification", "zero-shot-object-detection"):
        options["candidate_labels"] = CANDIDATE_LABELS
    if task == "visual-question-answering":  # the same question of every image
        options["question"] = IMAGE_QUESTION
    if task == "document-question-answering":
        options["question"] = DOCUMENT_QUESTION
    if "visual_embeds" in type(pipe).parameters:  # VisualBERT: a detector's regions, each text
        options["visual_embeds"] = region_features(pipe.feature_size or 2048)
    cells = [(batch, sequence) for batch in batches
             for sequence in (sequences if kind == "text" and not given else [None])]
    result = []
    for batch, sequence in cells:
        if given:
            calls = max(1, -(-len(given) // batch))
            items = [given[i % len(given)] for i in range(calls * batch)]
        else:
            items = _generated(pipe, task, kind, batch, sequence, seconds)
        if task == "question-answering":
            items = [(QUESTION, context) for context in items]
        groups = [items[i:i + batch] for i in range(0, len(items), batch)]
        tokens = _mean_tokens(pipe.tokenizer, items) if kind == "text" else None
        result.append(Workload(task, batch, sequence, groups, options, tokens))
    return result


def region_features(size: int, regions: int = 36) -> np.ndarray:
    """What a detector gives VisualBERT for one image: ``regions`` (36, as its checkpoints were
    trained with) non-negative feature vectors (after a ReLU), fixed by a seed."""
    rng = np.random.default_rng(0)
    return np.maximum(rng.normal(0, 1, (regions, size)), 0).astype(np.float32)


def trajectory(state_dim: int, act_dim: int, steps: int, seed: int) -> dict[str, np.ndarray]:
    """An episode's first ``steps`` steps: smooth states, actions in [-1, 1] (the last a
    placeholder for the one asked for), returns-to-go falling from 3.6, timesteps from 0."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 0.1, (steps, state_dim)), axis=0)
    actions = np.tanh(rng.normal(0, 1, (steps, act_dim)))
    actions[-1] = 0
    return {"states": walk.astype(np.float32), "actions": actions.astype(np.float32),
            "returns_to_go": np.linspace(3.6, 3.6 - 0.05 * steps, steps).astype(np.float32),
            "timesteps": np.arange(steps)}


def _generated(pipe, task: str, kind: str, batch: int, sequence: int | None,
               seconds: float | None) -> list[Any]:
    if kind == "trajectory":  # a full context of steps: the work of every step of an episode
        return [trajectory(pipe.state_dim, pipe.act_dim, pipe.context, seed)
                for seed in range(batch)]
    if kind == "image":
        processor = pipe.image_processor
        height, width = (processor.resized_size(PHOTO_HEIGHT, PHOTO_WIDTH) if processor.do_resize
                         else (PHOTO_HEIGHT, PHOTO_WIDTH))
        return [photo_like_image(height, width, seed) for seed in range(batch)]
    if kind == "audio":
        rate = pipe.feature_extractor.sampling_rate
        return [speech_like_signal(seconds, rate, seed) for seed in range(batch)]
    tokenizer = pipe.tokenizer
    if task == "question-answering":
        # the context fills the sequence beside the question
        sequence -= token_count(tokenizer, QUESTION, add_special_tokens=False)
    if task == "fill-mask":
        mask = tokenizer.mask_token
        texts = texts_of_length(tokenizer, sequence - 1, batch)
        return [_with_mask(text, mask) for text in texts]
    return texts_of_length(tokenizer, sequence, batch)


def _with_mask(text: str, mask: str) -> str:
    """The mask token between two words in the middle of the text."""
    words = text.split(" ")
    middle = len(words) // 2
    return " ".join([*words[:middle], mask, *words[middle:]])


def _mean_tokens(tokenizer, items: Sequence[Any]) -> float:
    """Mean tokens per input (a question and its context counted together, as one pair)."""
    if items and isinstance(items[0], tuple):
        encodings = tokenizer.encode_batch([q for q, _ in items], [c for _, c in items])
    else:
        encodings = tokenizer.encode_batch(list(items))
    return float(np.mean([len(e.ids) for e in encodings]))


def check_sequences(pipe, sequences: Sequence[int], max_new_tokens: int | None) -> None:
    """A clear error for sequence lengths the model cannot take (a decoder-only model also
    needs room for the new tokens)."""
    limit = pipe.max_positions
    decoder_only = pipe.generates and not pipe.model.is_encoder_decoder
    room = max_new_tokens if decoder_only else 0
    for sequence in sequences:
        if limit and sequence + room > limit:
            extra = f" plus --max-new-tokens {room}" if room else ""
            raise InputError(
                f"--sequence {sequence}{extra} is more than the model's {limit} positions. Note: "
                f"use --sequence of at most {limit - room}."
            )


def load_given(pipe, inputs: Sequence[str]) -> list[Any]:
    """The user's ``--input`` items, loaded once so that no call times a file read: texts as
    they are, image files as RGB images, audio files at the model's sampling rate."""
    kind = modality(pipe)
    if kind == "trajectory":
        raise InputError("--input takes texts, or image or audio files; a reinforcement-learning "
                         "bundle is timed on generated trajectories. Note: drop --input.")
    if kind == "image":
        from ..vision.images import load_image

        return [load_image(item) for item in inputs]
    if kind == "audio":
        from ..audio.loading import load_audio

        return [load_audio(item, pipe.feature_extractor.sampling_rate) for item in inputs]
    return list(inputs)

