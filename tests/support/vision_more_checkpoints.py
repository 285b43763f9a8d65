"""Tiny checkpoints of issue 18's further vision rows: LeViT, CvT, MaskFormer, ViTMAE, ImageGPT,
and image encoders saved without a head for image-feature-extraction.

Built like vision_checkpoints' (a small config, seeded random weights, the real transformers
processor class with small sizes). LeViT is saved as LevitForImageClassificationWithTeacher, the
class of its pretrained checkpoints (facebook/levit-*); ViTMAE as ViTMAEForPreTraining, the class
of facebook/vit-mae-*, with mask_ratio 0 (transformers' pipeline then keeps every patch); ImageGPT
with random color clusters, as openai/imagegpt-* saves its 512.
"""

from __future__ import annotations

from pathlib import Path

from vision_checkpoints import _VIT, LABELS, TINY_VISION

FEATURES = "image-feature-extraction"


def _levit_config(c):
    return c.LevitConfig(image_size=64, patch_size=16, hidden_sizes=[16, 32, 48],
                         num_attention_heads=[1, 2, 3], depths=[1, 1, 1], key_dim=[8, 8, 8],
                         mlp_ratio=[2, 2, 2], attention_ratio=[2, 2, 2],
                         initializer_range=0.2)  # 0.02 makes activations vanish at this width


def _cvt_config(c):
    three = lambda value: [value] * 3  # noqa: E731 (CvT has three stages)
    # depth[i] > i: transformers indexes stage i's drop-path rates by i
    return c.CvtConfig(embed_dim=[16, 24, 32], num_heads=[1, 1, 2], depth=[1, 2, 3],
                       patch_sizes=[7, 3, 3], patch_stride=[4, 2, 2], patch_padding=[2, 1, 1],
                       mlp_ratio=three(4.0), attention_drop_rate=three(0.0),
                       drop_rate=three(0.0), drop_path_rate=three(0.0), qkv_bias=three(True),
                       cls_token=[False, False, True], qkv_projection_method=three("dw_bn"),
                       kernel_qkv=three(3), padding_kv=three(1), stride_kv=three(2),
                       padding_q=three(1), stride_q=three(1), initializer_range=0.2)


def _maskformer_config(c):
    backbone = c.SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                            window_size=7, out_features=["stage1", "stage2", "stage3", "stage4"])
    decoder = c.DetrConfig(d_model=32, decoder_layers=2, decoder_attention_heads=2,
                           decoder_ffn_dim=64, encoder_layers=1, encoder_attention_heads=2,
                           encoder_ffn_dim=64, num_queries=10)
    # mask logits far from 0 (init_std 0.2), as for Mask2Former's tiny checkpoint
    return c.MaskFormerConfig(backbone_config=backbone, decoder_config=decoder,
                              fpn_feature_size=32, mask_feature_size=32, init_std=0.2,
                              init_xavier_std=1.0)


def _vit_mae_config(c):
    return c.ViTMAEConfig(image_size=32, patch_size=8, mask_ratio=0.0, decoder_hidden_size=16,
                          decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                          decoder_intermediate_size=32, **_VIT)


def _imagegpt_config(c):
    # 16 color clusters (+ the start token), an 8 x 8 image: 64 positions
    return c.ImageGPTConfig(vocab_size=17, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                            initializer_range=0.2)


def _clusters(count: int = 16, seed: int = 0) -> list[list[float]]:
    """Color clusters in [-1, 1] (ImageGPT's normalized RGB), as its processor stores them."""
    import numpy as np

    return np.random.default_rng(seed).uniform(-1, 1, size=(count, 3)).round(6).tolist()


_LEVIT_PROCESSOR = ("LevitImageProcessor", dict(size={"shortest_edge": 64},
                                                crop_size={"height": 64, "width": 64}))
_CVT_PROCESSOR = ("ConvNextImageProcessor", dict(size={"shortest_edge": 48}, crop_pct=0.875))

# (model_type, task) -> (config factory, model class, processor class, processor kwargs), as
# vision_checkpoints.TINY_VISION.
TINY_VISION_MORE = {
    ("levit", "image-classification"): (
        _levit_config, "LevitForImageClassificationWithTeacher", *_LEVIT_PROCESSOR),
    ("cvt", "image-classification"): (
        _cvt_config, "CvtForImageClassification", *_CVT_PROCESSOR),
    ("maskformer", "image-segmentation"): (
        _maskformer_config, "MaskFormerForInstanceSegmentation", "MaskFormerImageProcessor",
        dict(size={"shortest_edge": 64, "longest_edge": 96}, size_divisor=32)),
    ("imagegpt", "image-classification"): (
        _imagegpt_config, "ImageGPTForImageClassification", "ImageGPTImageProcessor",
        dict(size={"height": 8, "width": 8})),
    ("vit_mae", FEATURES): (
        _vit_mae_config, "ViTMAEForPreTraining", "ViTImageProcessor",
        dict(size={"height": 32, "width": 32})),
    ("levit", FEATURES): (_levit_config, "LevitModel", *_LEVIT_PROCESSOR),
    ("cvt", FEATURES): (_cvt_config, "CvtModel", *_CVT_PROCESSOR),
    # the encoders with classification rows, saved as their bare models
    **{(model_type, FEATURES): (TINY_VISION[model_type, "image-classification"][0], model_class,
                                *TINY_VISION[model_type, "image-classification"][2:])
       for model_type, model_class in (
           ("vit", "ViTModel"), ("deit", "DeiTModel"), ("beit", "BeitModel"),
           ("data2vec-vision", "Data2VecVisionModel"), ("vit_msn", "ViTMSNModel"),
           ("convnext", "ConvNextModel"), ("convnextv2", "ConvNextV2Model"),
           ("resnet", "ResNetModel"), ("regnet", "RegNetModel"), ("swin", "SwinModel"))},
}


def build_tiny_vision_more_checkpoint(model_type: str, task: str, directory: Path, *,
                                      seed: int = 0) -> Path:
    """Save a tiny random ``model_type`` model for ``task`` and its image processor."""
    import torch
    import transformers

    make_config, model_class, processor_class, processor_kwargs = TINY_VISION_MORE[
        model_type, task]
    config = make_config(transformers)
    config.id2label = dict(enumerate(LABELS))
    config.label2id = {label: i for i, label in enumerate(LABELS)}
    if model_type == "imagegpt":
        processor_kwargs = dict(processor_kwargs, clusters=_clusters(config.vocab_size - 1))
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config).eval()
    model.save_pretrained(directory)
    getattr(transformers, processor_class)(**processor_kwargs).save_pretrained(directory)
    return Path(directory)
