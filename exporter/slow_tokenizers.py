"""tokenizer.json for slow tokenizers that transformers cannot convert: one converter per
tokenizer class, in one table. The runtime reads tokenizer.json only.

Speech2TextTokenizer (speech_to_text) keeps a sentencepiece model (``spm_file``) and a
vocab.json that gives each piece its id (fairseq's dictionary: <s> <pad> </s> <unk> first).
Its tokenizer.json is transformers' own sentencepiece conversion (``SpmConverter``: the
model's normalizer, Metaspace pre-tokenizer and decoder, the pieces and their scores) with the
ids of vocab.json, and "</s>" after every text (its ``build_inputs_with_special_tokens``; the
target language's code first for a multilingual model). ``do_upper_case`` (its transcripts are
upper-cased when decoded) has no counterpart in tokenizer.json: it stays in
tokenizer_config.json, where the runtime's speech-recognition pipeline reads it.

>>> tokenizer_json_from_slow(AutoTokenizer.from_pretrained("s2t"))   # doctest: +SKIP
'{"version": "1.0", ...'
"""

from __future__ import annotations

from collections.abc import Callable

from runtime.errors import ExportError

from .marian_tokenizer import fast_tokenizer_from_marian


def _speech_to_text(tokenizer):
    """The tokenizers.Tokenizer of a Speech2TextTokenizer."""
    from tokenizers import AddedToken, Tokenizer, normalizers, processors
    from tokenizers.models import BPE, Unigram
    from transformers.convert_slow_tokenizer import SentencePieceExtractor, SpmConverter

    class Converter(SpmConverter):
        def vocab(self, proto):  # the pieces in vocab.json's order, with their scores
            return [(token, scores.get(token, 0.0)) for token in tokens]

        def unk_id(self, proto):
            return vocab[tokenizer.unk_token]

    class SpmFile:  # SpmConverter reads the sentencepiece model from vocab_file
        vocab_file = tokenizer.spm_file
        add_prefix_space = True
        legacy = True

    vocab = dict(tokenizer.encoder)
    tokens = sorted(vocab, key=vocab.get)
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ExportError(
            f"The Speech2Text vocab.json gives its {len(vocab)} tokens ids that are not 0 to "
            f"{len(vocab) - 1}, each once. Note: the checkpoint's vocab.json is damaged; save "
            "the tokenizer again with `save_pretrained`.")
    converter = Converter(SpmFile())
    proto = converter.proto
    scores = {piece.piece: piece.score for piece in proto.pieces}
    # Speech2Text turns a piece that vocab.json lacks into <unk>; a Unigram or BPE model of
    # vocab.json's pieces alone would segment the text differently instead.
    missing = [piece.piece for piece in proto.pieces if piece.type == 1 and piece.piece
               not in vocab]
    if missing:
        raise ExportError(
            f"The Speech2Text vocab.json lacks {len(missing)} pieces of its sentencepiece model "
            f"(like {missing[0]!r}), which it would turn into <unk>; tokenizer.json cannot. "
            "Note: a checkpoint's vocab.json holds every piece of its sentencepiece model; "
            "save the tokenizer again with `save_pretrained`.")
    if proto.trainer_spec.model_type == 1:
        model = Unigram(converter.vocab(proto), unk_id=converter.unk_id(proto),
                        byte_fallback=False)
    elif proto.trainer_spec.model_type == 2:
        _, merges = SentencePieceExtractor(tokenizer.spm_file).extract(converter.vocab(proto))
        model = BPE(vocab, merges, unk_token=tokenizer.unk_token, fuse_unk=True)
    else:
        raise ExportError(
            f"The Speech2Text sentencepiece model is of type {proto.trainer_spec.model_type}; "
            "edgeport converts unigram (1) and BPE (2) models. Note: report this checkpoint.")
    converted = Tokenizer(model)
    normalizer = converter.normalizer(proto)
    if getattr(tokenizer, "do_lower_case", False):
        normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizer])
    converted.normalizer = normalizer
    converted.pre_tokenizer = converter.pre_tokenizer("▁", True)
    converted.decoder = converter.decoder("▁", True)
    converted.add_special_tokens([AddedToken(token, normalized=False, special=True)
                                  for token in tokenizer.all_special_tokens])
    eos = tokenizer.eos_token
    prefix = [tokenizer.convert_ids_to_tokens(i) for i in tokenizer.prefix_tokens]
    specials = [(token, vocab[token]) for token in dict.fromkeys([*prefix, eos])]
    head = "".join(f"{token} " for token in prefix)
    converted.post_processor = processors.TemplateProcessing(
        single=f"{head}$A {eos}", pair=f"{head}$A $B {eos}", special_tokens=specials)
    return converted


# transformers' slow tokenizer class name -> its converter to a tokenizers.Tokenizer.
SLOW_CONVERTERS: dict[str, Callable] = {
    "Speech2TextTokenizer": _speech_to_text,
    "MarianTokenizer": fast_tokenizer_from_marian,  # exporter/marian_tokenizer.py
}


def tokenizer_json_from_slow(tokenizer) -> str | None:
    """tokenizer.json's text for a slow tokenizer edgeport converts itself, None for others."""
    converter = SLOW_CONVERTERS.get(type(tokenizer).__name__)
    return None if converter is None else converter(tokenizer).to_str()
