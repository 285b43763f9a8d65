"""The native flavor of a Triton model repository: for NVIDIA's Triton containers.

``write_native_repository`` writes a folder with:

- one model per graph of the bundle (``NAME_GRAPH``), an ``onnxruntime_onnx`` model holding the
  variant's ONNX file (and its external data), with a config.pbtxt derived from the graph's
  inputs and outputs: when every tensor's first dim is the manifest's ``batch`` the model
  batches (``max_batch_size``, dims without the batch dim, Triton's dynamic batcher on), every
  other dynamic dim is -1;
- or, for a graph with TensorRT plans of the variant under the bundle's engines/ (`edgeport
  build`), a ``tensorrt_plan`` model holding every usable plan (its sidecar's plan and source
  sha256 match), one per GPU in ``cc_model_filenames`` (a hardware-compatible plan is the
  default file), on KIND_GPU instances, with max_batch_size no more than the plans' profiles
  allow. A plan runs only in a Triton container with the TensorRT version it was built with;
- the entry model ``NAME``, a Python-backend model (serving/native_model.py as its model.py,
  the bundle copied beside it) that runs the torch-free pipeline with a BLS engine calling the
  graph model: the python flavor's config and contract (serving/python_repo.py: ``text``,
  ``image`` or ``audio`` in, or the task's inputs of serving/inputs.py (``question`` and
  ``context``, ...), one BYTES element per item; ``result`` out, the pipeline's JSON
  for each item; its dynamic batching), only the graph runs elsewhere.

Why BLS and not an ensemble: a pipeline's postprocessing needs what its preprocessing knew
(a text's offsets and words, an image's original size, an audio's length) and the request's
parameters (``top_k``, aggregation...), which an ensemble's fixed tensor wiring cannot carry
between two Python models without re-inventing the pipeline as tensors. With BLS one Python
model runs the pipeline unchanged and only the graph runs in the native backend, still batched
across requests by Triton's dynamic batcher.

Generative bundles: the entry model runs the pipeline's generation loop, each of its graphs
(``encoder_model`` and ``decoder_model_merged``, or a decoder-only ``model``) a BLS engine
(pipeline_from_bundle's ``engines``); the KV cache stays in the entry model between steps and
goes with each decoder call. Streaming tasks get ``NAME_stream`` too, the decoupled entry
model of serving/streaming.py.

The native flavor cannot run here (the bundled tritonserver has only the Python backend);
its configs are checked against Triton's ModelConfig schema and rules in tests.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from runtime.backends.engine import TensorSpec
from runtime.bundle import Bundle
from runtime.errors import InputError
from runtime.files import write_text_atomic
from runtime.tasks import pipeline_class

from .inputs import input_names
from .python_repo import checked_settings, config_pbtxt, new_repository
from .streaming import add_stream_model, streams

ENTRY_TEMPLATE = Path(__file__).with_name("native_model.py")
SETTINGS = "edgeport_native.json"  # read by the entry model (native_model.SETTINGS)
BUNDLE_DIR = "bundle"

# numpy dtype names -> Triton's DataType names (model_config.proto).
TRITON_DTYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
}
MAX_QUEUE_DELAY_US = 1000


def _dims(spec: TensorSpec, batched: bool) -> list[int]:
    dims = spec.dims[1:] if batched else spec.dims
    return [d if isinstance(d, int) and d > 0 else -1 for d in dims]


def _triton_dtype(spec: TensorSpec, graph: str) -> str:
    if spec.dtype not in TRITON_DTYPES:
        raise InputError(f"The graph {graph!r}'s tensor {spec.name!r} has dtype {spec.dtype}, "
                         "which Triton's config has no type for.")
    return TRITON_DTYPES[spec.dtype]


def _tensors(key: str, specs: Sequence[TensorSpec], graph: str, batched: bool) -> str:
    items = []
    for spec in specs:
        dims = ", ".join(map(str, _dims(spec, batched)))
        items.append(f'  {{\n    name: {json.dumps(spec.name)}\n'
                     f'    data_type: {_triton_dtype(spec, graph)}\n    dims: [ {dims} ]\n  }}')
    return f"{key} [\n" + ",\n".join(items) + "\n]\n"


def _preferred_sizes(max_batch: int) -> list[int]:
    sizes, size = [], 1
    while size <= max_batch:
        sizes.append(size)
        size *= 2
    return sizes[1:] or [max_batch]


def graph_config(name: str, graph: str, inputs: Sequence[TensorSpec],
                 outputs: Sequence[TensorSpec], batch_dims: dict[str, object], *,
                 max_batch: int, instances: int, plans: dict | None = None) -> tuple[str, int]:
    """config.pbtxt of a model for one graph, and its max_batch_size (0 when the graph does
    not batch: some tensor's first dim is not the manifest's ``batch``). ``plans``
    (``_plan_files``): a tensorrt_plan model of those files; else an onnxruntime_onnx one."""
    batched = max_batch > 0 and all(
        spec.dims and batch_dims.get(spec.name) == "batch" for spec in (*inputs, *outputs))
    if batched and plans:
        max_batch = min(max_batch, plans["max_batch"])
    model_max = max_batch if batched else 0
    if plans:
        text = (f"name: {json.dumps(name)}\nbackend: \"tensorrt\"\nplatform: \"tensorrt_plan\"\n"
                f"default_model_filename: {json.dumps(plans['default'])}\n")
        for cc, filename in sorted(plans["cc"].items()):
            text += (f"cc_model_filenames {{\n  key: {json.dumps(cc)}\n"
                     f"  value: {json.dumps(filename)}\n}}\n")
        kind = "KIND_GPU"
    else:
        text = (f"name: {json.dumps(name)}\nbackend: \"onnxruntime\"\n"
                "platform: \"onnxruntime_onnx\"\ndefault_model_filename: \"model.onnx\"\n")
        kind = "KIND_AUTO"
    text += f"max_batch_size: {model_max}\n"
    text += _tensors("input", inputs, graph, batched)
    text += _tensors("output", outputs, graph, batched)
    text += f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]\n"
    if model_max:
        sizes = ", ".join(map(str, _preferred_sizes(model_max)))
        text += (f"dynamic_batching {{\n  preferred_batch_size: [ {sizes} ]\n"
                 f"  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}\n}}\n")
    return text, model_max


def _copy_graph(bundle: Bundle, graph: str, variant: str, folder: Path) -> None:
    """The verified graph file as ``folder/model.onnx`` and its external data beside it, under
    the names the graph gives them (relative to the graph's folder)."""
    source = bundle.graph_path(graph, variant)  # checks sha256s and external data
    folder.mkdir(parents=True)
    shutil.copyfile(source, folder / "model.onnx")
    graph_folder = PurePosixPath(bundle.variants[variant]["files"][graph]).parent
    for relative in (bundle.variants[variant].get("data_files") or {}).get(graph, []):
        target = folder / PurePosixPath(relative).relative_to(graph_folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle.file(relative, what="a graph's external data"), target)


def _plan_files(bundle: Bundle, graph: str, variant: str) -> dict | None:
    """The usable TensorRT plans of ``graph`` in ``variant`` (sidecar readable, plan and source
    sha256 matching; the newest TensorRT's for each GPU), or None when there are none:
    ``{"files": {file name: plan path}, "cc": {"8.7": file name}, "default": file name,
    "max_batch": the batch every plan's profiles reach, "tensorrt": [versions]}``."""
    from runtime.backends.tensorrt.plans import (
        _version,
        engines_dir,
        read_sidecar,
        source_sha256,
    )
    from runtime.bundle import file_sha256

    folder = bundle.path / "engines"
    if not folder.is_dir():
        return None
    source = source_sha256(bundle, graph, variant)
    best: dict[str, tuple] = {}  # "8.7" or "ampere-plus" -> (TensorRT version, plan, sidecar)
    for plan in sorted(engines_dir(bundle.path).glob(f"{graph}.{variant}.*.plan")):
        sidecar = read_sidecar(plan)
        if (sidecar is None or sidecar.get("branch") or sidecar["graph"] != graph
                or sidecar["variant"] != variant or sidecar["source_sha256"] != source
                or not plan.is_file() or file_sha256(plan) != sidecar["plan_sha256"]):
            continue  # stale, damaged or another graph's: `edgeport build` makes it again
        major, minor = sidecar["compute_capability"]
        key = ("ampere-plus" if sidecar["options"].get("hardware_compatible")
               else f"{major}.{minor}")
        version = _version(sidecar["tensorrt"])
        if key not in best or version > best[key][0]:
            best[key] = (version, plan, sidecar)
    if not best:
        return None
    files, cc, batches = {}, {}, []
    for key, (_, plan, sidecar) in sorted(best.items()):
        filename = f"model.{key.replace('.', '')}.plan"
        files[filename] = plan
        if key != "ampere-plus":
            cc[key] = filename
        reach = [min(shapes[2][0] for shapes in profile.values() if shapes and shapes[2])
                 for profile in sidecar["profiles"] if profile]
        batches.append(max(reach, default=1))
    default = "model.ampere-plus.plan" if "ampere-plus" in best else next(iter(files))
    return {"files": files, "cc": cc, "default": default, "max_batch": min(batches),
            "tensorrt": sorted({sidecar["tensorrt"] for _, _, sidecar in best.values()})}


def _graph_io(bundle: Bundle, graph: str, variant: str) -> tuple[list, list, dict]:
    """The graph's inputs and outputs as the ONNX file declares them (what ONNX Runtime's
    backend serves), and the manifest's first-dim name of each tensor."""
    from runtime.backends.engine import OrtEngine

    engine = OrtEngine(bundle.graph_path(graph, variant))
    manifest_inputs, manifest_outputs = bundle.graph_specs(graph)
    first = {spec.name: (spec.dims[0] if spec.dims else None)
             for spec in (*manifest_inputs, *manifest_outputs)}
    return list(engine.inputs), list(engine.outputs), first


def write_native_repository(bundle, repo, *, name: str | None = None, variant: str = "fp32",
                            max_batch: int = 8, instances: int = 1) -> Path:
    """Write the native-flavor repository of ``bundle`` (a Bundle or its path) to the new
    folder ``repo`` (absent or empty), in a scratch folder beside it renamed into place. The
    entry model ``name`` (default: the bundle folder's name) has the python flavor's config
    and contract. InputErrors for a bad name, variant or size, and for a variant that lacks a
    graph the pipeline runs."""
    bundle, name = checked_settings(bundle, name, max_batch, instances)
    checked = _check(bundle, variant)
    with new_repository(repo) as scratch:
        fill_native_repository(bundle, scratch, name=name, variant=variant,
                               max_batch=max_batch, instances=instances, checked=checked)
    return Path(repo)


def _check(bundle: Bundle, variant: str) -> tuple[str, str]:
    """The bundle's task and the contract's inputs; InputErrors for what cannot be served."""
    if variant not in bundle.variants:
        from runtime.errors import did_you_mean

        raise InputError(f"The bundle {bundle.path} has no variant {variant!r}. "
                         + did_you_mean(variant, bundle.variants))
    task = bundle.check_task(None)
    task_class = pipeline_class(task, bundle.manifest.get("family"), bundle.model_type)
    for graph in _pipeline_graphs(bundle, task_class):
        if graph not in bundle.variants[variant]["files"]:
            raise InputError(f"The variant {variant!r} has no graph {graph!r}, which the "
                             "pipeline runs.")
    return task, input_names(task, task_class)


def _pipeline_graphs(bundle: Bundle, task_class) -> list[str]:
    """The graphs the entry model calls: "model", or a generative bundle's encoder and decoder
    (runtime.generation's FAMILY_GRAPHS)."""
    if not task_class.generates:
        return ["model"]
    from runtime.generation.onnx_model import FAMILY_GRAPHS

    family = bundle.manifest.get("family")
    if family not in FAMILY_GRAPHS:
        raise InputError(f"The bundle {bundle.path} holds a {family!r} model, which does not "
                         f"generate text. Note: generation needs a bundle of family "
                         f"{' or '.join(FAMILY_GRAPHS)}.")
    return [graph for graph in FAMILY_GRAPHS[family] if graph]


def fill_native_repository(bundle: Bundle, repo: Path, *, name: str, variant: str = "fp32",
                           max_batch: int = 8, instances: int = 1, checked=None) -> dict:
    """Write the models into the existing folder ``repo``; returns ``{"entry": name, "models":
    {model: "python"|"onnxruntime_onnx"|"tensorrt_plan"}, "inputs", "task", "variant",
    "tensorrt": [the TensorRT versions its plans need in the container]}``."""
    task, inputs_ = checked or _check(bundle, variant)
    task_class = pipeline_class(task, bundle.manifest.get("family"), bundle.model_type)
    models = {}
    tensorrt: set[str] = set()
    settings = {"inputs": list(inputs_), "bundle": BUNDLE_DIR, "variant": variant, "task": task}
    for graph in sorted(bundle.variants[variant]["files"]):
        model_name = f"{name}_{graph}"
        inputs, outputs, first = _graph_io(bundle, graph, variant)
        plans = _plan_files(bundle, graph, variant)
        config, model_max = graph_config(model_name, graph, inputs, outputs, first,
                                         max_batch=max_batch, instances=instances, plans=plans)
        version = repo / model_name / "1"
        if plans:
            version.mkdir(parents=True)
            for filename, plan in plans["files"].items():
                shutil.copyfile(plan, version / filename)
            tensorrt.update(plans["tensorrt"])
        else:
            _copy_graph(bundle, graph, variant, version)
        write_text_atomic(repo / model_name / "config.pbtxt", config)
        models[model_name] = "tensorrt_plan" if plans else "onnxruntime_onnx"
        if graph == "model" and not task_class.generates:
            settings.update(graph_model=model_name, graph_max_batch=model_max,
                            graph_inputs=[s.to_json() for s in inputs],
                            graph_outputs=[s.to_json() for s in outputs])
        elif task_class.generates and graph in _pipeline_graphs(bundle, task_class):
            settings.setdefault("generation_graphs", {})[graph] = {
                "model": model_name, "max_batch": model_max,
                "inputs": [s.to_json() for s in inputs],
                "outputs": [s.to_json() for s in outputs]}
    version = repo / name / "1"
    shutil.copytree(bundle.path, version / BUNDLE_DIR, ignore=shutil.ignore_patterns(
        "engines", ".edgeport.lock", ".*-scratch-*"))
    shutil.copyfile(ENTRY_TEMPLATE, version / "model.py")
    write_text_atomic(version / SETTINGS, json.dumps(settings, indent=1))
    write_text_atomic(repo / name / "config.pbtxt",
                      config_pbtxt(name, inputs_, max_batch, instances))
    models[name] = "python"
    if streams(task_class):  # NAME_stream, decoupled: token streaming (serving/streaming.py)
        models[add_stream_model(repo, name, SETTINGS)] = "python"
    return {"entry": name, "models": models, "inputs": list(inputs_), "task": task,
            "variant": variant, "tensorrt": sorted(tensorrt)}


__all__ = ["write_native_repository", "fill_native_repository", "graph_config",
           "TRITON_DTYPES"]
