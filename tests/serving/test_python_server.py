"""The python-flavor Triton repository on the REAL tritonserver bundled in nvidia-pytriton:
answers over HTTP and gRPC equal the runtime pipeline's, for a text, an image and a speech
bundle; concurrent clients; malformed requests get edgeport's message and the server keeps
serving; `edgeport triton` writes the repository; `edgeport serve` stops on SIGTERM with no
orphan processes. One server serves the three models for the whole module."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")
http = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")

from triton_server import (  # noqa: E402
    add_models,
    close,
    png_photos,
    served,
    skip_unless_runnable,
)
from tritonclient.utils import InferenceServerException  # noqa: E402

from runtime.errors import InputError  # noqa: E402
from serving import launch  # noqa: E402
from serving.python_repo import write_python_repository  # noqa: E402
from serving.results import jsonable  # noqa: E402

BUNDLES = {"text": ("bert", "text-classification"),
           "image": ("vit", "image-classification"),
           "speech": ("wav2vec2", "automatic-speech-recognition")}
INPUTS = {"text": "text", "image": "image", "speech": "audio"}
ROOT = Path(__file__).resolve().parents[2]


# the server's skip reason (tests/support/triton_server.py); the stub_numpy fixture is in
# tests/serving/conftest.py


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory, stub_numpy):
    skip_unless_runnable()
    repo = tmp_path_factory.mktemp("triton") / "repo"
    repo.mkdir()
    for kind, key in BUNDLES.items():
        add_models(repo, write_python_repository(tiny_bundle(*key), repo.parent / f"one-{kind}",
                                                 name=kind, max_batch=8))
    add_models(repo, write_python_repository(tiny_bundle(*BUNDLES["text"]),
                                             repo.parent / "one-flat", name="text_flat",
                                             max_batch=0))
    yield from served(repo)


def _items(kind: str) -> list:
    if kind == "text":
        return ["I love this movie.", "Terrible, do not go.", "Ok."]
    if kind == "image":
        return png_photos(2)
    from audio_samples import JFK

    return [JFK.read_bytes()]


def _expected(pipe, items, **parameters):
    results = pipe(list(items), **parameters)
    return json.loads(json.dumps(results, default=jsonable))


def _infer(server, protocol: str, model: str, items, parameters=None, datatype="BYTES",
           name=None):
    module = http if protocol == "http" else grpc
    url = server.http_url.removeprefix("http://") if protocol == "http" else server.grpc_url
    client = module.InferenceServerClient(url)
    name = name or INPUTS[model]
    if datatype == "BYTES":
        data = np.array([[item.encode() if isinstance(item, str) else item] for item in items],
                        dtype=np.object_)
    else:
        data = np.zeros((len(items), 1), np.float32)
    tensor = module.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    reply = client.infer(model, [tensor], parameters=parameters)
    return [json.loads(row[0]) for row in reply.as_numpy("result")]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("kind", list(BUNDLES))
def test_answers_equal_the_pipeline(server, runtime_pipeline, kind, protocol):
    pipe = runtime_pipeline(*BUNDLES[kind])
    items = _items(kind)
    got = _infer(server, protocol, kind, items)
    want = _expected(pipe, items)
    assert close(got, want), (got, want)
    if kind == "text":  # pipeline arguments as request parameters
        got = _infer(server, protocol, kind, items, parameters={"top_k": 2})
        assert close(got, _expected(pipe, items, top_k=2))
        assert len(got[0]) == 2


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_without_batching_a_request_is_a_list(server, runtime_pipeline, protocol):
    """--max-batch 0: no batch dimension; ``text`` is [-1], ``result`` [-1]."""
    pipe = runtime_pipeline(*BUNDLES["text"])
    module = http if protocol == "http" else grpc
    url = server.http_url.removeprefix("http://") if protocol == "http" else server.grpc_url
    texts = ["first one", "a second text"]
    tensor = module.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    reply = module.InferenceServerClient(url).infer("text_flat", [tensor])
    result = reply.as_numpy("result")
    assert result.shape == (2,)
    assert close([json.loads(item) for item in result], _expected(pipe, texts))


def test_concurrent_clients(server, runtime_pipeline):
    pipe = runtime_pipeline(*BUNDLES["text"])
    texts = [f"sentence number {n} is {'good' if n % 2 else 'bad'}" for n in range(24)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(
            lambda pair: _infer(server, ("http", "grpc")[pair[0] % 2], "text", [pair[1]]),
            enumerate(texts)))
    for text, answer in zip(texts, answers):
        assert close(answer, _expected(pipe, [text]))
    # the dynamic batcher handed the model several requests at once: one pipeline call
    client = http.InferenceServerClient(server.http_url.removeprefix("http://"))
    stats = client.get_inference_statistics("text")["model_stats"][0]
    assert max(int(entry["batch_size"]) for entry in stats["batch_stats"]) > 1, stats


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_malformed_requests_and_the_server_keeps_serving(server, protocol):
    unknown = _error(lambda: _infer(server, protocol, "text", ["hi"], parameters={"topk": 2}))
    assert "takes no argument 'topk'" in unknown.message()
    assert "top_k" in unknown.message()  # did you mean
    bad_image = _error(lambda: _infer(server, protocol, "image", [b"not an image at all"]))
    assert "image" in bad_image.message().lower()
    bad_audio = _error(lambda: _infer(server, protocol, "speech", [b"\x00\x01 not audio"]))
    assert "audio" in bad_audio.message().lower()
    wrong_dtype = _error(lambda: _infer(server, protocol, "text", ["x"], datatype="FP32"))
    assert "text" in wrong_dtype.message()
    missing = _error(lambda: _infer(server, protocol, "text", ["x"], name="image"))
    assert "text" in missing.message()
    if protocol == "http":  # 400-class codes
        for error in (unknown, bad_image, bad_audio, wrong_dtype, missing):
            assert error.status() == "400", (error.status(), error.message())
    else:
        for error in (unknown, bad_image, wrong_dtype, missing):
            assert error.status() == "StatusCode.INVALID_ARGUMENT", error.status()
    # a batch where one request is bad: the others still get their answers
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(_infer, server, protocol, "image", [item])
                   for item in [b"garbage", *_items("image")]]
    assert isinstance(futures[0].exception(), InferenceServerException)
    assert all(future.exception() is None for future in futures[1:])
    assert len(_infer(server, protocol, "text", ["still serving"])) == 1
    assert server.process.poll() is None


def test_repository_layout_and_refusals(tiny_bundle, tmp_path):
    bundle = tiny_bundle(*BUNDLES["text"])
    repo = write_python_repository(bundle, tmp_path / "repo", name="clf", max_batch=4,
                                   instances=2)
    config = (repo / "clf" / "config.pbtxt").read_text()
    assert 'backend: "python"' in config and "max_batch_size: 4" in config
    assert "count: 2" in config and "dynamic_batching" in config
    assert (repo / "clf" / "1" / "bundle" / "manifest.json").is_file()
    assert (repo / "clf" / "1" / "model.py").is_file()
    with pytest.raises(InputError, match="not an empty folder"):
        write_python_repository(bundle, repo)
    with pytest.raises(InputError, match="not a Triton model name"):
        write_python_repository(bundle, tmp_path / "other", name="../x")
    with pytest.raises(InputError, match="no variant"):
        write_python_repository(bundle, tmp_path / "other", variant="int3")
    assert not (tmp_path / "other").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no scratch folder left


def test_triton_cli(tiny_bundle, tmp_path):
    bundle = tiny_bundle(*BUNDLES["text"])
    done = subprocess.run([sys.executable, "-m", "runtime.cli", "triton", str(bundle), "-o",
                           str(tmp_path / "repo"), "--name", "clf"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "repo" / "clf" / "config.pbtxt").is_file()
    again = subprocess.run([sys.executable, "-m", "runtime.cli", "triton", str(bundle), "-o",
                            str(tmp_path / "repo")], capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 1 and "not an empty folder" in again.stderr


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_stops_on_sigterm_without_orphans(tiny_bundle, stub_numpy, tmp_path):
    skip_unless_runnable()
    ports = [launch.free_port() for _ in range(3)]
    # started outside the checkout: the backend imports edgeport as installed (editable here)
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "serve", str(tiny_bundle(*BUNDLES["text"])),
         "--http-port", str(ports[0]), "--grpc-port", str(ports[1]),
         "--metrics-port", str(ports[2]), "--name", "clf"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        start_new_session=True)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Stop with"):
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{ports[0]}" in text, (text, process.stderr.read()
                                                        if process.poll() is not None else "")
        assert "/v2/health/ready" in text and "/metrics" in text
        # a port now taken: a clear error
        taken = subprocess.run(
            [sys.executable, "-m", "runtime.cli", "serve", str(tiny_bundle(*BUNDLES["text"])),
             "--http-port", str(ports[0]), "--grpc-port", str(launch.free_port()),
             "--metrics-port", str(launch.free_port())],
            capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert taken.returncode == 1 and f"{ports[0]} is taken" in taken.stderr
        client = http.InferenceServerClient(f"127.0.0.1:{ports[0]}")
        assert client.is_model_ready("clf")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        time.sleep(0.5)
        assert not _group_alive(process.pid), "processes of `edgeport serve` outlived it"
    finally:
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def test_triton_cli_native_flavor(tiny_bundle, tmp_path):
    """--flavor native goes to serving.native's writer, through the same atomic folder."""
    pytest.importorskip("serving.native", reason="the native flavor is not written yet")
    bundle = tiny_bundle(*BUNDLES["text"])
    done = subprocess.run([sys.executable, "-m", "runtime.cli", "triton", str(bundle), "-o",
                           str(tmp_path / "repo"), "--name", "clf", "--flavor", "native"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "repo" / "clf" / "config.pbtxt").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]


def test_triton_cli_is_torch_free(tiny_bundle, tmp_path):
    """`edgeport triton` (python flavor) runs where torch and transformers cannot be imported."""
    code = (
        "import sys\n"
        "class Blocker:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'optimum', 'exporter',\n"
        "                                  'calibration'):\n"
        "            raise ModuleNotFoundError(f'blocked for this test: {name}', name=name)\n"
        "sys.meta_path.insert(0, Blocker())\n"
        "from runtime.cli.command import main\n"
        "status = main(['triton', sys.argv[1], '-o', sys.argv[2], '--name', 'clf'])\n"
        "import serving.python_repo, serving.launch, serving.results\n"
        "assert not {'torch', 'transformers'} & set(sys.modules), 'heavy imports'\n"
        "sys.exit(status)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tiny_bundle(*BUNDLES["text"])),
                           str(tmp_path / "repo")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "repo" / "clf" / "1" / "model.py").is_file()


def test_results_with_images_and_arrays_become_json():
    import base64

    from PIL import Image

    from serving.results import result_json

    mask = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    decoded = json.loads(result_json([{"mask": mask, "depth": np.ones((2, 2), np.float32),
                                       "score": np.float32(0.5)}]))
    assert decoded[0]["depth"] == [[1.0, 1.0], [1.0, 1.0]] and decoded[0]["score"] == 0.5
    image = decoded[0]["mask"]
    assert image["mode"] == "L" and image["size"] == [4, 3]
    back = Image.open(io.BytesIO(base64.b64decode(image["image/png;base64"])))
    assert np.array_equal(np.asarray(back), np.asarray(mask))
    with pytest.raises(TypeError):
        result_json({"x": object()})
