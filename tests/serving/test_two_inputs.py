"""Tasks of more than one input, served in both flavors (serving/inputs.py): question-answering
(``question`` + ``context``), visual- and document-question-answering (``image`` +
``question``) and reinforcement-learning (``trajectory``, one trajectory as JSON).

On the REAL tritonserver bundled in nvidia-pytriton (python flavor; one server for the module
serving the four models and an unbatched QA model): answers over HTTP and gRPC equal the
runtime pipeline's for each item alone, for several items in one request and for concurrent
requests; malformed requests (a missing input, inputs of different lengths, an undecodable
image, a trajectory that is not JSON) get a 400-class error naming what is wrong, and the
server keeps serving. Native flavor: the configs parse into Triton's ModelConfig and keep its
rules, and the entry model (the stand-in BLS harness of test_native_flavor.py) gives the
pipeline's answers for the four (Donut's encoder and decoder as graph models called by BLS).
"""

from __future__ import annotations

import importlib.util
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from document_checkpoints import document_images
from images import photos
from triton_server import add_models, close, served, skip_unless_runnable

from runtime.bundle import Bundle
from runtime.errors import InputError
from runtime.pipeline import pipeline
from serving.inputs import input_names, items_from_arrays
from serving.results import jsonable

MODELS = {"qa": ("bert", "question-answering"),
          "vqa": ("vilt", "visual-question-answering"),
          "docqa": ("vision-encoder-decoder", "document-question-answering"),
          "rl": ("decision_transformer", "reinforcement-learning")}
INPUTS = {"qa": ("question", "context"), "vqa": ("image", "question"),
          "docqa": ("image", "question"), "rl": ("trajectory",)}


def _png(image) -> bytes:
    stream = io.BytesIO()
    image.save(stream, format="PNG")
    return stream.getvalue()


def _trajectory(steps: int, seed: int) -> dict:
    """``steps`` states, the actions taken so far (none on the first step) and returns."""
    rng = np.random.default_rng(seed)
    trajectory = {"states": rng.standard_normal((steps, 11)).round(3).tolist(),
                  "returns_to_go": [round(3.6 - 0.2 * step, 3) for step in range(steps)]}
    if steps > 1:
        trajectory["actions"] = rng.standard_normal((steps - 1, 3)).round(3).tolist()
    return trajectory


def _items(model: str) -> list:
    """The items of one request, each as the pipeline takes it alone."""
    if model == "qa":
        return [{"question": "Who sold the coffee?",
                 "context": "Ann sold the coffee to Bob in Paris on Monday."},
                {"question": "Where?", "context": "The meeting was held in a small town."},
                {"question": "What is the total?", "context": "Coffee 3.50, bread 2.10."}]
    if model == "vqa":
        return [{"image": _png(image), "question": question}
                for image, question in zip(photos()[:3], ["What is it?", "How many cups?",
                                                          "Is the cat asleep?"])]
    if model == "docqa":
        return [{"image": _png(image), "question": question}
                for image, question in zip(document_images()[:2],
                                           ["What is the total?", "invoice number"])]
    return [_trajectory(3, 0), _trajectory(1, 1), _trajectory(25, 2)]  # past the context, too


def _columns(model: str, items: list) -> dict[str, list[bytes]]:
    """The request's tensors: one BYTES element per item in each input."""
    def encoded(value):
        return value.encode() if isinstance(value, str) else value

    if model == "rl":
        return {"trajectory": [json.dumps(item).encode() for item in items]}
    return {name: [encoded(item[name]) for item in items] for name in INPUTS[model]}


def _expected(pipe, items, **parameters) -> list:
    """The pipeline's answer for each item alone, as JSON."""
    return [json.loads(json.dumps(pipe(item, **parameters), default=jsonable))
            for item in items]


# --- the decoding helper ------------------------------------------------------------------------
def _bytes(*values) -> np.ndarray:
    return np.array([[value] for value in values], dtype=np.object_)


def test_inputs_pair_up_by_position():
    names = ("question", "context")
    items = items_from_arrays(names, {"question": _bytes(b"Who?", "Où?"),
                                      "context": _bytes(b"Ann ran.", b"In Paris.")})
    assert items == [{"question": "Who?", "context": "Ann ran."},
                     {"question": "Où?", "context": "In Paris."}]
    with pytest.raises(InputError, match=r"no input 'context'.*'question' and 'context'"):
        items_from_arrays(names, {"question": _bytes(b"Who?"), "context": None})
    with pytest.raises(InputError, match=r"different lengths \('question' 2, 'context' 1"):
        items_from_arrays(names, {"question": _bytes(b"a", b"b"), "context": _bytes(b"c")})
    with pytest.raises(InputError, match="'context' must be BYTES"):
        items_from_arrays(names, {"question": _bytes(b"a"), "context": np.zeros((1, 1))})
    with pytest.raises(InputError, match="'question' must be UTF-8"):
        items_from_arrays(names, {"question": _bytes(b"\xff"), "context": _bytes(b"c")})
    image = items_from_arrays(("image", "question"), {"image": _bytes(b"\x89PNG\xff"),
                                                      "question": _bytes(b"What?")})
    assert image == [{"image": b"\x89PNG\xff", "question": "What?"}]  # files stay bytes
    trajectory = {"states": [[0.5]], "returns_to_go": [1.0]}
    assert items_from_arrays(("trajectory",), {"trajectory": _bytes(
        json.dumps(trajectory).encode())}) == [trajectory]
    with pytest.raises(InputError, match="'trajectory' is not valid JSON"):
        items_from_arrays(("trajectory",), {"trajectory": _bytes(b"{states: 1}")})
    with pytest.raises(InputError, match="A trajectory is a JSON object"):
        items_from_arrays(("trajectory",), {"trajectory": _bytes(b"[1, 2]")})


def test_the_docstring_examples_run():
    import doctest

    import serving.inputs
    from runtime.tasks import reinforcement_learning

    assert doctest.testmod(serving.inputs).failed == 0
    assert doctest.testmod(reinforcement_learning).failed == 0


def test_input_names_of_every_task():
    from runtime.tasks import TASKS

    for task, cls in TASKS.items():
        names = input_names(task, cls)
        assert names and set(names) <= {"text", "image", "audio", "question", "context",
                                        "trajectory"}, (task, names)
    assert input_names("text-classification", TASKS["text-classification"]) == ("text",)
    assert input_names("image-classification", TASKS["image-classification"]) == ("image",)
    assert input_names("audio-classification", TASKS["audio-classification"]) == ("audio",)
    for model, names in INPUTS.items():
        task = MODELS[model][1]
        assert input_names(task, TASKS[task]) == names


# --- the python flavor on the real server -------------------------------------------------------
@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory, stub_numpy):
    pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")
    skip_unless_runnable()
    from serving.python_repo import write_python_repository

    repo = tmp_path_factory.mktemp("triton") / "repo"
    repo.mkdir()
    models = {**{model: (key, 8) for model, key in MODELS.items()},
              "qa_flat": (MODELS["qa"], 0)}
    for model, (key, max_batch) in models.items():
        add_models(repo, write_python_repository(tiny_bundle(*key), repo.parent / f"one-{model}",
                                                 name=model, max_batch=max_batch))
    yield from served(repo)


def _client(server, protocol):
    if protocol == "http":
        import tritonclient.http as module

        return module, module.InferenceServerClient(server.http_url.removeprefix("http://"))
    import tritonclient.grpc as module

    return module, module.InferenceServerClient(server.grpc_url)


def _infer(server, protocol: str, model: str, columns: dict, parameters=None, batched=True):
    module, client = _client(server, protocol)
    tensors = []
    for name, values in columns.items():
        data = np.array(values, dtype=np.object_)
        data = data.reshape(-1, 1) if batched else data
        tensor = module.InferInput(name, list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        tensors.append(tensor)
    reply = client.infer(model, tensors, parameters=parameters)
    return [json.loads(item) for item in reply.as_numpy("result").reshape(-1)]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", list(MODELS))
def test_answers_equal_the_pipeline(server, runtime_pipeline, model, protocol):
    pipe = runtime_pipeline(*MODELS[model])
    items = _items(model)
    got = _infer(server, protocol, model, _columns(model, items))  # several items, one request
    want = _expected(pipe, items)
    assert close(got, want), (got, want)
    one = _infer(server, protocol, model, _columns(model, items[:1]))  # one item: a list of one
    assert close(one, want[:1]), (one, want[:1])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_question_answering_parameters_and_one_item(server, runtime_pipeline, protocol):
    """A request of one item gets a list of one result, whatever its shape (question-answering
    answers a list of one with the result itself: a dict, or top_k answers)."""
    pipe = runtime_pipeline(*MODELS["qa"])
    items = _items("qa")
    for top_k in (1, 2):
        got = _infer(server, protocol, "qa", _columns("qa", items[:1]), {"top_k": top_k})
        assert close(got, _expected(pipe, items[:1], top_k=top_k)), got
        assert len(got) == 1 and (isinstance(got[0], dict) if top_k == 1 else len(got[0]) == 2)
    got = _infer(server, protocol, "qa_flat", _columns("qa", items), batched=False)
    assert close(got, _expected(pipe, items)), got


def test_concurrent_requests(server, runtime_pipeline):
    jobs = [(model, item) for model in ("qa", "rl") for item in _items(model) * 4]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(
            lambda job: _infer(server, ("http", "grpc")[job[0] % 2], job[1][0],
                               _columns(job[1][0], [job[1][1]])), enumerate(jobs)))
    pipes = {model: runtime_pipeline(*MODELS[model]) for model in ("qa", "rl")}
    for (model, item), answer in zip(jobs, answers):
        assert close(answer, _expected(pipes[model], [item])), (model, answer)
    # the dynamic batcher handed the model several requests at once: one pipeline call
    _, client = _client(server, "http")
    stats = client.get_inference_statistics("qa")["model_stats"][0]
    assert max(int(entry["batch_size"]) for entry in stats["batch_stats"]) > 1, stats


def _error(call):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_malformed_requests_and_the_server_keeps_serving(server, protocol):
    qa = _columns("qa", _items("qa")[:2])
    errors = {
        # refused by Triton itself (the config declares both inputs), naming the missing one
        "missing": (_error(lambda: _infer(server, protocol, "qa",
                                          {"question": qa["question"]})), ["context"]),
        # without batching the model sees the lengths: edgeport's message
        "lengths": (_error(lambda: _infer(server, protocol, "qa_flat",
                                          {"question": qa["question"],
                                           "context": qa["context"][:1]}, batched=False)),
                    ["different lengths", "'question' 2", "'context' 1", "by position"]),
        "lengths_batched": (_error(lambda: _infer(server, protocol, "qa", {
            "question": qa["question"], "context": qa["context"][:1]})),
            ["'question' batch size does not match other inputs"]),  # Triton's own check
        "utf8": (_error(lambda: _infer(server, protocol, "qa", {"question": [b"\xff\xfe"],
                                                                 "context": [b"ok"]})),
                 ["'question' must be UTF-8"]),
        "image": (_error(lambda: _infer(server, protocol, "vqa", {
            "image": [b"not an image at all"], "question": [b"What?"]})), ["image"]),
        "json": (_error(lambda: _infer(server, protocol, "rl", {"trajectory": [b"{states"]})),
                 ["'trajectory' is not valid JSON"]),
        "object": (_error(lambda: _infer(server, protocol, "rl", {"trajectory": [b"[1, 2]"]})),
                   ["A trajectory is a JSON object"]),
        "shape": (_error(lambda: _infer(server, protocol, "rl", {"trajectory": [json.dumps(
            {"states": [[1.0, 2.0]], "returns_to_go": [1.0]}).encode()]})),
                  ["states has shape (1, 2)"]),
    }
    for what, (error, words) in errors.items():
        message = error.message()
        assert all(word in message for word in words), (what, message)
        if protocol == "http":
            assert error.status() == "400", (what, error.status(), message)
        else:
            assert error.status() == "StatusCode.INVALID_ARGUMENT", (what, error.status())
    # one bad request among good ones in a dynamic batch: the others get their answers
    good = _items("rl")
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(_infer, server, protocol, "rl", {"trajectory": [item]})
                   for item in [b"{oops", *(json.dumps(t).encode() for t in good)]]
    assert futures[0].exception() is not None
    assert all(future.exception() is None for future in futures[1:])
    assert len(_infer(server, protocol, "qa", _columns("qa", _items("qa")[:1]))) == 1
    assert server.process.poll() is None


def test_repository_settings_and_config(tiny_bundle, tmp_path):
    from serving.python_repo import write_python_repository

    repo = write_python_repository(tiny_bundle(*MODELS["vqa"]), tmp_path / "repo", name="vqa",
                                   max_batch=4)
    settings = json.loads((repo / "vqa" / "1" / "edgeport_python.json").read_text())
    assert settings["inputs"] == ["image", "question"] and "input" not in settings
    config = _parse_config(repo / "vqa" / "config.pbtxt")
    assert [(t.name, list(t.dims)) for t in config.input] == [("image", [1]), ("question", [1])]


def _parse_config(path):
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                           reason="tritonclient is not installed")
    from google.protobuf import text_format

    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), config)
    return config


# --- the native flavor: configs and the entry model with the stand-in BLS harness ---------------
def _native_harness():
    """test_native_flavor.py as a module: its config checker and its stand-in
    ``triton_python_backend_utils`` (pytest's importlib mode does not put test modules on
    sys.path)."""
    spec = importlib.util.spec_from_file_location(
        "native_flavor_harness", Path(__file__).with_name("test_native_flavor.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("model", list(MODELS))
def test_native_entry_model_equals_the_pipeline(tiny_bundle, tmp_path, monkeypatch, model):
    """docqa (Donut) generates: its encoder and decoder run in graph models through BLS (the
    native flavor's generative support), with the image and question decoded as for the
    others."""
    pytest.importorskip("tritonclient.grpc.model_config_pb2",
                        reason="the serve extra (tritonclient) is not installed")
    from serving.native import fill_native_repository

    harness = _native_harness()
    _Tensor, _Request = harness._Tensor, harness._Request
    check_repository, load_entry = harness.check_repository, harness.load_entry

    bundle = Bundle.load(tiny_bundle(*MODELS[model]))
    written = fill_native_repository(bundle, tmp_path, name=model, max_batch=2)
    configs = check_repository(tmp_path, written, bundle)
    assert written["inputs"] == list(INPUTS[model])
    assert [t.name for t in configs[model].input] == list(INPUTS[model])
    calls = []
    entry = load_entry(tmp_path, model, monkeypatch, calls)
    items = _items(model)

    def answer(columns, parameters=None):
        tensors = [_Tensor(name, np.array(values, dtype=np.object_).reshape(-1, 1))
                   for name, values in columns.items()]
        (response,) = entry.execute([_Request(tensors, parameters)])
        if response.has_error():
            return response.error().message()
        (result,) = response.output_tensors
        return [json.loads(item) for item in result.as_numpy().reshape(-1)]

    got = answer(_columns(model, items))
    want = _expected(pipeline(model=bundle), items)
    assert close(got, want), (got, want)
    assert calls and all(size <= 2 for _, size in calls)  # the graph model's max_batch_size
    graphs = {name for name, _ in calls}
    assert graphs == ({f"{model}_encoder_model", f"{model}_decoder_model_merged"}
                      if model == "docqa" else {f"{model}_model"})
    assert close(answer(_columns(model, items[:1])), want[:1])
    columns = _columns(model, items)
    first = INPUTS[model][0]
    missing = answer({name: values for name, values in columns.items() if name != first})
    assert f"no input {first!r}" in missing
    if len(INPUTS[model]) > 1:
        second = INPUTS[model][1]
        uneven = answer({**columns, second: columns[second][:1]})
        assert "different lengths" in uneven and f"{second!r} 1" in uneven
