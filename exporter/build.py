"""Checkpoint -> bundle: trace with optimum-onnx, validate against PyTorch, write the bundle.

>>> bundle_from_checkpoint("all-MiniLM-L6-v2/", "minilm-bundle")    # doctest: +SKIP
PosixPath('minilm-bundle')
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from runtime.bundle import (
    EXTERNAL_DATA_BYTES,
    check_target,
    file_sha256,
    manifest_for,
    staged_directory,
    write_json_atomic,
)
from runtime.dims import dim_name_from_optimum
from runtime.errors import ExportError, MissingDependencyError
from runtime.tasks import canonical_task

from .architectures import ASR, architecture_for, infer_task
from .validate import (
    BATCH_SIZES,
    DECODER_LENGTHS,
    SEQUENCE_LENGTHS,
    validate_decoder,
    validate_encoder_decoder,
    validate_graph,
    validation_feeds,
)

# sentence-transformers files the runtime reads for pooling; copied as they are.
_SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json",
                                "config_sentence_transformers.json")
# The feature extractor's (audio) or image processor's settings.
_PREPROCESSOR_CONFIG = "preprocessor_config.json"


def _require_export_extra():
    try:
        import optimum.exporters.onnx  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"edgeport export needs the export extra ({exc.name} is not installed). Note: "
            "install it with `pip install 'edgeport[export]'` (for a CPU-only torch, install "
            "torch first from the CPU index)."
        ) from None


def resolve_checkpoint(checkpoint: str | os.PathLike) -> Path:
    """A local checkpoint directory: the path itself, or a Hub snapshot for a hub id."""
    path = Path(checkpoint)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ExportError(
                f"{path} has no config.json, so it is not a Transformers checkpoint. Note: "
                "pass the directory that `save_pretrained` wrote."
            )
        return path
    if path.exists() or str(checkpoint).count("/") > 1 or str(checkpoint).startswith("."):
        raise ExportError(f"{checkpoint} is not a checkpoint directory.")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(checkpoint)))
    except Exception as exc:  # offline, unknown repo, gated repo: all end the same way
        raise ExportError(
            f"{checkpoint!r} is not a local directory, and downloading it from the Hub failed: "
            f"{str(exc).splitlines()[0][:200]}. Note: pass a local checkpoint directory."
        ) from None


def _versions() -> dict:
    names = ("edgeport", "torch", "transformers", "optimum-onnx", "onnx", "onnxruntime",
             "tokenizers")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def _graph_signature(onnx_path: Path) -> dict:
    """Inputs and outputs of a graph with dtypes and dims in edgeport's dim vocabulary.

    Every dynamic input dim must have a vocabulary name (profiles and validation are derived
    from it). An output dim without one (optimum's "num_labels" on a segmentation map) is
    recorded as None: dynamic, and derived from the inputs at run time.
    """
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(onnx_path), load_external_data=False).graph

    def spec(value, *, is_input: bool):
        dims = []
        for d in value.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(d.dim_value)
                continue
            name = dim_name_from_optimum(d.dim_param)
            if name is None and is_input:
                raise ExportError(
                    f"The traced graph has a dynamic dim {d.dim_param!r} on {value.name!r} that "
                    "edgeport's dim vocabulary does not name. Note: add it to runtime/dims.py."
                )
            dims.append(name)
        dtype = tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name
        return {"name": value.name, "dtype": dtype, "dims": dims}

    return {"inputs": [spec(v, is_input=True) for v in graph.input],
            "outputs": [spec(v, is_input=False) for v in graph.output]}


def _fix_image_dims(onnx_path: Path, config) -> tuple[int, int]:
    """Make the graph's channels, height and width static: the model takes one image size
    (absolute position embeddings), and a dynamic dim would promise what it cannot keep."""
    import onnx

    vision = getattr(config, "vision_config", config)
    size = vision.image_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    values = {"channels": getattr(vision, "num_channels", 3), "height": height, "width": width}
    model = onnx.load(str(onnx_path), load_external_data=False)
    for value in model.graph.input:
        for d in value.type.tensor_type.shape.dim:
            name = dim_name_from_optimum(d.dim_param) if d.HasField("dim_param") else None
            if name in values:
                d.dim_value = values[name]
    onnx.save(model, str(onnx_path))
    return height, width


def _save_tokenizer(checkpoint: Path, staging: Path) -> str:
    """tokenizer.json (converted from slow tokenizer files when needed) and its config."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), use_fast=True)
    except Exception as exc:
        raise ExportError(
            f"Could not load the tokenizer of {checkpoint}: {str(exc).splitlines()[0][:300]}. "
            "Note: a text checkpoint needs tokenizer.json, or slow tokenizer files "
            "(vocab.txt, sentencepiece .model, ...) that transformers can convert."
        ) from None
    if not tokenizer.is_fast:
        raise ExportError(
            f"The tokenizer of {checkpoint} could not be converted to a fast tokenizer. Note: "
            "install sentencepiece and protobuf (`pip install sentencepiece protobuf`), which "
            "the conversion of sentencepiece vocabularies needs."
        )
    tokenizer.save_pretrained(str(staging))
    return "tokenizer.json"


def _save_image_processor(checkpoint: Path, staging: Path) -> str:
    """preprocessor_config.json, refused now when the runtime has no processor for it."""
    from runtime.image_processing import ImageProcessor

    name = "preprocessor_config.json"
    if not (checkpoint / name).is_file():
        raise ExportError(
            f"{checkpoint} has no {name}, so edgeport cannot know how to prepare images for "
            "it. Note: save the image processor with the checkpoint "
            "(`AutoImageProcessor.from_pretrained(...).save_pretrained(DIR)`)."
        )
    shutil.copy2(checkpoint / name, staging / name)
    ImageProcessor.from_dir(staging)
    return name


def _feature_extractor_config(checkpoint: Path) -> dict:
    """An audio checkpoint's preprocessor_config.json, refused now when there is none: the
    runtime prepares audio from it (sampling rate, normalization, log-mel settings)."""
    path = checkpoint / _PREPROCESSOR_CONFIG
    if not path.is_file():
        raise ExportError(
            f"{checkpoint} has no {_PREPROCESSOR_CONFIG}, so edgeport cannot know how to prepare "
            "audio for it. Note: save the feature extractor with the checkpoint "
            "(`AutoFeatureExtractor.from_pretrained(...).save_pretrained(DIR)`)."
        )
    try:
        config = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path} is not valid JSON ({exc}). Note: save the feature extractor "
                          "again with `save_pretrained`.") from None
    missing = [key for key in ("feature_extractor_type", "sampling_rate") if key not in config]
    if missing:
        raise ExportError(
            f"{path} has no {' or '.join(missing)}, so it is not an audio feature extractor's "
            "settings. Note: save the feature extractor with `save_pretrained`."
        )
    from runtime.audio_features import FeatureExtractor

    FeatureExtractor.from_config(config)  # one the runtime cannot run is refused now
    return config


def _save_ctc_vocabulary(checkpoint: Path, staging: Path) -> str:
    """A CTC model's character vocabulary: vocab.json (id -> character, read by the runtime's
    CTC decoding) with tokenizer_config.json and special_tokens_map.json (the blank, the word
    delimiter, the case). Wav2Vec2CTCTokenizer has no fast tokenizer, so no tokenizer.json."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    except Exception as exc:
        raise ExportError(
            f"Could not load the CTC tokenizer of {checkpoint}: "
            f"{str(exc).splitlines()[0][:300]}. Note: a speech recognition checkpoint needs its "
            "vocab.json and tokenizer_config.json (`Wav2Vec2Processor.save_pretrained(DIR)`)."
        ) from None
    if type(tokenizer).__name__ != "Wav2Vec2CTCTokenizer":
        raise ExportError(
            f"The tokenizer of {checkpoint} is a {type(tokenizer).__name__}; edgeport decodes "
            "CTC with a Wav2Vec2CTCTokenizer's character vocabulary only. Note: phoneme "
            "tokenizers (Wav2Vec2PhonemeCTCTokenizer) are not supported yet."
        )
    tokenizer.save_pretrained(str(staging))
    return "vocab.json"


def _save_preprocessing(checkpoint: Path, staging: Path, row, task: str) -> dict:
    """The files the runtime prepares inputs (and decodes outputs) with: {kind: file name}."""
    files = {}
    if "text" in row.modality:
        files["tokenizer"] = _save_tokenizer(checkpoint, staging)
    if "image" in row.modality:
        files["image_processor"] = _save_image_processor(checkpoint, staging)
    if row.modality == "audio":  # checked before tracing (_feature_extractor_config)
        shutil.copy2(checkpoint / _PREPROCESSOR_CONFIG, staging / _PREPROCESSOR_CONFIG)
        files["feature_extractor"] = _PREPROCESSOR_CONFIG
        if task == ASR:  # the transcript's tokens: a CTC vocabulary, or Whisper's BPE
            files["tokenizer"] = (_save_tokenizer(checkpoint, staging)
                                  if row.family == "encoder-decoder"
                                  else _save_ctc_vocabulary(checkpoint, staging))
    return files


def _fold_parametrizations(model) -> None:
    """Replace each parametrized weight by its value: the speech encoders' positional
    convolution is weight-normalized (weight = g * v / ||v||), which is for training. Traced as
    it is, the graph recomputes the weight on every run (ONNX Runtime folds it at load for
    fp32 only: an fp16 variant recomputed it in fp16). The outputs are the same."""
    from torch.nn.utils import parametrize

    for module in model.modules():
        for name in list(getattr(module, "parametrizations", None) or {}):
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)


def _masked_audio_onnx_config(model, optimum_task: str):
    """optimum's config for a speech encoder, with the attention_mask input it leaves out.

    optimum traces Wav2Vec2 and HuBERT on input_values alone, right for the group-norm models
    (wav2vec2-base) whose feature extractor gives no mask; a layer-norm model
    (hubert-large-ls960-ft) is fed one by transformers, and ignores padding only with it.
    """
    from optimum.exporters.tasks import TasksManager
    from optimum.utils import DEFAULT_DUMMY_SHAPES, DummyInputGenerator

    class MaskGenerator(DummyInputGenerator):
        SUPPORTED_INPUT_NAMES = ("attention_mask",)

        def __init__(self, task, normalized_config, *,
                     batch_size=DEFAULT_DUMMY_SHAPES["batch_size"],
                     audio_sequence_length=DEFAULT_DUMMY_SHAPES["audio_sequence_length"],
                     **kwargs):
            self.shape = [batch_size, audio_sequence_length]

        def generate(self, input_name, framework="pt", int_dtype="int64", float_dtype="fp32"):
            return self.random_mask_tensor(self.shape, framework=framework, dtype=int_dtype)

    base = TasksManager.get_exporter_config_constructor(
        "onnx", model=model, task=optimum_task, library_name="transformers").func

    class MaskedAudioOnnxConfig(base):
        DUMMY_INPUT_GENERATOR_CLASSES = (*base.DUMMY_INPUT_GENERATOR_CLASSES, MaskGenerator)

        @property
        def inputs(self):
            return {**super().inputs, "attention_mask": {0: "batch_size", 1: "sequence_length"}}

    return MaskedAudioOnnxConfig(model.config, task=optimum_task)


def _name_audio_dims(onnx_path: Path) -> None:
    """Name a speech encoder's axes in the graph itself: optimum calls the waveform's axis
    sequence_length and the CTC frames a formula of it (((n - 10) // 5 + 1 ...); they are
    audio_samples and audio_frames in edgeport's vocabulary."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    for values, name in ((model.graph.input, "audio_samples"),
                         (model.graph.output, "audio_frames")):
        for value in values:
            for d in value.type.tensor_type.shape.dim:
                if d.HasField("dim_param") and "sequence_length" in d.dim_param:
                    d.dim_param = name
    onnx.save(model, str(onnx_path))


def _fix_encoder_sequence(decoder_path: Path, config) -> None:
    """Make the decoder's encoder_hidden_states static: Whisper's encoder takes 30 s windows
    only, so its output always has max_source_positions (1500) positions. (The cross-attention
    cache inputs stay dynamic: they are empty at the first step.)"""
    import onnx

    model = onnx.load(str(decoder_path), load_external_data=False)
    for value in model.graph.input:
        if value.name == "encoder_hidden_states":
            value.type.tensor_type.shape.dim[1].dim_value = config.max_source_positions
    onnx.save(model, str(decoder_path))


def _copy_generation_config(checkpoint: Path, staging: Path, model) -> None:
    """generation_config.json: the checkpoint's own file, or for a generative model without one
    the file transformers derives from the model config (older checkpoints keep generation
    defaults there)."""
    name = "generation_config.json"
    if (checkpoint / name).is_file():
        shutil.copy2(checkpoint / name, staging / name)
    elif model.can_generate():
        model.generation_config.save_pretrained(str(staging))


def _validate(row, model, paths: dict[str, Path], signatures: dict[str, dict], *, image_size,
              atol: float, say) -> dict:
    """The validation report of the traced graphs (a ValidationError when they disagree)."""
    if row.family in ("decoder", "encoder-decoder"):
        lengths = ([{"decoder_sequence": n} for n in DECODER_LENGTHS] if row.modality == "audio"
                   else [{"sequence": n} for n in SEQUENCE_LENGTHS])
        cases = _axis_values({"batch": b, **n} for b in BATCH_SIZES for n in lengths)
        say(f"validating every graph with and without the KV cache against PyTorch at {cases}")
        if row.family == "decoder":
            return validate_decoder(model, paths["model"], atol=atol)
        return validate_encoder_decoder(model, paths["encoder_model"],
                                        paths["decoder_model_merged"], atol=atol)
    feeds = list(validation_feeds(row.modality,
                                  [i["name"] for i in signatures["model"]["inputs"]],
                                  model.config, image_size=image_size))
    say(f"validating against PyTorch at {_axis_values(shape for shape, _ in feeds)}")
    return validate_graph(model, paths["model"], feeds, atol=atol)


def _copy_sentence_transformers(checkpoint: Path, staging: Path) -> bool:
    if not (checkpoint / "modules.json").is_file():
        return False
    from runtime.pooling import SentencePooling

    for name in _SENTENCE_TRANSFORMERS_FILES:
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, staging / name)
    for module in json.loads((checkpoint / "modules.json").read_text("utf-8")):
        if module.get("path") and (checkpoint / module["path"] / "config.json").is_file():
            (staging / module["path"]).mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkpoint / module["path"] / "config.json",
                         staging / module["path"] / "config.json")
    SentencePooling.from_dir(staging)  # refuse modules the runtime cannot run, now
    return True


@contextlib.contextmanager
def _quiet_tracing():
    """Silence what fires on every export and says nothing about this one: the tracer's generic
    warnings, optimum's note about accelerate, transformers' deprecation notes about the
    feature-extractor classes optimum imports, and its slow-image-processor notice. Validation
    is what tells whether the trace generalizes, at several shapes."""
    import torch
    import transformers

    logger = logging.getLogger("optimum.exporters.onnx.base")
    level, verbosity = logger.level, transformers.logging.get_verbosity()
    logger.setLevel(logging.ERROR)
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            yield
    finally:
        logger.setLevel(level)
        transformers.logging.set_verbosity(verbosity)


def _axis_values(shapes) -> str:
    """'batch 1 and 3, sequence 9 and 23' for the validation cases' shapes."""
    values: dict[str, list] = {}
    for shape in shapes:
        for axis, value in shape.items():
            if value not in values.setdefault(axis, []):
                values[axis].append(value)
    return ", ".join(f"{axis} {' and '.join(map(str, v))}" for axis, v in values.items())


def _external_weights(path: Path, names: list[str]) -> list[str]:
    """Move the weights of a graph file over EXTERNAL_DATA_BYTES into ``<file>_data`` beside it
    (runtime.bundle says why); the new file's name, none when the graph is small or optimum
    wrote its weights outside already (``names``: the graph's files)."""
    if len(names) > 1 or path.stat().st_size <= EXTERNAL_DATA_BYTES:
        return []
    import onnx

    location = path.name + "_data"
    onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=location, size_threshold=1024)
    os.chmod(path.with_name(location), path.stat().st_mode & 0o777)  # onnx writes it 0600
    return [location]


def bundle_from_checkpoint(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    task: str | None = None,
    opset: int | None = None,
    atol: float | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Export a checkpoint to a validated bundle at ``output`` and return its path.

    The bundle appears at ``output`` only when everything succeeded: tracing, validation
    against PyTorch at two batch sizes and two sequence lengths, and the manifest.
    ``progress`` is called with a line for each step (the CLI prints them).
    """
    say = progress or (lambda line: None)
    _require_export_extra()
    import transformers
    from optimum.exporters.onnx import onnx_export_from_model

    from .configs import custom_onnx_config

    source = str(checkpoint)
    check_target(output, overwrite=overwrite)  # before the slow part; again when writing
    checkpoint = resolve_checkpoint(checkpoint)
    config = json.loads((checkpoint / "config.json").read_text("utf-8"))
    model_type = config.get("model_type")
    row = architecture_for(model_type)
    is_sentence_transformers = (checkpoint / "modules.json").is_file()
    if task is None:
        task = infer_task(config, sentence_transformers=is_sentence_transformers)
    elif task not in row.tasks:  # aliases ("ner") and mistyped names (a TaskError)
        task = canonical_task(task)
    if task not in row.tasks:
        raise ExportError(
            f"edgeport does not export {model_type!r} for {task!r}. Note: its tasks are: "
            f"{', '.join(row.tasks)}."
        )
    if opset is not None and not row.min_opset <= int(opset) <= 23:
        raise ExportError(f"opset {opset} is out of range for {model_type}. Note: use an opset "
                          f"from {row.min_opset} to 23.")

    # An audio checkpoint without its feature extractor is refused before the slow part; the
    # extractor also says whether the model is fed an attention mask.
    feature_extractor = _feature_extractor_config(checkpoint) if row.modality == "audio" else {}

    auto_class = getattr(transformers, row.model_class(task))
    say(f"loading {model_type} for {task} from {source}")
    try:
        model = auto_class.from_pretrained(str(checkpoint)).eval()
    except Exception as exc:
        raise ExportError(
            f"transformers could not load {checkpoint} as {auto_class.__name__}: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from None
    _fold_parametrizations(model)

    with staged_directory(output, overwrite=overwrite) as staging:
        (staging / "onnx").mkdir()
        (staging / "reports").mkdir()
        with tempfile.TemporaryDirectory(dir=staging) as traced:
            say(f"tracing to ONNX with optimum-onnx (opset {opset or 'default'})")
            try:
                with _quiet_tracing():
                    custom = custom_onnx_config(model, task)
                    if row.family == "audio-encoder" and feature_extractor.get(
                            "return_attention_mask"):
                        custom = _masked_audio_onnx_config(model, row.optimum_task(task))
                    onnx_export_from_model(
                        model, traced, task=row.optimum_task(task), opset=opset,
                        do_validation=False, preprocessors=[],
                        **({"custom_onnx_configs": {"model": custom}} if custom else {}))
            except Exception as exc:
                raise ExportError(
                    f"optimum-onnx failed to trace {model_type} for {task}: "
                    f"{str(exc).strip().splitlines()[0][:300]}"
                ) from exc
            # The bundle's graphs, each with its external data file if it has one; optimum's
            # unmerged decoders (decoder_model, decoder_with_past_model) stay behind.
            graph_files = {graph: sorted(p.name for p in Path(traced).iterdir()
                                         if p.name.startswith(f"{graph}.onnx"))
                           for graph in row.graphs}
            for graph, names in graph_files.items():
                if f"{graph}.onnx" not in names:
                    raise ExportError(
                        f"optimum-onnx did not write {graph}.onnx for {model_type} ({task}). "
                        "Note: report this architecture."
                    )
                for name in names:
                    shutil.move(str(Path(traced) / name), staging / "onnx" / name)
        paths = {graph: staging / "onnx" / f"{graph}.onnx" for graph in row.graphs}

        image_size = (_fix_image_dims(paths["model"], model.config) if row.fixed_image_size
                      else None)
        if row.family == "audio-encoder":
            _name_audio_dims(paths["model"])
        if row.fixed_encoder_sequence:
            _fix_encoder_sequence(paths["decoder_model_merged"], model.config)
        signatures = {graph: _graph_signature(path) for graph, path in paths.items()}
        report = _validate(row, model, paths, signatures, image_size=image_size,
                           atol=atol if atol else row.atol, say=say)
        write_json_atomic(staging / "reports" / "validation.json", report)

        model.config.save_pretrained(str(staging))
        _copy_generation_config(checkpoint, staging, model)
        preprocessing = _save_preprocessing(checkpoint, staging, row, task)
        preprocessing["sentence_transformers"] = _copy_sentence_transformers(checkpoint, staging)

        for graph, names in graph_files.items():
            names.extend(_external_weights(paths[graph], names))
        files = {graph: f"onnx/{graph}.onnx" for graph in row.graphs}
        data_files = {graph: [f"onnx/{name}" for name in names if name != f"{graph}.onnx"]
                      for graph, names in graph_files.items()}
        data_files = {graph: names for graph, names in data_files.items() if names}
        checksums = {name: file_sha256(staging / name)
                     for name in [*files.values(), *(n for ns in data_files.values() for n in ns)]}
        import onnx

        opset_used = next(o.version for o in onnx.load(str(paths[row.graphs[0]]),
                                                       load_external_data=False).opset_import
                          if o.domain in ("", "ai.onnx"))
        manifest = manifest_for(
            task=task,
            model_type=model_type,
            family=row.family,
            modality=row.modality,
            graphs=signatures,
            variants={"fp32": {
                "files": files,
                "data_files": data_files,
                "recipe": {"name": "export", "opset": opset_used},
                "accuracy": None,
            }},
            checksums=checksums,
            preprocessing=preprocessing,
            validation={"passed": report["passed"], "reference": "pytorch",
                        "atol": report["atol"], "max_abs_diff": report["max_abs_diff"],
                        "report": "reports/validation.json"},
            source={"checkpoint": source, "architectures": config.get("architectures")},
            exported_with=_versions(),
        )
        write_json_atomic(staging / "manifest.json", manifest)
    return Path(output)


export = bundle_from_checkpoint
