"""Tiny translation checkpoints: mBART (mbart-large-50's and mbart-large-cc25's tokenizers) and
Marian (Helsinki-NLP/opus-mt-*), with real sentencepiece models trained offline.

Each tokenizer is the slow one transformers ships for the kind (MBart50Tokenizer, MBartTokenizer,
MarianTokenizer), saved with its own save_pretrained from a sentencepiece unigram model that the
``sentencepiece`` trainer makes from the tests' small corpus: only slow files are saved, so the
export converts them (transformers' converters for mBART, edgeport's for Marian, which has none).

- mBART: the fairseq layout (<s>=0 <pad>=1 </s>=2 <unk>=3, the sentencepiece pieces, the language
  codes, <mask> last); translation puts the source code around the text and forces the target
  code as the first generated token.
- Marian: source.spm (English) and target.spm (German) with one vocab.json over both, ordered
  unlike either model (so ids are vocab.json's, not sentencepiece's): </s>=0, <unk>=1, the pieces
  sorted, two target language codes (>>de<<, >>nl<<), <pad> last; decoding starts at <pad>,
  the logits carry final_logits_bias, and <pad> is never generated (bad_words_ids), as in
  opus-mt's generation_config.json.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from generation_checkpoints import CORPUS

TINY_TRANSLATION = {("mbart", "translation"), ("marian", "translation")}

# German-ish text for Marian's target side: the corpus's German words in sentences.
_GERMAN = """der die das und ist ein eine nicht mit auf für von sie es ich du wir ihr haus hund
katze schnell langsam gut schlecht heute morgen wasser brot welt kind frau mann buch stadt über
grüße straße müde schön größe Ärger öffnen fußball""".split()
TARGET_CORPUS = [" ".join(_GERMAN[i:i + 9]) + "." for i in range(0, len(_GERMAN), 3)] + [
    f"Der {a}{b} und die {c} sind {d}, {e}!" for a, b, c, d, e in zip(
        _GERMAN, _GERMAN[5:], _GERMAN[11:], _GERMAN[17:] * 3, _GERMAN[23:] * 3)] * 3

_MBART = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
              decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37,
              max_position_embeddings=128, init_std=0.2, scale_embedding=True)
_MARIAN = dict(_MBART, scale_embedding=True, share_encoder_decoder_embeddings=True)


def sentencepiece_model(corpus: list[str], vocab_size: int, **special) -> bytes:
    """A serialized sentencepiece unigram model trained on ``corpus`` (character coverage below
    1, so rare characters are unknown to it, as in real models)."""
    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=out, vocab_size=vocab_size,
        model_type="unigram", character_coverage=0.995, hard_vocab_limit=False, minloglevel=2,
        **special)
    return out.getvalue()


def mbart_tokenizer(directory: Path, style: str = "mbart50"):
    """mbart-large-50's (``[src_lang] X </s>``) or mbart-large-cc25's (``X </s> src_lang``) slow
    tokenizer over a fairseq-style sentencepiece model (<unk>=0 <s>=1 </s>=2)."""
    from transformers import MBart50Tokenizer, MBartTokenizer

    model = directory / "sentencepiece.bpe.model"
    model.write_bytes(sentencepiece_model(CORPUS, 300, unk_id=0, bos_id=1, eos_id=2, pad_id=-1))
    cls = MBart50Tokenizer if style == "mbart50" else MBartTokenizer
    return cls(vocab_file=str(model), src_lang="en_XX", tgt_lang="ro_RO",
               model_max_length=_MBART["max_position_embeddings"])


def marian_tokenizer(directory: Path):
    """opus-mt's layout: source.spm, target.spm and one vocab.json for both."""
    import sentencepiece
    from transformers import MarianTokenizer

    special = dict(eos_id=0, unk_id=1, bos_id=-1, pad_id=-1)
    models = {"source.spm": sentencepiece_model(CORPUS, 300, **special),
              "target.spm": sentencepiece_model(TARGET_CORPUS, 200, **special)}
    pieces = set()
    for name, proto in models.items():
        (directory / name).write_bytes(proto)
        processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
        pieces.update(processor.id_to_piece(i) for i in range(processor.get_piece_size()))
    # the target language codes of a multilingual opus-mt model (opus-mt-en-ROMANCE's >>fr<<)
    ordered = ["</s>", "<unk>", *sorted(pieces - {"</s>", "<unk>"}), ">>de<<", ">>nl<<", "<pad>"]
    vocab = directory / "vocab.json"
    vocab.write_text(json.dumps({piece: i for i, piece in enumerate(ordered)}))
    return MarianTokenizer(str(directory / "source.spm"), str(directory / "target.spm"),
                           str(vocab), source_lang="en", target_lang="de",
                           model_max_length=_MARIAN["max_position_embeddings"])


def _mbart_model(tokenizer, transformers):
    # as facebook/mbart-large-50-many-to-many-mmt: decoding starts at </s>, ends with a forced
    # </s>; the pipeline forces the target language code as the first generated token
    ids = dict(bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2)
    config = transformers.MBartConfig(vocab_size=len(tokenizer), forced_eos_token_id=2, **ids,
                                      **_MBART)
    generation = transformers.GenerationConfig(**ids, forced_eos_token_id=2, num_beams=5,
                                               max_length=100, early_stopping=True)
    return transformers.MBartForConditionalGeneration(config), generation


def _marian_model(tokenizer, transformers):
    import torch

    pad = tokenizer.pad_token_id
    ids = dict(pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad,
               forced_eos_token_id=0)
    config = transformers.MarianConfig(vocab_size=len(tokenizer), decoder_vocab_size=None,
                                       bos_token_id=0, **ids, **_MARIAN)
    model = transformers.MarianMTModel(config)
    with torch.no_grad():  # real checkpoints carry a trained bias; a zero one tests nothing
        model.final_logits_bias.copy_(torch.randn_like(model.final_logits_bias))
    generation = transformers.GenerationConfig(
        bos_token_id=0, **ids, bad_words_ids=[[pad]], num_beams=4, max_length=100,
        renormalize_logits=True)
    return model, generation


def build_tiny_translation_checkpoint(model_type: str, task: str, directory: Path, *,
                                      style: str = "mbart50", seed: int = 0) -> Path:
    """Save a tiny random translation model of ``model_type`` with its slow tokenizer files
    (``style``: mBART's tokenizer, "mbart50" or "cc25")."""
    import torch
    import transformers

    if (model_type, task) not in TINY_TRANSLATION:
        raise KeyError(f"no tiny translation checkpoint for {(model_type, task)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if model_type == "mbart":
        tokenizer = mbart_tokenizer(directory, style)
        model, generation = _mbart_model(tokenizer, transformers)
    else:
        tokenizer = marian_tokenizer(directory)
        model, generation = _marian_model(tokenizer, transformers)
    model.eval().generation_config = generation
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
