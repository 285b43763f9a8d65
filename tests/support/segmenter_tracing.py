"""A Swin-backed segmenter (Mask2Former, MaskFormer) traced with all but one of its export
patches: the tests that show each patch is needed."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from exporter.configs.patching import applied

OUTPUTS = ("class_queries_logits", "masks_queries_logits")


def trace_without(model, patches, left_out: str, height: int, width: int, path):
    """An ONNX Runtime session of ``model`` traced at (height, width) with every patch of
    ``patches`` but ``left_out`` applied; batch, height and width dynamic."""
    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            output = self.model(pixel_values=pixel_values)
            return output.class_queries_logits, output.masks_queries_logits

    dynamic = {0: "batch", 2: "height", 3: "width"}
    with applied(p for p in patches if p.name != left_out):
        torch.onnx.export(Logits().eval(), (torch.randn(2, 3, height, width),), path,
                          input_names=["pixel_values"], output_names=list(OUTPUTS),
                          dynamic_axes={"pixel_values": dynamic}, opset_version=18, dynamo=False)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def max_differences(session, model, batch, height, width) -> dict[str, float]:
    """ONNX vs PyTorch on one random batch: max abs difference per output (inf on a shape
    mismatch; ONNX Runtime's errors propagate)."""
    pixel_values = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(pixel_values=pixel_values)
    got = session.run(list(OUTPUTS), {"pixel_values": pixel_values.numpy()})
    return {name: float(np.abs(value - getattr(expected, name).numpy()).max())
            if value.shape == tuple(getattr(expected, name).shape) else float("inf")
            for name, value in zip(OUTPUTS, got)}
