"""The entry model of a native-flavor Triton repository (copied there as ``1/model.py``).

The python flavor's model (serving/python_model.py: the same contract, config and request
handling: ``text``/``image``/``audio`` in, ``result`` JSON out, parameters as the pipeline's
arguments, requests batched into one pipeline call) with one change: the pipeline's engine is
a ``BlsEngine`` that sends each feed to the repository's graph model (``onnxruntime_onnx`` or
``tensorrt_plan``) as a BLS request (``pb_utils.InferenceRequest``). So pre/postprocessing are
the pipeline's own, and the graph runs in Triton's native backend, its dynamic batcher
batching the graph calls of all entry instances.

Not importable outside a Triton Python backend (``triton_python_backend_utils`` is the
backend's), except in tests that put a stand-in module under that name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from runtime.backends.engine import TensorSpec, check_feed
from runtime.errors import EngineError
from serving.python_model import TritonPythonModel as PythonFlavorModel

SETTINGS = "edgeport_native.json"  # written by serving.native beside this file


class BlsEngine:
    """The Engine protocol over a BLS call to the graph model ``model_name``. A feed larger
    than the model's ``max_batch`` is sent in chunks along the batch axis (Triton refuses a
    request over max_batch_size) and the outputs joined."""

    def __init__(self, model_name: str, inputs, outputs, max_batch: int):
        self.model_name = model_name
        self.inputs = [TensorSpec.from_json(spec) for spec in inputs]
        self.outputs = [TensorSpec.from_json(spec) for spec in outputs]
        self.max_batch = int(max_batch)

    def run(self, feed) -> dict[str, np.ndarray]:
        feed = check_feed(self.inputs, feed)
        size = len(next(iter(feed.values()))) if feed else 0
        if self.max_batch <= 0 or size <= self.max_batch:
            return self._call(feed)
        parts = [self._call({name: array[start:start + self.max_batch]
                             for name, array in feed.items()})
                 for start in range(0, size, self.max_batch)]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def _call(self, feed) -> dict[str, np.ndarray]:
        request = pb_utils.InferenceRequest(
            model_name=self.model_name,
            requested_output_names=[spec.name for spec in self.outputs],
            inputs=[pb_utils.Tensor(name, np.ascontiguousarray(array))
                    for name, array in feed.items()])
        response = request.exec()
        if response.has_error():
            raise EngineError(f"The graph model {self.model_name!r} failed: "
                              f"{response.error().message()}")
        return {spec.name: pb_utils.get_output_tensor_by_name(response, spec.name).as_numpy()
                for spec in self.outputs}


class TritonPythonModel(PythonFlavorModel):
    folder = Path(__file__).resolve().parent
    settings_file = SETTINGS

    def engine(self, settings):
        if settings.get("generation_graphs"):
            return None  # a generative bundle: engines()
        return BlsEngine(settings["graph_model"], settings["graph_inputs"],
                         settings["graph_outputs"], settings["graph_max_batch"])

    def engines(self, settings):
        """A generative bundle's graphs (encoder, decoder: ``generation_graphs``), each a BLS
        engine: the generation loop runs here, the KV cache kept between its steps in this
        model and sent with each decoder step."""
        graphs = settings.get("generation_graphs")
        if not graphs:
            return None
        return {graph: BlsEngine(target["model"], target["inputs"], target["outputs"],
                                 target["max_batch"]) for graph, target in graphs.items()}
