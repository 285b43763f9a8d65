"""Generative bundles on the REAL tritonserver bundled in nvidia-pytriton (python flavor), and
token streaming with Triton's decoupled mode (serving/streaming.py).

One server for the module serves tiny GPT-2 and Llama (text-generation), BART (text2text-generation:
the tiny T5 generates empty texts), Whisper (automatic-speech-recognition) and TrOCR
(image-to-text) bundles. Plain HTTP and gRPC ``infer`` answer as the runtime pipeline does
(greedy); GPT-2's and BART's NAME_stream models stream text pieces over gRPC streaming and HTTP
``generate_stream``: the pieces are the pipeline's own ``stream()``'s, joined they are its
generated text, and the last response is the plain answer. Bad requests end with edgeport's
message, and the server keeps serving."""

from __future__ import annotations

import json
import queue
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")
http = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")

from triton_server import (  # noqa: E402
    add_models,
    png_photos,
    served,
    skip_unless_runnable,
)
from tritonclient.utils import InferenceServerException  # noqa: E402

from serving.native import write_native_repository  # noqa: E402
from serving.python_repo import write_python_repository  # noqa: E402
from serving.results import jsonable  # noqa: E402

BUNDLES = {"gen": ("gpt2", "text-generation"),
           "llm": ("llama", "text-generation"),
           "t2t": ("bart", "text2text-generation"),
           "asr": ("whisper", "automatic-speech-recognition"),
           "caption": ("vision-encoder-decoder", "image-to-text")}
INPUTS = {"gen": "text", "llm": "text", "t2t": "text", "asr": "audio", "caption": "image"}
# greedy and short: the answers are deterministic and the tests fast
GREEDY = {"gen": {"do_sample": False, "max_new_tokens": 12},
          "llm": {"do_sample": False, "max_new_tokens": 8},
          "t2t": {"num_beams": 1, "max_new_tokens": 10},
          "asr": {"max_new_tokens": 8},
          "caption": {"max_new_tokens": 8}}
STREAMING = ("gen", "t2t")
# native-flavor repositories (serving/native.py) of these, their graph models served by a
# Python-backend stand-in for the onnxruntime backend the bundled server lacks (GRAPH_STAND_IN):
# the entry models' generation loops call them over REAL BLS
NATIVE = {"ngen": "gen", "nt2t": "t2t"}
INPUTS.update({name: INPUTS[kind] for name, kind in NATIVE.items()})
GRAPH_STAND_IN = """
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from runtime.backends.engine import OrtEngine


class TritonPythonModel:
    def initialize(self, args):
        folder = Path(args["model_repository"]) / args["model_version"]
        self.engine = OrtEngine(folder / "model.onnx")
        self.outputs = [o["name"] for o in json.loads(args["model_config"])["output"]]

    def execute(self, requests):
        answers = []
        for request in requests:
            feed = {spec.name: pb_utils.get_input_tensor_by_name(request, spec.name).as_numpy()
                    for spec in self.engine.inputs}
            out = self.engine.run(feed)
            answers.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor(name, np.ascontiguousarray(out[name])) for name in self.outputs]))
        return answers
"""
PROMPTS = {"gen": ["Hello, my dog is", "The weather today"],
           "llm": ["Hello, my dog is", "Once upon a time"],
           "t2t": ["hello world", "translate English to German: the house is small"]}


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory, stub_numpy):
    skip_unless_runnable()
    repo = tmp_path_factory.mktemp("triton-generation") / "repo"
    repo.mkdir()
    for kind, key in BUNDLES.items():  # NAME, and NAME_stream for the streaming tasks
        add_models(repo, write_python_repository(tiny_bundle(*key), repo.parent / f"one-{kind}",
                                                 name=kind, max_batch=4))
    for name, kind in NATIVE.items():
        one = write_native_repository(tiny_bundle(*BUNDLES[kind]), repo.parent / f"one-{name}",
                                      name=name, max_batch=4)
        for model in add_models(repo, one):
            config = (model / "config.pbtxt").read_text()
            if 'platform: "onnxruntime_onnx"' in config:  # a graph model: the stand-in
                config = config.replace('backend: "onnxruntime"\nplatform: "onnxruntime_onnx"\n'
                                        'default_model_filename: "model.onnx"\n',
                                        'backend: "python"\n')
                assert 'backend: "python"' in config
                (model / "config.pbtxt").write_text(config)
                (model / "1" / "model.py").write_text(GRAPH_STAND_IN)
    yield from served(repo)


def _items(kind: str) -> list:
    if kind in PROMPTS:
        return PROMPTS[kind]
    if kind == "caption":
        return png_photos(2)
    from audio_samples import JFK

    return [JFK.read_bytes()]


def _expected(pipe, items, **parameters):
    if "batch_size" in pipe.parameters:  # as the model runs one request: one pipeline call
        parameters.setdefault("batch_size", len(items))
    return json.loads(json.dumps(pipe(list(items), **parameters), default=jsonable))


def _tensor(module, name, items):
    data = np.array([[item.encode() if isinstance(item, str) else item] for item in items],
                    dtype=np.object_)
    tensor = module.InferInput(name, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def _infer(server, protocol: str, model: str, items, parameters=None):
    module = http if protocol == "http" else grpc
    url = server.http_url.removeprefix("http://") if protocol == "http" else server.grpc_url
    reply = module.InferenceServerClient(url).infer(
        model, [_tensor(module, INPUTS[model.removesuffix("_stream")], items)],
        parameters=parameters)
    return [json.loads(row[0]) for row in reply.as_numpy("result")]


def _stream(server, model: str, items, parameters) -> list:
    """Every response of one request over gRPC streaming: (result, final) pairs, or the
    error that ended the stream."""
    answers: queue.Queue = queue.Queue()
    client = grpc.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer(model, [_tensor(grpc, INPUTS[model.removesuffix("_stream")],
                                                  items)],
                                  parameters=parameters, enable_empty_final_response=True)
        got = []
        while True:
            result, error = answers.get(timeout=60)
            if error is not None:
                got.append(error)
                return got
            final = result.get_response().parameters["triton_final_response"].bool_param
            rows = result.as_numpy("result")
            if rows is not None:
                got.append((json.loads(rows.reshape(-1)[0]), final))
            if final:
                return got
    finally:
        client.stop_stream()


def _post(server, path: str, body: dict) -> tuple[int, str]:
    request = urllib.request.Request(f"{server.http_url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("kind", list(BUNDLES))
def test_plain_infer_equals_the_pipeline(server, runtime_pipeline, kind, protocol):
    pipe = runtime_pipeline(*BUNDLES[kind])
    items = _items(kind)
    got = _infer(server, protocol, kind, items, GREEDY[kind])
    assert got == _expected(pipe, items, **GREEDY[kind])
    assert len(got) == len(items)


@pytest.mark.parametrize("kind", STREAMING)
def test_grpc_streaming_pieces_are_the_pipelines(server, runtime_pipeline, kind):
    pipe = runtime_pipeline(*BUNDLES[kind])
    prompt = _items(kind)[0]
    responses = _stream(server, f"{kind}_stream", [prompt], {**GREEDY[kind], "stream": True})
    assert all(isinstance(answer, tuple) for answer in responses), responses
    *pieces, (last, final) = responses
    assert final and not any(flag for _, flag in pieces)
    texts = [piece["piece"] for piece, _ in pieces]
    assert texts and (kind != "gen" or len(texts) > 1)  # streamed, not one block
    assert texts == list(pipe.stream(prompt, **GREEDY[kind]))
    (whole,) = _expected(pipe, [prompt], **GREEDY[kind])
    assert last == whole  # the final response is the plain answer
    generated = whole[0]["generated_text"] if kind == "gen" else whole["generated_text"]
    assert generated == (prompt if kind == "gen" else "") + "".join(texts)
    # without 'stream', the decoupled model answers once, as the plain model does
    assert _stream(server, f"{kind}_stream", [prompt], GREEDY[kind]) == [(whole, True)]


def test_http_generate_and_generate_stream(server, runtime_pipeline):
    pipe = runtime_pipeline(*BUNDLES["gen"])
    prompt = _items("gen")[0]
    (whole,) = _expected(pipe, [prompt], **GREEDY["gen"])
    # the generate extension on the plain model: one JSON answer
    status, body = _post(server, "/v2/models/gen/generate",
                         {"text": prompt, "parameters": GREEDY["gen"]})
    assert status == 200, body
    assert json.loads(json.loads(body)["result"]) == whole
    # generate_stream on NAME_stream: server-sent events, one per piece, the answer last
    status, body = _post(server, "/v2/models/gen_stream/generate_stream",
                         {"text": prompt, "parameters": {**GREEDY["gen"], "stream": True}})
    assert status == 200, body
    events = [json.loads(line.removeprefix("data: ")) for line in body.splitlines()
              if line.startswith("data: ")]
    results = [json.loads(event["result"]) for event in events]
    assert [r["piece"] for r in results[:-1]] == list(pipe.stream(prompt, **GREEDY["gen"]))
    assert results[-1] == whole
    # the plain infer endpoints do not take a decoupled model (Triton 2.51): hence NAME_stream
    with pytest.raises(InferenceServerException, match="decoupled"):
        _infer(server, "http", "gen_stream", [prompt], GREEDY["gen"])


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_bad_requests_end_with_edgeports_message(server):
    prompts = _items("gen")
    # two items in one streaming request
    (error,) = _stream(server, "gen_stream", prompts, {**GREEDY["gen"], "stream": True})
    assert "one item" in error.message()  # a stream's error carries a message, no code
    # an unknown generation setting: mid-stream (before the first piece) and plain
    (error,) = _stream(server, "gen_stream", prompts[:1], {"max_new_tokenz": 3, "stream": True})
    assert "max_new_tokenz" in error.message() and "max_new_tokens" in error.message()
    for protocol in ("http", "grpc"):
        unknown = _error(lambda p=protocol: _infer(server, p, "gen", prompts,
                                                    {"max_new_tokenz": 3}))
        assert "max_new_tokens" in unknown.message()  # did you mean
        assert unknown.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    status, body = _post(server, "/v2/models/gen_stream/generate_stream",
                         {"text": prompts[0], "parameters": {"max_new_tokenz": 3,
                                                             "stream": True}})
    # an error before the first piece: HTTP 400 and the event {"error": ...} (after it: 200,
    # the pieces, then that event)
    event = json.loads(body.split("data: ")[-1])
    assert status == 400 and "max_new_tokenz" in event["error"], (status, body)
    # 'stream' on the plain model: where to stream from
    wrong = _error(lambda: _infer(server, "http", "gen", prompts[:1], {"stream": True}))
    assert "gen_stream" in wrong.message() and wrong.status() == "400"
    # beam search does not stream: the pipeline's message
    (error,) = _stream(server, "t2t_stream", _items("t2t")[:1], {"num_beams": 2,
                                                                 "stream": True})
    assert "num_beams=1" in error.message()
    # the server keeps serving, streams included
    assert len(_infer(server, "grpc", "gen", prompts[:1], GREEDY["gen"])) == 1
    assert _stream(server, "gen_stream", prompts[:1], {**GREEDY["gen"], "stream": True})[-1][1]
    assert server.process.poll() is None


def test_concurrent_plain_requests_are_batched(server, runtime_pipeline):
    """Requests with the same settings run as one pipeline call (batch_size = their items)."""
    pipe = runtime_pipeline(*BUNDLES["gen"])
    prompts = [f"prompt number {n}" for n in range(12)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda p: _infer(server, "grpc", "gen", [p], GREEDY["gen"]),
                                prompts))
    for prompt, answer in zip(prompts, answers):  # left padding changes no greedy token here
        assert answer == _expected(pipe, [prompt], **GREEDY["gen"])
    client = http.InferenceServerClient(server.http_url.removeprefix("http://"))
    stats = client.get_inference_statistics("gen")["model_stats"][0]
    assert max(int(entry["batch_size"]) for entry in stats["batch_stats"]) > 1, stats


@pytest.mark.parametrize("name", list(NATIVE))
def test_native_flavor_generates_over_bls(server, runtime_pipeline, name):
    """The native flavor's entry models (serving/native_model.py) on the real server: the
    generation loop calls each graph's model over BLS (the cache sent with each step, empty at
    the first), plain and streaming, as the pipeline answers."""
    kind = NATIVE[name]
    pipe = runtime_pipeline(*BUNDLES[kind])
    items = _items(kind)
    for protocol in ("http", "grpc"):
        got = _infer(server, protocol, name, items, GREEDY[kind])
        assert got == _expected(pipe, items, **GREEDY[kind])
    responses = _stream(server, f"{name}_stream", items[:1], {**GREEDY[kind], "stream": True})
    *pieces, (last, final) = responses
    assert [piece["piece"] for piece, _ in pieces] == list(pipe.stream(items[0],
                                                                       **GREEDY[kind]))
    assert final and [last] == _expected(pipe, items[:1], **GREEDY[kind])
    client = http.InferenceServerClient(server.http_url.removeprefix("http://"))
    graphs = [model["name"] for model in client.get_model_repository_index()
              if model["name"].startswith(f"{name}_") and not model["name"].endswith("_stream")]
    assert graphs
    for graph in graphs:  # every graph model ran
        stats = client.get_inference_statistics(graph)["model_stats"][0]
        assert int(stats["inference_count"]) > 0, graph
