"""Marian's tokenizer.json, converted at export from source.spm, target.spm and vocab.json
(exporter/marian_tokenizer.py): the same ids as MarianTokenizer on many texts, and the same text
decoded; conversions it cannot make exactly are refused."""

from __future__ import annotations

import json
import random
import shutil

import pytest
from generation_checkpoints import CORPUS
from sentences import SENTENCES

from exporter.marian_tokenizer import fast_tokenizer_from_marian
from runtime import ExportError
from runtime.text.tokenizer import TextTokenizer

# Unicode, characters the source model does not know (alone, in runs, in vocab.json or not),
# spacing, control characters and special tokens inside the text.
TEXTS = [
    *SENTENCES, *CORPUS, "", " ", "   ", "  a  b  ", "\tTabs\nand\r\nnewlines \u3000", "ok\x1f",
    "Hello 😀😀 world", "xyz—東京 Ωμέγα", "Ｆｕｌｌ width ＡＢＣ ①②", "ﬁne ligatures", "e\u0301te",
    "Straße", "schön über ẞ", "\u200bzero width\u200d", "</s> inside <unk> text<pad>", "a</s>b",
    "  leading spaces", "trailing spaces   ", "…!?", "ÄÖÜ", "$19.99 (plus tax) — 50%",
    # a target language code at the start, as multilingual opus-mt models take it
    ">>de<< Good morning.", ">>nl<<ok", ">>de<<  two  spaces ", ">>de<<",
]


@pytest.fixture(scope="module")
def marian(tiny_checkpoint, tiny_bundle):
    from transformers import MarianTokenizer

    checkpoint = tiny_checkpoint("marian", "translation")
    return (MarianTokenizer.from_pretrained(checkpoint),
            TextTokenizer.from_dir(tiny_bundle("marian", "translation")))


def test_the_bundle_encodes_as_marian_tokenizer(marian):
    slow, ours = marian
    for text in TEXTS:
        assert ours.encode_batch([text])[0].ids == slow(text)["input_ids"], repr(text)
    assert slow.supported_language_codes == [">>de<<", ">>nl<<"]
    assert {"</s>", "<unk>", "<pad>", ">>de<<", ">>nl<<"} <= set(slow.convert_ids_to_tokens(
        [i for text in TEXTS for i in slow(text)["input_ids"]])), "the texts miss a special"


def test_the_bundle_decodes_as_marian_tokenizer(marian):
    """Through vocab.json to pieces, joined as the target model joins them, stripped: random
    ids (target-only pieces, special tokens, spaces at the ends) and the texts' own ids."""
    slow, ours = marian
    rng = random.Random(0)
    rows = [[rng.randrange(len(slow.encoder)) for _ in range(rng.randrange(12))]
            for _ in range(2000)] + [slow(text)["input_ids"] for text in TEXTS]
    for ids in rows:
        assert ours.decode(ids, skip_special_tokens=True) == slow.decode(
            ids, skip_special_tokens=True), ids


def test_the_known_limits(marian):
    """sentencepiece reads the characters source.spm lacks in "größe" ("öß") as one piece,
    <unk> in vocab.json; the converted tokenizer takes vocab.json's "ö" and "ß". And a language
    code counts at the start of a text only for MarianTokenizer (both documented in
    exporter/marian_tokenizer.py)."""
    slow, ours = marian
    assert slow.convert_ids_to_tokens(slow("größe")["input_ids"])[-3] == "<unk>"
    assert ours.encode_batch(["größe"])[0].ids != slow("größe")["input_ids"]
    # a language code past the start of a text: pieces for MarianTokenizer, the code here
    assert ours.encode_batch(["Hi >>de<<"])[0].ids != slow("Hi >>de<<")["input_ids"]


def test_inexact_conversions_are_refused(tiny_checkpoint, tmp_path):
    from transformers import MarianTokenizer

    source = tiny_checkpoint("marian", "translation")
    tokenizer = MarianTokenizer.from_pretrained(source)
    tokenizer.separate_vocabs = True
    with pytest.raises(ExportError, match="separate source and target vocabularies"):
        fast_tokenizer_from_marian(tokenizer)
    for name in ("source.spm", "target.spm", "tokenizer_config.json"):
        shutil.copy(source / name, tmp_path / name)
    vocab = json.loads((source / "vocab.json").read_text())
    del vocab["▁the"]  # a source piece MarianTokenizer would read as <unk>
    (tmp_path / "vocab.json").write_text(json.dumps(
        {piece: i for i, piece in enumerate(sorted(vocab, key=vocab.get))}))
    with pytest.raises(ExportError, match=r"vocab.json lacks 1 pieces of source.spm \(\['▁the'"):
        fast_tokenizer_from_marian(MarianTokenizer.from_pretrained(tmp_path))
