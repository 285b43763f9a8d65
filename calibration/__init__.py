"""Calibration data, quantization recipes and accuracy comparison (issue 3)."""
