"""Tiny speech checkpoints (Wav2Vec2, HuBERT, Whisper) with the processors of their real kinds.

No weights or tokenizers can be downloaded here. Each model is a small config with seeded random
weights and the real model's audio geometry: Wav2Vec2 and HuBERT keep the seven-layer convolution
stack of the real ones (320 samples per frame, 20 ms at 16 kHz), Whisper keeps 80 mel bins, 30 s
windows (3000 frames, 1500 encoder positions) and the full special-token layout. Each is saved
with its processor: a Wav2Vec2FeatureExtractor and a character Wav2Vec2CTCTokenizer (vocab.json,
as facebook/wav2vec2-base-960h) for CTC, a WhisperFeatureExtractor and a WhisperTokenizerFast
(a byte-level BPE trained offline, then <|endoftext|>, <|startoftranscript|>, the 99 language
tokens, <|translate|>, <|transcribe|>, <|startoflm|>, <|startofprev|>, <|nospeech|>,
<|notimestamps|> and the 1501 timestamp tokens <|0.00|>..<|30.00|>, in Whisper's order) with a
generation_config.json like openai/whisper-tiny's. `transformers.pipeline` loads them all.

The attention mask is covered both ways, as on the Hub: group-norm models whose extractor makes
none (wav2vec2-base-960h, hubert-base), a layer-norm model fed one (hubert-large-ls960-ft), and
a group-norm classifier whose extractor makes one (superb/wav2vec2-base-superb-ks).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

SAMPLING_RATE = 16000

# Keyword-spotting labels, as superb/wav2vec2-base-superb-ks has.
LABELS = ["yes", "no", "up", "down", "left", "right", "_silence_", "_unknown_"]

# facebook/wav2vec2-base-960h's vocabulary: specials, the word delimiter, letters by frequency.
CTC_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]

# The real convolution stack (strides multiply to 320 samples per frame), with narrow channels.
_CONV = dict(conv_dim=(16,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2),
             conv_kernel=(10, 3, 3, 3, 3, 2, 2))
_ENCODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                classifier_proj_size=16, initializer_range=0.2, **_CONV)
# wav2vec2-base / hubert-base: group norm in the first conv layer, no conv bias, no mask.
_GROUP_NORM = dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False)
# hubert-large-ls960-ft / wav2vec2-large-lv60: layer norm everywhere; its extractor gives a mask.
_LAYER_NORM = dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)

# (model_type, task) -> (config class, model class, config kwargs, extractor gives a mask)
_AUDIO_ENCODERS = {
    ("wav2vec2", "automatic-speech-recognition"): (
        "Wav2Vec2Config", "Wav2Vec2ForCTC", _GROUP_NORM, False),
    ("wav2vec2", "audio-classification"): (
        "Wav2Vec2Config", "Wav2Vec2ForSequenceClassification", _GROUP_NORM, True),
    ("hubert", "automatic-speech-recognition"): (
        "HubertConfig", "HubertForCTC", _LAYER_NORM, True),
    ("hubert", "audio-classification"): (
        "HubertConfig", "HubertForSequenceClassification", _GROUP_NORM, False),
}

# Whisper: two layers each side, width 64; the real audio geometry and 448 target positions.
_WHISPER = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                num_mel_bins=80, max_source_positions=1500, max_target_positions=448,
                init_std=0.2)

TINY_SPEECH = {*_AUDIO_ENCODERS, ("whisper", "automatic-speech-recognition")}


# --- Wav2Vec2 / HuBERT --------------------------------------------------------------------------

def ctc_tokenizer():
    """Wav2Vec2CTCTokenizer over CTC_VOCAB ("<pad>" = 0 is the CTC blank, "|" between words)."""
    from transformers import Wav2Vec2CTCTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        vocab = Path(scratch) / "vocab.json"
        vocab.write_text(json.dumps({token: i for i, token in enumerate(CTC_VOCAB)}))
        return Wav2Vec2CTCTokenizer(str(vocab), bos_token="<s>", eos_token="</s>",
                                    unk_token="<unk>", pad_token="<pad>",
                                    word_delimiter_token="|", do_lower_case=False)


def _like_a_trained_ctc_head(bias, tokenizer) -> None:
    """Biases that make a random CTC head decode like a trained one: blanks between letters,
    word delimiters, repeats; <s> and </s> (never CTC targets) never win a frame."""
    bias[tokenizer.pad_token_id] += 1.5
    bias[tokenizer.word_delimiter_token_id] += 1.5
    bias[[tokenizer.bos_token_id, tokenizer.eos_token_id]] -= 10.0


def _build_audio_encoder(model_type: str, task: str, directory: Path, seed: int,
                         overrides: dict) -> Path:
    import torch
    import transformers

    config_class, model_class, norm, mask = _AUDIO_ENCODERS[model_type, task]
    kwargs = dict(_ENCODER, **norm)
    tokenizer = None
    if task == "automatic-speech-recognition":
        tokenizer = ctc_tokenizer()
        kwargs.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                      bos_token_id=1, eos_token_id=2)
    else:
        kwargs.update(id2label=dict(enumerate(LABELS)),
                      label2id={label: i for i, label in enumerate(LABELS)})
    config = getattr(transformers, config_class)(**{**kwargs, **overrides})
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config).eval()
    if tokenizer is not None:
        _like_a_trained_ctc_head(model.lm_head.bias.data, tokenizer)
    model.save_pretrained(directory)
    extractor = transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLING_RATE, padding_value=0.0, do_normalize=True,
        return_attention_mask=mask)
    if tokenizer is None:
        extractor.save_pretrained(directory)
    else:
        transformers.Wav2Vec2Processor(feature_extractor=extractor,
                                       tokenizer=tokenizer).save_pretrained(directory)
    return directory


# --- Whisper ------------------------------------------------------------------------------------

def whisper_languages() -> list[str]:
    """The language tokens of the multilingual Whisper models before large-v3, in order."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [f"<|{code}|>" for code in list(LANGUAGES)[:99]]  # "yue", the 100th, is large-v3's


def whisper_special_tokens() -> list[str]:
    """Whisper's special tokens after its text vocabulary, in the multilingual models' order."""
    return ["<|endoftext|>", "<|startoftranscript|>", *whisper_languages(),
            "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
            "<|nospeech|>", "<|notimestamps|>"]


def whisper_tokenizer():
    """Whisper's kind: GPT-2's byte-level BPE, then the special tokens, then the timestamps
    (plain added tokens: decode() strips them from text, as the real tokenizer does)."""
    from generation_checkpoints import CORPUS
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import WhisperTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS, trainer)
    specials = whisper_special_tokens()
    tokenizer.add_special_tokens(specials)
    tokenizer.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False, special=False)
                          for i in range(1501)])
    sot, eot, notimestamps = "<|startoftranscript|>", "<|endoftext|>", "<|notimestamps|>"
    ids = {t: tokenizer.token_to_id(t) for t in (sot, eot, notimestamps)}
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{sot} {notimestamps} $A {eot}", pair=f"{sot} {notimestamps} $A $B {eot}",
        special_tokens=list(ids.items()))
    return WhisperTokenizerFast(tokenizer_object=tokenizer, unk_token=eot, bos_token=eot,
                                eos_token=eot, pad_token=eot, additional_special_tokens=specials,
                                model_max_length=1024, errors="replace")


def _non_speech_tokens(tokenizer) -> list[int]:
    """Whisper's suppress_tokens: the ids of symbols that are not speech (openai/whisper's
    tokenizer.non_speech_tokens), then the task and control tokens, as whisper-tiny has."""
    symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
    symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
    miscellaneous = set("♩♪♫♬♭♮♯")

    def encode(text):
        return tokenizer.encode(text, add_special_tokens=False)

    found = {encode(" -")[0], encode(" '")[0]}
    for symbol in symbols + sorted(miscellaneous):
        for tokens in (encode(symbol), encode(" " + symbol)):
            if len(tokens) == 1 or symbol in miscellaneous:
                found.add(tokens[0])
    controls = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
                "<|nospeech|>"]
    return sorted(found) + tokenizer.convert_tokens_to_ids(controls)


def _whisper_generation_config(tokenizer, transformers):
    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    return transformers.GenerationConfig(
        alignment_heads=[[1, 0], [1, 2], [1, 3]],
        begin_suppress_tokens=[tokenizer.encode(" ", add_special_tokens=False)[0], eot],
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        decoder_start_token_id=ids("<|startoftranscript|>"),
        forced_decoder_ids=[[1, None], [2, ids("<|transcribe|>")]],
        is_multilingual=True,
        lang_to_id={token: ids(token) for token in whisper_languages()},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        max_initial_timestamp_index=50,
        max_length=_WHISPER["max_target_positions"],
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        return_timestamps=False,
        suppress_tokens=_non_speech_tokens(tokenizer),
        median_filter_width=7,
    )


def _like_a_trained_decoder(model, tokenizer, seed: int) -> None:
    """Make the random decoder end its transcripts, and keep to text when not asked for
    timestamps, as a trained one does.

    <|endoftext|> is also the pad token, so its embedding row (the output projection is tied to
    it) starts at zero: its logit would be 0 at every step, below the top of 2600 random logits,
    and every transcript would run to max_length. It gets a random row, and a push along it in
    the final layer norm's bias that makes it win after a few to fifty tokens on most inputs.
    The 1501 timestamp rows are shrunk: at full size one of them wins most steps even without
    timestamps (the text then strips them, and decoding runs to max_length); with timestamps
    the timestamp logits processor still forces them in as a whole.
    """
    import torch

    eot, first_timestamp = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|0.00|>"])
    embedding = model.model.decoder.embed_tokens.weight.data
    generator = torch.Generator().manual_seed(seed + 1)
    embedding[eot] = torch.randn(embedding.shape[1], generator=generator) * _WHISPER["init_std"]
    model.model.decoder.layer_norm.bias.data += 4.0 * embedding[eot] / (
        embedding[eot] @ embedding[eot])
    embedding[first_timestamp:] *= 0.2


def _build_whisper(directory: Path, seed: int, overrides: dict) -> Path:
    import torch
    import transformers

    tokenizer = whisper_tokenizer()
    eot, sot = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|startoftranscript|>"])
    generation_config = _whisper_generation_config(tokenizer, transformers)
    # The token lists live in generation_config.json (save_pretrained moves them out of
    # config.json); the config's default begin_suppress_tokens are whisper-tiny's ids.
    config = transformers.WhisperConfig(
        vocab_size=len(tokenizer), pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
        decoder_start_token_id=sot, begin_suppress_tokens=None, **{**_WHISPER, **overrides})
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    _like_a_trained_decoder(model, tokenizer, seed)
    model.generation_config = generation_config
    model.save_pretrained(directory)
    extractor = transformers.WhisperFeatureExtractor(
        feature_size=_WHISPER["num_mel_bins"], sampling_rate=SAMPLING_RATE, hop_length=160,
        chunk_length=30, n_fft=400, padding_value=0.0, return_attention_mask=False)
    transformers.WhisperProcessor(feature_extractor=extractor,
                                  tokenizer=tokenizer).save_pretrained(directory)
    return directory


def build_tiny_speech_checkpoint(model_type: str, task: str, directory: Path, *,
                                 seed: int = 0, overrides: dict | None = None) -> Path:
    """Save a tiny random `model_type` model for `task` and its processor to directory.
    ``overrides`` replace config values (benchmarks/suite.py makes the real sizes of
    wav2vec2-base and whisper-tiny so,
    with this tokenizer and generation config)."""
    if (model_type, task) not in TINY_SPEECH:
        raise KeyError(f"no tiny speech checkpoint for {(model_type, task)}")
    directory = Path(directory)
    if model_type == "whisper":
        return _build_whisper(directory, seed, overrides or {})
    return _build_audio_encoder(model_type, task, directory, seed, overrides or {})
