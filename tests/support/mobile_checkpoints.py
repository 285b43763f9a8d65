"""Tiny text checkpoints whose tokenizers are not WordPiece, for the end-to-end graphs of
``edgeport mobile``: RoBERTa with its byte-level BPE, XLM-RoBERTa with its Unigram (the
tokenizers of document_checkpoints, trained on a small corpus)."""

from __future__ import annotations

from pathlib import Path

from checkpoints import LABELS, TINY_CONFIGS
from document_checkpoints import roberta_tokenizer, xlm_roberta_tokenizer


def build_tiny_bpe_checkpoint(model_type: str, task: str, directory: Path, *,
                              seed: int = 0) -> Path:
    """Save a tiny random ``model_type`` ("roberta" or "xlm-roberta") model for ``task`` with
    its own kind of tokenizer (<s>=0 <pad>=1 </s>=2) to directory."""
    import torch
    import transformers
    from transformers import AutoConfig

    from runtime.tasks import TASK_MODEL_CLASSES

    tokenizer = roberta_tokenizer() if model_type == "roberta" else xlm_roberta_tokenizer()
    tokenizer.model_max_length = 64  # the long texts of the tests get truncated
    kwargs = dict(TINY_CONFIGS[model_type], vocab_size=len(tokenizer), pad_token_id=1,
                  bos_token_id=0, eos_token_id=2)
    labels = LABELS.get(task)
    if labels:
        kwargs.update(id2label=dict(enumerate(labels)),
                      label2id={label: i for i, label in enumerate(labels)})
    config = AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, TASK_MODEL_CLASSES[task]).from_config(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)
