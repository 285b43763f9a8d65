"""Checkpoint -> bundle: ONNX export through optimum-onnx, validation against PyTorch."""
