"""Tiny vision checkpoints built from configs, each with the image processor its family uses.

No weights can be downloaded here, so every architecture is a small config with seeded random
weights, saved with a `preprocessor_config.json` written by the real transformers processor class
(small sizes, the family's own resize and crop rules). CLIP gets all-MiniLM-L6-v2's tokenizer
for its text side, restricted to the inputs CLIP takes.
"""

from __future__ import annotations

from pathlib import Path

LABELS = ["cat", "dog", "car", "tree", "person"]

_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
            initializer_range=0.2)
_STAGES = dict(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1])
_MIX = dict(_STAGES, num_attention_heads=[1, 1, 2, 2], sr_ratios=[4, 2, 1, 1],
            initializer_range=0.2)


def _mask2former_config():
    from transformers import Mask2FormerConfig, SwinConfig

    backbone = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                          window_size=7, out_features=["stage1", "stage2", "stage3", "stage4"])
    return Mask2FormerConfig(backbone_config=backbone, hidden_dim=32, num_queries=10,
                             encoder_layers=1, decoder_layers=2, encoder_feedforward_dim=64,
                             dim_feedforward=64, feature_size=32, mask_feature_size=32,
                             num_attention_heads=2, use_pretrained_backbone=False,
                             # mask logits far from 0: at the default 0.02 they sit near the
                             # decoder's sigmoid < 0.5 attention cut, where float rounding flips
                             # mask bits (trained checkpoints are far from it too)
                             init_std=0.2)


def _detr_config(name: str = "DetrConfig"):
    import transformers

    backbone = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32],
                                         depths=[1, 1, 1, 1], out_features=["stage4"])
    return getattr(transformers, name)(use_timm_backbone=False, use_pretrained_backbone=False,
                      backbone_config=backbone, d_model=32, encoder_layers=1, decoder_layers=1,
                      encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=37,
                      decoder_ffn_dim=37, num_queries=12)


# (model_type, task) -> (config factory, model class, processor class, processor kwargs)
TINY_VISION = {
    ("vit", "image-classification"): (
        lambda c: c.ViTConfig(image_size=32, patch_size=8, **_VIT),
        "ViTForImageClassification", "ViTImageProcessor", dict(size={"height": 32, "width": 32})),
    ("deit", "image-classification"): (
        lambda c: c.DeiTConfig(image_size=32, patch_size=8, **_VIT),
        "DeiTForImageClassification", "DeiTImageProcessor",
        dict(size={"height": 37, "width": 37}, crop_size={"height": 32, "width": 32})),
    ("convnext", "image-classification"): (
        lambda c: c.ConvNextConfig(**_STAGES, initializer_range=0.2),
        "ConvNextForImageClassification", "ConvNextImageProcessor",
        dict(size={"shortest_edge": 32}, crop_pct=0.875)),
    ("convnextv2", "image-classification"): (
        lambda c: c.ConvNextV2Config(**_STAGES, initializer_range=0.2),
        "ConvNextV2ForImageClassification", "ConvNextImageProcessor",
        dict(size={"shortest_edge": 32}, crop_pct=0.875)),
    ("resnet", "image-classification"): (
        lambda c: c.ResNetConfig(embedding_size=8, **_STAGES),
        "ResNetForImageClassification", "ConvNextImageProcessor",
        dict(size={"shortest_edge": 40}, crop_pct=0.875)),
    ("regnet", "image-classification"): (
        lambda c: c.RegNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32],
                                 depths=[1, 1, 1, 1], groups_width=8),
        "RegNetForImageClassification", "ConvNextImageProcessor",
        dict(size={"shortest_edge": 40}, crop_pct=0.875)),
    ("data2vec-vision", "image-classification"): (
        lambda c: c.Data2VecVisionConfig(image_size=32, patch_size=8,
                                         use_relative_position_bias=True, **_VIT),
        "Data2VecVisionForImageClassification", "BeitImageProcessor",
        dict(size={"height": 32, "width": 32}, do_center_crop=False)),
    ("vit_msn", "image-classification"): (
        lambda c: c.ViTMSNConfig(image_size=32, patch_size=8, **_VIT),
        "ViTMSNForImageClassification", "ViTImageProcessor",
        dict(size={"height": 32, "width": 32})),
    ("swin", "image-classification"): (
        lambda c: c.SwinConfig(image_size=32, patch_size=2, embed_dim=16, depths=[1, 1],
                               num_heads=[1, 2], window_size=4, initializer_range=0.2),
        "SwinForImageClassification", "ViTImageProcessor", dict(size={"height": 32, "width": 32})),
    ("beit", "image-classification"): (
        lambda c: c.BeitConfig(image_size=32, patch_size=8, use_relative_position_bias=True,
                               **_VIT),
        "BeitForImageClassification", "BeitImageProcessor",
        dict(size={"height": 32, "width": 32}, do_center_crop=False)),
    ("detr", "object-detection"): (
        lambda c: _detr_config(), "DetrForObjectDetection", "DetrImageProcessor",
        dict(size={"shortest_edge": 64, "longest_edge": 96})),
    ("table-transformer", "object-detection"): (
        lambda c: _detr_config("TableTransformerConfig"), "TableTransformerForObjectDetection",
        "DetrImageProcessor", dict(size={"shortest_edge": 64, "longest_edge": 96})),
    ("yolos", "object-detection"): (
        lambda c: c.YolosConfig(image_size=[64, 96], patch_size=8, num_detection_tokens=12,
                                **_VIT),
        "YolosForObjectDetection", "YolosImageProcessor",
        dict(size={"shortest_edge": 64, "longest_edge": 96})),
    ("segformer", "image-segmentation"): (
        lambda c: c.SegformerConfig(**_MIX, decoder_hidden_size=32),
        "SegformerForSemanticSegmentation", "SegformerImageProcessor",
        dict(size={"height": 64, "width": 64})),
    ("mask2former", "image-segmentation"): (
        lambda c: _mask2former_config(), "Mask2FormerForUniversalSegmentation",
        "Mask2FormerImageProcessor", dict(size={"shortest_edge": 64, "longest_edge": 96},
                                          size_divisor=32)),
    ("glpn", "depth-estimation"): (
        lambda c: c.GLPNConfig(**_MIX, decoder_hidden_size=16, head_in_index=-1),
        "GLPNForDepthEstimation", "GLPNImageProcessor", dict(size_divisor=32)),
    ("dpt", "depth-estimation"): (
        lambda c: c.DPTConfig(image_size=32, patch_size=8, neck_hidden_sizes=[8, 16, 24, 32],
                              fusion_hidden_size=16, hidden_size=32, num_hidden_layers=4,
                              num_attention_heads=2, intermediate_size=37,
                              backbone_out_indices=[0, 1, 2, 3], initializer_range=0.2),
        "DPTForDepthEstimation", "DPTImageProcessor",
        dict(size={"height": 32, "width": 32}, keep_aspect_ratio=False)),  # as Intel/dpt-large
    ("clip", "zero-shot-image-classification"): (
        lambda c: c.CLIPConfig(
            text_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=37, max_position_embeddings=64),
            vision_config=dict(image_size=32, patch_size=8, **_VIT), projection_dim=16),
        "CLIPModel", "CLIPImageProcessor",
        dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})),
}

VISION_TASKS = sorted({task for _, task in TINY_VISION})


def build_tiny_vision_checkpoint(model_type: str, task: str, directory: Path, *,
                                 seed: int = 0) -> Path:
    """Save a tiny random `model_type` model for `task` and its image processor to directory."""
    import torch
    import transformers

    make_config, model_class, processor_class, processor_kwargs = TINY_VISION[model_type, task]
    config = make_config(transformers)
    if model_type == "clip":
        from checkpoints import minilm_dir

        tokenizer = transformers.AutoTokenizer.from_pretrained(
            minilm_dir(), model_input_names=["input_ids", "attention_mask"])
        # CLIP pools the text at its end-of-text token: here the WordPiece [SEP].
        config.text_config.vocab_size = len(tokenizer)
        config.text_config.eos_token_id = tokenizer.sep_token_id
        config.text_config.pad_token_id = tokenizer.pad_token_id
        tokenizer.save_pretrained(directory)
    else:
        config.id2label = dict(enumerate(LABELS))
        config.label2id = {label: i for i, label in enumerate(LABELS)}
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config).eval()
    model.save_pretrained(directory)
    getattr(transformers, processor_class)(**processor_kwargs).save_pretrained(directory)
    return Path(directory)
