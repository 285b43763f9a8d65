"""translation: the runtime on exported encoder-decoder bundles gives what transformers.pipeline
gives on the same tiny checkpoints (tests/support/text_to_text.py does the comparison). mBART
translates between the language codes it is given (src_lang, tgt_lang), as in
``pipe(text, src_lang="en_XX", tgt_lang="ro_RO")``; Marian has one language pair."""

from __future__ import annotations

import pytest
from compare import assert_same
from generation_checkpoints import TINY_GENERATION
from text_to_text import compare_with_transformers
from translation_checkpoints import TINY_TRANSLATION

from runtime import BundleError, InputError

TASK = "translation"
# model_type -> (the pipeline's task name, the languages of every call)
LANGUAGES = {"mbart": ("translation", {"src_lang": "en_XX", "tgt_lang": "ro_RO"})}


@pytest.mark.parametrize("model_type", sorted(
    m for m, t in TINY_GENERATION | TINY_TRANSLATION if t == TASK))
def test_matches_transformers(model_type, runtime_pipeline, reference_pipeline):
    name, languages = LANGUAGES.get(model_type, (None, None))
    compare_with_transformers(model_type, TASK, runtime_pipeline, reference_pipeline,
                              name=name, languages=languages)


def test_mbart_takes_the_languages_of_each_call_and_of_the_pipeline(
        tiny_checkpoint, runtime_pipeline, reference_pipeline):
    import transformers

    runtime = runtime_pipeline("mbart", TASK, task_name=TASK)
    reference = reference_pipeline("mbart", TASK, task_name=TASK)
    for src_lang, tgt_lang in (("de_DE", "fr_XX"), ("ro_RO", "en_XX"), ("zh_CN", "sl_SI")):
        kwargs = {"src_lang": src_lang, "tgt_lang": tgt_lang, "num_beams": 1,
                  "max_new_tokens": 8, "return_tensors": True}
        ours, theirs = runtime("The weather is cold.", **kwargs), reference(
            "The weather is cold.", **kwargs)
        assert ours[0]["translation_token_ids"].tolist() == theirs[0][
            "translation_token_ids"].tolist()
        # the target language's code is forced first, after decoding's start token </s>
        assert ours[0]["translation_token_ids"][1] == reference.tokenizer.convert_tokens_to_ids(
            tgt_lang)
    # pipeline(..., src_lang=, tgt_lang=) are every call's defaults; a call overrides them
    defaults = {"src_lang": "fi_FI", "tgt_lang": "ja_XX"}
    runtime = runtime_pipeline("mbart", TASK, task_name=TASK, **defaults)
    reference = transformers.pipeline(TASK, model=str(tiny_checkpoint("mbart", TASK)),
                                      device="cpu", **defaults)
    for kwargs in ({}, {"tgt_lang": "de_DE"}, {"src_lang": "ru_RU", "tgt_lang": "tr_TR"}):
        kwargs = {**kwargs, "num_beams": 2, "max_new_tokens": 6}
        assert_same(runtime(["Good morning.", "ok"], **kwargs),
                    reference(["Good morning.", "ok"], **kwargs), str(kwargs))


def test_mbart50_and_cc25_put_the_source_code_where_transformers_does(tmp_path):
    """mbart-large-50: [src_lang] X </s>; mbart-large-cc25: X </s> [src_lang]; the encoder's ids
    are the tokenizer's, truncated to the model's length with both special tokens kept."""
    import transformers
    from translation_checkpoints import build_tiny_translation_checkpoint

    from exporter import bundle_from_checkpoint
    from runtime import pipeline

    text = "Prices start at $19.99 (plus tax) — limited time only!!!"
    for style in ("mbart50", "cc25"):
        checkpoint = build_tiny_translation_checkpoint("mbart", TASK, tmp_path / style,
                                                       style=style)
        bundle = bundle_from_checkpoint(checkpoint, tmp_path / f"{style}-bundle", task=TASK)
        ours = pipeline(TASK, model=bundle)
        reference = transformers.pipeline(TASK, model=str(checkpoint), device="cpu")
        tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
        for src_lang in ("en_XX", "ko_KR"):
            tokenizer.src_lang = src_lang
            expected = tokenizer(text)["input_ids"]
            assert ours.source_ids(text, src_lang, None) == expected
            code = tokenizer.convert_tokens_to_ids(src_lang)
            assert expected[0 if style == "mbart50" else -1] == code
            long = "word " * 300
            assert ours.source_ids(long, src_lang, True) == tokenizer(
                long, truncation=True)["input_ids"]
        kwargs = {"src_lang": "en_XX", "tgt_lang": "ro_RO", "max_new_tokens": 8}
        assert_same(ours(text, **kwargs), reference(text, **kwargs), style)


def test_mbart_language_errors_are_clear(runtime_pipeline):
    runtime = runtime_pipeline("mbart", TASK, task_name=TASK)
    with pytest.raises(InputError, match=r"Unknown target language 'ro'.*Did you mean 'ro_RO'"
                                         r".*language codes are: af_ZA, ar_AR"):
        runtime("Hello.", src_lang="en_XX", tgt_lang="ro")
    with pytest.raises(InputError, match="Unknown source language 'english'"):
        runtime("Hello.", src_lang="english", tgt_lang="ro_RO")
    with pytest.raises(InputError, match="pass both src_lang and tgt_lang"):
        runtime("Hello.", src_lang="en_XX")
    # transformers reads translation_en_to_ro as src_lang="en" (an <unk> for mBART): refused
    named = runtime_pipeline("mbart", TASK, task_name="translation_en_to_ro")
    with pytest.raises(InputError, match="Unknown source language 'en'"):
        named("Hello.")
    assert named("Hello.", src_lang="en_XX", tgt_lang="ro_RO", max_new_tokens=3)


def test_one_pair_models_ignore_languages_as_transformers_does(runtime_pipeline,
                                                              reference_pipeline):
    name = "translation_en_to_de"
    runtime = runtime_pipeline("marian", TASK, task_name=name)
    reference = reference_pipeline("marian", TASK, task_name=name)
    kwargs = {"src_lang": "en_XX", "tgt_lang": "xx", "max_new_tokens": 6}
    assert_same(runtime("Good morning.", **kwargs), reference("Good morning.", **kwargs), "")


def test_language_codes_are_read_from_the_bundle_and_checked(tiny_bundle):
    import json

    from runtime.text.languages import LanguageCodes
    from runtime.text.tokenizer import TextTokenizer

    path = tiny_bundle("mbart", TASK)
    text = (path / "tokenizer.json").read_text()
    config = json.loads((path / "tokenizer_config.json").read_text())
    codes = LanguageCodes.from_tokenizer(TextTokenizer(text, config))
    assert (codes.place, len(codes.codes), codes.tokenizer_class) == (
        "before", 52, "MBart50Tokenizer")
    for changes, match in (({"tokenizer_class": "NllbTokenizerFast"}, "does not know"),
                           ({"additional_special_tokens": []}, "lists no language codes"),
                           ({"additional_special_tokens": ["xx_YY"]}, "does not hold")):
        with pytest.raises(BundleError, match=match):
            LanguageCodes.from_tokenizer(TextTokenizer(text, {**config, **changes}))
    one_pair = {k: v for k, v in config.items()
                if k not in ("tokenizer_class", "src_lang", "tgt_lang")}
    assert LanguageCodes.from_tokenizer(TextTokenizer(text, one_pair)) is None


def test_calibration_translates_between_the_saved_languages(runtime_pipeline):
    """compare, calibration and bench name no languages: the tokenizer's saved ones (en_XX to
    ro_RO here; en_XX and the source's where it saved none); none for one language pair."""
    pipe = runtime_pipeline("mbart", TASK, task_name=TASK)
    assert pipe.saved_languages == {"src_lang": "en_XX", "tgt_lang": "ro_RO"}
    pipe.tokenizer.config.update(src_lang=None, tgt_lang=["bad"])
    assert pipe.saved_languages == {"src_lang": "en_XX", "tgt_lang": "en_XX"}
    assert runtime_pipeline("marian", TASK, task_name="translation_en_to_de").saved_languages == {}
