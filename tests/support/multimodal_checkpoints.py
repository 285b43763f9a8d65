"""Tiny text-and-vision checkpoints built from configs: ViLT for visual question answering
(with its image processor) and VisualBERT (text beside region features), both with
all-MiniLM-L6-v2's real WordPiece tokenizer (BERT's, as theirs are), token_type_ids included.
"""

from __future__ import annotations

from pathlib import Path

ANSWERS = ["yes", "no", "2", "3", "cat", "dog", "red", "blue", "tree", "person", "car", "sky"]
# A region feature size unlike the hidden size, so that a swapped dim shows.
VISUAL_EMBEDDING_DIM = 24
_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
              initializer_range=0.2)

# (model_type, task) -> (config factory, model class, image processor kwargs or None)
TINY_MULTIMODAL = {
    ("vilt", "visual-question-answering"): (
        # ViLT's own text length (40 positions) and a 4 x 4 position grid it interpolates to
        # each image's patches; images resized to a short edge of 64, sides in 16s
        lambda c: c.ViltConfig(image_size=64, patch_size=16, max_position_embeddings=40,
                               num_labels=len(ANSWERS), **_SMALL),
        "ViltForQuestionAnswering", dict(size={"shortest_edge": 64}, size_divisor=16)),
    ("visual_bert", "feature-extraction"): (
        lambda c: c.VisualBertConfig(visual_embedding_dim=VISUAL_EMBEDDING_DIM,
                                     max_position_embeddings=512, type_vocab_size=2, **_SMALL),
        "VisualBertModel", None),
}


def build_tiny_multimodal_checkpoint(model_type: str, task: str, directory: Path, *,
                                     seed: int = 0) -> Path:
    """Save a tiny random ``model_type`` model for ``task``, its tokenizer and (ViLT) its image
    processor to ``directory``."""
    import torch
    import transformers
    from checkpoints import minilm_dir

    make_config, model_class, processor_kwargs = TINY_MULTIMODAL[model_type, task]
    config = make_config(transformers)
    limit = {"model_max_length": config.max_position_embeddings} if model_type == "vilt" else {}
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        minilm_dir(), model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        **limit)
    config.vocab_size = len(tokenizer)
    config.pad_token_id = tokenizer.pad_token_id
    if task == "visual-question-answering":
        config.id2label = dict(enumerate(ANSWERS))
        config.label2id = {answer: i for i, answer in enumerate(ANSWERS)}
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    if processor_kwargs is not None:
        transformers.ViltImageProcessor(**processor_kwargs).save_pretrained(directory)
    return Path(directory)
