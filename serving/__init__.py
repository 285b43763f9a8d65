"""Serving bundles at scale: Triton Inference Server model repositories and `edgeport serve`.

Torch-free: modules here may import ``runtime`` and the ``serve`` extra's packages
(nvidia-pytriton, tritonclient), never torch, transformers, optimum, exporter or calibration.

The contract of a repository's entry model (the model named NAME):

- input: ``text`` (text tasks), ``image`` (vision: the bytes of an encoded image file, PNG,
  JPEG, ...) or ``audio`` (speech: the bytes of an encoded audio file, WAV, FLAC, ...), BYTES,
  one element per item: shape ``[batch, 1]`` (``max_batch_size`` > 0, dims ``[1]``);
- request parameters: the pipeline's call arguments (``top_k``, ``candidate_labels``, ...),
  string values parsed as JSON when they can be (``"3"`` -> 3); an unknown one is an error;
- output: ``result``, BYTES ``[batch, 1]``: each item's result as JSON, as the pipeline gives
  it for that item in a list (numpy arrays as nested lists, images as
  ``{"image/png;base64": ..., "mode": ..., "size": [w, h]}``);
- errors: the request's error is edgeport's message (code INVALID_ARG: HTTP 400, gRPC
  INVALID_ARGUMENT, for an InputError); in a dynamic batch only the bad request fails, and
  the server keeps serving. A wrong datatype or a missing input is refused by Triton itself
  (400, its own message naming the input).

Modules: python_repo (the python flavor: a Python-backend model running the pipeline, with
dynamic batching; python_model.py is its model.py), launch (the tritonserver of
nvidia-pytriton, started as PyTriton starts it), cli_triton and cli_serve (the commands).
"""
