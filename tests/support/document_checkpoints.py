"""Tiny vision-encoder-decoder checkpoints (TrOCR, Donut) with tokenizers of their real kinds.

No weights or tokenizers can be downloaded here. Each model is a VisionEncoderDecoderModel made
from small configs with seeded random weights, the special tokens, start tokens and generation
defaults of its real counterpart, and the image processor its real counterpart saves:

- TrOCR (microsoft/trocr-base-*): a ViT encoder and a TrOCR decoder; RoBERTa's byte-level BPE
  (<s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last), decoding from </s>; ViTImageProcessor.
- Donut (naver-clova-ix/donut-base-*): a DonutSwin encoder and an mBART decoder; XLM-RoBERTa's
  sentencepiece-like Unigram (<s>=0 <pad>=1 </s>=2 <unk>=3) with Donut's task and field tokens
  added (<s_docvqa>, <s_question>, <s_answer>, <s_cord-v2>, ...); DonutImageProcessor (thumbnail,
  long axis aligned, padding), at a fixed size: the Swin encoder takes one size.

TrOCR's decoder is wider than its encoder, as in trocr-small (the model projects the
encoder's states: enc_to_dec_proj, inside the exported decoder). The decoders' weights are
scaled up (init_std 0.2) so that the tiny models generate varied tokens (few argmax near-ties),
and TrOCR's </s> is made likelier, so that its generations end at different lengths.
"""

from __future__ import annotations

from pathlib import Path

# Donut's special tokens: the tasks' start tokens and the fields of their outputs (the real
# checkpoints add these, with <sep/>, to XLM-RoBERTa's vocabulary).
DONUT_TOKENS = ["<sep/>", "<s_docvqa>", "<s_question>", "</s_question>", "<s_answer>",
                "</s_answer>", "<s_cord-v2>", "<s_menu>", "</s_menu>", "<s_nm>", "</s_nm>",
                "<s_price>", "</s_price>", "<s_total>", "</s_total>"]
# The tiny Donut's one image size (height, width): Swin's windows and patch merging divide it.
DONUT_SIZE = (64, 48)

_DECODER = dict(d_model=32, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=37,
                max_position_embeddings=512, init_std=0.2)

# (model_type, task) -> the kind of checkpoint ("trocr" or "donut"). The row is
# vision-encoder-decoder; the encoder and decoder kinds are the checkpoint's.
TINY_DOCUMENT = {
    ("vision-encoder-decoder", "image-to-text"): "trocr",
    ("vision-encoder-decoder", "document-question-answering"): "donut",
}


def roberta_tokenizer():
    """TrOCR's kind: RoBERTa's byte-level BPE, <s> ... </s> around every text."""
    from generation_checkpoints import _byte_level_bpe
    from tokenizers import processors
    from transformers import RobertaTokenizerFast

    tokenizer = _byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"], 600)
    tokenizer.post_processor = processors.RobertaProcessing(
        sep=("</s>", 2), cls=("<s>", 0), trim_offsets=True, add_prefix_space=False)
    return RobertaTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                pad_token="<pad>", mask_token="<mask>", model_max_length=128)


def xlm_roberta_tokenizer():
    """Donut's kind: XLM-RoBERTa's Unigram (<s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last, <s> ...
    </s> around every text), with Donut's task and field tokens added."""
    from generation_checkpoints import _unigram
    from transformers import XLMRobertaTokenizerFast

    tokenizer = _unigram(["<s>", "<pad>", "</s>", "<unk>"], "<unk>", 500,
                         single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                         template_tokens=(("<s>", 0), ("</s>", 2)))
    tokenizer.add_special_tokens(["<mask>"])
    fast = XLMRobertaTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>",
                                   eos_token="</s>", sep_token="</s>", cls_token="<s>",
                                   unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=128)
    fast.add_special_tokens({"additional_special_tokens": DONUT_TOKENS})
    return fast


def _trocr(transformers, tokenizer):
    encoder = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                                     num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=37, initializer_range=0.2)
    decoder = transformers.TrOCRConfig(
        vocab_size=len(tokenizer), layernorm_embedding=True, use_learned_position_embeddings=True,
        scale_embedding=False, activation_function="gelu", bos_token_id=0, pad_token_id=1,
        eos_token_id=2, decoder_start_token_id=2, **dict(_DECODER, d_model=48))
    processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32}, resample=2,
                                               image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return encoder, decoder, processor


def _donut(transformers, tokenizer):
    height, width = DONUT_SIZE
    encoder = transformers.DonutSwinConfig(image_size=[height, width], patch_size=4, embed_dim=16,
                                           depths=[1, 1], num_heads=[1, 2], window_size=4,
                                           initializer_range=0.2)
    decoder = transformers.MBartConfig(
        vocab_size=len(tokenizer), is_decoder=True, is_encoder_decoder=False,
        add_cross_attention=True, scale_embedding=True, add_final_layer_norm=True,
        bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=0,
        forced_eos_token_id=2, encoder_layers=0,
        # optimum reads the heads of the decoder's cache from encoder_attention_heads (the
        # real Donut has 16 in both)
        encoder_attention_heads=_DECODER["decoder_attention_heads"], **_DECODER)
    processor = transformers.DonutImageProcessor(
        size={"height": height, "width": width}, do_align_long_axis=True, do_thumbnail=True,
        do_pad=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return encoder, decoder, processor


def build_tiny_document_checkpoint(model_type: str, task: str, directory: Path, *,
                                   seed: int = 0) -> Path:
    """Save a tiny random TrOCR (image-to-text) or Donut (document-question-answering) and its
    tokenizer and image processor to directory."""
    import torch
    import transformers

    kind = TINY_DOCUMENT[model_type, task]
    directory = Path(directory)
    tokenizer = roberta_tokenizer() if kind == "trocr" else xlm_roberta_tokenizer()
    encoder, decoder, processor = (_trocr if kind == "trocr" else _donut)(transformers, tokenizer)
    config = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder,
                                                                                  decoder)
    ids = dict(decoder_start_token_id=decoder.decoder_start_token_id, pad_token_id=1,
               eos_token_id=2)
    for key, value in ids.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    model = transformers.VisionEncoderDecoderModel(config=config).eval()
    if kind == "trocr":  # </s> likelier: generations end at different lengths, some early
        with torch.no_grad():
            model.decoder.get_output_embeddings().weight[2] *= 3
    generation = dict(ids, bos_token_id=0)
    if kind == "donut":  # its own length, as the fine-tuned Donuts set one: the pipelines'
        # default of 256 new tokens gives way to it (and the never-ending tiny model stops)
        generation.update(forced_eos_token_id=2, max_length=40)
    model.generation_config = transformers.GenerationConfig(**generation)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def document_images():
    """Generated documents: black text drawn by Pillow on white (a receipt, taller than wide;
    a text line, wider than tall), and a gray scan of the same receipt."""
    from PIL import Image, ImageDraw

    receipt = Image.new("RGB", (180, 260), "white")
    draw = ImageDraw.Draw(receipt)
    for row, line in enumerate(["INVOICE No. 2024-117", "Coffee        3.50",
                                "Bread         2.10", "Milk          1.25", "",
                                "TOTAL         6.85", "Thank you!"]):
        draw.text((12, 14 + 30 * row), line, fill="black")
    line = Image.new("RGB", (320, 40), "white")
    ImageDraw.Draw(line).text((8, 12), "the quick brown fox jumps over the lazy dog",
                              fill=(20, 20, 60))
    return [receipt, line, receipt.convert("L")]
