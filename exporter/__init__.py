"""Checkpoint -> bundle: ONNX export through optimum-onnx, validation against PyTorch.

Importing this package does not import torch; ``bundle_from_checkpoint`` does.
"""

from .build import bundle_from_checkpoint, export

__all__ = ["bundle_from_checkpoint", "export"]
