"""A tiny Decision Transformer (offline reinforcement learning): Hopper's state and action
sizes at a width of 32, with transformers' own config and model classes."""

from __future__ import annotations

from pathlib import Path

TINY_TRAJECTORY = {("decision_transformer", "reinforcement-learning"): dict(
    state_dim=11, act_dim=3, hidden_size=32, n_layer=2, n_head=2, n_inner=64, max_ep_len=200,
    n_positions=128, action_tanh=True, max_length=20)}


def build_tiny_trajectory_checkpoint(model_type: str, task: str, directory: Path) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.DecisionTransformerConfig(**TINY_TRAJECTORY[model_type, task])
    config.architectures = ["DecisionTransformerModel"]
    transformers.DecisionTransformerModel(config).eval().save_pretrained(directory)
    return directory
