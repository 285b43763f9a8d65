"""Hostile text-side files of a bundle: tokenizer.json, tokenizer_config.json,
special_tokens_map.json, vocab.json (CTC) and sentence-transformers' modules.json. Each is
refused with an EdgeportError that names the file, never a raw traceback; a path in
modules.json cannot lead outside the bundle. And the tokenizer's per-thread cost: threads share
one parsed tokenizer.json instead of parsing it each."""

from __future__ import annotations

import json
import math
import os
import shutil
import threading

import pytest
from checkpoints import minilm_dir

import runtime.text.tokenizer as tokenizer_module
from runtime.audio.ctc import CtcTokenizer
from runtime.errors import BundleError, BundleNotFoundError, EdgeportError, UnsafePathError
from runtime.text.pooling import SentencePooling
from runtime.text.tokenizer import TextTokenizer

TEXTS = ["Hello world, this is edgeport.", "A second, much longer sentence " * 20]


@pytest.fixture(scope="module")
def minilm_json() -> str:
    return (minilm_dir() / "tokenizer.json").read_text(encoding="utf-8")


@pytest.fixture
def tokenizer_dir(tmp_path, minilm_json):
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_dir() / name, tmp_path / name)
    return tmp_path


def _edit_json(path, **changes):
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


# --- tokenizer.json ---------------------------------------------------------------------------
@pytest.mark.parametrize(("content", "words"), [
    (b"\xff\xfe\x00{", ["tokenizer.json", "not UTF-8"]),
    (b"{not json", ["tokenizer.json", "not a tokenizer"]),
    (b"[1, 2, 3]", ["tokenizer.json", "not a tokenizer"]),
    (b"{}", ["tokenizer.json", "not a tokenizer", "Model missing"]),
    (b'{"model": {"type": "Nope"}}', ["tokenizer.json", "not a tokenizer"]),
    (b"[" * 5000 + b"]" * 5000, ["tokenizer.json", "not a tokenizer"]),
])
def test_a_tokenizer_json_that_is_not_a_tokenizer_is_refused(tokenizer_dir, content, words):
    (tokenizer_dir / "tokenizer.json").write_bytes(content)
    with pytest.raises(BundleError) as caught:
        TextTokenizer.from_dir(tokenizer_dir)
    for word in words:
        assert word in str(caught.value)
    assert "Note:" in str(caught.value)


def test_a_tokenizer_json_with_a_bad_vocabulary_is_refused(tokenizer_dir, minilm_json):
    data = json.loads(minilm_json)
    data["model"]["vocab"]["[UNK]"] = "zero"
    (tokenizer_dir / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="not a tokenizer the tokenizers library can read"):
        TextTokenizer.from_dir(tokenizer_dir)
    with pytest.raises(BundleError, match="must be given as text"):
        TextTokenizer(json.dumps(data).encode())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_special_files_are_refused_without_blocking(tokenizer_dir):
    (tokenizer_dir / "tokenizer.json").unlink()
    os.mkfifo(tokenizer_dir / "tokenizer.json")
    with pytest.raises(BundleError, match="not a regular file"):
        TextTokenizer.from_dir(tokenizer_dir)
    (tokenizer_dir / "tokenizer.json").unlink()
    with pytest.raises(BundleNotFoundError, match="No tokenizer.json"):
        TextTokenizer.from_dir(tokenizer_dir)


# --- tokenizer_config.json and special_tokens_map.json --------------------------------------
@pytest.mark.parametrize("name", ["tokenizer_config.json", "special_tokens_map.json"])
@pytest.mark.parametrize("content", ["[]", '"text"', "3", "{"])
def test_config_files_must_be_json_objects(tokenizer_dir, name, content):
    (tokenizer_dir / name).write_text(content)
    with pytest.raises(BundleError, match=name):
        TextTokenizer.from_dir(tokenizer_dir)


@pytest.mark.parametrize(("changes", "words"), [
    ({"model_max_length": "512"}, ["model_max_length='512'", "positive number"]),
    ({"model_max_length": True}, ["model_max_length=True"]),
    ({"model_max_length": -5}, ["model_max_length=-5"]),
    ({"model_max_length": 0}, ["model_max_length=0"]),
    ({"model_max_length": [512]}, ["model_max_length=[512]"]),
    ({"padding_side": "up"}, ["padding_side='up'", "'right' or 'left'"]),
    ({"truncation_side": 1}, ["truncation_side=1"]),
    ({"pad_token": {"content": 5}}, ["pad_token", "string"]),
    ({"mask_token": ["[MASK]"]}, ["mask_token", "string"]),
    ({"added_tokens_decoder": {"abc": {"content": "x", "special": True}}},
     ["added_tokens_decoder", "'abc'", "not a token id"]),
    ({"added_tokens_decoder": [1, 2]}, ["added_tokens_decoder", "not a JSON object"]),
])
def test_bad_tokenizer_config_values_are_refused(tokenizer_dir, changes, words):
    _edit_json(tokenizer_dir / "tokenizer_config.json", **changes)
    with pytest.raises(BundleError) as caught:
        TextTokenizer.from_dir(tokenizer_dir)
    for word in words:
        assert word in str(caught.value)
    assert "Note: fix it in tokenizer_config.json" in str(caught.value)


def test_model_max_length_as_transformers_reads_it(minilm_json):
    assert TextTokenizer(minilm_json, {"model_max_length": 512.0}).model_max_length == 512
    assert TextTokenizer(minilm_json, {"model_max_length": int(1e30)}).model_max_length is None
    assert TextTokenizer(minilm_json, {"model_max_length": 1e30}).model_max_length is None
    with pytest.raises(BundleError, match="model_max_length=nan"):
        TextTokenizer(minilm_json, {"model_max_length": math.nan})
    with pytest.raises(BundleError, match="must be a JSON object"):
        TextTokenizer(minilm_json, ["model_max_length", 512])


def test_a_stride_tokenizers_cannot_take_is_an_input_error(minilm_json):
    tokenizer = TextTokenizer(minilm_json, {"model_max_length": 512})
    with pytest.raises(EdgeportError, match="stride"):
        tokenizer.encode_batch(TEXTS, truncation=True, max_length=5, stride=5)
    with pytest.raises(EdgeportError, match="stride must be an integer"):
        tokenizer.encode_batch(TEXTS, truncation=True, max_length=5, stride=-1)
    # the copy that failed went back to the pool, without the truncation
    assert [len(e.ids) for e in tokenizer.encode_batch(TEXTS, truncation=True, max_length=8)] \
        == [8, 8]


# --- one parse per tokenizer, not per thread ----------------------------------------------
def _counting(monkeypatch) -> list:
    calls = []
    parse = tokenizer_module.parse_tokenizer

    def counted(*args, **kwargs):
        calls.append(threading.get_ident())
        return parse(*args, **kwargs)

    monkeypatch.setattr(tokenizer_module, "parse_tokenizer", counted)
    return calls


def test_short_lived_threads_do_not_parse_the_tokenizer_again(monkeypatch, minilm_json):
    tokenizer = TextTokenizer(minilm_json, {"model_max_length": 512, "pad_token": "[PAD]"})
    calls = _counting(monkeypatch)
    expected = [e.ids for e in tokenizer.encode_batch(TEXTS, truncation=True, max_length=16)]
    plain = [e.ids for e in tokenizer.encode_batch(TEXTS)]
    results = []

    def work():
        results.append((
            [e.ids for e in tokenizer.encode_batch(TEXTS, truncation=True, max_length=16)],
            [e.ids for e in tokenizer.encode_batch(TEXTS)],
            tokenizer.decode(plain[0]), tokenizer.token_to_id("[PAD]")))

    for _ in range(20):  # one thread after the other, each new, each gone after one call
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert results == [(expected, plain, tokenizer.decode(plain[0]), 0)] * 20
    assert len(calls) == 1  # the one copy that truncates, made by the first call and reused


def test_concurrent_truncating_calls_each_get_their_own_copy(monkeypatch, minilm_json):
    tokenizer = TextTokenizer(minilm_json, {"model_max_length": 512})
    calls = _counting(monkeypatch)
    expected = {length: [e.ids for e in tokenizer.encode_batch(TEXTS, truncation=True,
                                                              max_length=length)]
                for length in range(6, 14)}
    barrier, failures, results = threading.Barrier(8), [], {}

    def work(length):
        barrier.wait()
        try:
            for _ in range(20):  # different truncation settings at once: no "Already borrowed"
                got = [e.ids for e in tokenizer.encode_batch(TEXTS, truncation=True,
                                                             max_length=length)]
                plain = tokenizer.encode_batch(TEXTS)
                assert got == expected[length] and len(plain[1].ids) > 100
            results[length] = got
        except Exception as error:  # noqa: BLE001 - reported below, with its thread
            failures.append(repr(error))

    threads = [threading.Thread(target=work, args=(length,)) for length in expected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures and results == expected
    assert 1 <= len(calls) <= len(threads)  # at most one copy per call running at once


# --- vocab.json (CTC) ------------------------------------------------------------------------
def _ctc_dir(tmp_path, vocab, config=None):
    (tmp_path / "vocab.json").write_text(vocab if isinstance(vocab, str) else json.dumps(vocab))
    if config is not None:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize(("vocab", "config", "words"), [
    ("[1, 2]", None, ["vocab.json", "JSON array"]),
    ("{", None, ["vocab.json", "not valid JSON"]),
    ({}, None, ["vocab.json must map tokens to ids"]),
    ({"<pad>": 0, "a": "1"}, None, ["vocab.json maps 'a' to '1'"]),
    ({"<pad>": 0, "a": -1}, None, ["vocab.json maps 'a' to -1"]),
    ({"<pad>": 0, "a": True}, None, ["vocab.json maps 'a' to True"]),
    ({"en": {"<pad>": 0}}, {"target_lang": "fr"}, ["target_lang='fr'", "['en']"]),
    ({"en": {"<pad>": 0}}, {"target_lang": ["en"]}, ["target_lang=['en']"]),
    ({"<pad>": 0}, {"pad_token": 7}, ["pad_token=7"]),
    ({"<pad>": 0}, {"replace_word_delimiter_char": None}, ["replace_word_delimiter_char"]),
])
def test_bad_ctc_vocabularies_are_refused(tmp_path, vocab, config, words):
    with pytest.raises(BundleError) as caught:
        CtcTokenizer.from_dir(_ctc_dir(tmp_path, vocab, config))
    for word in words:
        assert word in str(caught.value)


def test_a_ctc_tokenizer_config_that_is_not_an_object_is_refused(tmp_path):
    _ctc_dir(tmp_path, {"<pad>": 0, "a": 1})
    (tmp_path / "tokenizer_config.json").write_text('"x"')
    with pytest.raises(BundleError, match="tokenizer_config.json .*a string, not a JSON object"):
        CtcTokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{}")
    assert CtcTokenizer.from_dir(tmp_path).decode([1, 1, 0, 1]) == "aa"


# --- modules.json (sentence-transformers) -----------------------------------------------------
@pytest.fixture
def sentence_dir(tmp_path):
    root = tmp_path / "bundle"
    root.mkdir()
    for name in ("modules.json", "sentence_bert_config.json"):
        shutil.copy(minilm_dir() / name, root / name)
    shutil.copytree(minilm_dir() / "1_Pooling", root / "1_Pooling")
    return root


def _modules(root, modules):
    (root / "modules.json").write_text(json.dumps(modules) if not isinstance(modules, str)
                                       else modules)


def test_the_real_modules_json_still_reads(sentence_dir):
    pooling = SentencePooling.from_dir(sentence_dir)
    assert pooling.modes == ("mean",) and pooling.normalize and pooling.max_seq_length == 256


@pytest.mark.parametrize(("path", "words"), [
    ("../outside", ["modules.json entry 1 path", "'..' part"]),
    ("/etc", ["modules.json entry 1 path", "absolute"]),
    ("1_Pooling/../../outside", ["'..' part"]),
    ("C:/x", ["starts with a drive"]),
])
def test_a_module_path_cannot_leave_the_bundle(sentence_dir, path, words):
    modules = json.loads((sentence_dir / "modules.json").read_text())
    modules[1]["path"] = path
    _modules(sentence_dir, modules)
    with pytest.raises(UnsafePathError) as caught:
        SentencePooling.from_dir(sentence_dir)
    for word in words:
        assert word in str(caught.value)


def test_a_symlinked_module_folder_cannot_leave_the_bundle(sentence_dir, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(sentence_dir / "1_Pooling", outside)
    shutil.rmtree(sentence_dir / "1_Pooling")
    (sentence_dir / "1_Pooling").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="modules.json entry 1 path.*outside"):
        SentencePooling.from_dir(sentence_dir)


@pytest.mark.parametrize(("modules", "words"), [
    ('{"0": "Transformer"}', ["modules.json", "JSON object, not a JSON array"]),
    ("[1, 2]", ["modules.json entry 0 is 1, not an object"]),
    ('[{"path": "", "type": 5}]', ["entry 0 has type=5"]),
    ('[{"path": ["1_Pooling"], "type": "x.Pooling"}]', ["entry 0 has path=['1_Pooling']"]),
    ('[{"path": "", "type": "x.Dense"}]', ["modules ['Dense']"]),
])
def test_a_malformed_modules_json_is_refused(sentence_dir, modules, words):
    _modules(sentence_dir, modules)
    with pytest.raises(BundleError) as caught:
        SentencePooling.from_dir(sentence_dir)
    for word in words:
        assert word in str(caught.value)


def test_the_pooling_and_sentence_configs_are_checked(sentence_dir):
    (sentence_dir / "1_Pooling" / "config.json").write_text("[]")
    with pytest.raises(BundleError, match="Pooling module's config.json .*JSON array"):
        SentencePooling.from_dir(sentence_dir)
    shutil.copy(minilm_dir() / "1_Pooling" / "config.json", sentence_dir / "1_Pooling")
    _edit_json(sentence_dir / "sentence_bert_config.json", max_seq_length="256")
    with pytest.raises(BundleError, match="max_seq_length='256'"):
        SentencePooling.from_dir(sentence_dir)


@pytest.mark.parametrize("text", ["\udcff", "fine \ud800 text", ["ok", "\udcfe"]])
def test_text_with_lone_surrogates_is_an_input_error(tiny_bundle, text):
    from runtime import InputError, pipeline

    classify = pipeline(model=tiny_bundle("bert", "text-classification"))
    with pytest.raises(InputError, match="not valid Unicode.*lone surrogate"):
        classify(text)
