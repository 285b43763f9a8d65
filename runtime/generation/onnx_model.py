"""The GenerationModel protocol over a bundle's graphs, through ONNX Runtime.

A decoder-only bundle (family "decoder") has one graph, ``model``, that takes ``input_ids``,
``attention_mask``, ``position_ids`` and ``past_key_values.*`` and gives ``logits`` and
``present.*``. An encoder-decoder bundle (family "encoder-decoder") has ``encoder_model`` and
``decoder_model_merged``: the decoder with and without its cache in one graph, chosen by
``use_cache_branch``. Feeds are made from the graphs' declared input names; the cache is fed by
name too (``present.X`` of one step is ``past_key_values.X`` of the next), zero-length at the
first step, so no architecture has code of its own here. The encoder reads token ids (BART,
T5) or whatever feed the model is begun with (Whisper's ``input_features``), by the names it
declares.

>>> model = OnnxGenerationModel.from_bundle(Bundle.load("gpt2-bundle"))   # doctest: +SKIP
>>> state = model.begin(input_ids, attention_mask)                         # doctest: +SKIP
>>> logits, state = model.next_logits(state, input_ids)                    # doctest: +SKIP
>>> logits.shape                                                           # doctest: +SKIP
(2, 50257)

A graph made by the llm recipe (GroupQueryAttention; see ``exporter.llm``) takes no padding
(``takes_padding`` is False: ``runtime.generation.run`` generates prompts of different lengths
one by one) and, on the CPU, keeps its cache in one buffer per input that the graph writes the
new positions into: ``past_key_values.X`` and ``present.X`` are bound to the same numpy-backed
OrtValue, whose capacity doubles when a sequence outgrows it, so no step copies the cache.

With ``io_binding`` (the default when the decoder runs on CUDA, through ONNX Runtime or
TensorRT, and on OpenVINO) the cache stays where the graphs run: ``present.*`` come back on
the device (ONNX Runtime OrtValues, TensorRT DeviceArrays, OpenVINO tensors: OvArray) and are
bound as the next step's past without a copy to the host, and so do the encoder's hidden
states, which every decoder step reads. Only the logits cross to the host; a beam search
reorder gathers the cache rows on the GPU under TensorRT (through the host under ONNX Runtime
and OpenVINO).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from numbers import Integral

import numpy as np

from ..backends.engine import Engine
from ..bundle import Bundle
from ..errors import EngineError, InputError, ManifestError

PAST, PRESENT = "past_key_values.", "present."

# The graphs a generative family's bundle must have: (encoder or None, decoder).
FAMILY_GRAPHS = {"decoder": (None, "model"),
                 "encoder-decoder": ("encoder_model", "decoder_model_merged")}


@dataclass(frozen=True)
class OnnxGenerationState:
    """The rows of a batch as the graphs need them. Never changed in place.

    ``length`` is how many positions of the decoder's sequence the cache holds; ``past`` maps
    the decoder's ``past_key_values.*`` input names to arrays (zero-length before the first
    step). ``attention_mask`` is a decoder-only model's mask over every position fed so far;
    ``encoder`` holds an encoder-decoder's ``encoder_hidden_states`` (and
    ``encoder_attention_mask``, when the decoder takes one); ``inputs`` says which encoded input
    each row comes from, so a reorder that keeps every row on its input (a beam search step)
    shares what was computed from the encoder instead of copying it.
    """

    past: Mapping[str, np.ndarray]
    length: int = 0
    attention_mask: np.ndarray | None = None
    encoder: Mapping[str, np.ndarray] = field(default_factory=dict)
    inputs: np.ndarray | None = None
    # A shared cache's buffers are written in place past ``length``: ``tip`` (one item, shared
    # by the states on the same buffers) holds how far they have been written. A state whose
    # length is not the tip has been advanced already; advancing it again forks its buffers, so
    # that the newer state keeps its positions (no state changes in place).
    tip: list | None = field(default=None, compare=False)

    @property
    def rows(self) -> int:
        arrays = [*self.past.values(), self.attention_mask, *self.encoder.values()]
        return _shape(next(a for a in arrays if a is not None))[0]


class OnnxGenerationModel:
    """A decoder-only or encoder-decoder model over engines for its graphs.

    ``decoder`` is the graph that gives ``logits`` (``model`` or ``decoder_model_merged``);
    ``encoder`` is given for an encoder-decoder model. Any Engine fits (an OrtEngine, a
    TensorRT engine, a fake one in tests). ``from_bundle`` makes one from a bundle.
    """

    def __init__(self, decoder: Engine, encoder: Engine | None = None, *,
                 vocab_size: int | None = None, io_binding: bool | None = None,
                 recompute_past: int | None = None, takes_padding: bool = True,
                 shared_cache: bool = False):
        """``vocab_size`` is needed only when the graph leaves the logits' width dynamic.
        ``io_binding`` keeps the cache on the decoder's device between steps (None: when the
        decoder runs on CUDA and can, an OrtEngine or a TrtEngine). ``recompute_past``: the
        length past which a cache of at most that many positions is dropped and the whole
        sequence fed again (``recompute_length``). ``takes_padding`` False: a graph that counts
        positions from the start of every row (GroupQueryAttention). ``shared_cache``: the
        graph appends to its cache in place (GroupQueryAttention), in one buffer per input on
        the host (an OrtEngine on the CPU)."""
        self.decoder, self.encoder = decoder, encoder
        self.recompute_past = recompute_past
        self.takes_padding = bool(takes_padding)
        if shared_cache and (encoder is not None or not _binds_on_host(decoder)):
            raise EngineError("A shared cache buffer needs a decoder-only graph run by an "
                              "OrtEngine on the CPU.")
        self.shared_cache = bool(shared_cache)
        if io_binding is None:  # on OpenVINO too: the cache stays in its own tensors
            io_binding = (getattr(decoder, "device", ("cpu", 0))[0] in ("cuda", "openvino")
                          and hasattr(decoder, "run_bound"))
        if io_binding and not hasattr(decoder, "run_bound"):
            raise EngineError("io_binding needs a decoder engine with run_bound (an OrtEngine "
                              "or a TrtEngine) to keep its cache on the device.")
        self.io_binding = bool(io_binding)
        self.is_encoder_decoder = encoder is not None
        self._inputs = {spec.name: spec for spec in decoder.inputs}
        outputs = {spec.name for spec in decoder.outputs}
        if "logits" not in outputs:
            raise EngineError(
                f"The decoder graph gives no 'logits'. Note: its outputs are {sorted(outputs)}.")
        self._past = [name for name in self._inputs if name.startswith(PAST)]
        missing = [name for name in self._past
                   if PRESENT + name[len(PAST):] not in outputs]
        if missing:
            raise EngineError(
                f"The decoder graph takes {missing[0]} but gives no "
                f"{PRESENT + missing[0][len(PAST):]}. Note: a cached graph gives present.X for "
                "every past_key_values.X it takes; export the bundle again."
            )
        # The merged decoder's cached branch computes no cross-attention cache (its
        # present.*.encoder.* are placeholders): the first step's is kept.
        self._kept = [name for name in self._past if ".encoder." in name]
        logits = next(spec for spec in decoder.outputs if spec.name == "logits")
        width = logits.dims[-1] if logits.dims else None
        if not isinstance(width, int) and vocab_size is None:
            raise EngineError(
                "The decoder graph's logits have no fixed width, so the vocabulary size is "
                "unknown. Note: pass vocab_size (config.json's vocab_size)."
            )
        if not isinstance(width, int) and (not isinstance(vocab_size, Integral)
                                           or isinstance(vocab_size, bool)
                                           or not 0 < vocab_size < 2**31):
            raise InputError(
                f"vocab_size={repr(vocab_size)[:80]} is not a vocabulary size (a positive integer "
                "below 2**31), and the decoder graph's logits have no fixed width to take "
                "instead. Note: fix vocab_size in the bundle's config.json."
            )
        self.vocab_size = width if isinstance(width, int) else int(vocab_size)

    @classmethod
    def from_bundle(cls, bundle: Bundle, variant: str = "fp32", *,
                    io_binding: bool | None = None, engines: Mapping[str, Engine] | None = None,
                    **engine_options) -> OnnxGenerationModel:
        """The model over a generative bundle's graphs in ``variant``; ``engine_options`` go to
        ``bundle.engine`` (backend, device, threads, providers, session_options). ``engines``:
        graph name -> an Engine that runs that graph instead (a serving backend's, which calls
        a server: serving/native_model.py's BlsEngine)."""
        family = bundle.manifest.get("family")
        if family not in FAMILY_GRAPHS:
            raise InputError(
                f"The bundle {bundle.path} holds a {family!r} model, which does not generate "
                f"text. Note: generation needs a bundle of family {' or '.join(FAMILY_GRAPHS)} "
                "(GPT-2, BART, T5, ...)."
            )
        encoder, decoder = FAMILY_GRAPHS[family]
        needed = [name for name in (encoder, decoder) if name]
        files = bundle.variants.get(variant, {}).get("files", {})
        for name in needed:
            if name not in bundle.graphs or (variant in bundle.variants and name not in files):
                raise ManifestError(
                    f"The bundle {bundle.path} has no graph {name!r}, which a {family} model "
                    f"generates with. Note: its graphs are {sorted(bundle.graphs)} (variant "
                    f"{variant!r}: {sorted(files)}); export the checkpoint again with "
                    "`edgeport export`."
                )
        engines = dict(engines or {})
        unknown = sorted(set(engines) - set(needed))
        if unknown:
            raise InputError(f"engines= names {unknown}, which a {family} model does not run. "
                             f"Note: it runs the graphs {needed}.")

        def engine(name: str) -> Engine:
            return engines[name] if name in engines else bundle.engine(name, variant,
                                                                       **engine_options)

        decoder_engine = engine(decoder)
        gqa = "llm" in recipe_lineage(bundle, variant)
        return cls(decoder_engine, engine(encoder) if encoder else None,
                   vocab_size=bundle.config.get("vocab_size"), io_binding=io_binding,
                   recompute_past=recompute_length(bundle.config), takes_padding=not gqa,
                   shared_cache=gqa and _binds_on_host(decoder_engine))

    # --- the protocol ----------------------------------------------------------------------
    def begin(self, input_ids: np.ndarray | Mapping[str, np.ndarray],
              attention_mask: np.ndarray | None) -> OnnxGenerationState:
        """The state of a batch of prompts (left-padded for a decoder-only model); an
        encoder-decoder model runs its encoder here, on the token ids or on the encoder feed
        given instead (Whisper's ``{"input_features": ...}``, by the encoder's input names)."""
        if isinstance(input_ids, Mapping):
            if not self.is_encoder_decoder:
                raise InputError("A decoder-only model is begun with token ids, not a feed. "
                                 "Note: pass input_ids and attention_mask arrays.")
            feed = dict(input_ids)
            if attention_mask is not None:
                feed["attention_mask"] = np.asarray(attention_mask, dtype=np.int64)
            return self._begin_encoder(feed)
        input_ids = np.asarray(input_ids, dtype=np.int64)
        attention_mask = np.asarray(attention_mask, dtype=np.int64)
        if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
            raise InputError(
                f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} must be "
                "two-dimensional (rows, tokens) and of the same shape."
            )
        if self.is_encoder_decoder:
            return self._begin_encoder({"input_ids": input_ids, "attention_mask": attention_mask})
        if not self.takes_padding and not attention_mask.all():
            raise InputError(
                "This graph counts positions from the start of every row (GroupQueryAttention), "
                "so it takes no padded batch. Note: generate prompts of different lengths one "
                "by one (runtime.generation.run does).")
        past = {name: self._empty(name, len(input_ids), input_ids.shape[1])
                for name in self._past}
        return OnnxGenerationState(past, attention_mask=attention_mask)

    def _begin_encoder(self, feed: Mapping[str, np.ndarray]) -> OnnxGenerationState:
        """Run the encoder on the inputs it declares; the decoder gets its hidden states, and
        the encoder's attention mask (ones when the feed has none: Whisper's fixed windows)
        only when the decoder takes one."""
        names = [spec.name for spec in self.encoder.inputs]
        missing = [name for name in names if name not in feed]
        if missing:
            raise InputError(
                f"The encoder takes {names}, and the feed lacks {missing}. Note: the feed holds "
                f"{sorted(feed)}; give every input the encoder graph declares."
            )
        feed = {name: feed[name] for name in names}
        if self.io_binding and hasattr(self.encoder, "run_bound"):  # read by every step
            hidden = self.encoder.run_bound(feed, keep={"last_hidden_state"})["last_hidden_state"]
        else:
            hidden = self.encoder.run(feed)["last_hidden_state"]
        encoder = {"encoder_hidden_states": hidden}
        if "encoder_attention_mask" in self._inputs:
            mask = feed.get("attention_mask")
            encoder["encoder_attention_mask"] = (
                np.ones(_shape(hidden)[:2], dtype=np.int64) if mask is None else mask)
        rows = _shape(hidden)[0]
        past = {name: self._empty(name, rows) for name in self._past}
        return OnnxGenerationState(past, encoder=encoder, inputs=np.arange(rows))

    def expand(self, state: OnnxGenerationState, rows: np.ndarray) -> OnnxGenerationState:
        """Row ``i`` of the result is row ``rows[i]`` of ``state``, for every cached array."""
        rows = np.asarray(rows, dtype=np.int64)

        def take(array):
            if array is None:
                return None
            if isinstance(array, np.ndarray):
                return np.take(array, rows, axis=0)
            if hasattr(array, "take_rows"):  # a TensorRT DeviceArray: gathered on the GPU
                return array.take_rows(rows)
            # an OrtValue on the device: reordered on the host, then put back where it was
            import onnxruntime as ort

            return ort.OrtValue.ortvalue_from_numpy(np.take(array.numpy(), rows, axis=0),
                                                    *self.decoder.device)

        inputs = None if state.inputs is None else state.inputs[rows]
        # Rows of one input hold the same encoder states and cross-attention cache: when every
        # row stays on its input (a beam search reorder), those are shared, not copied.
        same = inputs is not None and np.array_equal(inputs, state.inputs)
        return OnnxGenerationState(
            past={name: array if same and name in self._kept else take(array)
                  for name, array in state.past.items()},
            length=state.length,
            attention_mask=take(state.attention_mask),
            encoder=dict(state.encoder) if same else {name: take(array)
                                                      for name, array in state.encoder.items()},
            inputs=inputs,
        )

    def next_logits(self, state: OnnxGenerationState, sequences: np.ndarray
                    ) -> tuple[np.ndarray, OnnxGenerationState]:
        """The float32 logits (rows, vocab) of the position after ``sequences``, feeding only
        the tokens the cache does not hold yet; and the state that holds them too."""
        sequences = np.asarray(sequences, dtype=np.int64)
        if sequences.ndim != 2 or len(sequences) != state.rows:
            raise InputError(
                f"sequences has shape {sequences.shape}; the state holds {state.rows} rows. "
                "Note: pass the whole sequence of every row so far, (rows, tokens)."
            )
        if sequences.shape[1] <= state.length:
            raise InputError(
                f"sequences holds {sequences.shape[1]} tokens per row, but the cache already "
                f"holds {state.length}. Note: pass the whole sequence so far, with the new "
                "token(s) at its end."
            )
        cached = bool(self._past)
        if (cached and self.recompute_past is not None and 0 < state.length
                <= self.recompute_past < sequences.shape[1]):
            state = replace(state, length=0, past={
                name: self._empty(name, state.rows, sequences.shape[1]) for name in self._past})
        if self.shared_cache:
            return self._next_logits_shared(state, sequences)
        new = sequences[:, state.length:] if cached else sequences
        feed = {"input_ids": new, **state.past, **state.encoder}
        mask = state.attention_mask
        if mask is not None:  # decoder-only: generated tokens are attended, as in transformers
            if mask.shape[1] < sequences.shape[1]:
                ones = np.ones((len(mask), sequences.shape[1] - mask.shape[1]), dtype=np.int64)
                mask = np.concatenate([mask, ones], axis=1)
            feed["attention_mask"] = mask
            feed["position_ids"] = _position_ids(mask)[:, -new.shape[1]:]
        if "use_cache_branch" in self._inputs:
            feed["use_cache_branch"] = np.array([state.length > 0])
        feed = {k: v for k, v in feed.items() if k in self._inputs}
        if self.io_binding:
            outputs = self.decoder.run_bound(feed, keep={PRESENT + name[len(PAST):]
                                                         for name in self._past})
        else:
            outputs = self.decoder.run(feed)
        logits = np.asarray(outputs["logits"][:, -1, :], dtype=np.float32)
        past = {name: outputs[PRESENT + name[len(PAST):]] for name in self._past}
        if state.length > 0:
            past.update({name: state.past[name] for name in self._kept})
        return logits, OnnxGenerationState(
            past, length=sequences.shape[1] if cached else 0, attention_mask=mask,
            encoder=state.encoder, inputs=state.inputs)

    def _next_logits_shared(self, state: OnnxGenerationState, sequences: np.ndarray
                            ) -> tuple[np.ndarray, OnnxGenerationState]:
        """next_logits for a graph that appends to its cache buffers in place: the buffers
        grow (doubling) when the sequence outgrows them; otherwise no step copies them."""
        import onnxruntime as ort

        total = sequences.shape[1]
        past, tip = dict(state.past), state.tip
        capacity = next(iter(past.values())).shape[2] if past else total
        if total > capacity or (tip is not None and tip[0] != state.length):
            past = {name: _grown(buffer, state.length, max(capacity, _capacity(total)))
                    for name, buffer in past.items()}
            tip = None
        tip = tip if tip is not None else [state.length]
        feed = {"input_ids": sequences[:, state.length:],
                "attention_mask": np.ones((len(sequences), total), dtype=np.int64)}
        buffers = {name: ort.OrtValue.ortvalue_from_numpy(buffer)
                   for name, buffer in past.items()}
        outputs = self.decoder.run_bound(
            {**{k: v for k, v in feed.items() if k in self._inputs}, **buffers}, keep=set(),
            into={PRESENT + name[len(PAST):]: value for name, value in buffers.items()})
        logits = np.asarray(outputs["logits"][:, -1, :], dtype=np.float32)
        tip[0] = total
        return logits, OnnxGenerationState(past, length=total,
                                           attention_mask=feed["attention_mask"], tip=tip)

    # --- helpers ---------------------------------------------------------------------------
    def _empty(self, name: str, rows: int, length: int = 0) -> np.ndarray:
        """An empty cache input: (rows, heads, 0, head_size) in the graph's dtype; for a shared
        cache, a zeroed buffer with room for ``length`` positions and more."""
        spec = self._inputs[name]
        size = _capacity(length) if self.shared_cache else 0
        dims = [rows if i == 0 else (size if isinstance(d, str) or d is None else d)
                for i, d in enumerate(spec.dims)]
        if sum(1 for d in spec.dims[1:] if isinstance(d, str) or d is None) != 1:
            raise EngineError(
                f"The decoder graph's {name} has dims {list(spec.dims)}: edgeport needs one "
                "dynamic (sequence) dim beside the batch, and the others fixed, to make an "
                "empty cache. Note: export the bundle again with `edgeport export`."
            )
        return np.zeros(dims, dtype=spec.dtype)


def _binds_on_host(engine: Engine) -> bool:
    """Whether the engine can write outputs into host buffers it is given (an OrtEngine on the
    CPU): what a shared cache needs."""
    return getattr(engine, "device", ("cpu", 0))[0] == "cpu" and hasattr(engine, "run_bound")


# The smallest shared cache buffer, in positions: a prompt and its first new tokens fit.
_MIN_CAPACITY = 64


def _capacity(length: int) -> int:
    """Room for ``length`` positions and more: the next power of two (at least 64)."""
    return max(_MIN_CAPACITY, 1 << max(0, int(length) - 1).bit_length())


def _grown(buffer: np.ndarray, length: int, capacity: int) -> np.ndarray:
    """A new buffer (rows, heads, positions, head_size) with room for ``capacity`` positions,
    holding the first ``length`` positions of ``buffer``."""
    bigger = np.zeros((*buffer.shape[:2], capacity, *buffer.shape[3:]), dtype=buffer.dtype)
    bigger[:, :, :length] = buffer[:, :, :length]
    return bigger


def recipe_lineage(bundle: Bundle, variant: str) -> list[str]:
    """The recipes a variant was made by, itself first and then its sources' (an int4 variant
    of an llm variant: ["int4", "llm"]); "export" for the fp32 graphs."""
    names, seen = [], set()
    while variant in bundle.variants and variant not in seen:
        seen.add(variant)
        recipe = bundle.variants[variant].get("recipe") or {}
        names.append(recipe.get("name"))
        variant = recipe.get("source")
    return names


def recompute_length(config: Mapping) -> int | None:
    """The length at which transformers drops a decoder's cache and feeds the whole sequence
    again, or None: Phi-3 with RoPE scaling (LongRoPE) does, the first time the sequence passes
    ``original_max_position_embeddings``, so that every cached key is rotated with the long
    factors from then on (its ``prepare_inputs_for_generation``); the graph chooses the factors
    from the largest position it is fed."""
    length = config.get("original_max_position_embeddings")
    if (config.get("model_type") == "phi3" and config.get("rope_scaling")
            and isinstance(length, Integral) and not isinstance(length, bool) and length > 0):
        return int(length)
    return None


def _shape(value) -> tuple[int, ...]:
    """The shape of a numpy array or an ONNX Runtime OrtValue."""
    return tuple(value.shape()) if callable(getattr(value, "shape", None)) else value.shape


def _position_ids(mask: np.ndarray) -> np.ndarray:
    """Each row's positions from its attention mask, as transformers' GPT-2 makes them for
    generation: counted over attended tokens, and 1 at padding."""
    positions = np.cumsum(mask, axis=-1) - 1
    positions[mask == 0] = 1
    return positions
