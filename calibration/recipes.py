"""Quantization recipes: each makes one new graph file from a source graph file.

A recipe is a function ``(source: Path, target: Path, *, feeds, **options) -> dict`` that writes
``target`` (never touching ``source``) and returns the options it used, which the manifest
records. ``feeds`` is a list of calibration feeds (only static recipes read it).

All the quantizing is ONNX Runtime's (``onnxruntime.quantization``, ``onnxruntime.transformers``);
a recipe picks its settings, checks the user's options and the source graph, and checks that
ONNX Runtime's CPU provider loads what it wrote.

    dynamic-int8  int8 weights (per channel by default), activations quantized at run time
                  (MatMul, Gemm and Gather; Conv stays float)
    static-int8   QDQ int8 of MatMul and Gemm from calibration data: what TensorRT builds int8
                  engines from
    fp16          float16 weights and math, numerically fragile ops and graph I/O kept fp32
    int4          weight-only 4-bit MatMulNBits (blockwise), for large MatMuls; the record
                  says which weight ops stayed float (a vision model's Conv, Gemm)
    optimize      ONNX Runtime's transformer fusions (Attention, SkipLayerNorm, Gelu, ...)
    llm           a decoder LM's graph rebuilt for speed (GroupQueryAttention, the cache one
                  buffer the graph writes into), int4 by default: the recommended CPU path

The llm recipe alone reads more than its source graph: it builds from the checkpoint the bundle
was exported from (``exporter.llm``: onnxruntime-genai's model builder, then validation against
PyTorch), since a traced graph's attention cannot be rewritten into GroupQueryAttention reliably.

A recipe sees one graph without subgraphs. A merged decoder (one If whose branches hold the
model) is made branch by branch by ``calibration.branches``; ``variant_from_bundle`` runs a
recipe on every graph of a bundle.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runtime.bundle import EXTERNAL_DATA_BYTES
from runtime.errors import InputError, MissingDependencyError, did_you_mean


@dataclass(frozen=True)
class Recipe:
    name: str
    make: Callable[..., dict]
    needs_calibration: bool = False
    takes_calibration: bool = False  # reads calibration data when given (some options need it)
    options: dict = field(default_factory=dict)  # option -> default, the accepted options
    summary: str = ""
    # variant_from_bundle passes the bundle's model_type as the model_type option (unless the
    # user gave one): the optimize recipe picks ONNX Runtime's fusions by architecture.
    wants_model_type: bool = False
    # variant_from_bundle passes the checkpoint the bundle was exported from (its manifest's
    # source.checkpoint) as the checkpoint option, unless the user gave one: the llm recipe.
    wants_checkpoint: bool = False


# --- small checks shared by the recipes ---------------------------------------------------------

def _onnx():
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError(
            "Quantizing needs the onnx package. Note: pip install 'edgeport[quantize]'."
        ) from None
    return onnx


def _flag(recipe: str, option: str, value) -> bool:
    if not isinstance(value, bool):
        raise InputError(
            f"The {recipe} recipe's {option} option takes true or false, got {value!r}. Note: "
            f"pass {option}=True or {option}=False (--option {option}=false)."
        )
    return value


def _choice(recipe: str, option: str, value, choices: Iterable):
    choices = list(choices)
    if isinstance(value, bool) or value not in choices:
        raise InputError(
            f"Unknown {option} {value!r} for the {recipe} recipe. "
            + did_you_mean(str(value), [str(c) for c in choices])
        )
    return value


def _op_types(model) -> set[str]:
    return {node.op_type for node in model.graph.node}


def _names_option(recipe: str, option: str, value, known: Iterable[str], what: str) -> list[str]:
    """A list of names from ``known`` (node names, op types); a clear error for anything else."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) for v in value):
        raise InputError(
            f"The {recipe} recipe's {option} option takes a list of {what}s, got {value!r}. "
            f'Note: e.g. {option}=["..."] (--option \'{option}=["..."]\').'
        )
    known = sorted(set(known))
    for name in value:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            raise InputError(
                f"The {recipe} recipe's {option} names {name!r}, which is no {what} of the graph. "
                f"{hint}Note: the graph's {what}s include: {', '.join(known[:6])}"
                f"{', ...' if len(known) > 6 else ''}."
            )
    return list(value)


# Ops that hold quantized weights or quantize at run time: a graph with any of them (or with
# float16 weights) was made by a recipe already.
_QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
    "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearMatMul", "QGemm", "QAttention",
    "QEmbedLayerNormalization", "MatMulNBits", "ConvInteger", "QLinearConv", "QOrderedMatMul",
    "GatherBlockQuantized", "MatMulBnb4",
})


def _load_source(recipe: str, source: Path):
    """The source graph (with its external weights), refused when it is quantized already."""
    onnx = _onnx()
    source = Path(source)
    if not source.is_file():
        raise InputError(f"The {recipe} recipe has no source graph: {source} does not exist.")
    try:
        model = onnx.load(str(source))
    except Exception as exc:
        raise InputError(
            f"The {recipe} recipe cannot read {source}: {str(exc).strip()[:200]}. Note: the file "
            "is not an ONNX graph, or is damaged; export the bundle again."
        ) from None
    done = sorted(_op_types(model) & _QUANTIZED_OPS)
    fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    if done or fp16:
        why = f"it has {done[0]} nodes" if done else "its weights are float16"
        raise InputError(
            f"{source.name} is already quantized ({why}); the {recipe} recipe on top of it would "
            "quantize twice. Note: start from the fp32 graph (or from an optimize variant)."
        )
    return model


def _weight_matmuls(model) -> list[str]:
    """Names of the MatMul/Gemm nodes whose second input is a constant weight of rank 2+."""
    weights = {t.name: len(t.dims) for t in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1
            and weights.get(n.input[1], 0) >= 2]


def _weight_convs(model) -> list[str]:
    weights = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in weights]


def _need_matmuls(recipe: str, model, source: Path, ops=("MatMul", "Gemm")) -> list[str]:
    """The weight MatMuls (of ``ops``) the recipe quantizes; a clear error when there are none,
    saying where the graph's weights are instead (a convolutional network's are in Conv)."""
    types = {n.name: n.op_type for n in model.graph.node}
    found = [name for name in [*_weight_matmuls(model), *_weight_convs(model)]
             if types[name] in ops]
    if not found:
        elsewhere = collections.Counter(types[name] for name in
                                        [*_weight_matmuls(model), *_weight_convs(model)])
        held = (" (its weights are in " + " and ".join(
            f"{count} {op} node{'s' if count > 1 else ''}"
            for op, count in sorted(elsewhere.items()))
            + f", which the {recipe} recipe leaves in float)" if elsewhere else "")
        raise InputError(
            f"{source.name} has no MatMul with a constant weight{held}, so the {recipe} recipe "
            "has nothing to quantize. Note: quantize a transformer graph (its linear layers "
            "are MatMuls), or use the fp16 recipe."
        )
    return found


def _has_external_data(model) -> bool:
    onnx = _onnx()
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def _large(model) -> bool:
    """Whether the graph keeps its weights outside the protobuf: over EXTERNAL_DATA_BYTES
    (ONNX Runtime loads those faster; protobuf itself stops at 2 GB)."""
    if _has_external_data(model):
        return True
    try:
        return model.ByteSize() > EXTERNAL_DATA_BYTES
    except Exception:  # protobuf refuses to size a message over 2 GB: large by any measure
        return True


def _fits_protobuf(model) -> bool:
    """Whether the graph, as loaded, is under protobuf's 2 GB (what ONNX's shape inference
    takes in memory)."""
    try:
        return model.ByteSize() < 2**31 - 2**20
    except Exception:  # protobuf refuses to size a message over 2 GB
        return False


def _save(model, target: Path, *, external: bool) -> None:
    """Write ``target``; weights of a large graph go to ``target`` + ``_data`` beside it (the
    name write_variant moves along with the graph)."""
    onnx = _onnx()
    target = Path(target)
    if external:
        onnx.save_model(model, str(target), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=target.name + "_data",
                        size_threshold=1024)
        # onnx creates the data file 0600: readable like the graph, for other users of a bundle
        os.chmod(str(target) + "_data", target.stat().st_mode & 0o777)
    else:
        onnx.save_model(model, str(target))


@contextlib.contextmanager
def _scratch(target: Path) -> Iterator[Path]:
    """A temp directory beside ``target`` for a quantizer that writes files of its own."""
    directory = Path(tempfile.mkdtemp(prefix=".recipe-", dir=Path(target).parent))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _place(written: Path, target: Path) -> None:
    """Move a graph ONNX Runtime's quantizer wrote into ``target``; its external weights (which
    the quantizer names ``<file>.data``) are re-saved under the bundle's ``<file>_data``."""
    if not any(p.name != written.name for p in written.parent.iterdir()):
        os.replace(written, target)
        return
    onnx = _onnx()
    _save(onnx.load(str(written)), target, external=True)


def _cpu_session(path: Path):
    """An ONNX Runtime CPU session of the graph file ``path``, its warnings silenced."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=["CPUExecutionProvider"])


def _check_loads(recipe: str, target: Path, hint: str) -> None:
    """The recipe's promise: ONNX Runtime's CPU provider loads the graph it wrote."""
    try:
        _cpu_session(target)
    except Exception as exc:
        text = str(exc).strip()
        first = text.splitlines()[0][:300] if text else type(exc).__name__
        raise InputError(
            f"ONNX Runtime (CPU) cannot load the graph the {recipe} recipe made: {first}. "
            f"Note: {hint}"
        ) from None


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """ONNX Runtime's quantization modules call logging.basicConfig(level=INFO) on import and
    log every node: keep the root logger as the caller set it, and their chatter at WARNING.
    What they log on the root logger itself below ERROR (quantize_dynamic's advice to run
    its pre-processing, which edgeport leaves out on purpose) is dropped."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("onnxruntime.quantization", "onnxruntime.transformers")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    root.addFilter(_errors_only)
    try:
        yield
    finally:
        root.removeFilter(_errors_only)
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


# --- dynamic-int8 ---------------------------------------------------------------------------------

_WEIGHT_TYPES = ("int8", "uint8")
# What dynamic-int8 quantizes: ONNX Runtime's dynamic (integer-op) quantizers but Conv. Gemm is
# in by way of MatMul (the quantizer rewrites each Gemm as MatMul + Add first); Gather is the
# embedding tables; Attention and EmbedLayerNormalization are the fused ops of an optimize
# variant.
DYNAMIC_INT8_OPS = ("MatMul", "Gather", "Attention", "EmbedLayerNormalization", "LSTM",
                    "Transpose")


def dynamic_int8(source: Path, target: Path, *, feeds=None, per_channel: bool = True,
                 reduce_range: bool = False, weight_type: str = "int8",
                 row_scaling: bool = False, nodes_to_exclude: list[str] | None = None) -> dict:
    """``quantize_dynamic``: int8 weights, activations quantized per tensor at run time.

    Conv stays float (DYNAMIC_INT8_OPS): ONNX Runtime's ConvInteger, what dynamic quantization
    makes of a Conv, runs slower than the float Conv on CPU and costs accuracy. Measured on
    tiny vision exports: GLPN at 512x512 took 136 ms with ConvInteger, 41 ms with its 24 Conv
    left float (fp32: 184 ms), and ViT's min logits cosine to fp32 was 0.990 with its patch
    Conv quantized, 0.999 without. Static QDQ int8 is the form for convolutions.

    Per-channel weights are the default: on all-MiniLM-L6-v2 per-tensor weights cost four to
    six times the cosine error at the same speed (tests/calibration/test_recipes.py measures
    both). No ``quant_pre_process``: its symbolic shape inference fails on optimum's exports,
    and with only its other steps (ONNX shape inference, ORT's basic optimizations) MiniLM's
    int8 embeddings came out the same (min cosine 0.9667 to PyTorch either way).

    ``row_scaling`` quantizes each token's row with its own range (``calibration.outliers``):
    the few tokens with outlier activations no longer set every row's range. It costs five
    small ops per MatMul input; with calibration ``feeds`` only the inputs whose rows spread
    widely are scaled. The input of a fused Attention (an optimize variant) is smoothed per
    channel instead, from the feeds, which it then needs. Measured on all-MiniLM-L6-v2
    (optimize, then this): min cosine to PyTorch 0.99 over 58 sentences against 0.965
    without.
    """
    recipe = "dynamic-int8"
    per_channel = _flag(recipe, "per_channel", per_channel)
    reduce_range = _flag(recipe, "reduce_range", reduce_range)
    weight_type = _choice(recipe, "weight_type", weight_type, _WEIGHT_TYPES)
    row_scaling = _flag(recipe, "row_scaling", row_scaling)
    if feeds is not None and not row_scaling:
        raise InputError(
            "The dynamic-int8 recipe reads calibration data only with row_scaling, which "
            "smooths a fused Attention's input from it. Note: add --option row_scaling=true, "
            "or leave --calibration out."
        )
    onnx = _onnx()
    model = _load_source(recipe, source)
    _need_matmuls(recipe, model, Path(source))
    exclude = _names_option(recipe, "nodes_to_exclude", nodes_to_exclude,
                            [n.name for n in model.graph.node if n.name], "node name")
    # ONNX Runtime's dynamic quantizer turns each Gemm into a MatMul named "<Gemm>_MatMul"
    # first and then reads nodes_to_exclude: an excluded Gemm (GPT-2's layers) is named so.
    gemms = {n.name for n in model.graph.node if n.op_type == "Gemm"}
    excluded = exclude + [f"{name}_MatMul" for name in exclude if name in gemms]
    external = _large(model)
    # Two scratch directories: _place reads every other file beside the quantizer's output as
    # its external weights.
    with _quiet_logging(), _scratch(target) as prepared, _scratch(target) as scratch:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        scaled = {}
        if row_scaling:
            scaled = _scale_outliers(model, feeds, exclude, prepared)
            source = prepared / "row-scaled.onnx"
            _save(model, source, external=external)
        del model
        written = scratch / Path(target).name
        quantize_dynamic(
            str(source), str(written), per_channel=per_channel, reduce_range=reduce_range,
            weight_type=QuantType.QInt8 if weight_type == "int8" else QuantType.QUInt8,
            op_types_to_quantize=list(DYNAMIC_INT8_OPS),
            nodes_to_exclude=excluded, use_external_data_format=external,
            # Shape inference leaves the outputs of fused (com.microsoft) ops untyped; this
            # types them float so the quantizer can work on an optimize variant.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        _place(written, Path(target))
    _check_loads(recipe, Path(target), "exclude the failing node with nodes_to_exclude.")
    return {"per_channel": per_channel, "reduce_range": reduce_range,
            "weight_type": weight_type, "row_scaling": row_scaling, **scaled,
            "nodes_to_exclude": exclude, "op_types": list(DYNAMIC_INT8_OPS)}


def _scale_outliers(model, feeds, exclude: list[str], scratch: Path) -> dict:
    """dynamic-int8's row_scaling (``calibration.outliers``): smooth the fused Attention
    inputs, then row-scale the weight MatMuls' inputs; with calibration ``feeds``, only those
    whose rows spread (ROW_SPREAD). The counts, for the manifest."""
    from . import outliers

    _gemms_as_matmuls(model, _conv1d_gemms(model))  # under their names: exclude still applies
    attention = outliers.attention_inputs(model, exclude)
    if feeds is None:
        if attention:
            raise InputError(
                "row_scaling cannot reach inside a fused Attention node (its bias is added "
                "within); the recipe smooths its input per channel instead, from calibration "
                "data. Note: pass --calibration PATH (the task's kind of inputs), or quantize "
                "the unfused fp32 graph."
            )
        return {"row_scaled_inputs": outliers.scale_rows(model, exclude),
                "smoothed_attention": 0}
    inputs = _graph_inputs(model)
    feeds = _check_feeds("dynamic-int8", feeds, inputs)
    candidates = list(outliers.matmul_inputs(model, exclude))
    names = [*attention, *(x for x in candidates if x not in attention)]
    probe = scratch / "probe.onnx"
    _save(outliers.with_outputs(model, names), probe, external=_large(model))
    peaks, spread = outliers.profile(_cpu_session(probe), names, feeds, inputs)
    smoothed = outliers.smooth_channels(model, {x: peaks[x] for x in attention})
    spread_out = [x for x in candidates if spread[x] >= outliers.ROW_SPREAD]
    return {"row_scaled_inputs": outliers.scale_rows(model, exclude, only=spread_out),
            "rows_even": len(candidates) - len(spread_out), "smoothed_attention": smoothed,
            "smooth_alpha": outliers.SMOOTH_ALPHA, "row_spread": outliers.ROW_SPREAD}


# --- static-int8 ----------------------------------------------------------------------------------

_METHODS = ("search", "minmax", "entropy", "percentile")
STATIC_INT8_OPS = ("MatMul", "Gemm", "Conv")  # their inputs get Q/DQ (see static_int8)


class _FeedReader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of feeds (batch 1 each)."""

    def __init__(self, feeds: list[Mapping], inputs: Mapping[str, object]):
        import numpy as np

        self._feeds = [{name: np.asarray(feed[name]).astype(dtype, copy=False)
                        for name, dtype in inputs.items()} for feed in feeds]
        self._next = iter(self._feeds)

    def get_next(self):
        return next(self._next, None)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next = iter(self._feeds[start_index:end_index])

    def rewind(self) -> None:
        self._next = iter(self._feeds)

    def __iter__(self):
        return iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)


def _graph_inputs(model) -> dict[str, object]:
    """The graph's real inputs (not initializers) -> numpy dtype."""
    from onnx import helper

    initializers = {t.name for t in model.graph.initializer}
    return {i.name: helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
            for i in model.graph.input if i.name not in initializers}


def _check_feeds(recipe: str, feeds, inputs: Mapping[str, object]) -> list[Mapping]:
    if feeds is None:
        raise InputError(
            f"The {recipe} recipe needs calibration data. Note: pass calibration=PATH "
            "(--calibration PATH): a text file of lines, JSON lines, an .npz, or a folder of "
            "samples."
        )
    feeds = list(feeds)
    if not feeds:
        raise InputError(f"The {recipe} recipe got no calibration samples. Note: give at least "
                         "one (a few hundred varied ones calibrate best).")
    for number, feed in enumerate(feeds):
        missing = [name for name in inputs if name not in feed]
        if missing:
            raise InputError(
                f"Calibration sample {number} has no {missing[0]!r}, an input of the graph. "
                f"Note: the graph's inputs are {list(inputs)}; the sample has {sorted(feed)}."
            )
    return feeds


def static_int8(source: Path, target: Path, *, feeds=None, method: str = "search",
                per_channel: bool = True, nodes_to_exclude: list[str] | None = None,
                smooth_alpha: float | None = None, attention_matmuls: bool = False,
                float_type: str = "fp32", convs: str = "auto") -> dict:
    """``quantize_static`` in QDQ form, calibrated on ``feeds``: the int8 TensorRT builds.

    Placement, as TensorRT fuses it (and NVIDIA's Model Optimizer places it in transformers):
    Q/DQ on the inputs of the weight MatMuls and Gemms only, weights as constant int8 with a
    DequantizeLinear, symmetric (zero point 0; TensorRT rejects others, uint8 and int32
    DequantizeLinear), per output channel; activations int8 per tensor. The products stay
    float (ONNX Runtime's quantizer would quantize them too: the FFN output reaches about 200 on
    MiniLM's outlier tokens), as do LayerNorm, Softmax, GELU, residual adds, biases and shape
    arithmetic: a MatMul input that other nodes also read (a LayerNorm output feeds the
    residual Add) gets an Identity of its own first (``outliers.isolate_inputs``), since ONNX
    Runtime's quantizer would hand every reader the dequantized tensor. The MatMuls of two
    activations (attention's Q @ K^T and P @ V) stay float unless ``attention_matmuls``.

    ``method``: ``search`` (the default) sets each weight MatMul's input by the error of its
    products on the calibration data (``calibration.qdq_search``): the SmoothQuant strength
    that moves its outlier channels into the weights and the clipping of its range, scored by
    two-fold cross validation, the mildest setting kept where the plain range already does
    well (so a model whose activations have no outliers gets min/max's ranges, and their
    headroom). ``minmax``, ``entropy`` and ``percentile`` are ONNX Runtime's range
    calibrators, with ``smooth_alpha`` one SmoothQuant strength for every input.

    Measured on all-MiniLM-L6-v2 calibrated on 32 sentences, 58 others held out, min (mean)
    cosine of the sentence embeddings to fp32: search 0.988 (0.997), minmax 0.890 (0.979),
    entropy 0.923 (0.980), percentile 0.892 (0.980); minmax as ONNX Runtime places Q/DQ (the
    products and the residual path quantized too) 0.553 (0.824); dynamic-int8 0.967 (0.992).

    ``convs``: which Convs get Q/DQ. ``auto`` (the default): the 2-D ones past the stem (a
    CNN's body, DETR's backbone, SegFormer's patch embeddings), not the one reading the image
    itself nor 1-D ones (a speech front end over the raw waveform: Wav2Vec2's character error
    went from 0.11 to 0.57 with them in int8); ``all``; ``none``.

    ``float_type``: what the rest runs in. ``fp32`` (the default), or ``fp16``: the float
    parts, the scales and the MatMuls left out of int8 (``nodes_to_exclude``, ``--max-drop``)
    in fp16 but the ops the fp16 recipe keeps in fp32 (LayerNorm, Softmax, ...), in opset 19
    (fp16 scales), with fp32 inputs and outputs. TensorRT builds a QDQ graph strongly typed, its
    precision from the graph: this is the TensorRT variant, int8 where quantized and fp16
    elsewhere, as ``--int8 --fp16`` gives. (MiniLM: min cosine 0.984 against fp32's 0.986.)
    ONNX Runtime's CPU provider casts most fp16 ops back to fp32 (4.7x slower on MiniLM).

    ONNX Runtime's CPU provider runs it, but slowly (x86 fuses only part of it; the other
    weights are dequantized at every run): on ONNX Runtime use dynamic-int8.
    """
    recipe = "static-int8"
    method = _choice(recipe, "method", method, _METHODS)
    per_channel = _flag(recipe, "per_channel", per_channel)
    attention_matmuls = _flag(recipe, "attention_matmuls", attention_matmuls)
    float_type = _choice(recipe, "float_type", float_type, ("fp32", "fp16"))
    convs = _choice(recipe, "convs", convs, ("auto", "all", "none"))
    if smooth_alpha is not None:
        if isinstance(smooth_alpha, bool) or not isinstance(smooth_alpha, (int, float)) or not (
                0 < smooth_alpha <= 1):
            raise InputError(f"The {recipe} recipe's smooth_alpha option is a number in (0, 1], "
                             f"got {smooth_alpha!r}. Note: e.g. --option smooth_alpha=0.5.")
        if method == "search":
            raise InputError(f"The {recipe} recipe's search method (the default) picks the "
                             "SmoothQuant strength of each MatMul itself. Note: give "
                             "smooth_alpha with method=minmax, entropy or percentile, or leave "
                             "it out.")
    onnx = _onnx()
    model = _load_source(recipe, source)
    _need_matmuls(recipe, model, Path(source), STATIC_INT8_OPS)
    exclude = _names_option(recipe, "nodes_to_exclude", nodes_to_exclude,
                            [n.name for n in model.graph.node if n.name], "node name")
    inputs = _graph_inputs(model)
    feeds = _check_feeds(recipe, feeds, inputs)
    external = _large(model)
    skipped = list(exclude) + _float_convs(model, convs)
    if not attention_matmuls:
        skipped += _activation_matmuls(model)
    with _quiet_logging(), _scratch(target) as prepared:
        from .outliers import isolate_inputs

        searched, overrides = {}, {}
        isolate_inputs(model, STATIC_INT8_OPS, skipped)
        if method == "search" or smooth_alpha is not None:
            searched, overrides = _smooth(model, feeds, inputs, skipped, smooth_alpha,
                                          method == "search", prepared)
        source = prepared / "prepared.onnx"
        _save(model, source, external=external)
        del model
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        reader = type("FeedReader", (_FeedReader, CalibrationDataReader), {})(feeds, inputs)
        calibrate = {"search": CalibrationMethod.MinMax, "minmax": CalibrationMethod.MinMax,
                     "entropy": CalibrationMethod.Entropy,
                     "percentile": CalibrationMethod.Percentile}[method]
        with _scratch(target) as scratch:
            written = scratch / Path(target).name
            quantize_static(
                str(source), str(written), reader, quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(STATIC_INT8_OPS), per_channel=per_channel,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=skipped, use_external_data_format=external,
                calibrate_method=calibrate, calibration_providers=["CPUExecutionProvider"],
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
                    # Gemm biases stay float: int32 DequantizeLinear is not a TensorRT layer.
                    "QuantizeBias": False,
                    # Q/DQ on the inputs only, as TensorRT places them: the products (the
                    # FFN output's reach about 200 on outlier tokens) stay float.
                    "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm", "Conv"],
                    "TensorQuantOverrides": overrides,
                    "DefaultTensorType": onnx.TensorProto.FLOAT,
                    # One sample per collection pass: the histogram calibrators (entropy,
                    # percentile) stack a pass's outputs into one array, which fails for
                    # samples of different sequence lengths.
                    "CalibStridedMinMax": 1,
                },
            )
            if float_type == "fp16":
                converted, _ = _float16(onnx.load(str(written)))
                written = scratch / "fp16" / Path(target).name
                written.parent.mkdir()
                _save(converted, written, external=external)
                del converted
            _place(written, Path(target))
    _check_loads(recipe, Path(target), "exclude the failing node with nodes_to_exclude.")
    return {"method": method, "per_channel": per_channel, "nodes_to_exclude": exclude,
            "smooth_alpha": smooth_alpha, "searched": searched,
            "quantized": _quantized_nodes(Path(target)),
            "attention_matmuls": attention_matmuls, "convs": convs, "float_type": float_type,
            "format": "QDQ",
            "activation_type": "int8", "weight_type": "int8", "symmetric": True,
            "op_types": list(STATIC_INT8_OPS)}


def _float_convs(model, convs: str) -> list[str]:
    """The Convs static-int8 leaves float: all (``none``), none (``all``), or (``auto``) the
    1-D ones and those reading a graph input."""
    if convs == "all":
        return []
    inputs = {i.name for i in model.graph.input}
    weights = {t.name: t for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and (
        convs == "none" or n.input[0] in inputs
        or (n.input[1] in weights and len(weights[n.input[1]].dims) < 4))]


def _activation_matmuls(model) -> list[str]:
    """The MatMuls of two activations (attention's Q @ K^T and P @ V)."""
    weights = {t.name for t in model.graph.initializer}
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "MatMul"
            and not any(i in weights or i in constants for i in n.input)]


def _smooth(model, feeds, inputs, exclude: list[str], alpha, search: bool, scratch: Path
            ) -> tuple[dict, dict]:
    """Smooth the weight MatMuls' inputs (in place): with ``search``, each input's SmoothQuant
    strength and clipping range chosen by its products' error (``qdq_search``), else
    ``alpha`` for all. Returns ({input: its setting, for the manifest}, ONNX Runtime's
    TensorQuantOverrides for the searched ranges)."""
    import numpy as np
    from onnx import numpy_helper

    from . import outliers, qdq_search

    consumers = outliers.matmul_inputs(model, exclude)
    names = list(consumers)
    probe = scratch / "probe.onnx"
    _save(outliers.with_outputs(model, names), probe, external=_large(model))
    sampled = qdq_search.sample_rows(_cpu_session(probe), names, feeds, inputs)
    peaks = {x: entry["peaks"].max(0) for x, entry in sampled.items()}
    if not search:
        smoothed = outliers.smooth_matmuls(model, peaks, float(alpha), exclude)
        return {x: {"alpha": float(alpha)} for x in smoothed}, {}
    weights = {t.name: t for t in model.graph.initializer}
    nodes = model.graph.node
    settings = {}
    for x, indices in consumers.items():
        matrices = [numpy_helper.to_array(weights[nodes[i].input[1]]) for i in indices]
        settings[x] = qdq_search.best_setting(sampled[x], matrices)
    smoothed = outliers.smooth_matmuls(model, peaks, {x: s["alpha"] for x, s in
                                                      settings.items()}, exclude)
    overrides = {smoothed.get(x, x): [{"rmin": np.float32(-setting["range"]),
                                       "rmax": np.float32(setting["range"])}]
                 for x, setting in settings.items()}
    record = {x: {key: (round(value, 6) if isinstance(value, float) else value)
                  for key, value in setting.items()} for x, setting in settings.items()}
    return record, overrides


def _quantized_nodes(path: Path) -> dict:
    """What a QDQ graph runs in int8: its weight MatMuls and Gemms with int8 weights (a
    DequantizeLinear of a constant), by op type, and the names of those left float."""
    onnx = _onnx()
    model = onnx.load(str(path), load_external_data=False)
    constants = {t.name for t in model.graph.initializer}
    dequantized = {n.output[0] for n in model.graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0] in constants}
    int8: dict[str, int] = {}
    kept = []
    for node in model.graph.node:
        if node.op_type not in STATIC_INT8_OPS or len(node.input) < 2:
            continue
        if node.input[1] in dequantized:
            int8[node.op_type] = int8.get(node.op_type, 0) + 1
        elif node.input[1] in constants:
            kept.append(node.name)
    return {"int8": int8, "float": kept}


# --- fp16 -----------------------------------------------------------------------------------------

# Kept in fp32: normalizations and Softmax (their sums overflow or lose the small terms in
# fp16), Pow (x**2 of a decomposed LayerNorm overflows), ReduceL2 (a sum of squares). The
# graph inputs and outputs stay fp32 too (keep_io_types).
FP16_KEEP_FP32 = ("LayerNormalization", "SimplifiedLayerNormalization",
                  "SkipLayerNormalization", "SkipSimplifiedLayerNormalization",
                  "EmbedLayerNormalization", "Softmax", "Pow", "ReduceL2")


_ACTIVATION_OPS = frozenset({"MatMul", "Gemm", "Conv", "LayerNormalization", "Softmax"})


def _index_arithmetic(model) -> list[str]:
    """Names of the float nodes that compute integer indices: the backward float cone of each
    float -> integer Cast that depends on no activation (MPNet's and DeBERTa's relative
    position buckets: Div, Log, ... of positions, then Cast to int64). In fp16 their rounding
    moves positions into neighbouring buckets: MPNet's outputs then differ by 5% of their
    range. Kept fp32, they cost nothing (they run on positions, not on hidden states)."""
    onnx = _onnx()
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is a help here, not a requirement
        return []
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    producer = {out: node for node in model.graph.node for out in node.output}
    integers = {onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32,
                onnx.TensorProto.INT64, onnx.TensorProto.UINT8, onnx.TensorProto.UINT16,
                onnx.TensorProto.UINT32, onnx.TensorProto.UINT64}
    graph_inputs = {i.name for i in model.graph.input}
    blocked: set[str] = set()
    for node in model.graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type != "Cast" or to not in integers or types.get(node.input[0]) not in floats:
            continue
        cone, stack, pure = set(), [node.input[0]], True
        while stack and pure:
            name = stack.pop()
            source = producer.get(name)
            if source is None:
                pure = name not in graph_inputs or types.get(name) not in floats
                continue
            if types.get(name) not in floats or source.name in cone:
                continue
            if source.op_type in _ACTIVATION_OPS or not source.name or len(cone) > 64:
                pure = False
                continue
            cone.add(source.name)
            stack.extend(i for i in source.input if i)
        if pure:
            blocked |= cone
    return sorted(blocked)


def _drop_duplicate_nodes(model) -> None:
    """ONNX Runtime's float16 converter inserts one Cast per (fp16 tensor, fp32 consumer) and
    names it after the tensor, so a tensor feeding two kept-fp32 nodes (ALBERT's shared
    LayerNorm weights) gets two identical Casts: an invalid graph. Keep the first of each."""
    seen, kept = set(), []
    for node in model.graph.node:
        key = node.SerializeToString(deterministic=True)
        if key not in seen:
            seen.add(key)
            kept.append(node)
    if len(kept) != len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(kept)


def fp16(source: Path, target: Path, *, feeds=None, op_block_list: list[str] | None = None) -> dict:
    """``convert_float_to_float16``: fp16 weights and math except the ops of FP16_KEEP_FP32
    (and ``op_block_list``) and integer index arithmetic, with fp32 inputs and outputs, so
    callers feed and read fp32."""
    recipe = "fp16"
    model = _load_source(recipe, source)
    extra = _names_option(recipe, "op_block_list", op_block_list, _op_types(model), "op type")
    external = _large(model)
    converted, index_nodes = _float16(model, extra)
    _save(converted, Path(target), external=external)
    _check_loads(recipe, Path(target),
                 "keep the op that fails in fp32 with op_block_list=['OpType'].")
    return {"op_block_list": extra, "kept_fp32": sorted(set(FP16_KEEP_FP32) | set(extra)),
            "index_nodes_kept_fp32": index_nodes, "keep_io_types": True}


def _float16(model, extra: Iterable[str] = ()) -> tuple[object, int]:
    """``model``'s float math in fp16 (``convert_float_to_float16``) but the ops of
    FP16_KEEP_FP32 and ``extra`` and integer index arithmetic, with fp32 inputs and outputs.
    A QDQ graph's scales become fp16 too (opset 19's QuantizeLinear and DequantizeLinear take
    them; older opsets are raised to 19). Returns (the converted graph, the number of index
    nodes kept fp32)."""
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        for opset in model.opset_import:
            if opset.domain in ("", "ai.onnx") and opset.version < 19:
                opset.version = 19
        model.ir_version = max(model.ir_version, 9)  # opset 19's IR version
    # The converter needs every tensor's type to put Casts around the ops kept fp32 (without
    # it BERT-base's LayerNorms got fp16 inputs); ONNX's shape inference takes a message up to
    # protobuf's 2 GB, weights included, so only a graph past that goes without.
    infer = _fits_protobuf(model)
    index_nodes = _index_arithmetic(model) if infer else []
    with _quiet_logging():
        from onnxruntime.transformers.float16 import (
            DEFAULT_OP_BLOCK_LIST,
            convert_float_to_float16,
        )

        block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP16_KEEP_FP32) | set(extra))
        converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=block,
                                             node_block_list=index_nodes,
                                             disable_shape_infer=not infer)
    _drop_duplicate_nodes(converted)
    return converted, len(index_nodes)


# --- int4 -----------------------------------------------------------------------------------------

def _conv1d_gemms(model) -> list:
    """The Gemm nodes that are GPT-2-style Conv1D linear layers: a constant [in, out] weight
    (no transB), alpha = beta = 1. torch exports GPT-2's Conv1D (``addmm`` on the flattened
    activations) so, where an ``nn.Linear`` on 3-D activations becomes MatMul + Add. An
    ``nn.Linear`` on 2-D activations (a classifier head) is a Gemm with transB=1: not one of
    these, it stays float as before."""
    onnx = _onnx()
    weights = {t.name: len(t.dims) for t in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type != "Gemm" or len(node.input) < 2 or weights.get(node.input[1]) != 2:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if (attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
                and not attrs.get("transA", 0) and not attrs.get("transB", 0)):
            found.append(node)
    return found


def _gemms_as_matmuls(model, gemms: list) -> None:
    """Each of ``gemms`` (see _conv1d_gemms) as MatMul (under the Gemm's name, so that
    nodes_to_exclude names it as before) + Add of its bias: MatMulNBits takes MatMuls only."""
    onnx = _onnx()
    chosen = {node.output[0] for node in gemms}  # one producer per value: a node's key
    nodes = []
    for node in model.graph.node:
        if node.op_type != "Gemm" or node.output[0] not in chosen:
            nodes.append(node)
            continue
        bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}_MatMul" if bias else node.output[0]
        nodes.append(onnx.helper.make_node("MatMul", list(node.input[:2]), [product],
                                           name=node.name))
        if bias:
            nodes.append(onnx.helper.make_node("Add", [product, node.input[2]],
                                               [node.output[0]], name=f"{node.name}_Add"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def int4(source: Path, target: Path, *, feeds=None, block_size: int = 32,
         symmetric: bool = False, accuracy_level: int | None = None,
         nodes_to_exclude: list[str] | None = None) -> dict:
    """Weight-only 4-bit: each MatMul with a constant weight becomes MatMulNBits, its weight
    quantized in blocks of ``block_size`` along the input axis (a scale per block, and a zero
    point unless ``symmetric``). Activations stay fp32. Asymmetric is the default: it keeps
    more of the weights at the same speed (all-MiniLM-L6-v2 sentence embeddings: min cosine
    0.90 to PyTorch, 0.87 symmetric). 4 bits are for large MatMuls (LLMs): small encoders lose
    more than int8 and, on CPU, run slower than fp32 (benchmarks/quantization.py).

    GPT-2's linear layers (Conv1D) export as Gemm: those (``_conv1d_gemms``) become MatMul +
    Add first and are 4-bit too; without that only GPT-2's LM head would be.

    ``accuracy_level`` is the precision MatMulNBits computes in on the CPU (ONNX Runtime's
    setting): None or 1 fp32 (the weights are dequantized), 2 fp16, 3 bf16, 4 int8 (the
    activations quantized per block at run time: the fast path for LLM decoding on CPUs with
    int8 dot products, and the recommended CPU setting for LLMs)."""
    return _weight_only("int4", 4, source, target, block_size=block_size, symmetric=symmetric,
                        accuracy_level=accuracy_level, nodes_to_exclude=nodes_to_exclude)


def int8_weights(source: Path, target: Path, *, feeds=None, block_size: int = 32,
                 symmetric: bool = True, accuracy_level: int | None = 4,
                 nodes_to_exclude: list[str] | None = None) -> dict:
    """Weight-only 8-bit: int4's form (MatMulNBits, a scale per block of ``block_size``) with
    8-bit weights, a quarter of fp32's size, and no calibration data. Symmetric is the default:
    at 8 bits a zero point adds nothing measurable. ``accuracy_level`` as int4's; the default 4
    computes with int8 activations quantized per block at run time, as OpenVINO's CPU does
    with these MatMuls by default (at accuracy_level 1 the weights are dequantized at every
    call: 2.3x slower than fp32 on BERT-base). For OpenVINO, where dynamic-int8 does not run:
    int8 MatMuls without calibration (benchmarks/openvino_bench.py, BERT-base: 3.3x
    transformers at bf16, 1.14x optimum-intel; logits min cosine 0.9987 to PyTorch; MiniLM
    embeddings 0.998, where dynamic-int8 keeps 0.967); on ONNX Runtime's CPU 1.1-1.3x fp32's
    speed; and for LLMs whose int4 variant loses too much."""
    return _weight_only("int8-weights", 8, source, target, block_size=block_size,
                        symmetric=symmetric, accuracy_level=accuracy_level,
                        nodes_to_exclude=nodes_to_exclude)


def _weight_only(recipe: str, bits: int, source: Path, target: Path, *, block_size: int,
                 symmetric: bool, accuracy_level: int | None,
                 nodes_to_exclude: list[str] | None) -> dict:
    """int4 and int8-weights: each weight MatMul (GPT-2's Conv1D Gemms made MatMuls first)
    becomes MatMulNBits of ``bits`` bits, by ONNX Runtime's quantizer."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 16 or (
            block_size & (block_size - 1)):
        raise InputError(
            f"The {recipe} recipe's block_size must be a power of two of at least 16, got "
            f"{block_size!r}. Note: 32 (the default) or 64 are usual; 128 makes a smaller file."
        )
    symmetric = _flag(recipe, "symmetric", symmetric)
    if accuracy_level is not None:
        accuracy_level = _choice(recipe, "accuracy_level", accuracy_level, (0, 1, 2, 3, 4))
    model = _load_source(recipe, source)
    gemms = _conv1d_gemms(model)
    candidates = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name]
    candidates += [g.name for g in gemms if g.name]
    exclude = _names_option(recipe, "nodes_to_exclude", nodes_to_exclude, candidates,
                            "MatMul node name")
    _gemms_as_matmuls(model, [g for g in gemms if g.name not in exclude])
    _need_matmuls(recipe, model, Path(source), ops=("MatMul",))
    external = _large(model)
    with _quiet_logging():
        from onnxruntime.quantization import matmul_nbits_quantizer as nbits
        config = nbits.DefaultWeightOnlyQuantConfig(block_size=block_size,
                                                    is_symmetric=symmetric, bits=bits,
                                                    accuracy_level=accuracy_level)
        quantizer = nbits.MatMulNBitsQuantizer(model, block_size=block_size,
                                               is_symmetric=symmetric, bits=bits,
                                               accuracy_level=accuracy_level,
                                               nodes_to_exclude=exclude, algo_config=config)
        quantizer.process()
    converted = quantizer.model.model
    quantized = sum(1 for n in converted.graph.node if n.op_type == "MatMulNBits")
    if not quantized:
        raise InputError(
            f"The {recipe} recipe quantized no MatMul of {Path(source).name}: every weight "
            "MatMul was excluded or unsupported. Note: exclude fewer nodes."
        )
    _save(converted, Path(target), external=external)
    _check_loads(recipe, Path(target), "exclude the failing MatMul with nodes_to_exclude.")
    # What stayed float, said in the record: in a vision graph the Conv layers (a backbone, a
    # patch embedding) keep their weights, and only the transformer's MatMuls are quantized.
    by_name = {n.name: n.op_type for n in converted.graph.node}
    kept: dict[str, int] = {}
    for name in [*_weight_matmuls(converted), *_weight_convs(converted)]:
        kept[by_name[name]] = kept.get(by_name[name], 0) + 1
    return {"block_size": block_size, "symmetric": symmetric,
            "accuracy_level": accuracy_level, "nodes_to_exclude": exclude,
            "bits": bits, "quantized_matmuls": quantized, "kept_float": kept,
            "gemms_as_matmuls": len(gemms) - len([g for g in gemms if g.name in exclude])}


# --- llm ------------------------------------------------------------------------------------------

_LLM_PRECISIONS = ("int4", "int8", "fp32", "fp16")
# llm precision -> the weight-only recipe that quantizes the built graph
_LLM_WEIGHT_ONLY = {"int4": int4, "int8": int8_weights}


def llm(source: Path, target: Path, *, feeds=None, checkpoint=None, precision: str = "int4",
        block_size: int = 32, accuracy_level: int | None = 4) -> dict:
    """A decoder LM's graph rebuilt from its checkpoint with GroupQueryAttention (see
    ``exporter.llm``), validated against PyTorch in fp32; then, at ``precision`` "int4" (the
    default), its MatMuls 4-bit by the int4 recipe (``block_size``, ``accuracy_level``: 4 is
    int8 activations, the fast CPU path), at "int8" 8-bit by the int8-weights recipe (twice
    int4's size, closer to fp32); "fp16" is the GPU graph, its cache in float16.
    ``source`` (the fp32 graph) is not read: the
    checkpoint is, which ``variant_from_bundle`` takes from the bundle's manifest."""
    recipe = "llm"
    precision = _choice(recipe, "precision", precision, _LLM_PRECISIONS)
    if not isinstance(checkpoint, (str, os.PathLike)) or not str(checkpoint):
        raise InputError(
            "The llm recipe builds from the checkpoint the bundle was exported from, and none "
            "is known. Note: pass --option checkpoint=PATH (the checkpoint's folder).")
    try:
        from exporter.llm import build_llm_graph
    except ImportError as exc:  # the export extra: torch, transformers, optimum
        raise MissingDependencyError(
            f"The llm recipe builds from the checkpoint with PyTorch ({exc.name} is not "
            "installed). Note: install the export and llm extras, `pip install "
            "'edgeport[export,llm]'`.") from None
    target = Path(target)
    with _scratch(target) as scratch:
        built = scratch / target.name
        record = build_llm_graph(checkpoint, built,
                                 precision="fp16" if precision == "fp16" else "fp32")
        if precision not in _LLM_WEIGHT_ONLY:  # built under the target's name: its data
            for name in (target.name, target.name + "_data"):  # file moves along
                if (scratch / name).exists():
                    os.replace(scratch / name, target.with_name(name))
            _check_loads(recipe, target, "build the llm graph again")
        else:
            record[precision] = _LLM_WEIGHT_ONLY[precision](
                built, target, block_size=block_size, accuracy_level=accuracy_level)
    return {"precision": precision, "checkpoint": str(checkpoint), **record}


# --- optimize -------------------------------------------------------------------------------------

# Hugging Face model_type -> ONNX Runtime's optimizer model type. The encoders all take the
# BERT fusions (ONNX Runtime's docs use "bert" for RoBERTa, DistilBERT, ... too). ONNX
# Runtime's "vit" (and "swin") type is the same BERT fusion set; the vision models it has no
# type of its own for take it too: its fusions match patterns (LayerNorm, Add + LayerNorm,
# Gelu, eager attention) and leave the rest alone. Measured on the tiny exports of
# tests/calibration/test_vision_recipes.py: it fuses something in each of them (SegFormer's and
# GLPN's attention too), with outputs within 2e-6 of fp32 relative to their scale.
OPTIMIZER_MODEL_TYPES = {
    "bert": "bert", "distilbert": "bert", "roberta": "bert", "xlm-roberta": "bert",
    "albert": "bert", "deberta-v2": "bert", "mpnet": "bert", "camembert": "bert",
    "electra": "bert", "vit": "vit", "deit": "vit", "beit": "vit", "data2vec-vision": "vit",
    "vit_msn": "vit", "yolos": "vit", "dpt": "vit", "detr": "vit", "table-transformer": "vit",
    "segformer": "vit", "glpn": "vit", "convnext": "vit", "convnextv2": "vit",
    "mask2former": "vit", "swin": "swin", "clip": "clip",
    "gpt2": "gpt2", "gpt_neox": "gpt_neox", "phi": "phi", "qwen3": "qwen3", "bart": "bart",
    "t5": "t5", "mt5": "t5",
    # Pegasus is BART's architecture with another normalization order: the bart fusions take
    # its LayerNorms, residual adds and Gelu (measured on the tiny export: tokens the same).
    "pegasus": "bart",
    # The speech encoders' transformer layers are BERT's (post-norm in the base models,
    # pre-norm in the large ones): measured on the tiny exports, the bert fusions take their
    # LayerNorms, residual adds and Gelu (266 nodes to 110). Whisper is BART's layout with
    # pre-norm layers and a convolutional front.
    "wav2vec2": "bert", "hubert": "bert", "whisper": "bart",
}
# Convolutional networks: the transformer optimizer has nothing to fuse in them (ONNX Runtime
# fuses Conv + BatchNormalization + activation itself when it loads any graph), so optimize
# refuses them up front rather than write a copy of fp32.
CONVOLUTIONAL_MODEL_TYPES = ("resnet", "regnet")
# ONNX Runtime optimizer types whose fusions make ops its CPU provider has no kernel for: the
# t5 type always fuses T5's position buckets into RelativePositionBias (CUDA only in ONNX
# Runtime 1.31), so the graph it writes does not load on a CPU.
CPU_LACKS_FUSED_OPS = {"t5": "RelativePositionBias"}
_OPT_LEVELS = (0, 1, 2, 99)


def optimize(source: Path, target: Path, *, feeds=None, model_type: str | None = None,
             opt_level: int = 1, num_heads: int = 0, hidden_size: int = 0) -> dict:
    """ONNX Runtime's transformer optimizer: fuses attention, LayerNorm + residual, Gelu and
    the embeddings into ONNX Runtime's own (com.microsoft) ops. ``model_type`` is the bundle's
    architecture (variant_from_bundle fills it in) or one of ONNX Runtime's optimizer types;
    ``num_heads`` / ``hidden_size`` 0 are read from the graph. ``opt_level`` 1 runs ONNX
    Runtime's portable graph optimizations first; 0 only the fusions; 2 and 99 add the CPU
    provider's own rewrites (99: hardware-specific layouts, for this machine only).

    The result runs on ONNX Runtime (CPU and CUDA); TensorRT does not parse the fused ops, so
    build TensorRT engines from fp32, fp16 or static-int8 variants.
    """
    recipe = "optimize"
    from onnxruntime.transformers.optimizer import MODEL_TYPES, optimize_model

    if model_type is None:
        raise InputError(
            "The optimize recipe needs the model's architecture. Note: run it through "
            "variant_from_bundle (edgeport quantize), which passes the bundle's model_type, or "
            f"pass model_type=, one of: {', '.join(sorted(OPTIMIZER_MODEL_TYPES))}."
        )
    if model_type in CONVOLUTIONAL_MODEL_TYPES:
        raise InputError(
            f"The optimize recipe has nothing to do for {model_type!r}: a convolutional network "
            "has none of the transformer patterns ONNX Runtime's optimizer fuses, and ONNX "
            "Runtime fuses its Conv, BatchNormalization and activations itself when it loads "
            "the fp32 graph. Note: run the fp32 graph as it is, or make an fp16 variant."
        )
    known = sorted(set(OPTIMIZER_MODEL_TYPES) | set(MODEL_TYPES))
    optimizer_type = OPTIMIZER_MODEL_TYPES.get(model_type, model_type)
    if optimizer_type not in MODEL_TYPES:
        raise InputError(
            f"ONNX Runtime's optimizer has no fusions for model_type {model_type!r}. "
            + did_you_mean(str(model_type), known)
        )
    if optimizer_type in CPU_LACKS_FUSED_OPS:
        raise InputError(
            f"ONNX Runtime's {optimizer_type} fusions turn {model_type!r} graphs into "
            f"{CPU_LACKS_FUSED_OPS[optimizer_type]} nodes, which its CPU provider cannot run "
            "(ONNX Runtime has them for CUDA only), and no other optimizer type fuses this "
            "architecture. Note: on a CPU use dynamic-int8 (or fp16, int4) on the fp32 graphs."
        )
    opt_level = _choice(recipe, "opt_level", opt_level, _OPT_LEVELS)
    for option, value in (("num_heads", num_heads), ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(
                f"The optimize recipe's {option} must be a whole number >= 0, got {value!r}. "
                "Note: 0 (the default) reads it from the graph."
            )
    model = _load_source(recipe, source)
    external = _large(model)
    del model
    with _quiet_logging():
        optimized = optimize_model(str(source), model_type=optimizer_type, num_heads=num_heads,
                                   hidden_size=hidden_size, opt_level=opt_level,
                                   provider="cpu")
    fused = {op: count for op, count in optimized.get_fused_operator_statistics().items()
             if count}
    if not fused:  # ONNX Runtime would hand the graph back as it was, with only a log line
        raise InputError(
            f"ONNX Runtime's optimizer fused nothing in {Path(source).name} (model_type "
            f"{model_type!r}, optimizer type {optimizer_type!r}): the variant would be the fp32 "
            "graph. Note: ONNX Runtime applies its basic graph optimizations at load time "
            "anyway; quantize the fp32 graph instead, or pass another model_type."
        )
    _save(optimized.model, Path(target), external=external)
    _check_loads(recipe, Path(target), "try opt_level=0, or leave this graph unoptimized.")
    return {"model_type": model_type, "optimizer_model_type": optimizer_type,
            "opt_level": opt_level, "num_heads": num_heads, "hidden_size": hidden_size,
            "fused": fused}


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe("dynamic-int8", dynamic_int8, takes_calibration=True,
               options={"per_channel": True, "reduce_range": False, "weight_type": "int8",
                        "row_scaling": False, "nodes_to_exclude": None},
               summary="int8 weights (per channel), activations quantized at run time"),
        Recipe("static-int8", static_int8, needs_calibration=True,
               options={"method": "search", "per_channel": True, "nodes_to_exclude": None,
                        "smooth_alpha": None, "attention_matmuls": False,
                        "convs": "auto", "float_type": "fp32"},
               summary="QDQ int8 calibrated on data (symmetric int8: TensorRT's form)"),
        Recipe("fp16", fp16, options={"op_block_list": None},
               summary="float16, with LayerNorm, Softmax, Pow and graph I/O kept fp32"),
        Recipe("int4", int4,
               options={"block_size": 32, "symmetric": False, "accuracy_level": None,
                        "nodes_to_exclude": None},
               summary="weight-only 4-bit MatMulNBits (blockwise)"),
        Recipe("int8-weights", int8_weights,
               options={"block_size": 32, "symmetric": True, "accuracy_level": 4,
                        "nodes_to_exclude": None},
               summary="weight-only 8-bit MatMulNBits (blockwise): no calibration data"),
        Recipe("llm", llm, wants_checkpoint=True,
               options={"checkpoint": None, "precision": "int4", "block_size": 32,
                        "accuracy_level": 4},
               summary="decoder LMs rebuilt with GroupQueryAttention, one cache buffer: int4/fp16"),
        Recipe("optimize", optimize, wants_model_type=True,
               options={"model_type": None, "opt_level": 1, "num_heads": 0, "hidden_size": 0},
               summary="ONNX Runtime's transformer fusions (Attention, SkipLayerNorm, Gelu)"),
    )
}
