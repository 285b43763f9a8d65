"""Small helpers for building end-to-end ONNX graphs by hand: a node builder that names its
outputs, constants, and joining a bundle's graph (its names prefixed) with pre- and
postprocessing nodes into one model with metadata."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.errors import BundleError
from runtime.files import write_bytes_atomic

CONTRIB = "ai.onnx.contrib"  # the onnxruntime-extensions custom-op domain
MODEL_PREFIX = "model/"  # the bundle graph's names inside an end-to-end graph
# protobuf cannot serialize one message over 2 GiB; an end-to-end graph is written whole.
_MAX_BYTES = 2**31 - 1


class GraphBuilder:
    """Nodes and constants of one graph, each output named ``<prefix><op>_<n>`` unless named.

    >>> g = GraphBuilder("pre/")
    >>> g.op("Add", g.const(np.int64(1)), g.const(np.int64(2)))
    'pre/Add_5'
    """

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self._count = 0

    def _name(self, base: str) -> str:
        self._count += 1
        return f"{self.prefix}{base}_{self._count}"

    def op(self, op_type: str, *inputs: str, outputs: int | Sequence[str] = 1,
           domain: str = "", **attributes):
        """Add a node; its output name (or a list of them when ``outputs`` is not 1)."""
        names = ([self._name(op_type) for _ in range(outputs)] if isinstance(outputs, int)
                 else list(outputs))
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self._name(
            f"node_{op_type}"), domain=domain, **attributes))
        return names[0] if isinstance(outputs, int) and outputs == 1 else names

    def const(self, value, name: str | None = None) -> str:
        name = name or self._name("const")
        self.nodes.append(helper.make_node(
            "Constant", [], [name], name=self._name("node_Constant"),
            value=numpy_helper.from_array(np.asarray(value), name)))
        return name


def load_graph(path: Path) -> onnx.ModelProto:
    """A bundle's graph with its external data, every name prefixed with MODEL_PREFIX."""
    model = onnx.load(str(path), load_external_data=True)
    return onnx.compose.add_prefix(model, MODEL_PREFIX)


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)


def join(model: onnx.ModelProto, pre: GraphBuilder, post: GraphBuilder, *,
         inputs: Sequence[onnx.ValueInfoProto], outputs: Sequence[onnx.ValueInfoProto],
         feeds: Mapping[str, str], metadata: Mapping[str, str], name: str) -> onnx.ModelProto:
    """One model: ``pre``'s nodes, then ``model``'s graph with each of its inputs taken from
    ``feeds`` (graph input name, unprefixed -> a value ``pre`` makes), then ``post``'s nodes.
    The model keeps its opsets, with the extensions' domain added."""
    graph = model.graph
    renames = {MODEL_PREFIX + k: v for k, v in feeds.items()}
    missing = [i.name for i in graph.input if i.name not in renames
               and i.name not in {t.name for t in graph.initializer}]
    if missing:
        raise BundleError(
            f"The bundle's graph takes inputs {missing} that the end-to-end graph cannot make. "
            "Note: edgeport mobile feeds input_ids, attention_mask, token_type_ids and "
            "position_ids; export the checkpoint again for a standard task.")
    body = []
    for node in graph.node:
        node = onnx.NodeProto.FromString(node.SerializeToString())
        for i, value in enumerate(node.input):
            if value in renames:
                node.input[i] = renames[value]
        body.append(node)
    joined = helper.make_graph(
        [*pre.nodes, *body, *post.nodes], name, list(inputs), list(outputs),
        initializer=list(graph.initializer), value_info=list(graph.value_info))
    opsets = [o for o in model.opset_import if o.domain != CONTRIB]
    opsets.append(helper.make_opsetid(CONTRIB, 1))
    result = helper.make_model(joined, opset_imports=opsets, ir_version=model.ir_version,
                               producer_name="edgeport mobile")
    for key, value in metadata.items():
        result.metadata_props.add(key=key, value=value)
    return result


def value(name: str, elem_type: int, shape: Sequence) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, list(shape))


def save(model: onnx.ModelProto, target: Path) -> None:
    """Write ``model`` at ``target`` atomically, as one file."""
    data = model.SerializeToString()
    if len(data) > _MAX_BYTES:
        raise BundleError(
            f"The end-to-end graph is {len(data) / 2**30:.1f} GiB, more than one ONNX file can "
            "hold. Note: use a quantized variant (--variant int8) of this bundle.")
    write_bytes_atomic(target, data)


def metadata_json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


FLOAT, INT64, STRING = TensorProto.FLOAT, TensorProto.INT64, TensorProto.STRING
