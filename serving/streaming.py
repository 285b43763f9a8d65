"""Token streaming for generative bundles: Triton's decoupled mode.

Triton 2.51 answers HTTP ``infer`` and gRPC ``ModelInfer`` on a decoupled model with 501 /
UNIMPLEMENTED ("doesn't support models with decoupled transaction policy"), and its HTTP
``generate`` refuses a model that sends more than one response. So a repository of a bundle
whose pipeline streams (``streamer``: text-generation, text2text-generation, summarization,
translation) has two entry models on one model.py and one bundle copy:

- ``NAME``: the plain model, as for every task (HTTP/gRPC ``infer``, HTTP ``generate``): one
  ``result`` per item; a request with ``stream`` true is refused with a pointer to NAME_stream;
- ``NAME_stream``: the same config with ``model_transaction_policy { decoupled: true }``, its
  settings pointing at NAME's bundle copy (``../../NAME/1/bundle``). Over gRPC streaming
  (``start_stream`` / ``async_stream_infer``) or HTTP ``generate_stream`` (server-sent events)
  a request with the parameter ``stream`` true (one item) gets one response per text piece,
  ``result`` = ``{"piece": "..."}`` (JSON, the pieces transformers' TextStreamer cuts: whole
  words, a line, a CJK character), then a last response, flagged final, whose ``result`` is
  the item's full result as NAME gives it. A request without ``stream`` gets that one final
  response. An error (a bad request, or one raised mid-stream) ends the stream with edgeport's
  message.

The piece responses and the final one are made by the model (serving/python_model.py, which
calls ``execute_decoupled`` for NAME_stream); this module is torch-free and has no Triton
import: the backend's utilities are passed in.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from runtime.errors import EdgeportError, InputError

STREAM = "stream"  # the request parameter
SUFFIX = "_stream"  # NAME_stream: the decoupled model
DECOUPLED = "model_transaction_policy { decoupled: true }\n"


def streams(pipeline_class) -> bool:
    """Whether the pipeline class takes a ``streamer`` (and so gets a NAME_stream model)."""
    return "streamer" in getattr(pipeline_class, "parameters", {})


def stream_requested(parameters: dict) -> bool:
    """Pops the ``stream`` parameter from a request's parsed parameters: True or False (absent);
    an InputError for anything else."""
    value = parameters.pop(STREAM, False)
    if not isinstance(value, bool):
        raise InputError(f"The parameter 'stream' must be true or false, got {value!r}.")
    return value


def plain_stream_error(model) -> InputError:
    """The error of a request with ``stream`` true sent to a plain (not decoupled) model."""
    if not streams(model.pipeline):
        return InputError(f"The task {model.pipeline.task!r} does not stream. Note: leave out "
                          "the parameter 'stream'.")
    return InputError(
        "The parameter 'stream' needs Triton's decoupled mode. Note: stream from the model "
        f"{model.name.removesuffix(SUFFIX) + SUFFIX!r} (gRPC streaming or HTTP "
        "generate_stream), or leave 'stream' out.")


def add_stream_model(repo: Path, name: str, settings_file: str) -> str:
    """Write ``repo/NAME_stream`` from the entry model ``repo/NAME`` already written: its
    config with a new name and the decoupled policy, its model.py, its settings with the
    bundle at NAME's copy. Returns the new model's name."""
    stream_name = name + SUFFIX
    source, target = Path(repo) / name, Path(repo) / stream_name
    config = (source / "config.pbtxt").read_text()
    config, count = re.subn(r"^name: .*$", f"name: {json.dumps(stream_name)}", config,
                            count=1, flags=re.M)
    if count != 1:
        raise EdgeportError(f"{source / 'config.pbtxt'} has no name line to rename.")
    (target / "1").mkdir(parents=True)
    (target / "config.pbtxt").write_text(config + DECOUPLED)
    shutil.copyfile(source / "1" / "model.py", target / "1" / "model.py")
    settings = json.loads((source / "1" / settings_file).read_text())
    settings["bundle"] = f"../../{name}/1/{settings['bundle']}"
    (target / "1" / settings_file).write_text(json.dumps(settings, indent=1))
    return stream_name


def execute_decoupled(model, requests, pb_utils, parameters_of) -> None:
    """``execute`` of NAME_stream: each request's responses sent through its response sender,
    the last flagged final. Requests without ``stream`` are answered together as the plain
    model answers them (``model.responses``: one pipeline call where the pipeline batches);
    a streaming one runs alone, one response per text piece."""
    final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
    plain = []
    for request in requests:
        sender = request.get_response_sender()
        try:
            parameters = parameters_of(request)
            if not stream_requested(parameters):
                plain.append((request, sender))
                continue
            items = model._decode(request)
            if len(items) != 1:
                raise InputError(f"A streaming request holds one item (one prompt), got "
                                 f"{len(items)}. Note: send the items one request each, or "
                                 "leave out the parameter 'stream'.")
            if not streams(model.pipeline):
                raise plain_stream_error(model)
        except EdgeportError as error:
            sender.send(model._response(error), flags=final)
            continue
        answers: list = [None]

        def send_piece(piece: str, sender=sender) -> None:
            sender.send(model._response([{"piece": piece}]))

        try:
            model._run([(0, items, {**parameters, "streamer": send_piece})], answers)
        except Exception as error:  # noqa: BLE001 - the stream ends with this request's error
            answers[0] = error
        sender.send(model._response(answers[0]), flags=final)
    if plain:
        for (_, sender), response in zip(plain, model.responses([r for r, _ in plain])):
            sender.send(response, flags=final)
    return None
