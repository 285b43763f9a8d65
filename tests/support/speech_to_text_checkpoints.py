"""A tiny Speech2Text checkpoint (speech_to_text, as facebook/s2t-small-librispeech-asr) with
the processor of its real kind.

No weights or tokenizers can be downloaded here. The model is a small config with seeded random
weights and the real model's audio geometry: 80 filterbank bins, two stride-2 convolutions (a
quarter of the feature frames reach the encoder), 6000 source positions. Its processor is a
Speech2TextFeatureExtractor and a Speech2TextTokenizer over a sentencepiece unigram model
trained here on the test corpus, laid out as fairseq lays out its dictionary (<s>=0, <pad>=1,
</s>=2, <unk>=3, then the pieces; vocab.json gives the same ids), upper-casing its transcripts
as the LibriSpeech models do; the generation settings are the real model's (5 beams, early
stopping) but for 24 tokens at most, not 200 (a random decoder repeats itself to the end, and
tests would take minutes). `transformers.pipeline` loads it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

TASK = "automatic-speech-recognition"
TINY_SPEECH_TO_TEXT = {("speech_to_text", TASK)}

_CONFIG = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
               decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
               conv_channels=32, conv_kernel_sizes=(5, 5), num_conv_layers=2,
               input_feat_per_channel=80, max_source_positions=6000,
               max_target_positions=1024, init_std=0.2)
_BOS, _PAD, _EOS, _UNK = 0, 1, 2, 3


def speech_to_text_tokenizer(directory: Path):
    """A Speech2TextTokenizer whose files (sentencepiece.bpe.model, vocab.json) are written to
    ``directory``: a unigram model of 300 pieces trained on the test corpus."""
    import sentencepiece
    from generation_checkpoints import CORPUS
    from transformers import Speech2TextTokenizer

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=model, vocab_size=300, model_type="unigram",
        character_coverage=1.0, bos_id=_BOS, pad_id=_PAD, eos_id=_EOS, unk_id=_UNK,
        minloglevel=2)
    spm_file = directory / "sentencepiece.bpe.model"
    spm_file.write_bytes(model.getvalue())
    pieces = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = {pieces.id_to_piece(i): i for i in range(pieces.get_piece_size())}
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    return Speech2TextTokenizer(str(directory / "vocab.json"), str(spm_file), bos_token="<s>",
                                eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                do_upper_case=True)


def _like_a_trained_decoder(model, seed: int) -> None:
    """Make the random decoder listen and end its transcripts, as a trained one does: its
    cross-attention outputs scaled up (at random init the decoder's own tokens drown the audio,
    and every input gives the same words), and a push along </s>'s embedding row (the output
    projection is tied to it) in the final layer norm's bias; <s> and <unk> (never targets)
    are kept from winning."""
    import torch

    for layer in model.model.decoder.layers:
        layer.encoder_attn.out_proj.weight.data *= 6.0
    embedding = model.model.decoder.embed_tokens.weight.data
    generator = torch.Generator().manual_seed(seed + 1)
    embedding[_EOS] = torch.randn(embedding.shape[1], generator=generator) * _CONFIG["init_std"]
    model.model.decoder.layer_norm.bias.data += 2.0 * embedding[_EOS] / (
        embedding[_EOS] @ embedding[_EOS])
    embedding[[_BOS, _UNK]] *= 0.1


def build_tiny_speech_to_text_checkpoint(model_type: str, task: str, directory: Path, *,
                                         seed: int = 0, overrides: dict | None = None) -> Path:
    """Save the tiny Speech2Text model and its processor to ``directory``."""
    import torch
    import transformers

    if (model_type, task) not in TINY_SPEECH_TO_TEXT:
        raise KeyError(f"no tiny Speech2Text checkpoint for {(model_type, task)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = speech_to_text_tokenizer(directory)
    config = transformers.Speech2TextConfig(
        vocab_size=len(tokenizer), bos_token_id=_BOS, pad_token_id=_PAD, eos_token_id=_EOS,
        decoder_start_token_id=_EOS, **{**_CONFIG, **(overrides or {})})
    torch.manual_seed(seed)
    model = transformers.Speech2TextForConditionalGeneration(config).eval()
    _like_a_trained_decoder(model, seed)
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=_BOS, pad_token_id=_PAD, eos_token_id=_EOS, decoder_start_token_id=_EOS,
        max_length=24, num_beams=5, early_stopping=True)  # (the real one: 200 tokens)
    model.save_pretrained(directory)
    extractor = transformers.Speech2TextFeatureExtractor(
        feature_size=80, num_mel_bins=80, sampling_rate=16000, padding_value=0.0)
    transformers.Speech2TextProcessor(feature_extractor=extractor,
                                      tokenizer=tokenizer).save_pretrained(directory)
    return directory
