"""Tiny Longformer, BigBird and XLNet checkpoints with tokenizers of their real kinds.

Each model is a small config with seeded random weights and the special tokens its real
counterpart has; each tokenizer is trained offline on a small English corpus:

- Longformer: RoBERTa's byte-level BPE (<s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last,
  ``<s> A </s></s> B </s>``), saved as a fast tokenizer; a sliding window of 8 tokens, so that
  every test text spans many windows.
- BigBird: a sentencepiece Unigram model (spiece.model, <pad>=0 </s>=1 <s>=2 <unk>=3, then
  [CLS] [SEP] [MASK]), saved as the slow BigBirdTokenizer's files only: the exporter converts
  it to tokenizer.json, as for the real checkpoints. Block-sparse attention as released
  (block_size 64, 3 random blocks): transformers switches to full attention up to
  (5 + 2 * 3) * 64 = 704 tokens, past max_position_embeddings (512) here.
- XLNet: a sentencepiece Unigram model in XLNet's layout (<unk>=0 <s>=1 </s>=2 <cls>=3 <sep>=4
  <pad>=5 <mask>=6 <eod>=7 <eop>=8), slow files only; the tokenizer pads on the left and ends
  a text with <sep> <cls>.
"""

from __future__ import annotations

import io
from pathlib import Path

from checkpoints import LABELS
from generation_checkpoints import CORPUS, _byte_level_bpe

ENCODER_TASKS = ("text-classification", "token-classification", "question-answering",
                 "fill-mask", "feature-extraction")
# XLNet's heads that transformers' pipelines load: no fill-mask (a permutation LM, which
# AutoModelForMaskedLM does not load).
XLNET_TASKS = ("text-classification", "token-classification", "question-answering",
               "feature-extraction")

_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
              initializer_range=0.2)
# model_type -> config values beside the vocabulary's ids
CONFIGS = {
    "longformer": dict(_SMALL, max_position_embeddings=514, type_vocab_size=1,
                       attention_window=8),
    "big_bird": dict(_SMALL, max_position_embeddings=512, type_vocab_size=2, block_size=64,
                     num_random_blocks=3),
    "xlnet": dict(d_model=32, n_layer=2, n_head=2, d_inner=37, initializer_range=0.2),
}

TINY_LONG_TEXT = {
    *(("longformer", task) for task in ENCODER_TASKS),
    *(("big_bird", task) for task in ENCODER_TASKS),
    *(("xlnet", task) for task in XLNET_TASKS),
}

# task -> class, where AutoModelFor<task> is not what transformers' pipeline loads
_CLASSES = {"question-answering": "AutoModelForQuestionAnswering",
            "text-classification": "AutoModelForSequenceClassification",
            "token-classification": "AutoModelForTokenClassification",
            "fill-mask": "AutoModelForMaskedLM", "feature-extraction": "AutoModel"}


def longformer_tokenizer():
    """RoBERTa's kind (Longformer uses RoBERTa's tokenizer): byte-level BPE, <mask> last."""
    from tokenizers import processors
    from transformers import LongformerTokenizerFast

    tokenizer = _byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"], 600)
    tokenizer.post_processor = processors.RobertaProcessing(
        sep=("</s>", 2), cls=("<s>", 0), trim_offsets=True, add_prefix_space=False)
    return LongformerTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>", model_max_length=512)


def sentencepiece_model(*, vocab_size: int, **ids) -> bytes:
    """A sentencepiece Unigram model trained on the corpus, with the given special ids
    (unk_id, bos_id, eos_id, pad_id, control_symbols)."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=model, model_type="unigram",
        vocab_size=vocab_size, hard_vocab_limit=False, character_coverage=1.0,
        minloglevel=2, **ids)
    return model.getvalue()


def bigbird_tokenizer(directory: Path):
    """BigBird's kind: sentencepiece with <pad>=0 </s>=1 <s>=2 <unk>=3 [CLS] [SEP] [MASK]."""
    from transformers import BigBirdTokenizer

    path = directory / "source-spiece.model"
    path.write_bytes(sentencepiece_model(
        vocab_size=500, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        control_symbols=["[CLS]", "[SEP]", "[MASK]"]))
    tokenizer = BigBirdTokenizer(str(path), model_max_length=512)
    path.unlink()
    return tokenizer


def xlnet_tokenizer(directory: Path):
    """XLNet's kind: sentencepiece with <unk>=0 <s>=1 </s>=2 <cls>=3 <sep>=4 <pad>=5 <mask>=6
    <eod>=7 <eop>=8, accents stripped, padding on the left."""
    from transformers import XLNetTokenizer

    path = directory / "source-spiece.model"
    path.write_bytes(sentencepiece_model(
        vocab_size=500, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        control_symbols=["<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]))
    tokenizer = XLNetTokenizer(str(path), model_max_length=512)
    path.unlink()
    return tokenizer


def _config(model_type: str, task: str, tokenizer, transformers):
    ids = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id")
           for name in ("pad", "bos", "eos")}
    if model_type in ("longformer", "big_bird"):
        ids["sep_token_id"] = tokenizer.sep_token_id
    values = dict(CONFIGS[model_type], vocab_size=len(tokenizer), **ids)
    labels = LABELS.get(task)
    if labels:
        values.update(id2label=dict(enumerate(labels)),
                      label2id={label: i for i, label in enumerate(labels)})
    if task == "question-answering":
        values.update(num_labels=2)
    return transformers.AutoConfig.for_model(model_type, **values)


def build_tiny_long_text_checkpoint(model_type: str, task: str, directory: Path, *,
                                    seed: int = 0, **config) -> Path:
    """Save a tiny random ``model_type`` model for ``task`` and its tokenizer to directory
    (``config``: values that replace the tiny config's)."""
    import torch
    import transformers

    if (model_type, task) not in TINY_LONG_TEXT:
        raise KeyError(f"no tiny long-text checkpoint for {(model_type, task)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = {"longformer": lambda: longformer_tokenizer(),
                 "big_bird": lambda: bigbird_tokenizer(directory),
                 "xlnet": lambda: xlnet_tokenizer(directory)}[model_type]()
    model_config = _config(model_type, task, tokenizer, transformers)
    for key, value in config.items():
        setattr(model_config, key, value)
    torch.manual_seed(seed)
    model = getattr(transformers, _CLASSES[task]).from_config(model_config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
