"""Outlier handling for dynamic int8: rewrites of the fp32 graph, exact in fp32, that give ONNX
Runtime's per-tensor activation quantizer rows of one scale.

ONNX Runtime's fast dynamic int8 path (DynamicQuantizeLinear, MatMulInteger, QAttention)
quantizes each activation tensor with one range. In transformers a few tokens ([CLS], [SEP])
carry activations many times larger than the rest (all-MiniLM-L6-v2: about 28 against 1-6), so
that one range leaves the other rows a few quantization steps. Two rewrites help, both before
the quantizer runs:

``scale_rows``: each weight MatMul's input ``x`` becomes ``x / s`` with ``s`` the max-abs of
    each row, and the product is multiplied back by ``s``: ``(x / s) @ W * s == x @ W``. Every
    row then spans the quantizer's range (per-token quantization, from plain ONNX ops: Abs,
    ReduceMax, Add, Div before, Mul after).
``smooth_channels``: the input of a fused Attention (an ``optimize`` variant's), which row
    scaling cannot reach (its bias is added inside), is divided per channel by ``c`` and the
    weight's rows multiplied by it, SmoothQuant's migration of the outlier channels into the
    weights: ``c = max|x|^alpha / max|W|^(1 - alpha)`` from calibration data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from runtime.errors import InputError

# SmoothQuant's default migration strength; measured on all-MiniLM-L6-v2 (optimize + int8,
# Attention smoothed, MatMuls row-scaled): min cosine to PyTorch 0.9911 at 0.3, 0.9915 at 0.5,
# 0.9937 at 0.7, 0.9928 at 0.85.
SMOOTH_ALPHA = 0.5
_EPSILON = 1e-30  # keeps an all-zero row at zero instead of 0 / 0
# With calibration data, an input is row-scaled only when some row peaks at this many times the
# median row (its row spread): evenly spread rows gain nothing from their own ranges, and
# each scaled input costs five ops (about 10 us each at batch 1 on 2 cores). On
# all-MiniLM-L6-v2 the attention contexts spread 2-4x, the FFN inputs up to 15x.
ROW_SPREAD = 4.0


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _unique(model, name: str) -> str:
    taken = {t.name for t in model.graph.initializer}
    taken.update(v for n in model.graph.node for v in (*n.input, *n.output))
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}_{number}"
    return candidate


def _splice(model, before: Mapping[int, list], after: Mapping[int, list]) -> None:
    """Insert nodes before/after the nodes at the given indices (topological order kept)."""
    nodes = []
    for index, node in enumerate(model.graph.node):
        nodes.extend(before.get(index, []))
        nodes.append(node)
        nodes.extend(after.get(index, []))
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _drop_unread(model, names: set[str]) -> None:
    """Remove the initializers of ``names`` that no node reads any more (weights replaced by
    their scaled copies)."""
    read = {name for node in model.graph.node for name in node.input}
    for tensor in [t for t in model.graph.initializer if t.name in names and t.name not in read]:
        model.graph.initializer.remove(tensor)


def matmul_inputs(model, exclude: Iterable[str] = ()) -> dict[str, list[int]]:
    """The activation inputs of the weight MatMuls not in ``exclude`` -> the indices of the
    MatMuls that read each (what ``scale_rows`` scales)."""
    weights = {t.name: len(t.dims) for t in model.graph.initializer}
    excluded = set(exclude)
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(model.graph.node):
        if (node.op_type == "MatMul" and node.name not in excluded and len(node.input) == 2
                and weights.get(node.input[1], 0) == 2 and node.input[0] not in weights):
            consumers.setdefault(node.input[0], []).append(index)
    return consumers


def scale_rows(model, exclude: Iterable[str] = (), only: Iterable[str] | None = None) -> int:
    """Row-scale the input of every weight MatMul not in ``exclude`` (in place), or of those
    whose input is in ``only``; return how many inputs were scaled. MatMuls that share an
    input share its scaling."""
    from onnx import helper, numpy_helper

    consumers = matmul_inputs(model, exclude)
    if only is not None:
        chosen = set(only)
        consumers = {x: indices for x, indices in consumers.items() if x in chosen}
    if not consumers:
        return 0
    epsilon = _unique(model, "row_scale_epsilon")
    model.graph.initializer.append(numpy_helper.from_array(np.float32(_EPSILON), epsilon))
    new_axes = _opset(model) >= 18  # ReduceMax takes its axes as an input from opset 18
    if new_axes:
        axes = _unique(model, "row_scale_axes")
        model.graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), axes))
    before: dict[int, list] = {}
    after: dict[int, list] = {}
    nodes = model.graph.node
    for x, indices in consumers.items():
        stem = _unique(model, f"{x}_row_scale")
        absolute, peak, scale, scaled = (f"{stem}_abs", f"{stem}_max", f"{stem}_s",
                                         f"{stem}_x")
        reduce = (helper.make_node("ReduceMax", [absolute, axes], [peak], keepdims=1,
                                   name=f"{stem}/ReduceMax") if new_axes else
                  helper.make_node("ReduceMax", [absolute], [peak], axes=[-1], keepdims=1,
                                   name=f"{stem}/ReduceMax"))
        before.setdefault(indices[0], []).extend([
            helper.make_node("Abs", [x], [absolute], name=f"{stem}/Abs"),
            reduce,
            helper.make_node("Add", [peak, epsilon], [scale], name=f"{stem}/Add"),
            helper.make_node("Div", [x, scale], [scaled], name=f"{stem}/Div"),
        ])
        for index in indices:
            node = nodes[index]
            product = node.output[0]
            node.input[0] = scaled
            node.output[0] = _unique(model, f"{product}_row_scaled")
            after[index] = [helper.make_node("Mul", [node.output[0], scale], [product],
                                             name=f"{node.name}/row_scale")]
    _splice(model, before, after)
    return len(consumers)


def attention_inputs(model, exclude: Iterable[str] = ()) -> list[str]:
    """The activation inputs of the fused Attention nodes (com.microsoft) not in ``exclude``
    whose weight is a constant: what ``smooth_channels`` smooths."""
    weights = {t.name for t in model.graph.initializer}
    excluded = set(exclude)
    return sorted({n.input[0] for n in model.graph.node
                   if n.op_type == "Attention" and n.name not in excluded
                   and len(n.input) > 1 and n.input[1] in weights})


def with_outputs(model, names: Iterable[str]):
    """A copy of ``model`` that also outputs the tensors ``names`` (for ``profile``)."""
    from onnx import helper

    probe = type(model)()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in names
                              if name not in present)
    return probe


def profile(session, names: list[str], feeds: Iterable[Mapping], inputs: Iterable[str]
            ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Over ``feeds``, from ``session`` (an ONNX Runtime session of a ``with_outputs`` graph):
    the max |value| per channel (last axis) of each tensor of ``names``, and its row spread,
    the largest ratio of a row's max |value| to the median row's in one run."""
    inputs = list(inputs)
    peaks: dict[str, np.ndarray] = {}
    spread: dict[str, float] = {}
    for feed in feeds:
        values = session.run(names, {k: feed[k] for k in inputs})
        for name, value in zip(names, values):
            value = np.abs(np.asarray(value, np.float32)).reshape(-1, value.shape[-1])
            channels, rows = value.max(0), value.max(1)
            peaks[name] = channels if name not in peaks else np.maximum(peaks[name], channels)
            ratio = float(rows.max() / max(float(np.median(rows)), 1e-30))
            spread[name] = max(spread.get(name, 0.0), ratio)
    return peaks, spread


def smooth_channels(model, peaks: Mapping[str, np.ndarray], alpha: float = SMOOTH_ALPHA) -> int:
    """Smooth the input of every fused Attention whose input is in ``peaks`` (in place); return
    how many Attention nodes were smoothed. Each gets its own copy of the scaled weight."""
    from onnx import helper, numpy_helper

    from .qdq_search import factors

    initializers = {t.name: t for t in model.graph.initializer}
    before: dict[int, list] = {}
    replaced: set[str] = set()
    count = 0
    for index, node in enumerate(model.graph.node):
        if node.op_type != "Attention" or node.input[0] not in peaks:
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        peak = np.asarray(peaks[node.input[0]], np.float64)
        if peak.shape != (weight.shape[0],):
            raise InputError(
                f"The input of {node.name} has {peak.shape[-1]} channels, its weight "
                f"{weight.shape[0]} rows. Note: this graph is not one the recipe can smooth; "
                "leave row_scaling out, or quantize the unfused fp32 graph."
            )
        factor = factors(peak, [weight], alpha, one_sided=False)
        stem = _unique(model, f"{node.name}_smooth")
        inverse = numpy_helper.from_array((1 / factor).astype(np.float32), f"{stem}_inverse")
        scaled = numpy_helper.from_array((weight * factor[:, None]).astype(np.float32),
                                         f"{stem}_weight")
        model.graph.initializer.extend([inverse, scaled])
        before[index] = [helper.make_node("Mul", [node.input[0], inverse.name],
                                          [f"{stem}_x"], name=f"{stem}/Mul")]
        node.input[0] = f"{stem}_x"
        replaced.add(node.input[1])
        node.input[1] = scaled.name
        count += 1
    _splice(model, before, {})
    _drop_unread(model, replaced)
    return count


def smooth_matmuls(model, peaks: Mapping[str, np.ndarray],
                   alpha: float | Mapping[str, float | None] = SMOOTH_ALPHA,
                   exclude: Iterable[str] = ()) -> dict[str, str]:
    """SmoothQuant for static int8 (in place): the input ``x`` of the weight MatMuls not in
    ``exclude`` whose input is in ``peaks`` becomes ``x * (1 / c)`` and each weight's rows are
    multiplied by ``c`` (``qdq_search.factors``: ``peak^alpha / max|W row|^(1 - alpha)``, the
    weights of the MatMuls that share ``x``, Q, K and V, taken together), so the channels whose
    activations peak far above the rest hand part of their range to the weights, which are
    quantized per output channel. Exact in fp32. ``alpha``: one for all, or per input (None:
    that input is left as it is). Returns {x: the tensor its MatMuls now read}."""
    from onnx import helper, numpy_helper

    from .qdq_search import factors

    initializers = {t.name: t for t in model.graph.initializer}
    nodes = model.graph.node
    before: dict[int, list] = {}
    smoothed: dict[str, str] = {}
    replaced: set[str] = set()
    for x, indices in matmul_inputs(model, exclude).items():
        strength = alpha.get(x) if isinstance(alpha, Mapping) else alpha
        if x not in peaks or strength is None:
            continue
        weights = [numpy_helper.to_array(initializers[nodes[i].input[1]]).astype(np.float32)
                   for i in indices]
        peak = np.asarray(peaks[x], np.float64)
        if any(peak.shape != (w.shape[0],) for w in weights):
            continue  # a broadcast MatMul whose channels are not the weight's rows
        factor = factors(peak, weights, strength)
        stem = _unique(model, f"{x}_smooth")
        inverse = numpy_helper.from_array((1 / factor).astype(np.float32), f"{stem}_inverse")
        model.graph.initializer.append(inverse)
        before[indices[0]] = [helper.make_node("Mul", [x, inverse.name], [f"{stem}_x"],
                                               name=f"{stem}/Mul")]
        for index, weight in zip(indices, weights):
            node = nodes[index]
            scaled = numpy_helper.from_array((weight * factor[:, None]).astype(np.float32),
                                             _unique(model, f"{node.input[1]}_smoothed"))
            model.graph.initializer.append(scaled)
            replaced.add(node.input[1])
            node.input[0] = f"{stem}_x"
            node.input[1] = scaled.name
        smoothed[x] = f"{stem}_x"
    _splice(model, before, {})
    _drop_unread(model, replaced)
    return smoothed


def isolate_inputs(model, op_types: Iterable[str], exclude: Iterable[str] = ()) -> int:
    """Give the activation inputs of the nodes of ``op_types`` not in ``exclude`` an Identity
    of their own (in place) where other nodes read them too, so that a quantizer that puts
    Q/DQ on a tensor for all its readers (ONNX Runtime's) quantizes only what the MatMuls
    read: a LayerNorm output also feeds the residual Add and Shape ops, which stay float.
    Returns how many tensors were isolated."""
    from onnx import helper

    wanted, excluded = set(op_types), set(exclude)
    constants = {t.name for t in model.graph.initializer}
    constants.update(o for n in model.graph.node if n.op_type == "Constant" for o in n.output)
    readers: dict[str, list[int]] = {}
    for index, node in enumerate(model.graph.node):
        for name in dict.fromkeys(node.input):
            if name:
                readers.setdefault(name, []).append(index)
    nodes = model.graph.node
    quantized = {i for i, n in enumerate(nodes) if n.op_type in wanted and n.name not in excluded}
    outputs = {o.name for o in model.graph.output}
    before: dict[int, list] = {}
    count = 0
    for x, indices in readers.items():
        if x in constants:
            continue
        mine = [i for i in indices if i in quantized]
        if not mine or (len(mine) == len(indices) and x not in outputs):
            continue
        isolated = _unique(model, f"{x}_quantized_input")
        before.setdefault(mine[0], []).append(helper.make_node(
            "Identity", [x], [isolated], name=f"{isolated}/Identity"))
        for index in mine:
            node = nodes[index]
            for position, name in enumerate(node.input):
                if name == x:
                    node.input[position] = isolated
        count += 1
    _splice(model, before, {})
    return count
