"""Optimization profiles from a bundle's dim names: what sizes each dynamic dim takes.

TensorRT builds an engine for a range of shapes per input (min, opt, max), tuned at opt. The
manifest names every dynamic dim from one vocabulary (``runtime.dims``), so ranges are kept by
dim name, bundle-wide, and each graph's per-input shapes are read off its inputs' dims. Ranges
come from three places, the later winning: defaults from the model's own config, the shapes
seen in calibration data (``calibration.data.dim_ranges``, computed outside the runtime), and
the user's ``--shapes`` overrides. Several override groups make several profiles.

>>> parse_shapes(["sequence=1:64:512", "batch=4"])
{'sequence': (1, 64, 512), 'batch': (4, 4, 4)}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ...bundle import Bundle
from ...dims import DIM_NAMES
from ...errors import EngineError, InputError, ManifestError, did_you_mean
from ...generation.onnx_model import PAST
from ..engine import TensorSpec

Range = tuple[int, int, int]  # (min, opt, max)
# input name -> (min shape, opt shape, max shape): one optimization profile of one graph
Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]

DEFAULT_MAX_BATCH = 8  # beam search and batched calls need rows; 1 is the size tuned for
MAX_SIZE = 1 << 24  # no dim of a model this runtime serves comes near; larger is a typo
AUDIO_SECONDS = 30  # Whisper's window, and a sane bound for CTC models
TEXT_OPT = 128  # the sequence length TensorRT tunes for, when the model allows it
NEW_TOKENS = ("sequence", "decoder_sequence")  # the dims of the tokens fed beside a cache
# A zero-length KV cache is fed at the first generation step, so cache dims may be 0.
MIN_SIZE = {"past_sequence": 0}

# Where each sequence-like dim finds its maximum in config.json, first key present wins.
_LENGTH_KEYS = {
    "sequence": ("max_position_embeddings", "n_positions", "n_ctx", "max_target_positions"),
    "encoder_sequence": ("max_source_positions", "max_position_embeddings", "n_positions"),
    "decoder_sequence": ("max_target_positions", "max_position_embeddings", "n_positions"),
}
_LENGTH_KEYS["past_sequence"] = _LENGTH_KEYS["total_sequence"] = _LENGTH_KEYS["decoder_sequence"]


def parse_shapes(items: Iterable[str]) -> dict[str, Range]:
    """``NAME=MIN:OPT:MAX`` (or ``NAME=N`` for one fixed size) items -> ranges by dim name.
    Only the syntax is checked here; ``check_ranges`` checks the values against a bundle."""
    ranges: dict[str, Range] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        parts = value.split(":")
        if not sep or not name or len(parts) not in (1, 3):
            raise InputError(
                f"--shapes takes NAME=MIN:OPT:MAX or NAME=SIZE, got {item!r}. Note: NAME is a "
                "dim name (batch, sequence, height, ...), e.g. --shapes sequence=1:128:512 batch=1."
            )
        try:
            sizes = [int(part) for part in parts]
        except ValueError:
            raise InputError(
                f"--shapes {item!r}: sizes must be whole numbers, got {value!r}. Note: e.g. "
                f"{name}=1:128:512."
            ) from None
        if name in ranges:
            raise InputError(f"--shapes gives {name!r} twice in one profile ({item!r}).")
        ranges[name] = (sizes[0], sizes[0], sizes[0]) if len(sizes) == 1 else tuple(sizes)
    return ranges


def bundle_dims(bundle: Bundle) -> set[str]:
    """The dim names the bundle's graphs' inputs use: the ones a profile must give ranges."""
    return {dim for info in bundle.graphs.values() for spec in info["inputs"]
            for dim in spec["dims"] if isinstance(dim, str)}


def check_ranges(ranges: Mapping[str, Range], known: Iterable[str], source: str) -> None:
    """An InputError unless each range is of a dim the bundle uses, ordered min <= opt <= max,
    and within sane bounds. ``source`` says where the ranges came from, for the message."""
    known = set(known)
    for name, (low, opt, high) in ranges.items():
        if name not in known:
            what = ("is not a dim of this bundle's graph inputs" if name in DIM_NAMES
                    else "is not a dim name")
            raise InputError(f"{source}: {name!r} {what}. " + did_you_mean(name, known))
        floor = MIN_SIZE.get(name, 1)
        if not floor <= low <= opt <= high:
            raise InputError(
                f"{source}: {name}={low}:{opt}:{high} is not ordered {floor} <= min <= opt <= "
                f"max. Note: give MIN:OPT:MAX, e.g. {name}={max(floor, 1)}:{max(floor, 1)}:64.")
        if high > MAX_SIZE:
            raise InputError(
                f"{source}: {name} max {high} is beyond {MAX_SIZE}; TensorRT would reserve "
                "memory for that size. Note: give the largest size the model will really see.")


def merge_ranges(ranges: Iterable[Mapping[str, Range]]) -> dict[str, Range]:
    """One range per dim covering all given (e.g. the dim ranges of each graph's feeds)."""
    merged: dict[str, Range] = {}
    for mapping in ranges:
        for name, (low, opt, high) in mapping.items():
            if name in merged:
                old = merged[name]
                low, opt, high = min(low, old[0]), max(opt, old[1]), max(high, old[2])
            merged[name] = (low, opt, high)
    return merged


def default_ranges(bundle: Bundle, *, max_batch: int = DEFAULT_MAX_BATCH,
                   skip: Iterable[str] = ()) -> dict[str, Range]:
    """A range for every dim the bundle's inputs use (but those in ``skip``, given elsewhere),
    from its config and processor files.

    Text lengths run from 1 to the model's maximum positions (tuned at 128, or at 1 new token
    beside a cache); a KV cache from 0, and the attention mask over both as their sum;
    image sides are fixed when the processor resizes to a fixed size, else they run up to its
    longest edge; audio runs up to 30 s; batch from 1 to ``max_batch``.
    """
    if not 1 <= max_batch <= MAX_SIZE:
        raise InputError(f"max_batch must be at least 1, got {max_batch}.")
    dims = bundle_dims(bundle) - set(skip)
    if "past_sequence" in bundle_dims(bundle):  # the mask's total follows from past and new
        dims.discard("total_sequence")
    ranges = {name: _default_range(bundle, name, max_batch) for name in sorted(dims)}
    if "past_sequence" in ranges:  # a cached decoder: most runs feed one new token
        for name in NEW_TOKENS:
            if name in ranges:
                ranges[name] = (ranges[name][0], 1, ranges[name][2])
    return _with_total(ranges, bundle_dims(bundle))


def _with_total(ranges: dict[str, Range], dims: set[str]) -> dict[str, Range]:
    """``total_sequence`` made past_sequence + new tokens at min, opt and max: TensorRT checks
    each of the three shape sets against the graph, where the attention mask spans both."""
    new = next((ranges[name] for name in NEW_TOKENS if name in ranges), None)
    if "total_sequence" in dims and "past_sequence" in ranges and new is not None:
        ranges["total_sequence"] = tuple(p + n for p, n in zip(ranges["past_sequence"], new))
    return ranges


def _default_range(bundle: Bundle, name: str, max_batch: int) -> Range:
    config = bundle.config
    if name in ("batch", "text_batch"):
        return (1, 1, max_batch)
    if name == "encoder_sequence":
        fixed = _encoder_output_length(bundle)
        if fixed is not None:
            return (fixed, fixed, fixed)
    if name in _LENGTH_KEYS:
        longest = next((config[k] for k in _LENGTH_KEYS[name] if _size(config.get(k))), None)
        if longest is None:  # relative positions (T5): the tokenizer's limit, when it has one
            tokenizer = bundle.read_json("tokenizer_config.json", required=False) or {}
            limit = tokenizer.get("model_max_length")
            longest = limit if _size(limit) and limit > 1 else None
        if longest is None:
            raise ManifestError(
                f"config.json of {bundle.path} gives no maximum length for the dim {name!r} "
                f"(looked for {', '.join(_LENGTH_KEYS[name])}), nor does tokenizer_config.json "
                f"(model_max_length). Note: give its range with --shapes {name}=1:128:512 "
                f"(shapes={{'{name}': (1, 128, 512)}} in Python).")
        if name == "past_sequence":  # room for at least one new position
            return (0, min(TEXT_OPT, longest - 1), longest - 1)
        return (1, min(TEXT_OPT, longest), longest)
    processor = bundle.read_json("preprocessor_config.json", required=False) or {}
    if name in ("height", "width"):
        return _image_range(bundle, processor, name)
    if name == "channels":
        channels = config.get("num_channels", processor.get("feature_size"))
        if _size(channels):
            return (channels, channels, channels)
    rate = processor.get("sampling_rate")
    if name == "audio_samples" and _size(rate):
        return (rate // 10, 10 * rate, AUDIO_SECONDS * rate)
    hop = processor.get("hop_length", 160)
    if name == "audio_frames" and _size(rate) and _size(hop):
        frames = AUDIO_SECONDS * rate // hop
        return (1, frames, frames)
    if name == "num_queries" and _size(config.get("num_queries")):
        return (config["num_queries"],) * 3
    raise ManifestError(
        f"No default range for the dim {name!r} of {bundle.path}: its config.json and "
        f"preprocessor_config.json do not say its size. Note: give it with --shapes "
        f"{name}=MIN:OPT:MAX.")


def _size(value) -> bool:
    """Whether a config value is a usable size: an int from 1 to MAX_SIZE (a config is someone
    else's: a string, a bool or 10**12 is no size)."""
    return type(value) is int and 1 <= value <= MAX_SIZE


def _image_range(bundle: Bundle, processor: Mapping, name: str) -> Range:
    """A fixed side when the processor resizes to height x width; else from the shortest
    edge (tuned for) up to the longest edge (DETR: 800 and 1333), from 32 for odd aspects."""
    size = processor.get("size")
    kind = str(processor.get("image_processor_type") or processor.get("feature_extractor_type"))
    if kind.startswith("Vilt") and _size(size):  # ViLT's legacy "size": 384
        size = {"shortest_edge": size}
    if isinstance(size, Mapping) and _size(size.get(name)):
        return (size[name],) * 3
    if isinstance(size, Mapping) and _size(size.get("shortest_edge")):
        shortest = size["shortest_edge"]
        longest = size.get("longest_edge", shortest)
        if kind.startswith("Vilt"):  # its own cap of the long edge
            longest = int(1333 / 800 * shortest)
        longest = longest if _size(longest) and longest >= shortest else shortest
        return (min(32, shortest), shortest, longest)
    image_size = bundle.config.get("image_size")
    if _size(image_size):
        return (image_size,) * 3
    raise ManifestError(
        f"No image size for the dim {name!r} of {bundle.path}: preprocessor_config.json has no "
        f"size and config.json no image_size. Note: give it with --shapes {name}=MIN:OPT:MAX.")


def _encoder_output_length(bundle: Bundle) -> int | None:
    """The encoder's output length when its graph fixes it (Whisper: 1500 frames), which the
    decoder's ``encoder_sequence`` then always takes."""
    encoder = bundle.graphs.get("encoder_model")
    for spec in (encoder or {}).get("outputs", []):
        if spec["name"] == "last_hidden_state" and isinstance(spec["dims"][1], int):
            return spec["dims"][1]
    return None


def resolve_ranges(bundle: Bundle, *, calibration: Mapping[str, Range] | None = None,
                   shapes: Sequence[Mapping[str, Range]] = (),
                   max_batch: int = DEFAULT_MAX_BATCH) -> list[dict[str, Range]]:
    """The ranges of each profile: defaults, then ``calibration`` (dim ranges seen in data),
    then each group of ``shapes`` overrides (one profile per group; one profile when none)."""
    known = bundle_dims(bundle)
    calibration = {k: tuple(int(x) for x in v) for k, v in (calibration or {}).items()
                   if k in known}
    check_ranges(calibration, known, "calibration data")
    everywhere = set.intersection(*(set(group) for group in shapes)) if shapes else set()
    ranges = default_ranges(bundle, max_batch=max_batch, skip={*calibration, *everywhere})
    ranges.update(calibration)
    profiles = []
    for group in shapes or [{}]:
        check_ranges(group, known, "--shapes")
        if "total_sequence" in group:
            raise InputError(
                "--shapes: total_sequence is past_sequence + sequence, so it follows from "
                "those. Note: give past_sequence and sequence (or decoder_sequence) instead.")
        profiles.append(_with_total({**ranges, **group}, known))
    return profiles


def graph_profile(inputs: Sequence[TensorSpec], ranges: Mapping[str, Range]) -> Profile:
    """One graph's (min, opt, max) shape per input. A KV cache input (``past_key_values.*``)
    may be empty along every dim but the batch: the first generation step feeds it so."""
    profile: Profile = {}
    for spec in inputs:
        shapes: list[list[int]] = [[], [], []]
        for axis, dim in enumerate(spec.dims):
            if isinstance(dim, int):
                sizes = (dim, dim, dim)
            elif isinstance(dim, str) and dim in ranges:
                sizes = ranges[dim]
            else:
                raise ManifestError(
                    f"Input {spec.name!r} has a dynamic dim without a vocabulary name (axis "
                    f"{axis}: {dim!r}), so no TensorRT profile can be derived for it. Note: "
                    "export the bundle again with `edgeport export`.")
            if spec.name.startswith(PAST) and axis > 0 and isinstance(dim, str):
                sizes = (0, *sizes[1:])
            for shape, size in zip(shapes, sizes):
                shape.append(int(size))
        profile[spec.name] = tuple(tuple(shape) for shape in shapes)
    return profile


def pick_profile(profiles: Sequence[Profile], shapes: Mapping[str, tuple[int, ...]]) -> int:
    """The index of the first profile whose ranges hold every input shape; an EngineError
    naming the input and the ranges the engine was built for when none does."""
    for index, profile in enumerate(profiles):
        if all(_within(shapes[name], *profile[name]) for name in shapes if name in profile):
            return index
    outside = [n for n in shapes if n in profiles[0]
               and not any(_within(shapes[n], *p[n]) for p in profiles)]
    if not outside:  # each shape fits some profile, but no one profile fits them all
        raise EngineError(
            f"No single shape range of the TensorRT engine holds all of the feed's shapes "
            f"{ {n: list(s) for n, s in shapes.items()} }. Note: rebuild with one --shapes "
            "group covering them together.")
    name = outside[0]
    built = "; ".join(f"{list(p[name][0])} to {list(p[name][2])}" for p in profiles)
    raise EngineError(
        f"Input {name!r} has shape {list(shapes[name])}, outside every shape range the TensorRT "
        f"engine was built for ({built}). Note: rebuild with wider ranges, e.g. `edgeport build "
        "BUNDLE --shapes sequence=1:128:1024`.")


def _within(shape, low, _opt, high) -> bool:
    return len(shape) == len(low) and all(a <= s <= b for s, a, b in zip(shape, low, high))
