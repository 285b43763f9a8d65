"""Generation config resolution against transformers' own: for a table of (generation_config.json,
config.json, call arguments, prompt length) cases, the settings edgeport resolves equal the ones
transformers' generate() works with (``_prepare_generation_config``, ``_prepare_special_tokens``,
``_prepare_generated_length``), and bad settings are clear InputErrors."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from runtime.errors import InputError  # noqa: E402
from runtime.generation.config import (  # noqa: E402
    TRANSFORMERS_DEFAULTS,
    GenerationConfig,
    generation_config_for_inputs,
    model_generation_config,
    resolve_generation_config,
)

_GPT2 = dict(vocab_size=60, n_positions=32, n_embd=8, n_layer=1, n_head=2, bos_token_id=59,
             eos_token_id=59)
_BART = dict(vocab_size=60, d_model=8, encoder_layers=1, decoder_layers=1,
             encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=8,
             decoder_ffn_dim=8, max_position_embeddings=64)
_T5 = dict(vocab_size=60, d_model=8, d_kv=4, d_ff=8, num_layers=1, num_heads=2,
           decoder_start_token_id=0,
           task_specific_params={"summarization": {"num_beams": 4, "prefix": "summarize: "}})
_CONFIGS = {"gpt2": ("GPT2Config", _GPT2), "bart": ("BartConfig", _BART), "t5": ("T5Config", _T5)}


def config_json(model_type, **extra):
    """A config.json as save_pretrained writes it (class defaults spelled out)."""
    name, values = _CONFIGS[model_type]
    config = getattr(transformers, name)(**{**values, **extra})
    return json.loads(config.to_json_string())


class _Reference(transformers.GenerationMixin):
    """Enough of a model for GenerationMixin's config preparation."""

    def __init__(self, config, generation_config):
        self.config = config
        self.generation_config = generation_config


def transformers_resolution(model_type, generation_json, model_json, generation_config, kwargs,
                            input_len, use_model_defaults=None):
    """What generate() works with: (GenerationConfig, unused kwargs), as a model loaded from
    a directory holding model_json (config.json) and generation_json (or no such file)."""
    config = getattr(transformers, _CONFIGS[model_type][0]).from_dict(model_json)
    if generation_json is None:
        model_defaults = transformers.GenerationConfig.from_model_config(config)
    else:
        model_defaults = transformers.GenerationConfig.from_dict(generation_json)
    model = _Reference(config, model_defaults)
    passed = (transformers.GenerationConfig(**generation_config)
              if generation_config is not None else None)
    resolved, unused = model._prepare_generation_config(passed, use_model_defaults, **kwargs)
    model._prepare_special_tokens(resolved, True, device="cpu")
    resolved = model._prepare_generated_length(
        resolved, has_default_max_length=kwargs.get("max_length") is None
        and resolved.max_length is not None,
        has_default_min_length=kwargs.get("min_length") is None and resolved.min_length is not None,
        model_input_name="input_ids", input_ids_length=input_len,
        inputs_tensor=torch.zeros((1, input_len)))
    model._validate_generated_length(resolved, input_len, kwargs.get("max_length") is None)
    return resolved, unused


def edgeport_resolution(model_type, generation_json, model_json, generation_config, kwargs,
                        input_len, use_model_defaults=None, strict=True):
    model_defaults = model_generation_config(generation_json, model_json)
    resolved = resolve_generation_config(model_defaults, generation_config,
                                         use_model_defaults=use_model_defaults, strict=strict,
                                         **kwargs)
    positions = model_json.get("n_positions", model_json.get("max_position_embeddings"))
    return generation_config_for_inputs(
        resolved, input_ids_length=input_len,
        is_encoder_decoder=bool(model_json.get("is_encoder_decoder")),
        max_position_embeddings=positions)


def _plain(value):
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, (tuple, list)):
        value = [_plain(v) for v in value]
    return value


def assert_same_resolution(ours, theirs):
    for key in sorted(TRANSFORMERS_DEFAULTS):
        expected = getattr(theirs, key)
        actual = getattr(ours, key) if hasattr(ours, key) else ours.extras.get(
            key, TRANSFORMERS_DEFAULTS[key])
        if key == "stop_strings" and isinstance(expected, str):
            expected = [expected]
        if key == "watermarking_config":
            continue  # an object in transformers; None both sides in these cases
        if key in ("pad_token_id", "decoder_start_token_id"):
            continue  # transformers keeps the fallbacks apart (below); ours fills them in
        assert _plain(actual) == _plain(expected), key
    # the special tokens as generate() uses them
    assert _plain(ours.eos_token_ids) == _plain(theirs._eos_token_tensor)
    assert ours.pad_token_id == _plain(theirs._pad_token_tensor)
    if theirs._decoder_start_token_tensor is not None:
        assert ours.decoder_start_token_id == _plain(theirs._decoder_start_token_tensor)


BART_CNN = {"bos_token_id": 0, "decoder_start_token_id": 2, "early_stopping": True,
            "eos_token_id": 2, "forced_bos_token_id": 0, "forced_eos_token_id": 2,
            "length_penalty": 2.0, "max_length": 142, "min_length": 56,
            "no_repeat_ngram_size": 3, "num_beams": 4, "pad_token_id": 1,
            "transformers_version": "4.27.0.dev0"}
TEXT_GENERATION_DEFAULTS = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}
TEXT2TEXT_DEFAULTS = {"max_new_tokens": 256, "num_beams": 4}
GPT2_GEN = {"bos_token_id": 59, "eos_token_id": 59, "transformers_version": "4.57.6"}

# (model_type, generation_config.json or None, extra config.json fields, generation_config
#  passed to the call or None, call kwargs, input_ids length, use_model_defaults)
CASES = {
    "defaults": ("gpt2", GPT2_GEN, {}, None, {}, 5, None),
    "default max_length capped by positions": ("gpt2", GPT2_GEN, {}, None, {}, 20, None),
    "max_new_tokens": ("gpt2", GPT2_GEN, {}, None, dict(max_new_tokens=7), 5, None),
    "explicit max_length 20 is total": ("gpt2", GPT2_GEN, {}, None, dict(max_length=20), 5, None),
    "file max_length is total": ("gpt2", {**GPT2_GEN, "max_length": 30}, {}, None, {}, 5, None),
    "min_new_tokens": ("gpt2", GPT2_GEN, {}, None, dict(min_new_tokens=3), 5, None),
    "sampling": ("gpt2", GPT2_GEN, {}, None, dict(
        do_sample=True, temperature=0.5, top_k=0, top_p=0.9, typical_p=0.8, min_p=0.1,
        epsilon_cutoff=1e-3, eta_cutoff=1e-3, num_return_sequences=3, repetition_penalty=1.3,
        no_repeat_ngram_size=2, bad_words_ids=[[1], [2, 3]], suppress_tokens=[4],
        begin_suppress_tokens=[5], stop_strings="stop", max_time=10.0,
        renormalize_logits=True), 5, None),
    "several eos ids": ("gpt2", {**GPT2_GEN, "eos_token_id": [58, 59]}, {}, None, {}, 3, None),
    "explicit None values": ("gpt2", GPT2_GEN, {}, None, dict(max_new_tokens=None,
                                                             eos_token_id=None), 3, None),
    "pad from the call": ("gpt2", GPT2_GEN, {}, None, dict(pad_token_id=0), 3, None),
    "no generation_config.json": ("gpt2", None, {}, None, {}, 4, None),
    "legacy generation fields in config.json": (
        "gpt2", None, dict(num_beams=3, max_length=25, no_repeat_ngram_size=2), None,
        dict(num_return_sequences=2), 4, None),
    "bart-large-cnn": ("bart", BART_CNN, {}, None, {}, 1, None),
    "bart-large-cnn with call overrides": ("bart", BART_CNN, {}, None, dict(
        num_beams=2, max_new_tokens=10, min_length=3, length_penalty=1.0), 1, None),
    "bart config.json only": ("bart", None, dict(num_beams=4, max_length=40, min_length=5,
                                                 forced_bos_token_id=0), None, {}, 1, None),
    "t5 with file": ("t5", {"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0},
                     {}, None, dict(num_beams=3, num_return_sequences=3, early_stopping="never"),
                     1, None),
    "t5 config.json only": ("t5", None, {}, None, {}, 1, None),
    "start token from bos": ("bart", {"bos_token_id": 0, "eos_token_id": 2}, {}, None, {}, 1,
                             None),
    "pipeline defaults over the model's": ("gpt2", {**GPT2_GEN, "top_k": 5}, {},
                                           TEXT_GENERATION_DEFAULTS, {}, 4, True),
    "pipeline defaults, version decides": ("gpt2", {**GPT2_GEN, "top_k": 5}, {},
                                           TEXT_GENERATION_DEFAULTS, dict(top_p=0.5), 4, None),
    "text2text defaults over bart-large-cnn (old file)": (
        "bart", BART_CNN, {}, TEXT2TEXT_DEFAULTS, {}, 1, None),
    "text2text defaults over bart-large-cnn, model defaults": (
        "bart", BART_CNN, {}, TEXT2TEXT_DEFAULTS, {}, 1, True),
    "generation_config without model defaults": (
        "gpt2", {**GPT2_GEN, "repetition_penalty": 1.5}, {}, {"num_beams": 2}, {}, 4, False),
    "model temperature 0 turns sampling off": (
        "gpt2", {**GPT2_GEN, "temperature": 0.0, "do_sample": True}, {}, {"max_new_tokens": 3},
        {}, 4, None),
    "checkpoint with beam flags and one beam": (
        "gpt2", {**GPT2_GEN, "max_length": 50, "early_stopping": True, "length_penalty": 2.0,
                 "temperature": 0.7, "top_p": 0.9}, {}, None, {}, 6, None),
    "whisper-like custom keys": (
        "bart", {"eos_token_id": 2, "decoder_start_token_id": 2, "lang_to_id": {"<|en|>": 9},
                 "no_timestamps_token_id": 7, "output_scores": False, "use_cache": True}, {},
        None, dict(no_timestamps_token_id=8), 1, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resolution_equals_transformers(case):
    model_type, generation_json, extra, generation_config, kwargs, input_len, umd = CASES[case]
    model_json = config_json(model_type, **extra)
    theirs, unused = transformers_resolution(model_type, generation_json, model_json,
                                             generation_config, kwargs, input_len, umd)
    assert unused == {}
    ours = edgeport_resolution(model_type, generation_json, model_json, generation_config,
                               kwargs, input_len, umd)
    assert_same_resolution(ours, theirs)
    if generation_json is not None:
        assert {k: v for k, v in ours.extras.items() if k not in TRANSFORMERS_DEFAULTS} == {
            k: kwargs.get(k, v) for k, v in generation_json.items()
            if k not in TRANSFORMERS_DEFAULTS and k != "transformers_version"}


def test_defaults_are_transformers_defaults():
    reference = transformers.GenerationConfig()
    ours = GenerationConfig()
    for key, value in TRANSFORMERS_DEFAULTS.items():
        assert getattr(reference, key) == value, key
        if hasattr(ours, key):
            assert getattr(ours, key) == value, key
    public = {k for k in vars(reference) if not k.startswith("_") and k != "transformers_version"}
    assert public == set(TRANSFORMERS_DEFAULTS)


def test_from_model_config_equals_transformers():
    for model_type, extra in (("gpt2", {}), ("bart", {}), ("t5", {}),
                              ("bart", dict(num_beams=4, max_length=40, min_length=5,
                                            no_repeat_ngram_size=3, early_stopping=True))):
        model_json = config_json(model_type, **extra)
        config = getattr(transformers, _CONFIGS[model_type][0]).from_dict(model_json)
        theirs = transformers.GenerationConfig.from_model_config(config)
        ours = GenerationConfig.from_model_config(model_json)
        for key in TRANSFORMERS_DEFAULTS:
            actual = getattr(ours, key) if hasattr(ours, key) else ours.extras.get(
                key, TRANSFORMERS_DEFAULTS[key])
            assert _plain(actual) == _plain(getattr(theirs, key)), (model_type, key)


def test_replace_and_to_dict_round_trip():
    config = GenerationConfig.from_dict({"eos_token_id": [1, 2], "bad_words_ids": [[3], [4, 5]],
                                         "lang_to_id": {"en": 1}})
    assert config.eos_token_id == (1, 2) and config.bad_words_ids == ((3,), (4, 5))
    values = config.to_dict()
    assert values["eos_token_id"] == [1, 2] and values["lang_to_id"] == {"en": 1}
    assert GenerationConfig.from_dict(values) == config
    assert config.replace(num_beams=3).num_beams == 3 and config.num_beams == 1
    with pytest.raises(InputError, match="Did you mean 'num_beams'"):
        config.replace(num_beam=3)
    assert config.generation_mode == "greedy"
    assert config.replace(do_sample=True, num_beams=2).generation_mode == "beam_sample"


# --- errors ------------------------------------------------------------------------------------
# (call kwargs, what our message names, whether transformers' generate() raises too, at the
#  latest on the first step)
ERRORS = {
    "max_new_tokens 0": (dict(max_new_tokens=0), "max_new_tokens", True),
    "max_new_tokens negative": (dict(max_new_tokens=-3), "max_new_tokens", True),
    "more return sequences than beams": (dict(num_beams=2, num_return_sequences=3),
                                         "num_return_sequences", True),
    "return sequences with greedy": (dict(num_return_sequences=2), "greedy", True),
    "early_stopping": (dict(num_beams=2, early_stopping="sometimes"), "early_stopping", True),
    "temperature 0 when sampling": (dict(do_sample=True, temperature=0.0), "do_sample=False",
                                    True),
    "temperature negative": (dict(do_sample=True, temperature=-1.0), "temperature", True),
    "top_k negative": (dict(do_sample=True, top_k=-1), "top_k", True),
    "top_p negative": (dict(do_sample=True, top_p=-0.1), "top_p", True),
    "top_p above 1": (dict(do_sample=True, top_p=1.5), "top_p", False),  # silently unused there
    "typical_p 0": (dict(do_sample=True, typical_p=0.0), "typical_p", True),
    "min_p above 1": (dict(do_sample=True, min_p=2.0), "min_p", True),
    "epsilon 1": (dict(do_sample=True, epsilon_cutoff=1.0), "epsilon_cutoff", False),
    "repetition_penalty 0": (dict(repetition_penalty=0.0), "repetition_penalty", True),
    "no_repeat_ngram_size negative": (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size",
                                      False),
    "bad_words_ids empty": (dict(bad_words_ids=[]), "bad_words_ids", True),
    "bad_words_ids with an empty word": (dict(bad_words_ids=[[1], []]), "bad_words_ids", True),
    "bad_words_ids flat": (dict(bad_words_ids=[1, 2]), "bad_words_ids", True),
    "prompt fills max_length": (dict(max_length=5), "max_new_tokens", True),
    "mistyped name": (dict(max_new_token=5), "Did you mean 'max_new_tokens'", True),
    "unknown name": (dict(temprature=0.5), "Did you mean 'temperature'", True),
    "contrastive search": (dict(penalty_alpha=0.6, top_k=4), "contrastive", True),
    "group beam search": (dict(num_beams=4, num_beam_groups=2, diversity_penalty=1.0),
                          "group beam search", True),
    "sequence_bias": (dict(sequence_bias=[[[1], 2.0]]), "sequence_bias", False),
}


def _transformers_generate_raises(kwargs, input_len):
    model_json = config_json("gpt2")
    try:
        _, unused = transformers_resolution("gpt2", GPT2_GEN, model_json, None, kwargs, input_len)
        if unused:  # generate() refuses unused model kwargs (typos)
            return True
        config = transformers.GPT2Config.from_dict(model_json)
        model = _Reference(config, transformers.GenerationConfig.from_dict(GPT2_GEN))
        resolved, _ = model._prepare_generation_config(None, None, **kwargs)
        model._prepare_special_tokens(resolved, True, device="cpu")
        if resolved.get_generation_mode() not in ("greedy_search", "sample", "beam_search",
                                                  "beam_sample"):
            return True  # 4.57 hands these modes to Hub repositories (not available here)
        ids = torch.zeros((1, input_len), dtype=torch.long)
        processors = model._get_logits_processor(resolved, input_len, ids, device="cpu",
                                                 model_kwargs={})
        processors(ids, torch.zeros((1, 60)))  # the first step
    except (ValueError, IndexError):
        return True
    return False


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_settings_are_input_errors(case):
    kwargs, words, transformers_raises = ERRORS[case]
    with pytest.raises(InputError, match=words) as info:
        edgeport_resolution("gpt2", GPT2_GEN, config_json("gpt2"), None, kwargs, 5)
    assert "Note:" in str(info.value)
    assert _transformers_generate_raises(kwargs, 5) == transformers_raises


# call kwargs that transformers accepts with a warning and then ignores
IGNORED = {
    "temperature without sampling": dict(temperature=0.5),
    "top_k without sampling": dict(top_k=5),
    "top_p without sampling": dict(top_p=0.9),
    "seed without sampling": dict(seed=3),
    "length_penalty with one beam": dict(length_penalty=2.0),
    "early_stopping with one beam": dict(early_stopping=True),
    "max_length under max_new_tokens": dict(max_new_tokens=5, max_length=12),
    "min_length under min_new_tokens": dict(min_new_tokens=2, min_length=12),
}


@pytest.mark.parametrize("case", list(IGNORED))
def test_ignored_arguments_are_errors_unless_not_strict(case):
    kwargs = IGNORED[case]
    model_json = config_json("gpt2")
    with pytest.raises(InputError, match="Note:"):
        edgeport_resolution("gpt2", GPT2_GEN, model_json, None, kwargs, 5)
    ours = edgeport_resolution("gpt2", GPT2_GEN, model_json, None, kwargs, 5, strict=False)
    kwargs = {k: v for k, v in kwargs.items() if k != "seed"}  # ours only
    theirs, _ = transformers_resolution("gpt2", GPT2_GEN, model_json, None, kwargs, 5)
    assert_same_resolution(ours, theirs)


def test_ignored_flags_from_files_or_a_passed_config_are_accepted():
    model_json = config_json("gpt2")
    file = {**GPT2_GEN, "early_stopping": True, "temperature": 0.6, "max_new_tokens": 9}
    edgeport_resolution("gpt2", file, model_json, None, {}, 5)
    edgeport_resolution("gpt2", GPT2_GEN, model_json, {"top_k": 3, "length_penalty": 2.0}, {}, 5)


def test_pipeline_max_length_under_its_max_new_tokens_default():
    """transformers' summarization with a model without max_length: the pipeline's
    max_new_tokens=256 silently wins over the call's max_length; edgeport says so."""
    model_json = config_json("bart")
    file = {"eos_token_id": 2, "decoder_start_token_id": 2}
    with pytest.raises(InputError, match="max_new_tokens=256"):
        edgeport_resolution("bart", file, model_json, TEXT2TEXT_DEFAULTS, dict(max_length=30), 1)


def test_encoder_decoder_without_a_start_token():
    model_json = config_json("bart", bos_token_id=None, decoder_start_token_id=None)
    file = {"eos_token_id": 2}
    with pytest.raises(InputError, match="decoder_start_token_id"):
        edgeport_resolution("bart", file, model_json, None, {}, 1)
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        transformers_resolution("bart", file, model_json, None, {}, 1)


def test_unsupported_feature_in_the_file_can_be_turned_off():
    model_json = config_json("gpt2")
    file = {**GPT2_GEN, "penalty_alpha": 0.6, "top_k": 4}
    with pytest.raises(InputError, match="penalty_alpha=None"):
        edgeport_resolution("gpt2", file, model_json, None, {}, 5)
    edgeport_resolution("gpt2", file, model_json, None, dict(penalty_alpha=None), 5)
