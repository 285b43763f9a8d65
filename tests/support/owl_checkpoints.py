"""Tiny OWL-ViT and OWLv2 checkpoints for zero-shot-object-detection, built from configs.

Each is a text tower and a vision tower with the box and class heads, seeded random weights, the
real transformers image processor of its family (OWL-ViT: resize and optional center crop;
OWLv2: gray padding to a square, then an anti-aliased resize) and, as the tiny CLIP of
vision_checkpoints, all-MiniLM-L6-v2's tokenizer for the text side. The tokenizer keeps 16
positions, as OWL-ViT's does.
"""

from __future__ import annotations

from pathlib import Path

TASK = "zero-shot-object-detection"
TEXT_POSITIONS = 16  # OWL-ViT's text length (OwlViTProcessor pads every query to it)

_TOWERS = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)


def _config(transformers, name: str, tokenizer):
    config = getattr(transformers, name)(
        text_config=dict(_TOWERS, max_position_embeddings=TEXT_POSITIONS,
                         vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.sep_token_id),
        # the class head projects image features to the text tower's width
        vision_config=dict(_TOWERS, image_size=48, patch_size=12), projection_dim=32)
    return config


# (model_type, task) -> (config class, model class, processor class, processor kwargs)
TINY_OWL = {
    ("owlvit", TASK): ("OwlViTConfig", "OwlViTForObjectDetection", "OwlViTImageProcessor",
                       dict(size={"height": 48, "width": 48}, do_center_crop=False)),
    ("owlv2", TASK): ("Owlv2Config", "Owlv2ForObjectDetection", "Owlv2ImageProcessor",
                      dict(size={"height": 48, "width": 48})),
}


def owl_tokenizer():
    """MiniLM's fast tokenizer with OWL-ViT's 16 positions and CLIP's two inputs."""
    import transformers
    from checkpoints import minilm_dir

    return transformers.AutoTokenizer.from_pretrained(
        minilm_dir(), model_input_names=["input_ids", "attention_mask"],
        model_max_length=TEXT_POSITIONS)


def build_tiny_owl_checkpoint(model_type: str, task: str, directory: Path, *,
                              seed: int = 0) -> Path:
    """Save a tiny random OWL-ViT or OWLv2 detector, its tokenizer and its image processor."""
    import torch
    import transformers

    config_class, model_class, processor_class, processor_kwargs = TINY_OWL[model_type, task]
    tokenizer = owl_tokenizer()
    config = _config(transformers, config_class, tokenizer)
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config).eval()
    with torch.no_grad():  # box and class heads far from zero, so that scores spread out
        for name, parameter in model.named_parameters():
            if name.startswith(("class_head", "box_head")):
                parameter.normal_(0.0, 0.3)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    getattr(transformers, processor_class)(**processor_kwargs).save_pretrained(directory)
    return Path(directory)
