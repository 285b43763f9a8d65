"""The native flavor of a Triton repository (serving/native.py).

NVIDIA's onnxruntime/tensorrt backends are not in the bundled tritonserver, so the native
flavor cannot be served here. What is checked instead:
- every config.pbtxt parses into Triton's ModelConfig (tritonclient's generated protobuf;
  unknown fields fail) and keeps the rules Triton enforces beyond the schema (max_batch_size
  vs dims and the graph's shapes and dtypes, dynamic batching only on batching models,
  instance kinds per backend, the entry model's contract and its BLS target);
- the entry model's model.py, imported with a stand-in ``triton_python_backend_utils`` whose
  BLS requests run the repository's graph file on ONNX Runtime (and enforce max_batch_size),
  gives what runtime.pipeline gives on the bundle.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from audio_samples import JFK
from images import photos

from runtime.backends.engine import OrtEngine
from runtime.bundle import Bundle
from runtime.errors import EngineError, InputError
from runtime.pipeline import pipeline
from serving.native import TRITON_DTYPES, fill_native_repository, write_native_repository

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="the serve extra (tritonclient) is not installed")
text_format = pytest.importorskip("google.protobuf.text_format")
json_format = pytest.importorskip("google.protobuf.json_format")


# --- a stand-in for the Python backend's utilities --------------------------------------------
class _Tensor:
    def __init__(self, name, array):
        self._name, self._array = name, np.asarray(array)

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


class _Error:
    def __init__(self, message):
        self._message = message

    def message(self):
        return self._message


class _Response:
    def __init__(self, output_tensors=(), error=None):
        self.output_tensors, self.error_ = list(output_tensors), error

    def has_error(self):
        return self.error_ is not None

    def error(self):
        return self.error_


def fake_pb_utils(repo: Path, calls: list) -> types.ModuleType:
    """A ``triton_python_backend_utils`` whose BLS requests run ``repo``'s graph models on ONNX
    Runtime, refusing a batch over the model's max_batch_size as Triton does."""
    sessions = {}

    class InferenceRequest:
        def __init__(self, model_name, requested_output_names, inputs):
            self.model_name, self.outputs, self.inputs = model_name, requested_output_names, inputs

        def exec(self):
            folder = repo / self.model_name
            config = parse_config(folder / "config.pbtxt")
            feed = {t.name(): t.as_numpy() for t in self.inputs}
            size = len(next(iter(feed.values())))
            calls.append((self.model_name, size))
            if config.max_batch_size and size > config.max_batch_size:
                return _Response(error=_Error(f"batch {size} > {config.max_batch_size}"))
            if self.model_name not in sessions:
                sessions[self.model_name] = OrtEngine(folder / "1" / "model.onnx")
            result = sessions[self.model_name].run(feed)
            return _Response([_Tensor(name, result[name]) for name in self.outputs])

    def get_output_tensor_by_name(response, name):
        return next((t for t in response.output_tensors if t.name() == name), None)

    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = _Tensor
    module.TritonError = _Error
    module.InferenceResponse = _Response
    module.InferenceRequest = InferenceRequest
    module.get_output_tensor_by_name = get_output_tensor_by_name
    module.get_input_tensor_by_name = get_output_tensor_by_name
    module.TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
    return module


class _Request:
    def __init__(self, tensors, parameters=None):
        self.output_tensors = tensors
        self._parameters = json.dumps(parameters or {})

    def parameters(self):
        return self._parameters


def load_entry(repo: Path, name: str, monkeypatch, calls: list):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils(repo, calls))
    monkeypatch.delitem(sys.modules, "serving.python_model", raising=False)  # binds pb_utils
    spec = importlib.util.spec_from_file_location(f"entry_{name}", repo / name / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    # Triton passes the model's config as JSON (max_batch_size, model_transaction_policy, ...)
    config = json_format.MessageToDict(parse_config(repo / name / "config.pbtxt"),
                                       preserving_proto_field_name=True)
    model.initialize({"model_name": name, "model_config": json.dumps(config)})
    return model


def answer(model, name, items, parameters=None):
    items = [item.encode() if isinstance(item, str) else item for item in items]
    array = np.array(items, dtype=np.object_).reshape(-1, 1)  # [batch, 1], as the config says
    (response,) = model.execute([_Request([_Tensor(name, array)], parameters)])
    if response.has_error():
        return response.error().message()
    (result,) = response.output_tensors
    return [json.loads(item) for item in result.as_numpy().reshape(-1)]


# --- config validation --------------------------------------------------------------------------
def parse_config(path: Path):
    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), config)  # unknown fields or bad enums raise
    return config


_DTYPE_NAMES = {value: key for key, value in TRITON_DTYPES.items()}


def check_repository(repo: Path, written: dict, bundle: Bundle) -> dict:
    """Parse every config and check Triton's rules; returns the configs by model name."""
    configs = {}
    for folder in sorted(p for p in repo.iterdir() if p.is_dir()):
        config = parse_config(folder / "config.pbtxt")
        assert config.name == folder.name
        assert (folder / "1").is_dir()
        configs[config.name] = config
    assert set(configs) == set(written["models"])
    for name, config in configs.items():
        kind = written["models"][name]
        dtype_name = model_config_pb2.DataType.Name
        for tensor in (*config.input, *config.output):
            assert tensor.dims and all(d == -1 or d > 0 for d in tensor.dims), tensor
        if config.HasField("dynamic_batching"):
            assert config.max_batch_size > 0, f"{name}: dynamic batching needs max_batch_size"
            assert all(0 < s <= config.max_batch_size
                       for s in config.dynamic_batching.preferred_batch_size)
        kinds = {model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind)
                 for g in config.instance_group}
        assert all(g.count >= 1 for g in config.instance_group)
        if kind == "python":
            assert config.backend == "python" and kinds <= {"KIND_CPU", "KIND_MODEL"}
            assert [t.name for t in config.output] == ["result"]
            assert [t.name for t in config.input] == written["inputs"]
            assert all(dtype_name(t.data_type) == "TYPE_STRING" and list(t.dims) == [1]
                       for t in (*config.input, *config.output))
            settings = json.loads((repo / name / "1" / "edgeport_native.json").read_text())
            # NAME_stream: decoupled, on NAME's bundle copy (serving/streaming.py)
            assert config.model_transaction_policy.decoupled == name.endswith("_stream")
            assert (repo / name / "1" / settings["bundle"] / "manifest.json").is_file()
            targets = settings.get("generation_graphs") or {"model": {
                "model": settings["graph_model"], "max_batch": settings["graph_max_batch"],
                "inputs": settings["graph_inputs"]}}
            for target in targets.values():
                graph_config = configs[target["model"]]  # the BLS target exists...
                assert target["max_batch"] == graph_config.max_batch_size
                assert [t["name"] for t in target["inputs"]] == [
                    t.name for t in graph_config.input]
            continue
        if kind == "tensorrt_plan":
            assert config.platform == "tensorrt_plan" and config.backend == "tensorrt"
            assert kinds == {"KIND_GPU"}
            files = {config.default_model_filename, *config.cc_model_filenames.values()}
            assert all((repo / name / "1" / f).is_file() for f in files)
            graph = name.removeprefix(f"{written['entry']}_")
            engine = OrtEngine(bundle.graph_path(graph, written["variant"]))
        else:
            assert config.platform == "onnxruntime_onnx" and config.backend == "onnxruntime"
            assert kinds <= {"KIND_AUTO", "KIND_CPU", "KIND_GPU"}
            engine = OrtEngine(repo / name / "1" / "model.onnx")
        for tensors, specs in ((config.input, engine.inputs), (config.output, engine.outputs)):
            assert [t.name for t in tensors] == [s.name for s in specs]
            for tensor, spec in zip(tensors, specs, strict=True):
                assert _DTYPE_NAMES[dtype_name(tensor.data_type)] == spec.dtype
                graph_dims = list(spec.dims[1:] if config.max_batch_size else spec.dims)
                assert len(tensor.dims) == len(graph_dims), (name, tensor.name)
                for dim, graph_dim in zip(tensor.dims, graph_dims, strict=True):
                    assert dim == (graph_dim if isinstance(graph_dim, int) else -1)
    return configs


# --- tests ---------------------------------------------------------------------------------------
def test_text_classification(tiny_bundle, tmp_path, monkeypatch):
    bundle = Bundle.load(tiny_bundle("bert", "text-classification"))
    written = fill_native_repository(bundle, tmp_path, name="bert", max_batch=2, instances=2)
    configs = check_repository(tmp_path, written, bundle)
    assert written["inputs"] == ["text"] and configs["bert_model"].max_batch_size == 2
    assert configs["bert_model"].dynamic_batching.preferred_batch_size == [2]
    calls = []
    model = load_entry(tmp_path, "bert", monkeypatch, calls)
    reference = pipeline(model=bundle)
    texts = ["I love this film.", "Terrible, never again.", "It was fine", "ok", "Bof."]
    assert answer(model, "text", texts) == json.loads(json.dumps(reference(texts)))
    assert calls and all(size <= 2 for _, size in calls)  # split at max_batch_size
    assert answer(model, "text", texts[:1], {"top_k": 2}) == [reference(texts[0], top_k=2)]
    # errors are the pipeline's InputErrors, answered as the request's error
    assert "top_kk" in answer(model, "text", texts, {"top_kk": 2})
    (response,) = model.execute([_Request([])])
    assert "no input 'text'" in response.error().message()
    bad = answer(model, "text", [b"\xff\xfe"])
    assert "UTF-8" in bad


def test_image_classification(tiny_bundle, tmp_path, monkeypatch):
    bundle = Bundle.load(tiny_bundle("vit", "image-classification"))
    written = fill_native_repository(bundle, tmp_path, name="vit", max_batch=4, instances=1)
    check_repository(tmp_path, written, bundle)
    assert written["inputs"] == ["image"]
    model = load_entry(tmp_path, "vit", monkeypatch, [])
    images = []
    for image in photos()[:2]:
        data = io.BytesIO()
        image.save(data, format="PNG")
        images.append(data.getvalue())
    reference = pipeline(model=bundle)
    expected = json.loads(json.dumps(reference(images, top_k=3)))
    got = answer(model, "image", images, {"top_k": 3})
    assert [[r["label"] for r in item] for item in got] == [
        [r["label"] for r in item] for item in expected]
    np.testing.assert_allclose([[r["score"] for r in item] for item in got],
                               [[r["score"] for r in item] for item in expected], atol=1e-6)
    assert "image" in answer(model, "image", [b"not an image"]).lower()


def test_refuses_what_it_cannot_serve(tiny_bundle, tmp_path):
    bundle = Bundle.load(tiny_bundle("bert", "text-classification"))
    with pytest.raises(InputError, match="not a Triton model name"):
        write_native_repository(bundle, tmp_path / "a", name="../x")
    with pytest.raises(InputError, match="no variant"):
        write_native_repository(bundle, tmp_path / "a", name="m", variant="int3")
    with pytest.raises(InputError, match="max-batch"):
        write_native_repository(bundle, tmp_path / "a", name="m", max_batch=-1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(InputError, match="not an empty folder"):
        write_native_repository(bundle, tmp_path / "full", name="m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # nothing half-written
    # the public writer: a bundle path, the default name, renamed into place
    repo = write_native_repository(bundle.path, tmp_path / "repo")
    assert repo == tmp_path / "repo"
    assert sorted(p.name for p in repo.iterdir()) == ["bundle", "bundle_model"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "repo"]


def test_the_checks_catch_bad_configs(tiny_bundle, tmp_path):
    bundle = Bundle.load(tiny_bundle("bert", "text-classification"))
    written = fill_native_repository(bundle, tmp_path, name="bert", max_batch=4)
    path = tmp_path / "bert_model" / "config.pbtxt"
    good = path.read_text()
    path.write_text(good + "max_batch: 3\n")  # an unknown field
    with pytest.raises(text_format.ParseError):
        check_repository(tmp_path, written, bundle)
    path.write_text(good.replace("max_batch_size: 4", "max_batch_size: 0"))  # dims keep batch
    with pytest.raises(AssertionError):
        check_repository(tmp_path, written, bundle)
    path.write_text(good.replace("TYPE_INT64", "TYPE_INT32", 1))
    with pytest.raises(AssertionError):
        check_repository(tmp_path, written, bundle)


def test_tensorrt_plans(tiny_bundle, tmp_path):
    """Plans under engines/ become a tensorrt_plan model: one file per GPU, the newest TensorRT
    for each, stale or damaged plans left out, max_batch_size within the profiles."""
    from runtime.backends.tensorrt import BuildOptions, DeviceFacts
    from runtime.backends.tensorrt.plans import plan_path, save_plan, sidecar_for

    path = tmp_path / "bundle"
    shutil.copytree(tiny_bundle("bert", "text-classification"), path)
    bundle = Bundle.load(path)
    inputs, _ = bundle.graph_specs("model")

    def build(facts, options=None, max_batch=4, data=b"plan", source=None):
        options = options or BuildOptions()
        profile = {spec.name: [[1, 1], [2, 16], [max_batch, 64]] for spec in inputs}
        sidecar = sidecar_for(bundle, "model", "fp32", facts, options, ranges=[],
                              profiles=[profile])
        if source:
            sidecar["source_sha256"] = source
        plan = plan_path(path, "model", "fp32", facts, options)
        save_plan(plan, data + facts.sm.encode() + facts.tensorrt.encode(), sidecar)
        return plan

    build(DeviceFacts((8, 7), "Orin", "10.3.0"), max_batch=4)
    newest = build(DeviceFacts((8, 7), "Orin", "10.7.0"), max_batch=6)
    build(DeviceFacts((9, 0), "H100", "10.7.0"), max_batch=16)
    build(DeviceFacts((8, 6), "A10", "10.7.0"), BuildOptions(hardware_compatible=True), 8)
    build(DeviceFacts((8, 9), "L4", "10.7.0"), source="0" * 64)  # built from another graph
    damaged = build(DeviceFacts((7, 5), "T4", "10.7.0"))
    damaged.write_bytes(b"changed")
    repo = tmp_path / "repo"
    repo.mkdir()
    written = fill_native_repository(bundle, repo, name="bert", max_batch=8, instances=2)
    configs = check_repository(repo, written, bundle)
    assert written["models"]["bert_model"] == "tensorrt_plan"
    assert written["tensorrt"] == ["10.7.0"]
    config = configs["bert_model"]
    assert dict(config.cc_model_filenames) == {"8.7": "model.87.plan", "9.0": "model.90.plan"}
    assert config.default_model_filename == "model.ampere-plus.plan"
    assert (repo / "bert_model" / "1" / "model.87.plan").read_bytes() == newest.read_bytes()
    assert config.max_batch_size == 6  # what every plan's profiles reach
    assert config.instance_group[0].count == 2
    settings = json.loads((repo / "bert" / "1" / "edgeport_native.json").read_text())
    assert settings["graph_max_batch"] == 6
    assert not (repo / "bert" / "1" / "bundle" / "engines").exists()


def test_refuses_generation_on_a_bundle_that_does_not_generate(tiny_bundle, tmp_path):
    path = tmp_path / "bundle"
    shutil.copytree(tiny_bundle("bert", "text-classification"), path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "task": "text-generation"}))
    with pytest.raises(InputError, match="does not generate text"):
        write_native_repository(Bundle.load(path), tmp_path / "repo", name="m")


def test_speech_recognition(tiny_bundle, tmp_path, monkeypatch):
    bundle = Bundle.load(tiny_bundle("wav2vec2", "automatic-speech-recognition"))
    written = fill_native_repository(bundle, tmp_path, name="asr", max_batch=2)
    check_repository(tmp_path, written, bundle)
    assert written["inputs"] == ["audio"]
    model = load_entry(tmp_path, "asr", monkeypatch, [])
    clips = [JFK.read_bytes()]
    clips.append(clips[0])  # the same clip twice: one batch of two
    expected = json.loads(json.dumps(pipeline(model=bundle)(clips)))
    assert answer(model, "audio", clips) == expected


# --- generative bundles: the generation loop in the entry model, each graph over BLS ---------
GENERATIVE = {
    "gen": (("gpt2", "text-generation"), ["Hello, my dog is", "The weather today"],
            {"do_sample": False, "max_new_tokens": 6}),
    "t2t": (("bart", "text2text-generation"), ["hello world", "translate: the house"],
            {"num_beams": 1, "max_new_tokens": 6}),
    "asr": (("whisper", "automatic-speech-recognition"), None, {"max_new_tokens": 6}),
    "caption": (("vision-encoder-decoder", "image-to-text"), None, {"max_new_tokens": 6}),
}


def _media(kind: str) -> list[bytes]:
    if kind == "asr":
        return [JFK.read_bytes()]
    out = []
    for image in photos()[:2]:
        data = io.BytesIO()
        image.save(data, format="PNG")
        out.append(data.getvalue())
    return out


class _Sender:
    def __init__(self):
        self.sent = []

    def send(self, response=None, flags=0):
        self.sent.append((response, flags))


class _StreamRequest(_Request):
    def __init__(self, tensors, parameters=None):
        super().__init__(tensors, parameters)
        self.sender = _Sender()

    def get_response_sender(self):
        return self.sender


def _stream(model, name, item, parameters) -> list:
    """(result JSON or error message, final flag) of each response a streaming request got."""
    item = item.encode() if isinstance(item, str) else item
    request = _StreamRequest([_Tensor(name, np.array([[item]], dtype=np.object_))], parameters)
    assert model.execute([request]) is None  # decoupled: answered through the sender
    return [(response.error().message() if response.has_error() else
             json.loads(response.output_tensors[0].as_numpy().reshape(-1)[0]), flags)
            for response, flags in request.sender.sent]


@pytest.mark.parametrize("kind", list(GENERATIVE))
def test_generative_bundles(tiny_bundle, tmp_path, monkeypatch, kind):
    from runtime.generation.onnx_model import FAMILY_GRAPHS

    key, items, settings = GENERATIVE[kind]
    bundle = Bundle.load(tiny_bundle(*key))
    written = fill_native_repository(bundle, tmp_path, name=kind, max_batch=4)
    check_repository(tmp_path, written, bundle)
    graphs = [g for g in FAMILY_GRAPHS[bundle.manifest["family"]] if g]
    calls = []
    model = load_entry(tmp_path, kind, monkeypatch, calls)
    items = items or _media(kind)
    reference = pipeline(model=bundle)
    expected_settings = dict(settings)
    if "batch_size" in reference.parameters:  # one request: one pipeline call
        expected_settings["batch_size"] = len(items)
    expected = json.loads(json.dumps(reference(items, **expected_settings)))
    (input_name,) = written["inputs"]
    assert answer(model, input_name, items, settings) == expected
    # every graph ran in its own model; the decoder once per step, the cache sent each time
    called = [name for name, _ in calls]
    assert set(called) == {f"{kind}_{graph}" for graph in graphs}
    assert called.count(f"{kind}_{graphs[-1]}") > 1
    assert "max_new_tokens" in answer(model, input_name, items[:1], {"max_new_tokenz": 2})
    if kind in ("asr", "caption"):  # their pipelines take no streamer
        assert f"{kind}_stream" not in written["models"]
        return
    # streaming: NAME_stream, decoupled, the same model.py on NAME's bundle copy
    stream = load_entry(tmp_path, f"{kind}_stream", monkeypatch, [])
    *pieces, (last, flags) = _stream(stream, input_name, items[0], {**settings, "stream": True})
    assert flags == 1 and all(flag == 0 for _, flag in pieces)
    assert [piece["piece"] for piece, _ in pieces] == list(reference.stream(items[0],
                                                                             **settings))
    assert last == expected[0]
    # two items, or an unknown setting, end the stream with edgeport's message
    request = _StreamRequest([_Tensor(input_name, np.array([[b"a"], [b"b"]], np.object_))],
                             {"stream": True})
    stream.execute([request])
    ((response, flags),) = request.sender.sent
    assert flags == 1 and "one item" in response.error().message()
    ((message, flags),) = _stream(stream, input_name, items[0], {"max_new_tokenz": 2,
                                                                "stream": True})
    assert flags == 1 and "max_new_tokens" in message
    if kind == "gen":  # a graph call failing mid-stream: the pieces so far, then the error
        decoder, steps = stream.pipeline.model.decoder, []
        call = decoder._call

        def failing(feed):
            steps.append(1)
            if len(steps) == settings["max_new_tokens"]:
                raise EngineError("The graph model failed: a stand-in failure")
            return call(feed)

        monkeypatch.setattr(decoder, "_call", failing)
        *pieces, (message, flags) = _stream(stream, input_name, items[0],
                                            {**settings, "stream": True})
        assert pieces and all(flag == 0 for _, flag in pieces)
        assert flags == 1 and "stand-in failure" in message
        monkeypatch.setattr(decoder, "_call", call)  # and the model keeps serving
        assert _stream(stream, input_name, items[0], {**settings, "stream": True})[-1] == (
            expected[0], 1)
