"""A PyTorch model behind the runtime's Engine protocol: runs task logic on the reference model
itself, so task postprocessing can be checked apart from export."""

from __future__ import annotations

import numpy as np

from runtime.engine import TensorSpec


class TorchEngine:
    def __init__(self, model, input_names=("input_ids", "attention_mask", "token_type_ids")):
        import inspect

        accepted = inspect.signature(model.forward).parameters
        self.model = model
        self.inputs = [TensorSpec(n, "int64", ("batch", "sequence"))
                       for n in input_names if n in accepted]
        self.outputs = []

    def run(self, feed):
        import torch

        with torch.no_grad():
            out = self.model(**{k: torch.from_numpy(np.asarray(v)) for k, v in feed.items()
                                if k in {s.name for s in self.inputs}})
        return {k: v.numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}
