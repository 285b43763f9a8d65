"""The model of a python-flavor Triton repository (copied there as ``1/model.py``).

A Python-backend model that runs the torch-free pipeline on the bundle copied beside it
(``1/bundle``). It decodes the contract's input (``text``, ``image`` or ``audio``: BYTES, one
element per item; or the task's inputs of serving/inputs.py, paired up by position), and
answers ``result`` (BYTES: the pipeline's JSON result for each item, as the pipeline gives
it for that item in a list). Triton's dynamic batcher hands ``execute`` several requests at
once; requests with the same parameters are run as ONE pipeline call (one
engine call per ``batch_size`` items). A failing batch is run again request by request, so one
bad request gets its own error (edgeport's message, code INVALID_ARG: HTTP 400) and the others
their answers. Request parameters are the pipeline's call arguments, string values parsed as
JSON when they can be (``top_k`` "3" -> 3); an unknown one is the pipeline's InputError.
The same model.py, under a config with Triton's decoupled policy, is NAME_stream: token
streaming (serving/streaming.py's ``execute_decoupled``).

Not importable outside a Triton Python backend (``triton_python_backend_utils`` is the
backend's); the ``runtime`` package must be importable by the backend's Python.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from runtime.bundle import Bundle
from runtime.errors import EdgeportError, InputError
from runtime.pipeline import pipeline_from_bundle
from serving.inputs import UNWRAPS_ONE, items_from_arrays
from serving.results import result_json
from serving.streaming import execute_decoupled, plain_stream_error, stream_requested

SETTINGS = "edgeport_python.json"  # written by serving.python_repo beside this file


def _error(error: Exception):
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    if isinstance(error, InputError) and code is not None:
        return pb_utils.TritonError(str(error), code)
    if code is not None and isinstance(error, EdgeportError):
        return pb_utils.TritonError(str(error), pb_utils.TritonError.INTERNAL)
    return pb_utils.TritonError(str(error))


def _parameters(request) -> dict:
    try:
        given = json.loads(request.parameters() or "{}")
    except ValueError:
        raise InputError("The request's parameters are not JSON.") from None
    if not isinstance(given, dict):
        raise InputError("The request's parameters must be a JSON object.")
    parsed = {}
    for key, value in given.items():
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        parsed[key] = value
    return parsed


class TritonPythonModel:
    # the folder of the model.py Triton loaded, and the settings file beside it (the native
    # flavor's entry model sets its own)
    folder = Path(__file__).resolve().parent
    settings_file = SETTINGS

    def initialize(self, args):
        here = self.folder
        settings = json.loads((here / self.settings_file).read_text())
        self.input_names = tuple(settings["inputs"])
        self.unwraps_one = settings["task"] in UNWRAPS_ONE
        bundle = Bundle.load(here / settings["bundle"])
        self.pipeline = pipeline_from_bundle(bundle, variant=settings["variant"],
                                             engine=self.engine(settings),
                                             engines=self.engines(settings))
        self.batches = "batch_size" in self.pipeline.parameters
        config = json.loads(args["model_config"])
        self.batched = config.get("max_batch_size", 0) > 0
        # NAME_stream (serving/streaming.py): token streaming, Triton's decoupled mode
        self.decoupled = bool(config.get("model_transaction_policy", {}).get("decoupled"))
        self.name = args.get("model_name", "")

    def engine(self, settings):
        """The engine that runs the graph: None, the bundle's own (the native flavor's entry
        model sends it to the graph model instead)."""
        return None

    def engines(self, settings):
        """The engines that run a generative bundle's graphs (graph name -> Engine): None, the
        bundle's own (the native flavor's entry model sends them to the graph models)."""
        return None

    def execute(self, requests):
        if self.decoupled:
            return execute_decoupled(self, requests, pb_utils, _parameters)
        return self.responses(requests)

    def responses(self, requests) -> list:
        """One response per request (requests with the same parameters run as one call)."""
        answers: list = [None] * len(requests)
        groups: dict[str, list[tuple[int, list, dict]]] = {}
        for index, request in enumerate(requests):
            try:
                items, parameters = self._decode(request), _parameters(request)
                if stream_requested(parameters):
                    raise plain_stream_error(self)
            except EdgeportError as error:
                answers[index] = error
                continue
            key = json.dumps(parameters, sort_keys=True)
            groups.setdefault(key, []).append((index, items, parameters))
        for group in groups.values():
            try:
                self._run(group, answers)
            except Exception:  # noqa: BLE001 - one request's fault: run them one by one
                for member in group:
                    try:
                        self._run([member], answers)
                    except Exception as error:  # noqa: BLE001 - answered as this request's error
                        answers[member[0]] = error
        return [self._response(answer) for answer in answers]

    def _decode(self, request) -> list:
        tensors = {name: pb_utils.get_input_tensor_by_name(request, name)
                   for name in self.input_names}
        return items_from_arrays(self.input_names, {
            name: None if tensor is None else tensor.as_numpy()
            for name, tensor in tensors.items()})

    def _run(self, group, answers) -> None:
        items = [item for _, request_items, _ in group for item in request_items]
        parameters = dict(group[0][2])
        if self.batches and "batch_size" not in parameters:
            parameters["batch_size"] = max(1, len(items))
        results = self.pipeline(items, **parameters)
        if len(items) == 1 and (self.unwraps_one or len(results) != 1):  # it unwrapped one item
            results = [results]
        results = list(results)
        start = 0
        for index, request_items, _ in group:
            answers[index] = results[start:start + len(request_items)]
            start += len(request_items)

    def _response(self, answer):
        if isinstance(answer, Exception):
            return pb_utils.InferenceResponse(output_tensors=[], error=_error(answer))
        output = np.array([result_json(result) for result in answer], dtype=np.object_)
        if self.batched:
            output = output.reshape(-1, 1)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("result", output)])

    def finalize(self):
        self.pipeline = None
