"""Checkpoint -> bundle: trace with optimum-onnx, validate against PyTorch, write the bundle.

>>> bundle_from_checkpoint("all-MiniLM-L6-v2/", "minilm-bundle")    # doctest: +SKIP
PosixPath('minilm-bundle')
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from runtime.bundle import (
    EXTERNAL_DATA_BYTES,
    check_target,
    file_sha256,
    manifest_for,
    staged_directory,
    write_bytes_atomic,
    write_json_atomic,
)
from runtime.dims import dim_name_from_optimum
from runtime.errors import EdgeportError, ExportError, MissingDependencyError, UnsafePathError
from runtime.files import MAX_JSON_BYTES, inside, read_bytes_file, read_json_file
from runtime.tasks import canonical_task

from .architectures import ASR, architecture_for, infer_task
from .validate import (
    BATCH_SIZES,
    DECODER_LENGTHS,
    SEQUENCE_LENGTHS,
    check_deterministic,
    validate_decoder,
    validate_encoder_decoder,
    validate_graph,
    validation_feeds,
)

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
        if not _present(path / "config.json"):
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
            f"{_first_line(exc)[:200]}. Note: pass a local checkpoint directory."
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
    if config.model_type == "vision-encoder-decoder":  # TrOCR, Donut: the encoder's size
        vision = config.encoder
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


# --- the checkpoint's files ----------------------------------------------------------------------
# A checkpoint is data from someone else. Every file the bundle takes from it is read here within
# bounds (runtime.files), checked, and written into the bundle before the slow part starts, so a
# broken or crafted one ends the export before the model is loaded. A path that one of its files
# names goes through ``inside``: it never leads a read, or a write, outside its folder.

# Checkpoint files that are weights: never tokenizer files, and too big to copy for nothing.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".ot",
                    ".onnx", ".onnx_data", ".gguf", ".tflite", ".npz")
# Weight index files: transformers joins each shard name of their weight_map to the checkpoint
# folder as it is, so an absolute or '..' name would load weights from elsewhere.
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# tokenizer_config.json keys that name a file (besides *_file, *_files and Marian's *_spm): every
# key of a VOCAB_FILES_NAMES in transformers 4.57 is one of these.
_TOKENIZER_FILE_KEYS = ("vocab", "merges", "pretrained_vocab_file_torch",
                        "sentencepiece_model_ckpt")
_MODULES_NOTE = (
    "Note: each entry of modules.json is an object with a string \"type\" (like "
    "\"sentence_transformers.models.Pooling\") and a string \"path\" (a folder of the checkpoint "
    "like \"1_Pooling\", or \"\" for the checkpoint itself); fix the file, or save the model "
    "again with sentence-transformers.")


def _present(path: Path) -> bool:
    """Whether anything is at ``path``. A dangling symlink or a FIFO counts: reading it then
    gives a clear error, where ``is_file`` would pass over it in silence."""
    return os.path.lexists(path)


def _first_line(exc: BaseException) -> str:
    """The first line of an error's message, cut short; the class name when it has none (a
    MemoryError)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


@contextlib.contextmanager
def _export_error(what: str, note: str, *, cause: bool = False,
                  shown_as: tuple[Path, Path] | None = None) -> Iterator[None]:
    """Turn what goes wrong while ``what`` (transformers, torch or the runtime on a broken or
    crafted checkpoint) into one ExportError with the original message. An ExportError or
    UnsafePathError passes as it is. ``cause`` keeps the original as the cause, for steps where
    the fault may be edgeport's own; ``shown_as`` = (scratch folder, checkpoint) names the
    checkpoint where the message names the scratch copy transformers read."""
    try:
        yield
    except (ExportError, UnsafePathError):
        raise
    except Exception as exc:
        message = str(exc) if isinstance(exc, EdgeportError) else (
            f"{_first_line(exc)}. Note: {note}")  # the runtime's messages have their own Note
        if shown_as:
            message = message.replace(str(shown_as[0]), str(shown_as[1]))
        error = ExportError(f"{what}: {message}")
        raise error from (exc if cause else None)


def _read_config(checkpoint: Path) -> dict:
    """config.json, checked for what the exporter reads from it before transformers does."""
    path = checkpoint / "config.json"
    config = read_json_file(path, "The checkpoint's config.json", error=ExportError, expect=dict)
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        found = (f"model_type={repr(model_type)[:80]}, not a name" if "model_type" in config
                 else "no model_type")
        raise ExportError(
            f"{path} has {found}, so edgeport cannot tell the architecture. Note: config.json "
            "names it, like \"bert\"; save the checkpoint with `save_pretrained`, which writes it."
        )
    names = config.get("architectures")
    if names is not None and not (isinstance(names, list)
                                  and all(isinstance(name, str) for name in names)):
        raise ExportError(
            f"{path} has architectures={repr(names)[:80]}, not a list of class names. Note: it "
            "lists the model's classes, like [\"BertForMaskedLM\"]; fix it, or remove it and "
            "pass the task (--task)."
        )
    return config


def _check_weight_indexes(checkpoint: Path) -> None:
    """The shard files a weight index names must be files of the checkpoint."""
    for name in _WEIGHT_INDEXES:
        path = checkpoint / name
        if not _present(path):
            continue
        weight_map = read_json_file(path, name, error=ExportError, expect=dict).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ExportError(
                f"{path} has no \"weight_map\" object. Note: it maps each weight to its shard "
                "file, like {\"embeddings.weight\": \"model-00001-of-00002.safetensors\"}; save "
                "the checkpoint again with `save_pretrained`.")
        checked = set()
        for weight, shard in weight_map.items():
            if not isinstance(shard, str):
                raise ExportError(
                    f"{path} maps {weight[:80]!r} to {repr(shard)[:80]}, not a file name. Note: "
                    "each weight maps to a shard file of the checkpoint; save the checkpoint "
                    "again with `save_pretrained`.")
            if shard not in checked:
                inside(checkpoint, shard, what=f"{name} weight_map entry {weight[:80]!r}")
                checked.add(shard)


def _sentence_transformers_files(checkpoint: Path) -> dict[str, Any]:
    """The sentence-transformers files the runtime pools with, {path in the bundle: JSON}, read
    and checked (the runtime can run the modules); empty for a plain transformers checkpoint."""
    path = checkpoint / "modules.json"
    if not _present(path):
        return {}
    modules = read_json_file(path, "modules.json", error=ExportError, expect=list)
    files: dict[str, Any] = {"modules.json": modules}
    for index, module in enumerate(modules):
        entry = f"{path}: entry {index}"
        if not isinstance(module, dict):
            raise ExportError(f"{entry} is {repr(module)[:80]}, not an object. " + _MODULES_NOTE)
        kind, folder = module.get("type"), module.get("path")
        if not isinstance(kind, str):
            raise ExportError(f"{entry} has type={repr(kind)[:80]}, not a string. "
                              + _MODULES_NOTE)
        if not isinstance(folder, str):
            found = f"path={repr(folder)[:80]}, not a string" if "path" in module else "no path"
            raise ExportError(f"{entry} has {found}. " + _MODULES_NOTE)
        is_pooling = kind.rsplit(".", 1)[-1] == "Pooling"
        if folder == "":  # the checkpoint itself: the Transformer module's
            if is_pooling:
                raise ExportError(f"{entry} puts the Pooling module in the checkpoint folder "
                                  "itself, where config.json is the model's. " + _MODULES_NOTE)
            continue
        source = inside(checkpoint, folder, what=f"modules.json entry {index} 'path'",
                        directory=True)
        if is_pooling:
            if not _present(source / "config.json"):
                raise ExportError(
                    f"The Pooling module's folder {folder!r} of {checkpoint} has no config.json, "
                    "so edgeport cannot tell how to pool. Note: save the model again with "
                    "sentence-transformers.")
            files[f"{folder}/config.json"] = read_json_file(
                source / "config.json", f"The Pooling module's config.json ({folder!r})",
                error=ExportError, expect=dict)
    for name in ("sentence_bert_config.json", "config_sentence_transformers.json"):
        if _present(checkpoint / name):
            files[name] = read_json_file(checkpoint / name, name, error=ExportError, expect=dict)
    length = files.get("sentence_bert_config.json", {}).get("max_seq_length")
    if length is not None and (not isinstance(length, int) or isinstance(length, bool)
                               or length < 1):
        raise ExportError(
            f"{checkpoint / 'sentence_bert_config.json'} has max_seq_length="
            f"{repr(length)[:80]}, not a positive number of tokens. Note: it is the longest "
            "input the model reads, like 256 (or null); fix it in sentence_bert_config.json.")
    from runtime.text.pooling import SentencePooling

    with _export_error(f"The sentence-transformers modules of {checkpoint} cannot be run",
                       note="fix modules.json and the Pooling module's config.json."):
        SentencePooling.from_dir(checkpoint)  # modules and pooling modes the runtime has
    return files


def _write_json_from_checkpoint(staging: Path, name: str, data: Any) -> None:
    """Write JSON the bundle takes from the checkpoint at ``name`` (a path the checkpoint may
    have named): inside the bundle, and never over a file the bundle holds already."""
    target = inside(staging, name, what=f"The bundle file {name!r}")
    clash = ExportError(
        f"The checkpoint's {name} would take the place of a file of the bundle. Note: rename "
        "that folder of the checkpoint (and its path in modules.json).")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # a file of the bundle is where a folder would go
        raise clash from None
    if _present(target):
        raise clash
    write_json_atomic(target, data)


def _names_a_file(key: str, value: Any) -> bool:
    """Whether a tokenizer_config.json entry names a file (vocab_file, tokenizer_file, ...)."""
    return value is not None and (key.endswith(("_file", "_files", "_spm"))
                                  or key in _TOKENIZER_FILE_KEYS)


def _tokenizer_source(checkpoint: Path, folder: Path) -> Path:
    """A copy of the checkpoint's tokenizer files, for transformers to load the tokenizer from.

    transformers opens what a file key of tokenizer_config.json (vocab_file, tokenizer_file,
    ...) names as it is, absolute or relative to the working directory, before the checkpoint's
    own file: a crafted key would read any file of this machine into the bundle's tokenizer. The
    copy holds the checkpoint's top-level regular files but its weights (a symlinked file is
    followed: the Hub cache links each file to a blob), with no file keys in its
    tokenizer_config.json, so transformers finds each file in the copy by its standard name.
    """
    folder.mkdir()
    for entry in sorted(os.scandir(checkpoint), key=lambda entry: entry.name):
        if entry.name.startswith(".") or entry.name.lower().endswith(_WEIGHT_SUFFIXES):
            continue
        try:
            info = os.stat(entry.path)  # through a symlink
        except OSError:
            continue  # a dangling symlink
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_JSON_BYTES:
            continue  # a folder, FIFO or device; or weights by another name
        what = f"The checkpoint's {entry.name}"
        if entry.name == "tokenizer_config.json":
            settings = read_json_file(entry.path, what, error=ExportError, expect=dict)
            write_json_atomic(folder / entry.name, {key: value for key, value in settings.items()
                                                    if not _names_a_file(key, value)})
        else:
            write_bytes_atomic(folder / entry.name,
                               read_bytes_file(entry.path, what, error=ExportError))
    return folder


def _check_tokenizer_files(tokenizer, source: Path, checkpoint: Path) -> None:
    """Every file the loaded tokenizer names is in ``source``: a file key that _names_a_file
    does not know ends the export before what it named can reach the bundle."""
    root = source.resolve()
    for key in getattr(tokenizer, "vocab_files_names", {}):
        for value in (getattr(tokenizer, key, None), tokenizer.init_kwargs.get(key)):
            if isinstance(value, str) and root not in Path(value).resolve().parents:
                raise ExportError(
                    f"The tokenizer of {checkpoint} would read its {key} from {value[:200]!r}, "
                    f"outside the checkpoint. Note: remove {key!r} from tokenizer_config.json; "
                    "transformers then finds the checkpoint's own file by its standard name.")


@contextlib.contextmanager
def _loaded_tokenizer(checkpoint: Path, *, fast: bool, what: str, note: str) -> Iterator[Any]:
    """A tokenizer loaded from a copy of the checkpoint's files (``_tokenizer_source``), to be
    saved inside the ``with`` block: a sentencepiece tokenizer copies its model file when saved,
    and the copy is gone after it."""
    from transformers import AutoTokenizer

    folder = Path(tempfile.mkdtemp(prefix="edgeport-tokenizer-"))
    source = folder / "checkpoint"
    try:
        _tokenizer_source(checkpoint, source)
        with _export_error(f"Could not load the {what} of {checkpoint}", note,
                           shown_as=(source, checkpoint)):
            tokenizer = AutoTokenizer.from_pretrained(str(source),
                                                      **({"use_fast": True} if fast else {}))
        _check_tokenizer_files(tokenizer, source, checkpoint)
        yield tokenizer
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _save_tokenizer(checkpoint: Path, staging: Path) -> str:
    """tokenizer.json (converted from slow tokenizer files when needed) and its config."""
    with _loaded_tokenizer(
            checkpoint, fast=True, what="tokenizer",
            note="a text checkpoint needs tokenizer.json, or slow tokenizer files (vocab.txt, "
                 "sentencepiece .model, ...) that transformers can convert.") as tokenizer:
        from .slow_tokenizers import tokenizer_json_from_slow

        with _export_error(f"Could not convert the tokenizer of {checkpoint} to tokenizer.json",
                           "its sentencepiece model or vocab.json is damaged; save the "
                           "tokenizer again with `save_pretrained`."):
            converted = None if tokenizer.is_fast else tokenizer_json_from_slow(tokenizer)
        if not tokenizer.is_fast and converted is None:
            raise ExportError(
                f"The tokenizer of {checkpoint} could not be converted to a fast tokenizer. "
                "Note: install sentencepiece and protobuf (`pip install sentencepiece "
                "protobuf`), which the conversion of sentencepiece vocabularies needs."
            )
        # The source copy holds top-level files only: a checkpoint's named chat templates
        # (additional_chat_templates/*.jinja, beside chat_template.jinja) are added back here.
        from runtime.files import read_text_file
        from runtime.text.chat import MAX_TEMPLATE_CHARS, MAX_TEMPLATES, TEMPLATE_DIR

        named = checkpoint / TEMPLATE_DIR
        if named.is_dir():
            own = tokenizer.chat_template
            templates = dict(own) if isinstance(own, dict) else {"default": own} if own else {}
            files = sorted(entry.path for entry in os.scandir(named)
                           if entry.name.endswith(".jinja") and entry.is_file())
            if len(files) > MAX_TEMPLATES:
                raise ExportError(f"{named} holds {len(files)} chat templates, over the limit "
                                  f"of {MAX_TEMPLATES}. Note: the checkpoint is damaged.")
            for path in files:
                templates[Path(path).stem] = read_text_file(
                    path, "A chat template", error=ExportError, max_bytes=MAX_TEMPLATE_CHARS)
            tokenizer.chat_template = templates or own
        with _export_error(f"Could not save the tokenizer of {checkpoint}",
                           "its tokenizer files hold values transformers cannot write back."):
            tokenizer.save_pretrained(str(staging))
        _record_sides(staging, tokenizer)
        if converted is not None:  # edgeport's own conversion (exporter/slow_tokenizers.py)
            write_bytes_atomic(staging / "tokenizer.json", converted.encode("utf-8"))
    return "tokenizer.json"


def _record_sides(staging: Path, tokenizer) -> None:
    """Write the tokenizer's padding and truncation sides into the bundle's
    tokenizer_config.json: a class's own side (XLNet pads on the left) is a class attribute
    that ``save_pretrained`` leaves out, and the runtime reads the file, not the class."""
    path = staging / "tokenizer_config.json"
    settings = read_json_file(path, "tokenizer_config.json", error=ExportError, expect=dict)
    sides = {key: getattr(tokenizer, key) for key in ("padding_side", "truncation_side")
             if key not in settings and getattr(tokenizer, key, "right") != "right"}
    if sides:
        write_json_atomic(path, {**settings, **sides})


def _image_processor_config(checkpoint: Path, model_type: str) -> dict:
    """preprocessor_config.json, refused now when the runtime has no processor for it."""
    from runtime.vision.processors import ImageProcessor

    path = checkpoint / _PREPROCESSOR_CONFIG
    if not _present(path):
        raise ExportError(
            f"{checkpoint} has no {_PREPROCESSOR_CONFIG}, so edgeport cannot know how to prepare "
            "images for it. Note: save the image processor with the checkpoint "
            "(`AutoImageProcessor.from_pretrained(...).save_pretrained(DIR)`)."
        )
    config = read_json_file(path, f"The image processor's {_PREPROCESSOR_CONFIG}",
                            error=ExportError, expect=dict)
    with _export_error(f"{path} cannot be used",
                       "fix it, or save the image processor again with `save_pretrained`."):
        ImageProcessor.from_config(config, model_type=model_type)
    return config


def _feature_extractor_config(checkpoint: Path) -> dict:
    """An audio checkpoint's preprocessor_config.json, refused now when there is none: the
    runtime prepares audio from it (sampling rate, normalization, log-mel settings)."""
    path = checkpoint / _PREPROCESSOR_CONFIG
    if not _present(path):
        raise ExportError(
            f"{checkpoint} has no {_PREPROCESSOR_CONFIG}, so edgeport cannot know how to prepare "
            "audio for it. Note: save the feature extractor with the checkpoint "
            "(`AutoFeatureExtractor.from_pretrained(...).save_pretrained(DIR)`)."
        )
    config = read_json_file(path, f"The feature extractor's {_PREPROCESSOR_CONFIG}",
                            error=ExportError, expect=dict)
    missing = [key for key in ("feature_extractor_type", "sampling_rate") if key not in config]
    if missing:
        raise ExportError(
            f"{path} has no {' or '.join(missing)}, so it is not an audio feature extractor's "
            "settings. Note: save the feature extractor with `save_pretrained`."
        )
    from runtime.audio.features import FeatureExtractor

    with _export_error(f"{path} cannot be used",
                       "fix it, or save the feature extractor again with `save_pretrained`."):
        FeatureExtractor.from_config(config)  # one the runtime cannot run is refused now
    return config


def _save_ctc_vocabulary(checkpoint: Path, staging: Path) -> str:
    """A CTC model's character vocabulary: vocab.json (id -> character, read by the runtime's
    CTC decoding) with tokenizer_config.json and special_tokens_map.json (the blank, the word
    delimiter, the case). Wav2Vec2CTCTokenizer has no fast tokenizer, so no tokenizer.json."""
    with _loaded_tokenizer(
            checkpoint, fast=False, what="CTC tokenizer",
            note="a speech recognition checkpoint needs its vocab.json and tokenizer_config.json "
                 "(`Wav2Vec2Processor.save_pretrained(DIR)`).") as tokenizer:
        if type(tokenizer).__name__ != "Wav2Vec2CTCTokenizer":
            raise ExportError(
                f"The tokenizer of {checkpoint} is a {type(tokenizer).__name__}; edgeport "
                "decodes CTC with a Wav2Vec2CTCTokenizer's character vocabulary only. Note: "
                "phoneme tokenizers (Wav2Vec2PhonemeCTCTokenizer) are not supported yet."
            )
        with _export_error(f"Could not save the CTC tokenizer of {checkpoint}",
                           "its tokenizer files hold values transformers cannot write back."):
            tokenizer.save_pretrained(str(staging))
    return "vocab.json"


def _save_checkpoint_files(checkpoint: Path, staging: Path, config: dict, row, task: str,
                           sentence_transformers: dict[str, Any]) -> tuple[dict, dict]:
    """Write what the bundle takes from the checkpoint, checked, before the slow part: the files
    the runtime prepares inputs (and decodes outputs) with, generation_config.json and the
    sentence-transformers files. (The preprocessing of the manifest, {kind: file name}; the
    feature extractor's settings, empty but for audio.)"""
    files: dict[str, Any] = {}
    feature_extractor: dict = {}
    # (an image-to-text model's tokenizer reads its output)
    if "text" in row.modality or (row.modality == "image" and row.family == "encoder-decoder"):
        files["tokenizer"] = _save_tokenizer(checkpoint, staging)
    if "image" in row.modality:
        image_processor = _image_processor_config(checkpoint, config["model_type"])
        _write_json_from_checkpoint(staging, _PREPROCESSOR_CONFIG, image_processor)
        files["image_processor"] = _PREPROCESSOR_CONFIG
    if row.modality == "audio":  # it also says whether the model is fed an attention mask
        feature_extractor = _feature_extractor_config(checkpoint)
        _write_json_from_checkpoint(staging, _PREPROCESSOR_CONFIG, feature_extractor)
        files["feature_extractor"] = _PREPROCESSOR_CONFIG
        if task == ASR:  # the transcript's tokens: a CTC vocabulary, or Whisper's BPE
            files["tokenizer"] = (_save_tokenizer(checkpoint, staging)
                                  if row.family == "encoder-decoder"
                                  else _save_ctc_vocabulary(checkpoint, staging))
    generation = checkpoint / "generation_config.json"
    if _present(generation):
        _write_json_from_checkpoint(staging, generation.name, read_json_file(
            generation, generation.name, error=ExportError, expect=dict))
    for name, data in sentence_transformers.items():
        _write_json_from_checkpoint(staging, name, data)
    files["sentence_transformers"] = bool(sentence_transformers)
    return files, feature_extractor


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


def _name_feature_frames(encoder_path: Path, decoder_path: Path) -> None:
    """Name the feature frames of a speech encoder-decoder (Speech2Text) audio_frames: optimum
    calls them encoder_sequence_length, as the encoder's output positions (a quarter as many),
    in the encoder's input_features and attention_mask and in the decoder's
    encoder_attention_mask, which is the features' mask (the model shortens it in the graph)."""
    import onnx

    for path, names in ((encoder_path, ("input_features", "attention_mask")),
                        (decoder_path, ("encoder_attention_mask",))):
        model = onnx.load(str(path), load_external_data=False)
        for value in model.graph.input:
            if value.name in names:
                value.type.tensor_type.shape.dim[1].dim_param = "audio_frames"
        onnx.save(model, str(path))


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


def _validate(row, model, paths: dict[str, Path], signatures: dict[str, dict], *, image_size,
              atol: float, say) -> dict:
    """The validation report of the traced graphs (a ValidationError when they disagree)."""
    if row.family in ("decoder", "encoder-decoder"):
        lengths = ([{"decoder_sequence": n} for n in DECODER_LENGTHS] if row.modality != "text"
                   else [{"sequence": n} for n in SEQUENCE_LENGTHS])
        cases = _axis_values({"batch": b, **n} for b in BATCH_SIZES for n in lengths)
        say(f"validating every graph with and without the KV cache against PyTorch at {cases}")
        if row.family == "decoder":
            return validate_decoder(model, paths["model"], atol=atol)
        return validate_encoder_decoder(model, paths["encoder_model"],
                                        paths["decoder_model_merged"], atol=atol)
    from .configs import CUSTOM_CONFIGS, validation_model

    custom = CUSTOM_CONFIGS.get(row.model_type)
    if custom is not None and custom.validation_feeds is not None:  # its own inputs (ViLT)
        feeds = list(custom.validation_feeds(
            [i["name"] for i in signatures["model"]["inputs"]], model.config))
    else:
        feeds = list(validation_feeds(row.modality,
                                      [i["name"] for i in signatures["model"]["inputs"]],
                                      model.config, image_size=image_size,
                                      queries_per_image=row.queries_per_image))
    say(f"validating against PyTorch at {_axis_values(shape for shape, _ in feeds)}")
    return validate_graph(validation_model(model), paths["model"], feeds, atol=atol)


@contextlib.contextmanager
def _quiet_tracing():
    """Silence what fires on every export and says nothing about this one: the tracer's generic
    warnings, optimum's note about accelerate, transformers' deprecation notes about the
    feature-extractor classes optimum imports, and its slow-image-processor notice. Validation
    is what tells whether the trace generalizes, at several shapes."""
    import torch
    import transformers

    # (model_configs: OWL-ViT's config warns that its batch is static; validation at two batch
    # sizes shows it is not)
    loggers = [logging.getLogger(f"optimum.exporters.onnx.{name}")
               for name in ("base", "model_configs")]
    levels, verbosity = [logger.level for logger in loggers], transformers.logging.get_verbosity()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            yield
    finally:
        for logger, level in zip(loggers, levels):
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
    word_timestamps: bool = False,
) -> Path:
    """Export a checkpoint to a validated bundle at ``output`` and return its path.

    The bundle appears at ``output`` only when everything succeeded: tracing, validation
    against PyTorch at two batch sizes and two sequence lengths, and the manifest.
    ``progress`` is called with a line for each step (the CLI prints them).
    ``word_timestamps`` (Whisper) adds the graph of its alignment heads' cross-attention
    weights, which ``return_timestamps="word"`` needs (exporter/whisper_alignment.py).
    """
    say = progress or (lambda line: None)
    _require_export_extra()
    import transformers
    from optimum.exporters.onnx import onnx_export_from_model

    from .configs import custom_onnx_config, export_patches, prepare_model, preprocessing_entries
    from .configs.decoders import check_rope_scaling

    source = str(checkpoint)
    check_target(output, overwrite=overwrite)  # before the slow part; again when writing
    checkpoint = resolve_checkpoint(checkpoint)
    # The checkpoint is untrusted input: its files are read and checked first, before the slow
    # part (_save_checkpoint_files writes what the bundle takes from it).
    config = _read_config(checkpoint)
    model_type = config["model_type"]
    row = architecture_for(model_type)
    sentence_transformers = _sentence_transformers_files(checkpoint)
    if task is None:
        task = infer_task(config, sentence_transformers=bool(sentence_transformers))
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
    _check_weight_indexes(checkpoint)
    if row.family == "decoder":
        check_rope_scaling(config)
    if word_timestamps and model_type != "whisper":
        raise ExportError(f"word_timestamps is for Whisper checkpoints, not {model_type}. "
                          "Note: export without --word-timestamps.")
    row.check_components(config, task)

    auto_class = getattr(transformers, row.model_class(task))
    say(f"loading {model_type} for {task} from {source}")
    with staged_directory(output, overwrite=overwrite) as staging:
        (staging / "onnx").mkdir()
        (staging / "reports").mkdir()
        preprocessing, feature_extractor = _save_checkpoint_files(
            checkpoint, staging, config, row, task, sentence_transformers)
        # transformers builds the model from config.json as it is: a crafted value fails in
        # torch (a negative size, a zero division, an allocation of terabytes).
        with _export_error(f"transformers could not load {checkpoint} as {auto_class.__name__}",
                           "config.json holds values the model cannot be built with, or the "
                           "weights do not fit it; save the checkpoint again with "
                           "`save_pretrained`."):
            model = auto_class.from_pretrained(str(checkpoint)).eval()
        _fold_parametrizations(model)
        prepare_model(model)  # settings its row forces (ViTMAE: mask_ratio 0)
        preprocessing.update(preprocessing_entries(model_type, task))  # Longformer's global tokens
        with tempfile.TemporaryDirectory(dir=staging) as traced:
            say(f"tracing to ONNX with optimum-onnx (opset {opset or 'default'})")
            try:
                with _quiet_tracing(), export_patches(model):
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
                    f"optimum-onnx failed to trace {model_type} for {task}: {_first_line(exc)}"
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
                graph_mode = (staging / "onnx" / f"{graph}.onnx").stat().st_mode & 0o777
                for name in names:  # onnx writes external data 0600: readable as the graph
                    os.chmod(staging / "onnx" / name, graph_mode)
        paths = {graph: staging / "onnx" / f"{graph}.onnx" for graph in row.graphs}
        for path in paths.values():  # the same input must always give the same output
            check_deterministic(path)

        # The config's values that traced fine can still fail at the validation shapes (a
        # sequence past max_position_embeddings): one ExportError, with the cause kept.
        with _export_error(f"Validating the {model_type} graphs against PyTorch failed",
                           "the model must run at two batch sizes and two lengths or sizes; "
                           "check config.json's sizes (max_position_embeddings, image_size, "
                           "...).", cause=True):
            image_size = (_fix_image_dims(paths[row.graphs[0]], model.config)
                          if row.fixed_image_size else None)
            if row.family == "audio-encoder":
                _name_audio_dims(paths["model"])
            if row.fixed_encoder_sequence:
                _fix_encoder_sequence(paths["decoder_model_merged"], model.config)
            elif row.family == "encoder-decoder" and row.modality == "audio":
                _name_feature_frames(paths["encoder_model"], paths["decoder_model_merged"])
            signatures = {graph: _graph_signature(path) for graph, path in paths.items()}
            report = _validate(row, model, paths, signatures, image_size=image_size,
                               atol=atol if atol else row.atol, say=say)
            if word_timestamps:  # one more graph: Whisper's alignment heads
                from .whisper_alignment import ALIGNMENT_GRAPH, alignment_graph_from_model

                say("tracing and validating Whisper's alignment heads (word timestamps)")
                paths[ALIGNMENT_GRAPH] = staging / "onnx" / f"{ALIGNMENT_GRAPH}.onnx"
                report["alignment_heads"] = alignment_graph_from_model(
                    model, paths[ALIGNMENT_GRAPH], atol=atol if atol else row.atol, opset=opset)
                graph_files[ALIGNMENT_GRAPH] = [f"{ALIGNMENT_GRAPH}.onnx"]
                signatures[ALIGNMENT_GRAPH] = _graph_signature(paths[ALIGNMENT_GRAPH])
        write_json_atomic(staging / "reports" / "validation.json", report)

        with _export_error(f"Could not write the config of {checkpoint}",
                           "config.json holds values transformers cannot write back; fix them."):
            model.config.save_pretrained(str(staging))
            # generative models without the checkpoint's own file: the one transformers
            # derives from the model config (older checkpoints keep generation defaults there)
            if not _present(staging / "generation_config.json") and model.can_generate():
                model.generation_config.save_pretrained(str(staging))

        for graph, names in graph_files.items():
            names.extend(_external_weights(paths[graph], names))
        files = {graph: f"onnx/{graph}.onnx" for graph in graph_files}
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
