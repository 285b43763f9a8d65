"""Serving bundles at scale: Triton Inference Server model repositories and `edgeport serve`.

Torch-free: modules here may import ``runtime`` and the ``serve`` extra's packages
(nvidia-pytriton, tritonclient), never torch, transformers, optimum, exporter or calibration.

The contract of a repository's entry model (the model named NAME):

- input: ``text`` (text tasks), ``image`` (vision: the bytes of an encoded image file, PNG,
  JPEG, ...) or ``audio`` (speech: the bytes of an encoded audio file, WAV, FLAC, ...), BYTES,
  one element per item: shape ``[batch, 1]`` (``max_batch_size`` > 0, dims ``[1]``; ``[-1]``
  without batching). Tasks of more than one input take one such BYTES input each, paired up
  by position (serving/inputs.py): ``question`` + ``context`` (question-answering), ``image``
  + ``question`` (visual- and document-question-answering); reinforcement-learning takes
  ``trajectory``, one trajectory as UTF-8 JSON (as `edgeport run` takes it). Inputs of
  different lengths are refused, naming them (by Triton with batching, by the model without);
- request parameters: the pipeline's call arguments (``top_k``, ``candidate_labels``, ...),
  string values parsed as JSON when they can be (``"3"`` -> 3); an unknown one is an error;
- output: ``result``, BYTES ``[batch, 1]``: each item's result as JSON, as the pipeline gives
  it for that item in a list (numpy arrays as nested lists, images as
  ``{"image/png;base64": ..., "mode": ..., "size": [w, h]}``);
- errors: the request's error is edgeport's message (code INVALID_ARG: HTTP 400, gRPC
  INVALID_ARGUMENT, for an InputError); in a dynamic batch only the bad request fails, and
  the server keeps serving. A wrong datatype or a missing input is refused by Triton itself
  (400, its own message naming the input);
- streaming (serving/streaming.py): a bundle whose pipeline streams (text-generation,
  text2text-generation, summarization, translation) has a second entry model NAME_stream
  (decoupled: gRPC streaming, HTTP ``generate_stream``); with the parameter ``stream`` true
  (one item) it answers ``{"piece": "..."}`` per text piece, then the item's ``result`` as
  NAME gives it, flagged final. NAME itself answers once, as for every task.

Modules: inputs (each task's inputs and their decoding, for both flavors), python_repo (the
python flavor: a Python-backend model running the pipeline, with dynamic batching;
python_model.py is its model.py), launch (the tritonserver of nvidia-pytriton, started as
PyTriton starts it), streaming (NAME_stream), native (the native flavor: graph models for
NVIDIA's onnxruntime/tensorrt backends, the entry model native_model.py calling them over BLS),
cli_triton and cli_serve (the commands).
"""
