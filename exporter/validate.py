"""Validation of an exported graph against the PyTorch model it came from.

Runs both at two batch sizes and two values of every other dynamic axis (two sequence lengths,
two image sizes, two audio lengths; for generative models every graph, with and without the KV
cache): tracing can bake a traced shape into the graph, and a single-shape check does not see
it. Fails, not warns, beyond tolerance.

The tolerance of an output is ``atol * max(1, max |reference|)``: float32 rounding grows with
the magnitude of the values, and a depth map in the hundreds differs by more than logits near 1
for the same (correct) graph.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from runtime.backends.engine import OrtEngine
from runtime.errors import EngineError, ValidationError

BATCH_SIZES = (1, 3)
SEQUENCE_LENGTHS = (9, 23)
# Two image sizes, different in both directions and in aspect: (height, width). Multiples of 32,
# which every vision family accepts; not multiples of Swin's 7x4-pixel windows, so its padding
# code runs.
IMAGE_SIZES = ((64, 96), (128, 64))
# Two waveform lengths in samples (0.5 s and 1.3 s at 16 kHz): neither a multiple of the other,
# nor of a speech encoder's 320-sample frame.
AUDIO_LENGTHS = (8000, 20800)
# Two lengths of filterbank features in 10 ms frames (Speech2Text, paired with DECODER_LENGTHS):
# neither a multiple of the encoder's 4-frame subsampling.
FEATURE_FRAMES = (97, 203)
# Text queries per image for the graphs that read each image's own queries (OWL-ViT).
QUERY_COUNTS = (2, 3)

Shape = dict  # the axis values of one validation case, e.g. {"batch": 3, "sequence": 23}


def _text_feed(rng, input_names, batch: int, length: int, config) -> dict[str, np.ndarray]:
    """Random token ids with padding at the end of every row after the first."""
    vocab_size = config.vocab_size
    ids = rng.integers(min(999, vocab_size // 2), vocab_size, size=(batch, length),
                       dtype=np.int64)
    mask = np.ones((batch, length), dtype=np.int64)
    for row in range(1, batch):
        mask[row, length - 2 * row:] = 0
    types = np.zeros((batch, length), dtype=np.int64)
    if (getattr(config, "type_vocab_size", 0) or 0) > 1:
        types[:, length // 2:] = 1
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return {n: values[n] for n in input_names if n in values}


def _image_feed(rng, input_names, batch: int, size: tuple[int, int], channels: int):
    pixels = rng.standard_normal((batch, channels, *size)).astype(np.float32)
    values = {"pixel_values": pixels, "pixel_mask": np.ones((batch, *size), dtype=np.int64)}
    return {n: values[n] for n in input_names if n in values}


def _audio_feed(rng, input_names, batch: int, samples: int) -> dict[str, np.ndarray]:
    """Normalized waveforms (zero mean, unit variance, as Wav2Vec2's feature extractor makes
    them); every row after the first is shorter, zero-padded at the end as the feature
    extractor pads, with its mask at 0 there (for a graph that takes one)."""
    values = rng.standard_normal((batch, samples)).astype(np.float32)
    mask = np.ones((batch, samples), dtype=np.int64)
    for row in range(1, batch):
        mask[row, samples - samples * row // (2 * batch):] = 0
    values[mask == 0] = 0.0
    feed = {"input_values": values, "attention_mask": mask}
    return {n: feed[n] for n in input_names if n in feed}


def _trajectory_feed(rng, batch: int, length: int, config) -> dict[str, np.ndarray]:
    """A Decision Transformer's inputs: random states, actions and returns-to-go, consecutive
    timesteps from a random start, and every row after the first left-padded (mask 0), as its
    model card's ``get_action`` pads a short history."""
    start = rng.integers(0, max(1, config.max_ep_len - length), size=(batch, 1))
    mask = np.ones((batch, length), dtype=np.float32)
    for row in range(1, batch):
        mask[row, :2 * row] = 0
    return {
        "states": rng.standard_normal((batch, length, config.state_dim), dtype=np.float32),
        "actions": rng.uniform(-1, 1, (batch, length, config.act_dim)).astype(np.float32),
        "returns_to_go": rng.uniform(0, 4, (batch, length, 1)).astype(np.float32),
        "timesteps": (start + np.arange(length)).astype(np.int64),
        "attention_mask": mask,
    }


def validation_feeds(modality: str, input_names: Sequence[str], config, *,
                     image_size: tuple[int, int] | None = None, seed: int = 0,
                     queries_per_image: bool = False
                     ) -> Iterator[tuple[Shape, dict[str, np.ndarray]]]:
    """(shape, feed) for every validation case of a graph reading ``modality``.

    ``image_size`` is the one size a fixed-size vision model takes; None means the graph takes
    any size, and it is checked at two. ``queries_per_image``: the text rows are each image's
    queries (Architecture.queries_per_image), checked at two counts of them.
    """
    rng = np.random.default_rng(seed)
    if modality == "text":
        for batch in BATCH_SIZES:
            for length in SEQUENCE_LENGTHS:
                yield ({"batch": batch, "sequence": length},
                       _text_feed(rng, input_names, batch, length, config))
        return
    if modality == "trajectory":
        for batch in BATCH_SIZES:
            for length in SEQUENCE_LENGTHS:
                yield ({"batch": batch, "sequence": length},
                       _trajectory_feed(rng, batch, length, config))
        return
    if modality == "audio":
        for batch in BATCH_SIZES:
            for samples in AUDIO_LENGTHS:
                yield ({"batch": batch, "audio_samples": samples},
                       _audio_feed(rng, input_names, batch, samples))
        return
    vision = getattr(config, "vision_config", config)
    channels = getattr(vision, "num_channels", 3)
    sizes = [image_size] if image_size else IMAGE_SIZES
    for batch in BATCH_SIZES:
        for size in sizes:
            shape = {"batch": batch, "height": size[0], "width": size[1]}
            feed = _image_feed(rng, input_names, batch, size, channels)
            if modality == "text-image" and queries_per_image:
                yield from _query_feeds(rng, input_names, shape, feed, config.text_config)
                continue
            if modality == "text-image":  # a batch of texts beside each batch of images
                length = SEQUENCE_LENGTHS[BATCH_SIZES.index(batch)]
                texts = batch + 1
                feed.update(_text_feed(rng, input_names, texts, length, config.text_config))
                shape.update(text_batch=texts, sequence=length)
            yield shape, feed


def _query_feeds(rng, input_names, shape: Shape, image_feed, text_config):
    """The cases of one image batch for a graph that reads each image's own text queries
    (OWL-ViT): QUERY_COUNTS queries per image, batch x queries text rows, each count at its own
    length of SEQUENCE_LENGTHS (cut to the model's text positions, 16 for OWL-ViT)."""
    positions = getattr(text_config, "max_position_embeddings", None) or max(SEQUENCE_LENGTHS)
    for queries, length in zip(QUERY_COUNTS, SEQUENCE_LENGTHS):
        length = min(length, positions)
        texts = shape["batch"] * queries
        feed = {**image_feed, **_text_feed(rng, input_names, texts, length, text_config)}
        yield {**shape, "num_queries": queries, "text_batch": texts, "sequence": length}, feed


class _Comparison:
    """The cases of one validation, compared output by output; ``report()`` is the result."""

    def __init__(self, atol: float):
        self.atol = atol
        self.cases: list[dict] = []
        self.worst: dict[str, float] = {}

    def run(self, engine: OrtEngine, feed, shape: Shape) -> dict[str, np.ndarray]:
        try:
            return engine.run(feed)
        except EngineError as exc:
            raise ValidationError(
                f"The ONNX graph fails at {_describe(shape)}, where PyTorch runs: {exc} Note: "
                "the trace baked a shape into the graph; the bundle was not written."
            ) from None

    def compare(self, shape: Shape, got: dict[str, np.ndarray], expected) -> None:
        """Every output in ``got`` against ``expected[name]`` (numpy arrays)."""
        outputs = {}
        for name, value in got.items():
            reference = np.asarray(expected[name])
            if reference.shape != value.shape:
                raise ValidationError(
                    f"Output {name!r} has shape {value.shape} in ONNX but {reference.shape} in "
                    f"PyTorch at {_describe(shape)}. Note: the trace baked a shape into the "
                    "graph; report this architecture."
                )
            diff = float(np.max(np.abs(value.astype(np.float64) - reference), initial=0.0))
            tolerance = self.atol * max(1.0, float(np.max(np.abs(reference), initial=0.0)))
            outputs[name] = {"max_abs_diff": diff, "tolerance": tolerance,
                             "passed": diff <= tolerance}
            self.worst[name] = max(self.worst.get(name, 0.0), diff)
        self.cases.append({**shape, "outputs": outputs})

    def report(self) -> dict:
        """The report dict; a ValidationError with the table of failing outputs instead when
        any output disagrees."""
        passed = all(o["passed"] for case in self.cases for o in case["outputs"].values())
        report = {
            "passed": passed,
            "reference": "pytorch",
            "atol": self.atol,
            "max_abs_diff": self.worst,
            "cases": self.cases,
        }
        if not passed:
            raise ValidationError(failure_table(report))
        return report


def validate_graph(model, onnx_path: Path, feeds, *, atol: float) -> dict:
    """Compare the graph with the model on every (shape, feed) of ``feeds``; a report dict, or
    ValidationError with a table of the outputs that disagree."""
    import torch

    engine = OrtEngine(onnx_path)
    comparison = _Comparison(atol)
    for shape, feed in feeds:
        got = comparison.run(engine, feed, shape)
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        comparison.compare(shape, got, {name: expected[name].numpy() for name in got})
    return comparison.report()


# ONNX ops that draw random numbers: a graph holding one gives other outputs at every run.
RANDOM_OPS = frozenset({"RandomUniform", "RandomUniformLike", "RandomNormal", "RandomNormalLike",
                        "Multinomial", "Bernoulli"})


def check_deterministic(onnx_path: Path) -> None:
    """A ValidationError when the graph (its subgraphs included) draws random numbers: a trace
    of ``torch.rand`` (ViTMAE's masking noise), which no comparison at fixed inputs would catch
    reliably."""
    import onnx

    def ops(graph):
        for node in graph.node:
            yield node.op_type
            for attribute in node.attribute:
                for sub in ([attribute.g] if attribute.HasField("g") else []) + list(
                        attribute.graphs):
                    yield from ops(sub)

    found = sorted(set(ops(onnx.load(str(onnx_path), load_external_data=False).graph))
                   & RANDOM_OPS)
    if found:
        raise ValidationError(
            f"The graph {onnx_path.name} draws random numbers ({', '.join(found)}), so the same "
            "input would give other outputs at every run. Note: the model samples at inference "
            "(a masking ratio, a dropout in training mode); report this architecture.")


# --- generative models: every graph, with and without the KV cache ----------------------------
#
# A decoder-only graph is checked at a prefill (left-padded prompts, zero-length past) and at
# one step with the past the prefill made; an encoder-decoder's encoder on padded source texts,
# then its merged decoder at a first step (use_cache_branch False, zero-length past) and at a
# step with past (use_cache_branch True). Each step is fed PyTorch's own cache, so a difference
# shows in the graph that makes it. Every output is compared, present.* included, at two batch
# sizes and two lengths of every sequence axis.

# Decoder lengths of the first decoder step, paired with SEQUENCE_LENGTHS: 1 is a generation's
# first step (the decoder start token), 7 a forced prefix.
DECODER_LENGTHS = (1, 7)


def _cache_arrays(cache) -> dict[str, np.ndarray]:
    """PyTorch's KV cache by optimum's output names (present.{i}.key, present.{i}.decoder.key,
    present.{i}.encoder.key, ...)."""
    legacy = cache.to_legacy_cache() if hasattr(cache, "to_legacy_cache") else cache
    arrays = {}
    for i, layer in enumerate(legacy):
        tensors = [t.numpy().copy() for t in layer]
        if len(tensors) == 2:
            arrays[f"present.{i}.key"], arrays[f"present.{i}.value"] = tensors
        else:
            (arrays[f"present.{i}.decoder.key"], arrays[f"present.{i}.decoder.value"],
             arrays[f"present.{i}.encoder.key"], arrays[f"present.{i}.encoder.value"]) = tensors
    return arrays


def _past_feed(engine: OrtEngine, batch: int, present: dict[str, np.ndarray] | None):
    """The past_key_values.* inputs: zero-length when ``present`` is None, else its arrays."""
    feed = {}
    for spec in engine.inputs:
        if not spec.name.startswith("past_key_values."):
            continue
        if present is not None:  # PyTorch's fp32 cache, in the graph's dtype (fp16 graphs)
            feed[spec.name] = present["present." + spec.name[len("past_key_values."):]].astype(
                spec.dtype, copy=False)
            continue
        heads, head_dim = spec.dims[1], spec.dims[3]
        if not (isinstance(heads, int) and isinstance(head_dim, int)):
            raise ValidationError(
                f"The graph's {spec.name} has dims {list(spec.dims)}: edgeport needs the "
                "number of heads and the head size fixed to make an empty cache. Note: report "
                "this architecture."
            )
        feed[spec.name] = np.zeros((batch, heads, 0, head_dim), dtype=spec.dtype)
    return feed


def _position_ids(mask: np.ndarray) -> np.ndarray:
    """Per-row positions of a left-padded batch, as transformers' GPT-2 makes them."""
    positions = np.cumsum(mask, axis=-1) - 1
    positions[mask == 0] = 1
    return positions


def _full_cache():
    """A cache that keeps every position in every layer, as the traced graph does.

    transformers' own cache for a sliding-window layer (Mistral, Gemma 2 and 3, GPT-Neo's local
    layers) keeps only the last ``sliding_window - 1`` positions; the graph keeps them all and
    masks the ones out of the window, which gives the same logits. Comparing the caches needs
    PyTorch to keep them all too.
    """
    from transformers import DynamicCache

    return DynamicCache()


def _only(feed: dict, engine: OrtEngine) -> dict:
    names = {spec.name for spec in engine.inputs}
    return {k: v for k, v in feed.items() if k in names}


def validate_decoder(model, onnx_path: Path, *, atol: float, seed: int = 0,
                     batch_sizes: Sequence[int] = BATCH_SIZES) -> dict:
    """A decoder-only graph with KV cache against the model: prefill, then a step with past
    (``batch_sizes``: (1,) for a graph that takes no padding)."""
    import torch

    engine = OrtEngine(onnx_path)
    comparison = _Comparison(atol)
    rng = np.random.default_rng(seed)
    vocab_size = model.config.vocab_size
    # BLOOM's ALiBi has no positions (its forward warns about position_ids, and drops them)
    takes_positions = "position_ids" in inspect.signature(model.forward).parameters

    def positioned(positions: np.ndarray) -> dict:
        return {"position_ids": torch.from_numpy(positions)} if takes_positions else {}

    for batch in batch_sizes:
        for length in SEQUENCE_LENGTHS:
            ids = rng.integers(0, vocab_size, size=(batch, length), dtype=np.int64)
            mask = np.ones((batch, length), dtype=np.int64)
            for row in range(1, batch):  # left padding, as generation pads prompts
                mask[row, :2 * row] = 0
            positions = _position_ids(mask)
            feed = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                    **_past_feed(engine, batch, None)}
            shape = {"graph": "model", "step": "prefill", "batch": batch, "sequence": length,
                     "past_sequence": 0}
            got = comparison.run(engine, _only(feed, engine), shape)
            with torch.no_grad():
                expected = model(input_ids=torch.from_numpy(ids),
                                 attention_mask=torch.from_numpy(mask),
                                 **positioned(positions), past_key_values=_full_cache(),
                                 use_cache=True)
            present = _cache_arrays(expected.past_key_values)
            comparison.compare(shape, got, {"logits": expected.logits.numpy(), **present})

            token = rng.integers(0, vocab_size, size=(batch, 1), dtype=np.int64)
            mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
            positions = _position_ids(mask)[:, -1:]
            feed = {"input_ids": token, "attention_mask": mask, "position_ids": positions,
                    **_past_feed(engine, batch, present)}
            shape = {"graph": "model", "step": "with past", "batch": batch, "sequence": 1,
                     "past_sequence": length}
            got = comparison.run(engine, _only(feed, engine), shape)
            with torch.no_grad():
                expected = model(input_ids=torch.from_numpy(token),
                                 attention_mask=torch.from_numpy(mask), **positioned(positions),
                                 past_key_values=expected.past_key_values, use_cache=True)
            comparison.compare(shape, got, {"logits": expected.logits.numpy(),
                                            **_cache_arrays(expected.past_key_values)})
    return comparison.report()


def _encoder_sources(rng, encoder: OrtEngine, config, batch: int):
    """(shape, feed) of the encoder cases at ``batch``, one per DECODER_LENGTHS: padded source
    texts at SEQUENCE_LENGTHS, (Whisper) log-mel features of the one size the graph takes,
    (Speech2Text) masked filterbanks at FEATURE_FRAMES, or (TrOCR, Donut) images of the one
    size the graph takes."""
    names = {spec.name for spec in encoder.inputs}
    if "pixel_values" in names:
        spec = next(spec for spec in encoder.inputs if spec.name == "pixel_values")
        if not all(isinstance(d, int) for d in spec.dims[1:]):
            raise ValidationError(
                f"The encoder's pixel_values have dims {list(spec.dims)}: edgeport expects "
                "channels, height and width fixed (the encoder takes one image size). Note: "
                "report this architecture.")
        for _ in DECODER_LENGTHS:
            yield {}, _image_feed(rng, ["pixel_values"], batch, tuple(spec.dims[2:]),
                                  spec.dims[1])
        return
    if "input_features" not in names:
        for length in SEQUENCE_LENGTHS:
            yield ({"encoder_sequence": length},
                   _text_feed(rng, ["input_ids", "attention_mask"], batch, length, config))
        return
    spec = next(spec for spec in encoder.inputs if spec.name == "input_features")
    if "attention_mask" in names:  # Speech2Text: filterbanks of any length, with their mask
        yield from _feature_frame_sources(rng, spec, batch)
        return
    bins, frames = spec.dims[1:]
    if not (isinstance(bins, int) and isinstance(frames, int)):
        raise ValidationError(
            f"The encoder's input_features have dims {list(spec.dims)}: edgeport expects mel "
            "bins and frames fixed (a 30 s window). Note: report this architecture."
        )
    for _ in DECODER_LENGTHS:
        # log-mel features as Whisper's extractor scales them: within about [-1.5, 1.5]
        features = rng.uniform(-1.5, 1.5, size=(batch, bins, frames)).astype(np.float32)
        yield {}, {"input_features": features}


def _feature_frame_sources(rng, spec, batch: int):
    """(shape, feed) of a speech encoder that reads features of any length with a mask
    (batch x frames x bins), one case per FEATURE_FRAMES: features as utterance-normalized
    filterbanks are (zero mean, unit variance), every row after the first shorter, padded with
    zeros at the end and masked there, as the feature extractor pads."""
    bins = spec.dims[2]
    if not isinstance(bins, int):
        raise ValidationError(
            f"The encoder's input_features have dims {list(spec.dims)}: edgeport expects the "
            "number of filterbank bins fixed. Note: report this architecture.")
    for frames in FEATURE_FRAMES:
        features = rng.standard_normal((batch, frames, bins)).astype(np.float32)
        mask = np.ones((batch, frames), dtype=np.int64)
        for row in range(1, batch):
            mask[row, frames - frames * row // (2 * batch):] = 0
        features[mask == 0] = 0.0
        yield {"audio_frames": frames}, {"input_features": features, "attention_mask": mask}


def validate_encoder_decoder(model, encoder_path: Path, decoder_path: Path, *, atol: float,
                             seed: int = 0) -> dict:
    """The encoder graph and the merged decoder graph (first step, and a step with past).

    The encoder reads padded texts, or log-mel features when it takes ``input_features``
    (Whisper, whose encoder length is fixed: then only batch and decoder lengths vary), or
    images when it takes ``pixel_values`` (TrOCR, Donut: one image size).
    """
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    encoder, decoder = OrtEngine(encoder_path), OrtEngine(decoder_path)
    # T5's encoder stack is a decoder-capable T5Stack that refuses use_cache from the config
    no_cache = ({"use_cache": False} if "use_cache" in
                inspect.signature(model.get_encoder().forward).parameters else {})
    comparison = _Comparison(atol)
    rng = np.random.default_rng(seed)
    # (a vision-encoder-decoder's config keeps it in its decoder's)
    vocab_size = model.config.get_text_config(decoder=True).vocab_size
    for batch in BATCH_SIZES:
        sources = _encoder_sources(rng, encoder, model.config, batch)
        for (axes, source), decoder_length in zip(sources, DECODER_LENGTHS):
            shape = {"graph": encoder_path.stem, "batch": batch, **axes}
            got = comparison.run(encoder, source, shape)
            torch_source = {k: torch.from_numpy(v) for k, v in source.items()}
            with torch.no_grad():
                hidden = model.get_encoder()(**torch_source, **no_cache).last_hidden_state
            comparison.compare(shape, got, {"last_hidden_state": hidden.numpy()})

            mask = torch_source.get("attention_mask")
            context = {"encoder_hidden_states": hidden.numpy()}
            if mask is not None:
                context["encoder_attention_mask"] = source["attention_mask"]
            ids = rng.integers(0, vocab_size, size=(batch, decoder_length), dtype=np.int64)
            feed = {"input_ids": ids, **context, "use_cache_branch": np.array([False]),
                    **_past_feed(decoder, batch, None)}
            shape = {"graph": decoder_path.stem, "step": "first", "batch": batch, **axes,
                     "decoder_sequence": decoder_length, "past_sequence": 0}
            got = comparison.run(decoder, _only(feed, decoder), shape)
            with torch.no_grad():
                expected = model(attention_mask=mask,
                                 encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                                 decoder_input_ids=torch.from_numpy(ids), use_cache=True)
            present = _cache_arrays(expected.past_key_values)
            comparison.compare(shape, got, {"logits": expected.logits.numpy(), **present})

            token = rng.integers(0, vocab_size, size=(batch, 1), dtype=np.int64)
            feed = {"input_ids": token, **context, "use_cache_branch": np.array([True]),
                    **_past_feed(decoder, batch, present)}
            shape = {"graph": decoder_path.stem, "step": "with past", "batch": batch, **axes,
                     "decoder_sequence": 1, "past_sequence": decoder_length}
            got = comparison.run(decoder, _only(feed, decoder), shape)
            # The cached branch computes no cross-attention cache: its present.*.encoder.* are
            # constant placeholders (optimum's merge), and the first step's stay in use.
            got = {name: value for name, value in got.items() if ".encoder." not in name}
            with torch.no_grad():
                expected = model(attention_mask=mask,
                                 encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                                 decoder_input_ids=torch.from_numpy(token),
                                 past_key_values=expected.past_key_values, use_cache=True)
            comparison.compare(shape, got, {"logits": expected.logits.numpy(),
                                            **_cache_arrays(expected.past_key_values)})
    return comparison.report()


def _describe(shape: Shape) -> str:
    return ", ".join(f"{axis} {value}" for axis, value in shape.items())


def failure_table(report: dict) -> str:
    shapes = [_describe({k: v for k, v in case.items() if k != "outputs"})
              for case in report["cases"]]
    width = max([40, *map(len, shapes)])
    lines = ["The ONNX graph disagrees with PyTorch beyond tolerance:",
             f"  {'output':<24} {'shape':<{width}} {'max abs diff':>13} {'tolerance':>10}"]
    for case, shape in zip(report["cases"], shapes):
        for name, out in case["outputs"].items():
            mark = "" if out["passed"] else "  <- fails"
            lines.append(f"  {name:<24} {shape:<{width}} {out['max_abs_diff']:>13.3e} "
                         f"{out['tolerance']:>10.1e}{mark}")
    lines.append("Note: the bundle was not written. Raise the tolerance with --atol only if the "
                 "difference is expected (for example, a model with huge activations).")
    return "\n".join(lines)
