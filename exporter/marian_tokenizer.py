"""MarianTokenizer -> tokenizer.json: transformers has no fast Marian tokenizer, so edgeport
converts its files (source.spm, target.spm, vocab.json) itself, exactly as MarianTokenizer
encodes and decodes.

MarianTokenizer encodes with the *source* sentencepiece model and looks each piece up in
vocab.json (ids are vocab.json's, not sentencepiece's; a piece it lacks is <unk>), then appends
</s>. It decodes ids through vocab.json to pieces, joins them with the *target* model, turns
every "▁" into a space and strips the ends. The converted tokenizer is a Unigram over vocab.json
in its id order:

- source pieces keep their sentencepiece scores, so the Viterbi segmentation is sentencepiece's
  (and so is its score for unknown characters, the lowest piece score less 10);
- vocab.json's other entries (target-only pieces) must never be matched when encoding, yet
  decode to their text: they are stored behind U+FDD0, a Unicode noncharacter reserved for
  internal use that no text holds, and the decoder drops it;
- the normalizer and pre-tokenizer are transformers' sentencepiece ones (SpmConverter) built
  from source.spm's normalization rules;
- the decoder replaces "▁" by spaces, joins the pieces and strips spaces at both ends.

Conversions this cannot make exactly are refused (ExportError) instead of approximated:
separate source and target vocabularies, a BPE or byte-fallback sentencepiece model, one without
the standard whitespace handling, and source pieces that vocab.json lacks. Known limits (of
inputs, not models): sentencepiece reads a run of characters that source.spm does not know as
one piece, which MarianTokenizer looks up whole in vocab.json (<unk> when absent); here such a
run is split into the vocab.json entries it holds, when it holds some without being one (a
German "öß" in an English model whose vocab.json has "ö" and "ß"). A ">>xx<<" language code
is a token wherever it stands here; MarianTokenizer reads one at the start of a text only (and
one it does not know as <unk>). Decoding with skip_special_tokens=False (no pipeline does)
differs in the space MarianTokenizer puts after each special token.
"""

from __future__ import annotations

from runtime.errors import ExportError

# Put before vocab.json entries that are not source pieces: U+FDD0 is a noncharacter, which
# Unicode reserves for a program's internal use, so no text matches these entries.
HIDDEN = "\ufdd0"
# sentencepiece's piece types (sentencepiece_model.proto)
_NORMAL, _USER_DEFINED = 1, 4
_UNIGRAM = 1
# What Python's str.strip() takes off both ends (Oniguruma's \s lacks \x1c-\x1f); \A and \z,
# as ^ and $ would match at every line.
_STRIP = r"\A[\s\x1c-\x1f]+|[\s\x1c-\x1f]+\z"


def _refuse(what: str) -> None:
    raise ExportError(
        f"The Marian tokenizer cannot be converted to tokenizer.json exactly: {what}. Note: "
        "edgeport converts opus-mt style tokenizers (one vocab.json, unigram sentencepiece "
        "models); report this checkpoint.")


def _source_proto(tokenizer):
    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    proto.ParseFromString(tokenizer.spm_source.serialized_model_proto())
    trainer, normalizer = proto.trainer_spec, proto.normalizer_spec
    if trainer.model_type != _UNIGRAM:
        _refuse("source.spm is not a unigram model")
    if trainer.byte_fallback:
        _refuse("source.spm falls back to bytes")
    if not (normalizer.add_dummy_prefix and normalizer.remove_extra_whitespaces):
        _refuse("source.spm does not add a leading space and collapse whitespace")
    if proto.denormalizer_spec.precompiled_charsmap:  # its normalizer's charsmap is converted
        _refuse("source.spm has denormalization rules")
    return proto


def fast_tokenizer_from_marian(tokenizer):
    """A ``tokenizers.Tokenizer`` that encodes and decodes as ``tokenizer`` (a
    MarianTokenizer) does."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, processors
    from tokenizers.models import Unigram
    from transformers.convert_slow_tokenizer import SpmConverter

    if tokenizer.separate_vocabs:
        _refuse("it has separate source and target vocabularies (target_vocab.json), and a "
                "tokenizer.json holds one")
    proto = _source_proto(tokenizer)
    vocab = tokenizer.encoder
    if sorted(vocab.values()) != list(range(len(vocab))):
        _refuse("vocab.json's ids are not 0, 1, ... in a row")
    scores = {p.piece: p.score for p in proto.pieces if p.type == _NORMAL}
    user_defined = [p.piece for p in proto.pieces if p.type == _USER_DEFINED]
    missing = sorted({*scores, *user_defined} - set(vocab))
    if missing:
        _refuse(f"vocab.json lacks {len(missing)} pieces of source.spm ({missing[:5]}), which "
                "MarianTokenizer reads as <unk>")
    specials = [str(token) for token in tokenizer.all_special_tokens]
    codes = list(getattr(tokenizer, "supported_language_codes", []))  # >>fr<< and the like
    kept = set(specials) | set(user_defined) | set(codes)
    # vocab.json entries made only of characters no source piece has: sentencepiece gives such
    # a run of unknown characters as one piece, which vocab.json may hold. Scored as the
    # lowest source piece, the fewest of them covering a run win, so a run that is an entry
    # is that entry (an entry inside a longer run is taken too: see the module's limits).
    known = {char for piece in [*scores, *user_defined] for char in piece}
    lowest = min(scores.values())
    unknown_runs = {piece for piece in vocab
                    if piece not in kept and not any(char in known for char in piece)}
    pieces = sorted(vocab, key=vocab.get)
    model = Unigram([(piece, scores[piece]) if piece in scores else (piece, 0.0) if piece in kept
                     else (piece, lowest) if piece in unknown_runs else (HIDDEN + piece, 0.0)
                     for piece in pieces],
                    unk_id=vocab[str(tokenizer.unk_token)], byte_fallback=False)
    converted = Tokenizer(model)
    converter = SpmConverter.__new__(SpmConverter)  # its sentencepiece pre/normalization
    converter.original_tokenizer, converter.proto = tokenizer, proto
    converted.normalizer = converter.normalizer(proto)
    converted.pre_tokenizer = converter.pre_tokenizer("▁", True)
    # MarianTokenizer splits these off the text before sentencepiece reads it
    converted.add_special_tokens([AddedToken(t, normalized=False) for t in specials])
    converted.add_tokens([AddedToken(t, normalized=False) for t in [*user_defined, *codes]])
    eos = str(tokenizer.eos_token)
    converted.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A $B {eos}", special_tokens=[(eos, vocab[eos])])
    converted.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.Replace(HIDDEN, ""), decoders.Fuse(),
        decoders.Replace(Regex(_STRIP), "")])
    return converted
