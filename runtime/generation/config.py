"""Generation settings, resolved as transformers 4.57 resolves them.

Three layers, each overriding the one before, as in ``transformers.GenerationMixin.generate``:

    defaults (transformers' GenerationConfig())
      <- the model's: generation_config.json, or (when absent) the generation fields of config.json
      <- the call's: a ``generation_config`` (object or dict), then keyword arguments

    >>> model = model_generation_config({"eos_token_id": 2, "max_length": 50}, {})
    >>> config = resolve_generation_config(model, num_beams=4, num_return_sequences=2)
    >>> config.max_length, config.num_beams, config.eos_token_id
    (50, 4, 2)
    >>> ready = generation_config_for_inputs(config, input_ids_length=7, is_encoder_decoder=False)
    >>> ready.max_length, ready.pad_token_id   # pad falls back to eos, as in transformers
    (50, 2)

``resolve_generation_config`` is transformers' ``_prepare_generation_config`` plus ``validate()``;
``generation_config_for_inputs`` is ``_prepare_special_tokens``, ``_prepare_generated_length`` and
``_validate_generated_length`` for a prompt of known length.

Where transformers only warns, this module decides:

- A keyword argument that transformers would accept and then ignore is an InputError when
  ``strict`` (the default): sampling flags (temperature, top_k, top_p, min_p, typical_p,
  epsilon_cutoff, eta_cutoff, seed) without ``do_sample=True``, beam flags (early_stopping,
  length_penalty) with one beam, and ``max_length`` / ``min_length`` when ``max_new_tokens`` /
  ``min_new_tokens`` is set and takes precedence. Values that come from the model's files or from a
  ``generation_config`` are never refused for this (checkpoints often ship ``early_stopping`` with
  one beam); ``strict=False`` gives transformers' behaviour exactly (the flag is ignored).
- transformers features this runtime does not implement (contrastive search, group beam search,
  constrained beam search, DoLa, assisted decoding, guidance, watermarking, sequence_bias,
  encoder_repetition_penalty, encoder_no_repeat_ngram_size, exponential_decay_length_penalty,
  token_healing) are an InputError when set to an active value, wherever the value comes from:
  silently generating other tokens than transformers would be worse.
- Keys transformers keeps but ``generate`` does not act on for the tokens (use_cache, the output_*
  flags, cache and compile settings, assistant tuning, and custom keys such as Whisper's) are kept
  in ``extras``; unknown keyword arguments are an InputError with a close-match suggestion.
- transformers requires floats for temperature and repetition_penalty (an int such as 2 raises);
  here any real number is accepted and used as a float. Ranges follow transformers' processors
  (top_p in [0, 1], typical_p in (0, 1], min_p in [0, 1], temperature > 0 when sampling, ...);
  values transformers silently skips (top_p > 1, a negative no_repeat_ngram_size, an
  epsilon_cutoff >= 1) are refused.
- ``seed`` is edgeport's own: the seed of the sampler, which makes sampling reproducible
  (transformers draws from torch's generator, so sampled tokens differ from its tokens).

Not modelled: transformers' legacy path that re-reads a model config edited in memory, and
``from_model_config``'s fallback to a composite model's decoder sub-config (GPT-2, BART and T5
configs are flat). A config.json's class defaults that the file does not spell out (e.g. BART's
``forced_eos_token_id=2`` in an old hand-written config.json) are unknown here; files written by
``save_pretrained`` spell them out.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, did_you_mean

# transformers 4.57.6 GenerationConfig() attributes and their defaults (a test pins this table
# against transformers). Used for the "is this still the global default?" comparisons of
# ``use_model_defaults`` and to know which names transformers accepts.
TRANSFORMERS_DEFAULTS: dict[str, Any] = {
    "max_length": 20, "max_new_tokens": None, "min_length": 0, "min_new_tokens": None,
    "early_stopping": False, "max_time": None, "stop_strings": None,
    "do_sample": False, "num_beams": 1,
    "use_cache": True, "cache_implementation": None, "cache_config": None,
    "return_legacy_cache": None, "prefill_chunk_size": None,
    "temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None, "typical_p": 1.0,
    "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0,
    "bad_words_ids": None, "renormalize_logits": False, "forced_bos_token_id": None,
    "forced_eos_token_id": None, "remove_invalid_values": False,
    "exponential_decay_length_penalty": None, "suppress_tokens": None,
    "begin_suppress_tokens": None, "sequence_bias": None, "token_healing": False,
    "guidance_scale": None, "watermarking_config": None,
    "num_return_sequences": 1, "output_attentions": False, "output_hidden_states": False,
    "output_scores": False, "output_logits": None, "return_dict_in_generate": False,
    "pad_token_id": None, "bos_token_id": None, "eos_token_id": None,
    "encoder_no_repeat_ngram_size": 0, "decoder_start_token_id": None,
    "is_assistant": False, "num_assistant_tokens": 20, "num_assistant_tokens_schedule": "constant",
    "assistant_confidence_threshold": 0.4, "prompt_lookup_num_tokens": None,
    "max_matching_ngram_size": None, "assistant_early_exit": None, "assistant_lookbehind": 10,
    "target_lookbehind": 10, "compile_config": None, "disable_compile": False,
    "low_memory": None, "penalty_alpha": None, "dola_layers": None, "diversity_penalty": 0.0,
    "num_beam_groups": 1, "constraints": None, "force_words_ids": None,
}

# transformers features that change the tokens and that this runtime does not implement: an
# InputError when one is active (differs from its default), wherever the value comes from.
_UNSUPPORTED = {
    "encoder_repetition_penalty": "encoder_repetition_penalty",
    "encoder_no_repeat_ngram_size": "encoder_no_repeat_ngram_size",
    "exponential_decay_length_penalty": "exponential_decay_length_penalty",
    "sequence_bias": "sequence_bias",
    "token_healing": "token healing",
    "guidance_scale": "classifier-free guidance",
    "watermarking_config": "watermarking",
    "prompt_lookup_num_tokens": "prompt lookup (assisted) decoding",
    "assistant_early_exit": "assisted decoding",
    "penalty_alpha": "contrastive search",
    "dola_layers": "DoLa decoding",
    "diversity_penalty": "group beam search",
    "num_beam_groups": "group beam search",
    "constraints": "constrained beam search",
    "force_words_ids": "constrained beam search",
}

# Flags that only act when sampling, and their neutral values (transformers' validate() warns
# when one differs with do_sample=False).
_SAMPLING_ONLY = {"temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None,
                  "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "seed": None}
_BEAM_ONLY = {"early_stopping": False, "length_penalty": 1.0}
_METADATA = ("transformers_version", "_from_model_config", "_commit_hash")
_NEW_DEFAULTS_VERSION = (4, 50)  # model defaults fill a passed generation_config from here on

TokenIds = int | tuple[int, ...]

# The most beams (and sequences returned per prompt) a call may ask for: each is a row of every
# step's logits and of the cache, so 10**6 beams would ask for terabytes. transformers has no
# limit; published settings use at most a few dozen.
MAX_BEAMS = 256


@dataclass(frozen=True)
class GenerationConfig:
    """The settings of one ``generate`` call (transformers' names and defaults).

    Build one with ``from_dict`` (a generation_config.json's contents), ``from_model_config``
    (a config.json's), ``model_generation_config`` (a bundle's, either file) or
    ``resolve_generation_config`` (a call's). Sequences are stored as tuples.

    >>> GenerationConfig.from_dict({"num_beams": 4, "eos_token_id": [1, 2]}).eos_token_ids
    (1, 2)
    """

    # length of the output
    max_length: int | None = 20
    max_new_tokens: int | None = None
    min_length: int | None = 0
    min_new_tokens: int | None = None
    early_stopping: bool | str = False
    max_time: float | None = None
    stop_strings: tuple[str, ...] | None = None
    # strategy
    do_sample: bool = False
    num_beams: int = 1
    num_return_sequences: int = 1
    # logits processors and warpers
    temperature: float | None = 1.0
    top_k: int | None = 50
    top_p: float | None = 1.0
    min_p: float | None = None
    typical_p: float | None = 1.0
    epsilon_cutoff: float | None = 0.0
    eta_cutoff: float | None = 0.0
    repetition_penalty: float | None = 1.0
    length_penalty: float | None = 1.0
    no_repeat_ngram_size: int | None = 0
    bad_words_ids: tuple[tuple[int, ...], ...] | None = None
    renormalize_logits: bool = False
    forced_bos_token_id: int | None = None
    forced_eos_token_id: TokenIds | None = None
    remove_invalid_values: bool = False
    suppress_tokens: tuple[int, ...] | None = None
    begin_suppress_tokens: tuple[int, ...] | None = None
    # special tokens
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: TokenIds | None = None
    decoder_start_token_id: int | None = None
    # edgeport's own: the seed of the sampler (None: not reproducible)
    seed: int | None = None
    # the transformers version that wrote the model's file (None: current)
    transformers_version: str | None = None
    # every other key: inert transformers settings, unsupported ones (at their defaults), and
    # custom keys (e.g. Whisper's lang_to_id), kept as transformers keeps them
    extras: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # names passed as keyword arguments of the call (transformers' "has_default_max_length")
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self):
        # lists to tuples, ids to ints (shapes checked here, ranges by validate_generation_config)
        for name in _NORMALIZED:
            object.__setattr__(self, name, _normalize(name, getattr(self, name)))
        object.__setattr__(self, "extras", dict(self.extras))
        object.__setattr__(self, "explicit", frozenset(self.explicit))

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *,
                  explicit: frozenset[str] = frozenset()) -> GenerationConfig:
        """transformers' ``GenerationConfig(**values)``: defaults, then ``values``."""
        if not isinstance(values, Mapping):
            raise InputError(
                f"A generation config must be a mapping of names to values, got "
                f"{type(values).__name__}. Note: pass a dict or a GenerationConfig."
            )
        known, extras = {}, {}
        for key, value in values.items():
            if key in _FIELDS:
                known[key] = value
            elif key not in ("_from_model_config", "_commit_hash"):
                extras[key] = value
        return cls(**known, extras=extras, explicit=explicit)

    @classmethod
    def from_model_config(cls, config: Mapping[str, Any]) -> GenerationConfig:
        """transformers' ``GenerationConfig.from_model_config``: the generation fields of a
        config.json (None values dropped, so that defaults hold; other keys ignored)."""
        values = {key: value for key, value in config.items()
                  if value is not None and (key in TRANSFORMERS_DEFAULTS or key in _FIELDS)
                  and key not in ("seed", "transformers_version")}
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        """Every setting by transformers' name (lists for sequences), extras included."""
        out = dict(self.extras)
        for f in dataclasses.fields(self):
            if f.name in ("extras", "explicit"):
                continue
            out[f.name] = _as_lists(getattr(self, f.name))
        return out

    def replace(self, **changes: Any) -> GenerationConfig:
        """A copy with ``changes`` (transformers' ``update``, without mutation)."""
        _check_names(changes, self)
        values = self.to_dict()
        values.update(changes)
        return GenerationConfig.from_dict(values, explicit=self.explicit)

    # --- derived ----------------------------------------------------------------------------
    @property
    def eos_token_ids(self) -> tuple[int, ...] | None:
        """The end-of-sequence ids as a tuple (transformers' ``_eos_token_tensor``)."""
        return _as_tuple(self.eos_token_id)

    @property
    def generation_mode(self) -> str:
        """One of "greedy", "sample", "beam_search", "beam_sample": transformers' modes, less
        the ones this runtime refuses."""
        if self.num_beams == 1:
            return "sample" if self.do_sample else "greedy"
        return "beam_sample" if self.do_sample else "beam_search"


_FIELDS = {f.name for f in dataclasses.fields(GenerationConfig)} - {"extras", "explicit"}
_NORMALIZED = ("eos_token_id", "forced_eos_token_id", "pad_token_id", "bos_token_id",
               "decoder_start_token_id", "forced_bos_token_id", "suppress_tokens",
               "begin_suppress_tokens", "bad_words_ids", "stop_strings")
_PUBLIC = sorted(_FIELDS - {"transformers_version"})


def model_generation_config(generation_config_json: Mapping[str, Any] | None,
                            config_json: Mapping[str, Any] | None) -> GenerationConfig:
    """A model's defaults, as ``from_pretrained`` loads them: its generation_config.json when
    there is one, else the generation fields of its config.json."""
    if generation_config_json is not None:
        return GenerationConfig.from_dict(generation_config_json)
    return GenerationConfig.from_model_config(config_json or {})


def resolve_generation_config(
    model_defaults: GenerationConfig,
    generation_config: GenerationConfig | Mapping[str, Any] | None = None,
    *,
    use_model_defaults: bool | None = None,
    strict: bool = True,
    **kwargs: Any,
) -> GenerationConfig:
    """The settings of a call, as transformers' ``_prepare_generation_config`` makes them.

    Without ``generation_config`` the model's defaults are the base. With one, its values that
    are still transformers' global defaults are filled from the model's (when
    ``use_model_defaults`` is True, or None and the model's file was written by transformers
    4.50 or later), or only the special tokens are (older files). Keyword arguments override
    both. The result is validated; see the module docstring for ``strict``.
    """
    if not isinstance(model_defaults, GenerationConfig):
        raise TypeError("model_defaults must be a GenerationConfig; build it with "
                        "model_generation_config(...)")
    _check_names(kwargs, model_defaults)
    if generation_config is None:
        values = model_defaults.to_dict()
    else:
        if not isinstance(generation_config, GenerationConfig):
            _check_names(generation_config, model_defaults, what="generation_config key")
            generation_config = GenerationConfig.from_dict(generation_config)
        values = generation_config.to_dict()
        model_values = model_defaults.to_dict()
        if use_model_defaults is True or (
            use_model_defaults is None
            and _version(model_defaults.transformers_version) >= _NEW_DEFAULTS_VERSION
        ):
            for key, model_value in model_values.items():
                if key.startswith("_") or key == "transformers_version":
                    continue
                default = TRANSFORMERS_DEFAULTS.get(key)
                if values.get(key, default) == default and model_value != default:
                    values[key] = model_value
            if values.get("temperature") == 0.0:  # transformers' edge case, as it does it
                values["do_sample"] = False
        else:
            for key in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
                if values.get(key) is None:
                    values[key] = model_values.get(key)
    values.update(kwargs)
    explicit = frozenset(key for key, value in kwargs.items() if value is not None)
    config = GenerationConfig.from_dict(values, explicit=explicit)
    validate_generation_config(config, strict=strict)
    return config


def generation_config_for_inputs(
    config: GenerationConfig,
    *,
    input_ids_length: int,
    is_encoder_decoder: bool,
    max_position_embeddings: int | None = None,
) -> GenerationConfig:
    """The settings for a batch whose (decoder) ``input_ids`` are ``input_ids_length`` long:
    the prompt for a decoder-only model, 1 (the decoder start token) for an encoder-decoder.

    As transformers: ``pad_token_id`` falls back to the first eos id; an encoder-decoder's
    ``decoder_start_token_id`` falls back to ``bos_token_id``; ``max_length`` becomes
    ``max_new_tokens + input_ids_length`` when max_new_tokens is set, or 20 + input_ids_length
    (capped at ``max_position_embeddings``) when max_length is transformers' default and was not
    passed; ``min_length`` becomes ``min_new_tokens + input_ids_length`` when min_new_tokens is
    set. A prompt that already fills ``max_length`` is an InputError (transformers: ValueError).
    """
    eos = config.eos_token_ids
    pad = config.pad_token_id
    if pad is None and eos:
        pad = eos[0]
    start = config.decoder_start_token_id
    if is_encoder_decoder and start is None:
        start = config.bos_token_id
        if start is None:
            raise InputError(
                "The model is an encoder-decoder, but neither decoder_start_token_id nor "
                "bos_token_id is set, so generation has no first decoder token. Note: pass "
                "decoder_start_token_id=..., or set it in the bundle's generation_config.json."
            )

    max_length, min_length = config.max_length, config.min_length
    has_default_max_length = "max_length" not in config.explicit and max_length is not None
    has_default_min_length = "min_length" not in config.explicit and min_length is not None
    if config.max_new_tokens is not None:
        max_length = config.max_new_tokens + input_ids_length
    elif has_default_max_length and max_length == TRANSFORMERS_DEFAULTS["max_length"]:
        max_length = max_length + input_ids_length
        if max_position_embeddings is not None:
            max_length = min(max_length, max_position_embeddings)
    if config.min_new_tokens is not None:
        min_length = config.min_new_tokens + input_ids_length
    del has_default_min_length  # transformers only warns with it

    name = "decoder_input_ids" if is_encoder_decoder else "input_ids"
    if max_length is None:
        raise InputError(
            "max_length is None and max_new_tokens is not set, so generation has no end. "
            "Note: pass max_new_tokens=N (the number of tokens to generate)."
        )
    if input_ids_length >= max_length:
        raise InputError(
            f"The {name} are already {input_ids_length} tokens long, but max_length is "
            f"{max_length}, so there is no room to generate. Note: pass max_new_tokens=N "
            "(tokens to generate after the prompt) instead of max_length, or a larger max_length."
        )
    return dataclasses.replace(config, max_length=max_length, min_length=min_length,
                               pad_token_id=pad, decoder_start_token_id=start)


# --- validation -------------------------------------------------------------------------------
def validate_generation_config(config: GenerationConfig, *, strict: bool = True) -> None:
    """InputError for settings transformers refuses, settings this runtime cannot honour, and
    (``strict``) keyword arguments that would be ignored; see the module docstring."""
    c = config
    if c.early_stopping not in (True, False, "never"):
        _fail(f"early_stopping must be True, False or 'never', got {c.early_stopping!r}.",
              "True stops beam search at num_beams finished candidates; 'never' runs the "
              "canonical beam search")
    _check_int("max_new_tokens", c.max_new_tokens, minimum=1, optional=True,
               hint="max_new_tokens is the number of tokens to generate; pass 1 or more")
    _check_int("max_length", c.max_length, minimum=1, optional=True)
    _check_int("min_length", c.min_length, minimum=0, optional=True)
    _check_int("min_new_tokens", c.min_new_tokens, minimum=0, optional=True)
    _check_int("num_beams", c.num_beams, minimum=1, maximum=MAX_BEAMS,
               hint="num_beams=1 disables beam search")
    _check_int("num_return_sequences", c.num_return_sequences, minimum=1, maximum=MAX_BEAMS,
               hint="for more sequences, call again")
    if not isinstance(c.do_sample, bool):
        _fail(f"do_sample must be True or False, got {c.do_sample!r}.")
    if c.num_return_sequences != 1:
        if c.num_beams == 1 and not c.do_sample:
            _fail(f"num_return_sequences={c.num_return_sequences} needs several candidates, but "
                  "greedy search makes one per prompt.",
                  "pass num_beams >= num_return_sequences (beam search) or do_sample=True")
        if c.num_beams > 1 and c.num_return_sequences > c.num_beams:
            _fail(f"num_return_sequences ({c.num_return_sequences}) is larger than num_beams "
                  f"({c.num_beams}): beam search returns at most num_beams sequences.",
                  f"pass num_beams={c.num_return_sequences} or more, or fewer return sequences")

    if c.do_sample:
        if c.temperature is not None and not _positive(c.temperature):
            hint = ("for greedy decoding pass do_sample=False" if _real(c.temperature)
                    and c.temperature == 0 else "pass a number above 0, e.g. 0.7")
            _fail(f"temperature must be a number above 0 when sampling, got {c.temperature!r}.",
                  hint)
        _check_int("top_k", c.top_k, minimum=0, optional=True, hint="top_k=0 disables top-k")
        _check_range("top_p", c.top_p, 0.0, 1.0, "top_p=1.0 disables nucleus sampling")
        _check_range("min_p", c.min_p, 0.0, 1.0, "min_p=None disables it")
        _check_range("typical_p", c.typical_p, 0.0, 1.0, "typical_p=1.0 disables it",
                     low_open=True)
        _check_range("epsilon_cutoff", c.epsilon_cutoff, 0.0, 1.0, "0.0 disables it",
                     high_open=True)
        _check_range("eta_cutoff", c.eta_cutoff, 0.0, 1.0, "0.0 disables it", high_open=True)
    if c.repetition_penalty is not None and not _positive(c.repetition_penalty):
        _fail(f"repetition_penalty must be a number above 0, got {c.repetition_penalty!r}.",
              "1.0 means no penalty; above 1.0 penalizes repeated tokens")
    if c.length_penalty is not None and not _real(c.length_penalty):
        _fail(f"length_penalty must be a number, got {c.length_penalty!r}.")
    _check_int("no_repeat_ngram_size", c.no_repeat_ngram_size, minimum=0, optional=True,
               hint="0 disables it")
    if c.bad_words_ids is not None:
        if len(c.bad_words_ids) == 0 or any(len(word) == 0 for word in c.bad_words_ids):
            _fail(f"bad_words_ids must be a non-empty list of non-empty lists of token ids, got "
                  f"{_as_lists(c.bad_words_ids)!r}.",
                  "e.g. bad_words_ids=[[1234], [56, 78]]; pass None to allow every word")
    for name in ("forced_bos_token_id", "forced_eos_token_id"):
        value = _as_tuple(getattr(c, name))
        if value is not None and (not value or any(token < 0 for token in value)):
            _fail(f"{name} must be a non-negative token id (or list of them for "
                  f"forced_eos_token_id), got {_as_lists(getattr(c, name))!r}.")
    if c.stop_strings is not None and (not c.stop_strings or any(s == "" for s in c.stop_strings)):
        _fail(f"stop_strings must be a non-empty string or list of non-empty strings, got "
              f"{list(c.stop_strings)!r}.", "pass None to stop only at eos or the length limit")
    if c.max_time is not None and not _positive(c.max_time):
        _fail(f"max_time must be a number of seconds above 0, got {c.max_time!r}.")
    if c.seed is not None and (not isinstance(c.seed, int) or isinstance(c.seed, bool)
                               or c.seed < 0):
        _fail(f"seed must be a non-negative integer, got {c.seed!r}.")

    for key, what in _UNSUPPORTED.items():
        value = c.extras.get(key, TRANSFORMERS_DEFAULTS[key])
        inactive = value == TRANSFORMERS_DEFAULTS[key] or (key == "guidance_scale" and value == 1)
        if not inactive:
            _fail(f"{key}={value!r} asks for {what}, which edgeport's generation does not "
                  "implement.", f"pass {key}={TRANSFORMERS_DEFAULTS[key]!r} to generate without "
                  "it (it may come from the bundle's generation_config.json)")

    if strict:
        _check_ignored(c)


def _check_ignored(c: GenerationConfig) -> None:
    if not c.do_sample:
        for name, neutral in _SAMPLING_ONLY.items():
            if name in c.explicit and getattr(c, name) != neutral:
                _fail(f"{name}={getattr(c, name)!r} only acts when sampling, and do_sample is "
                      "False.", f"pass do_sample=True to sample, or leave {name} out")
    if c.num_beams == 1:
        for name, neutral in _BEAM_ONLY.items():
            if name in c.explicit and getattr(c, name) != neutral:
                _fail(f"{name}={getattr(c, name)!r} only acts in beam search, and num_beams is 1.",
                      f"pass num_beams=2 or more, or leave {name} out")
    for name, new in (("max_length", "max_new_tokens"), ("min_length", "min_new_tokens")):
        if name in c.explicit and getattr(c, new) is not None:
            _fail(f"{name}={getattr(c, name)!r} would be ignored: {new}={getattr(c, new)!r} "
                  "takes precedence (it may come from the model's or the pipeline's defaults).",
                  f"pass {new}=N (tokens after the prompt) instead, or {new}=None to use {name}")


# --- helpers ----------------------------------------------------------------------------------
def _fail(message: str, hint: str | None = None) -> None:
    raise InputError(message + (f" Note: {hint}." if hint else ""))


def _real(value: Any) -> bool:
    """A real number that is not a bool, NaN or infinite: a NaN temperature or length_penalty
    would make every score NaN without an error."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _positive(value: Any) -> bool:
    return _real(value) and value > 0


def _check_int(name: str, value: Any, *, minimum: int, maximum: int | None = None,
               optional: bool = False, hint: str | None = None) -> None:
    if value is None and optional:
        return
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum
            or (maximum is not None and value > maximum)):
        wanted = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        _fail(f"{name} must be an integer {wanted}, got {_shown(value)}.", hint)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_range(name: str, value: Any, low: float, high: float, hint: str, *,
                 low_open: bool = False, high_open: bool = False) -> None:
    if value is None:
        return
    ok = _real(value) and (value > low if low_open else value >= low) and (
        value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        _fail(f"{name} must be a number in {interval} when sampling, got {value!r}.", hint)


def _check_names(names: Mapping[str, Any], config: GenerationConfig, *,
                 what: str = "generation argument") -> None:
    for name in names:
        if name in _FIELDS or name in TRANSFORMERS_DEFAULTS or name in config.extras:
            continue
        raise InputError(f"Unknown {what} {name!r}. " + did_you_mean(name, _PUBLIC))


def _version(text: str | None) -> tuple[int, ...]:
    if not text:
        return (99,)  # written by this runtime or absent: transformers then uses its own version
    match = re.match(r"(\d+)\.(\d+)", str(text))
    return (int(match.group(1)), int(match.group(2))) if match else (99,)


def _as_tuple(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, numbers.Integral):
        return (int(value),)
    return tuple(int(v) for v in value)


def _as_lists(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_as_lists(v) for v in value]
    return value


def _token_id(name: str, value: Any) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if not -2**63 <= value < 2**63:  # numpy's int64, which every array of ids has
            raise InputError(f"{name} holds {_shown(value)}, which is no token id. Note: token "
                             "ids are the integers a tokenizer's encode returns; fix it in the "
                             "bundle's generation_config.json (or config.json), or what the "
                             "call passes.")
        return int(value)
    raise InputError(f"{name} must hold integer token ids, got {_shown(value)}. "
                     "Note: token ids are the integers a tokenizer's encode returns.")


def _token_ids(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InputError(f"{name} must be a list of token ids, got {_shown(value)}. "
                         f"Note: e.g. {name}=[1, 2].")
    return tuple(_token_id(name, v) for v in value)


def _normalize(name: str, value: Any) -> Any:
    """Lists to tuples and ids to ints; shapes checked, ranges left to validation."""
    if value is None:
        return None
    if name in ("eos_token_id", "forced_eos_token_id"):
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return _token_id(name, value)
        return _token_ids(name, value)
    if name in ("pad_token_id", "bos_token_id", "decoder_start_token_id", "forced_bos_token_id"):
        return _token_id(name, value)
    if name in ("suppress_tokens", "begin_suppress_tokens"):
        return _token_ids(name, value)
    if name == "bad_words_ids":
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or any(
            isinstance(word, (str, bytes)) or not isinstance(word, Sequence) for word in value
        ):
            raise InputError(f"bad_words_ids must be a list of lists of token ids, got "
                             f"{_shown(value)}. "
                             "Note: e.g. bad_words_ids=[[1234], [56, 78]] (one list per word).")
        return tuple(_token_ids(name, word) for word in value)
    if name == "stop_strings":
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, Sequence) or not all(isinstance(s, str) for s in value):
            raise InputError(f"stop_strings must be a string or a list of strings, got "
                             f"{_shown(value)}. Note: e.g. stop_strings=['\\n\\n', 'END'].")
        return tuple(value)
    return value
